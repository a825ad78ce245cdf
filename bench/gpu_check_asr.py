"""The GPU check's ASR part (4): the Whisper weights for a model name -- the real ones, or,
where a lent machine's transfer carried no model.bin, a Whisper of that model's shape with random
weights -- and one backend's run over the workload (load time, realtime factor, peak GPU memory,
whether a repeated file gives the same bytes)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from gpu_check_common import SAMPLE_RATE, Skip, _free


def _random_whisper(skeleton: Path, out: Path) -> Path:
    """A Whisper of ``skeleton``'s shape (its config.json + tokenizer.json) with random,
    seeded weights: the transformers form at ``out-hf`` and the CTranslate2 form at ``out``."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from voiceman.whisper_convert import build_configs, build_processor

    ct2_config = json.loads((skeleton / "config.json").read_text())
    tokenizer_json = json.loads((skeleton / "tokenizer.json").read_text())
    multilingual = len(ct2_config.get("lang_ids") or []) > 98
    shape = {
        "vocab_size": 51865 if multilingual else 51864,
        "d_model": 512 if multilingual else 384,
        "encoder_layers": 6 if multilingual else 4,
        "decoder_layers": 6 if multilingual else 4,
        "encoder_attention_heads": 8 if multilingual else 6,
        "decoder_attention_heads": 8 if multilingual else 6,
        "encoder_ffn_dim": 2048 if multilingual else 1536,
        "decoder_ffn_dim": 2048 if multilingual else 1536,
        "num_mel_bins": 80,
        "max_source_positions": 1500,
        "max_target_positions": 448,
        "tie_word_embeddings": True,
        "dtype": "float16",
    }
    hf = out.with_name(out.name + "-hf")
    if not (hf / "model.safetensors").is_file():
        config, generation = build_configs(shape, ct2_config, tokenizer_json)
        torch.manual_seed(0)
        model = WhisperForConditionalGeneration(config).to(torch.float16)
        model.generation_config = generation
        model.save_pretrained(hf)
        build_processor(skeleton, 80).save_pretrained(hf)
    if not (out / "model.bin").is_file():
        import ctranslate2.converters

        ctranslate2.converters.TransformersConverter(str(hf)).convert(str(out), quantization="float16", force=True)
        shutil.copy(skeleton / "tokenizer.json", out / "tokenizer.json")
    return out


def whisper_model(models_dir: Path, name: str, work: Path) -> tuple[Path, str]:
    """(directory, "real" | "random ...") for one Whisper model name."""
    path = models_dir / name
    if (path / "model.bin").is_file():
        if not (models_dir / f"{name}-hf" / "model.safetensors").is_file():
            from voiceman.models import prepare_transformers

            prepare_transformers(path)
        return path, "real (voiceman models prepare)"
    if (path / "config.json").is_file() and (path / "tokenizer.json").is_file():
        return _random_whisper(path, work / "random" / name), f"random, {name}'s shape (no model.bin here)"
    try:
        from voiceman.models import prepare

        prepare(models_dir, [name])
        return path, "real (prepared here)"
    except Exception as exc:  # noqa: BLE001
        raise Skip(f"{name}: no weights under {models_dir} and none to prepare ({exc})") from exc


def run_asr(
    model_dir: Path,
    backend: str,
    device: str,
    audio: dict[str, np.ndarray],
    batch_size: int,
    beam_size: int,
    cpu_threads: int = 0,
) -> dict[str, Any]:
    import torch

    from voiceman_daemon.asr import load_asr
    from voiceman_daemon.registry import ModelSpec

    _free()
    spec = ModelSpec.from_dict(
        "asr",
        {
            "id": str(model_dir),
            "language": "en",
            "device": device,
            "backend": backend,
            "beam_size": beam_size,
            "cpu_threads": cpu_threads,
        },
    )
    started = time.perf_counter()
    model = load_asr(spec)
    load_s = time.perf_counter() - started
    options = {"language": "en", "batch_size": batch_size}
    results, per_file = {}, {}
    sync = torch.cuda.synchronize if device == "cuda" and torch.cuda.is_available() else (lambda: None)
    started = time.perf_counter()
    for name, samples in audio.items():
        t0 = time.perf_counter()
        results[name] = model.transcribe(samples, options)
        sync()
        per_file[name] = round(time.perf_counter() - t0, 3)
    wall = time.perf_counter() - started
    first = next(iter(audio))
    again = model.transcribe(audio[first], options)
    same = json.dumps(again["segments"], sort_keys=True) == json.dumps(results[first]["segments"], sort_keys=True)
    audio_s = sum(a.size for a in audio.values()) / SAMPLE_RATE
    custody = model.custody()
    out = {
        "backend": backend,
        "device": custody.get("device"),
        "compute_type": custody.get("compute_type"),
        "backend_selection": custody.get("backend_selection"),
        "engine": custody["decoding"].get("engine"),
        "load_s": round(load_s, 2),
        "transcribe_wall_s": round(wall, 3),
        "audio_s": round(audio_s, 2),
        "realtime_factor": round(audio_s / wall, 2) if wall > 0 else None,
        "per_file_s": per_file,
        "vad_chunks": sum(r["vad_chunks"] for r in results.values()),
        "batch_size": batch_size,
        "beam_size": beam_size,
        "repeat_identical": same,
        "texts": {k: " ".join(s["text"] for s in r["segments"]) for k, r in results.items()},
        "_results": results,
    }
    if device == "cuda" and torch.cuda.is_available():
        out["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
    del model
    _free()
    return out
