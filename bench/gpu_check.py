"""The GPU check: both Whisper backends, SER and NVML on one machine, as one JSON file.

Run by ``bench/gpu_check.sh`` (which prints nvidia-smi first):

    python bench/gpu_check.py --out DIR              # on the GPU: about 6 minutes
    python bench/gpu_check.py --out DIR --dry-run    # the same code on the CPU, tiny inputs

What it does, each part timed, each failure recorded (never fatal) and the JSON rewritten
after every part, so a run stopped at its time limit still leaves what it measured:

1. ``environment``: python, torch/CUDA, transformers, ctranslate2 (and its CUDA devices);
2. ``device_probe``: ``voiceman_daemon.device_probe.probe`` for a config with both ASR
   backends possible (skipped where that module is absent);
3. ``workload``: WAV recordings synthesised with espeak-ng (``voiceman.benchmark.workload``),
   or the ``*.wav`` files of ``--audio DIR`` (for a machine without espeak-ng);
4. ``asr``: each Whisper model (``--models``: tiny.en, base) on each backend (ctranslate2,
   transformers) on the same files: load time, transcription wall time, realtime factor
   (audio seconds / wall seconds), peak GPU memory, transcripts, and whether a repeated file
   gives the same bytes;
5. ``agreement``: per model, word error rate between the backends' transcripts and the mean
   difference of the start times of the words both heard;
6. ``ser``: dimensional (and categorical where SpeechBrain is installed) SER with the
   published models' sizes and random weights (``tests/ser_fixtures.py``) on 4 s segments
   (the loaders' default ``cuda_graphs: auto``: graphs on CUDA);
7. ``ser_graphs``: CUDA-graph vs eager SER at batch 1-8 on 2.5-4 s segments (the 4 s bucket):
   time per batch each way, the ratio, max |graph - eager| (target >= 1.2x at batch <= 4,
   accuracy within 1e-3); on the CPU (dry run) the bucketed forward without graphs;
8. ``ser_utilisation``: GPU utilisation sampled through the governor's NVML wrapper
   (``NvmlQuery``) while both SER models run the workload's segments for a few seconds, with
   graphs and eagerly (target >= 90 %); "no NVML" and why where there is none;
9. ``dynamic_batching``: the files' ``transcribe`` then ``ser`` requests, all files concurrently,
   through the socket-free ``DaemonCore`` with the daemon's governor, cross-file batching off
   (batch_max_items=1) and on: wall seconds, per stage ``mean_batch_size``,
   ``requests_per_batch``, ``padding_fraction``, and whether the outputs agree;
10. ``nvml``: ``bench/gpu_nvml_check.py`` (real NVML readings through the governor's wrapper).

Parts 7-9 share one load of the SER models; part 9 takes the faster ASR backend of part 4 and
as many files as fit the time left.

Weights: the real ones under ``--models-dir`` (``voiceman models prepare``).  Where a model
folder holds only ``config.json`` + ``tokenizer.json`` (a lent machine's 64 MiB transfer
cannot carry model.bin), a Whisper of that shape with random weights is built there and
converted for both backends; its timings are an upper bound (random weights decode to the
length limit) and its agreement figures mean little -- the JSON says which weights ran.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "daemon", REPO / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

SAMPLE_RATE = 16000
BACKENDS = ("ctranslate2", "transformers")


class Skip(Exception):
    """A part that cannot run here (a library or a model missing): recorded, not an error."""


# -- agreement metrics ---------------------------------------------------------------------------
def _norm(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    d = np.arange(len(hypothesis) + 1)
    for i, ref in enumerate(reference, 1):
        prev, d[0] = d.copy(), i
        for j, hyp in enumerate(hypothesis, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (ref != hyp))
    return float(d[-1]) / max(1, len(reference))


def agreement(a: dict, b: dict) -> dict[str, Any]:
    """How ``b`` (a transcribe result) agrees with ``a``: word error rate over the texts, and
    the mean |start difference| over the words both heard (matched in order)."""
    ref = _norm(" ".join(s["text"] for s in a["segments"]))
    hyp = _norm(" ".join(s["text"] for s in b["segments"]))
    words_a = [w for s in a["segments"] for w in s["words"]]
    words_b = [w for s in b["segments"] for w in s["words"]]
    key = lambda w: (_norm(w["word"]) or [""])[0]  # noqa: E731
    diffs = []
    matcher = difflib.SequenceMatcher(a=[key(w) for w in words_a], b=[key(w) for w in words_b], autojunk=False)
    for block in matcher.get_matching_blocks():
        diffs += [abs(words_a[block.a + k]["start"] - words_b[block.b + k]["start"]) for k in range(block.size)]
    return {
        "wer": round(word_error_rate(ref, hyp), 4),
        "reference_words": len(ref),
        "mean_word_start_diff_s": round(float(np.mean(diffs)), 4) if diffs else None,
        "max_word_start_diff_s": round(float(np.max(diffs)), 4) if diffs else None,
        "words_compared": len(diffs),
    }


# -- the parts -------------------------------------------------------------------------------------
def environment(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "host": platform.node(),
        "device": device,
        "executable": sys.executable,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["capability"] = list(torch.cuda.get_device_capability(0))
            info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
    except Exception as exc:  # noqa: BLE001
        info["torch"] = f"unavailable: {exc}"
    for name in ("transformers", "ctranslate2", "faster_whisper", "av"):
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "?")
        except Exception as exc:  # noqa: BLE001
            info[name] = f"unavailable: {type(exc).__name__}: {exc}"
    try:
        import ctranslate2

        info["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
    except Exception as exc:  # noqa: BLE001
        info["ctranslate2_cuda_devices"] = f"unavailable: {exc}"
    return info


def device_probe(models_dir: Path) -> dict[str, Any]:
    try:
        from voiceman_daemon.device_probe import probe
    except ImportError as exc:
        raise Skip(f"voiceman_daemon.device_probe is not there: {exc}") from exc
    config = {
        "models": {
            "asr": {"id": str(models_dir / "whisper-tiny.en"), "device": "auto", "backend": "auto"},
            "ser_dimensional": {"id": str(models_dir / "bench"), "device": "auto"},
        }
    }
    return probe(config).to_dict()


def workload(work: Path, dry_run: bool, audio_dir: Path | None) -> dict[str, Any]:
    from voiceman.audio import decode

    if audio_dir is not None:
        files = sorted(audio_dir.glob("*.wav"))
        if not files:
            raise RuntimeError(f"--audio {audio_dir}: no *.wav files")
        source = f"{audio_dir} (*.wav)"
    else:
        if shutil.which("espeak-ng") is None:
            raise Skip(
                "espeak-ng is not installed: pass --audio DIR with WAV files "
                "(python bench/gpu_check.py --make-audio DIR on a machine that has it)"
            )
        from voiceman.benchmark.workload import synthesise_case

        count, seconds = (1, 6.0) if dry_run else (6, 60.0)
        synthesise_case(work / "case", count, seconds)
        files = sorted((work / "case").glob("*.wav"))
        source = f"espeak-ng, {count} files of >= {seconds:g} s"
    audio = {}
    for path in files:
        samples, _ = decode(path)
        audio[path.name] = samples
    total = sum(a.size for a in audio.values()) / SAMPLE_RATE
    paths = {path.name: path for path in files}
    return {"source": source, "files": sorted(audio), "audio_s": round(total, 2), "_audio": audio, "_paths": paths}


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


def _free() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    except Exception:  # noqa: BLE001
        pass


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


def run_ser(models_dir: Path, device: str, audio: dict[str, np.ndarray], size: str) -> dict[str, Any]:
    import torch

    from ser_fixtures import build_dimensional_model, build_speechbrain_iemocap_model
    from voiceman_daemon.registry import ModelSpec
    from voiceman_daemon.ser_backend import load_ser_categorical, load_ser_dimensional

    cache = models_dir / "bench" / size
    segments = [
        samples[i : i + 4 * SAMPLE_RATE]
        for samples in audio.values()
        for i in range(0, max(1, samples.size - SAMPLE_RATE), 4 * SAMPLE_RATE)
    ]
    segments = [s for s in segments if s.size >= SAMPLE_RATE // 2]
    audio_s = sum(s.size for s in segments) / SAMPLE_RATE
    out: dict[str, Any] = {"size": size, "segments": len(segments), "audio_s": round(audio_s, 2)}
    sync = torch.cuda.synchronize if device == "cuda" and torch.cuda.is_available() else (lambda: None)
    for kind, builder, loader, marker in (
        ("dimensional", build_dimensional_model, load_ser_dimensional, "config.json"),
        ("categorical", build_speechbrain_iemocap_model, load_ser_categorical, "hyperparams.yaml"),
    ):
        try:
            if kind == "categorical":
                import speechbrain  # noqa: F401
            folder = cache / f"ser-{kind}"
            if not (folder / marker).is_file():
                builder(folder, size=size)
            _free()
            started = time.perf_counter()
            model = loader(ModelSpec.from_dict(f"ser_{kind}", {"id": str(folder), "device": device}))
            load_s = time.perf_counter() - started
            model.predict(segments[:2], batch_size=2)  # first call: kernels, graphs
            sync()
            started = time.perf_counter()
            model.predict(segments, batch_size=8)
            sync()
            wall = time.perf_counter() - started
            entry = {
                "device": model.custody().get("device"),
                "load_s": round(load_s, 2),
                "wall_s": round(wall, 3),
                "realtime_factor": round(audio_s / wall, 2) if wall > 0 else None,
            }
            if device == "cuda" and torch.cuda.is_available():
                entry["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
            out[kind] = entry
            del model
        except ImportError as exc:
            out[kind] = {"status": "skipped", "reason": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # noqa: BLE001
            out[kind] = {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-1500:],
            }
        _free()
    return out


# -- CUDA-graph SER, GPU utilisation during SER, dynamic batching (GPU-throughput issue) ----------
SER_KINDS = ("dimensional", "categorical")
GRAPH_TARGET_SPEEDUP = 1.2  # CUDA-graph SER >= 1.2 x eager at batch <= 4
UTILISATION_TARGET_PCT = 90.0  # SER-stage GPU utilisation


def _ser_models(models_dir: Path, device: str, size: str, cache: dict[str, Any]) -> dict[str, Any]:
    """The SER models with the published layouts (random weights) through the daemon's own
    loaders (CUDA graphs as configured by default: auto), loaded once and shared by the parts
    below; a kind that cannot load here maps to the reason (str)."""
    if cache:
        return cache
    from ser_fixtures import build_dimensional_model, build_speechbrain_iemocap_model
    from voiceman_daemon.registry import ModelSpec
    from voiceman_daemon.ser_backend import load_ser_categorical, load_ser_dimensional

    for kind, builder, loader, marker in (
        ("dimensional", build_dimensional_model, load_ser_dimensional, "config.json"),
        ("categorical", build_speechbrain_iemocap_model, load_ser_categorical, "hyperparams.yaml"),
    ):
        try:
            if kind == "categorical":
                import speechbrain  # noqa: F401
            folder = models_dir / "bench" / size / f"ser-{kind}"
            if not (folder / marker).is_file():
                builder(folder, size=size)
            cache[kind] = loader(ModelSpec.from_dict(f"ser_{kind}", {"id": str(folder), "device": device}))
        except Exception as exc:  # noqa: BLE001 - a kind that cannot load is reported, the other runs
            cache[kind] = f"{type(exc).__name__}: {exc}"
    return cache


def _prepare_fn(ser_model: Any) -> Callable[[Any], Any]:
    """The model's per-segment preprocessing (what the graph runner is fed)."""
    inner = ser_model.model
    return inner._normalise if hasattr(inner, "_normalise") else inner.backend.prepare


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync()
        started = time.perf_counter()
        fn()
        _sync()
        times.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(times)), 3)


def run_ser_graphs(
    models_dir: Path, device: str, audio: dict[str, np.ndarray], size: str, dry_run: bool, cache: dict[str, Any]
) -> dict[str, Any]:
    """(a) CUDA-graph vs eager SER at batch 1..8: per batch size the median time of one batch
    through the captured graphs and through the eager path (the same prepared segments, 2.5..4 s,
    so all in the 4 s bucket; batch 3, 5-7 are padded to 4 / 8 rows), their ratio and the max
    |graph - eager| over the outputs (accuracy: within 1e-3).  Without CUDA nothing is captured:
    the "graph" column is then the bucketed forward the graphs would record, run eagerly, and
    no speed target applies."""
    import torch

    from voiceman_daemon.ser.cuda_graphs import GraphSettings

    rng = np.random.default_rng(3)
    long_enough = [a for a in audio.values() if a.size >= 4 * SAMPLE_RATE]
    if not long_enough:
        raise RuntimeError("the workload has no file of 4 s or more")
    windows = []
    for i in range(8):  # 2.5..4 s windows at random offsets, the files taken in turn
        samples = long_enough[i % len(long_enough)]
        n = int(rng.uniform(2.5, 4.0) * SAMPLE_RATE)
        start = int(rng.integers(0, samples.size - n + 1))
        windows.append(samples[start : start + n])
    repeats = 1 if dry_run else 7
    batch_sizes = (1, 3, 8) if dry_run else tuple(range(1, 9))  # dry run: exact, padded and largest only
    out: dict[str, Any] = {
        "segment_s": [round(w.size / SAMPLE_RATE, 2) for w in windows],
        "repeats": repeats,
        "target": f">= {GRAPH_TARGET_SPEEDUP} x eager at batch <= 4, max |diff| <= 1e-3",
    }
    for kind, model in _ser_models(models_dir, device, size, cache).items():
        if isinstance(model, str):
            out[kind] = {"status": "skipped", "reason": model}
            continue
        runner = model.model.graphs
        captured = runner.active and runner.graphs_captured > 0
        if not captured:  # CPU (or a failed capture): the bucketed forward, without graphs
            runner = model.model.graph_runner(GraphSettings.from_options("auto", [4.0], [1, 2, 4, 8]), capture=False)
        prepare = _prepare_fn(model)
        prepared = [prepare(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))) for w in windows]
        rows = []
        for batch in batch_sizes:
            segs = prepared[:batch]
            eager = runner.run(segs, force_eager=True)
            graph = runner.run(segs)
            eager_ms = _median_ms(lambda runner=runner, segs=segs: runner.run(segs, force_eager=True), repeats)
            graph_ms = _median_ms(lambda runner=runner, segs=segs: runner.run(segs), repeats)
            rows.append(
                {
                    "batch": batch,
                    "eager_ms": eager_ms,
                    "graph_ms": graph_ms,
                    "speedup": round(eager_ms / graph_ms, 3) if graph_ms > 0 else None,
                    "max_abs_diff": float((graph - eager).abs().max()),
                }
            )
        small = [r["speedup"] for r in rows if r["batch"] <= 4 and r["speedup"] is not None]
        max_diff = max(r["max_abs_diff"] for r in rows)
        out[kind] = {
            "graph_path": "cuda graphs" if captured else "bucketed forward, no graphs",
            "reason": model.model.graphs.reason,
            "device": model.custody().get("device"),
            "capture_s": model.model.graphs.capture_s,
            "graph_memory_mb": model.model.graphs.graph_memory_mb,
            "graphs_captured": model.model.graphs.graphs_captured,
            "batches": rows,
            "bucket_padding_fraction": runner.stats()["bucket_padding_fraction"],
            "min_speedup_batch_le_4": min(small) if small else None,
            "max_abs_diff": max_diff,
            "within_1e-3": max_diff <= 1e-3,
            "meets_speed_target": (min(small) >= GRAPH_TARGET_SPEEDUP) if captured and small else None,
        }
    return out


def run_ser_utilisation(
    models_dir: Path, device: str, audio: dict[str, np.ndarray], size: str, dry_run: bool, cache: dict[str, Any]
) -> dict[str, Any]:
    """(b) GPU utilisation sampled (through the governor's NVML wrapper, NvmlQuery) while the
    SER stage runs: both models over the workload's 4 s segments at batch 8, as the ser
    handler does, repeated for a few seconds; with the captured graphs and then eagerly.  Without
    NVML the SER still runs and the entry says "no NVML" and why."""
    import threading

    from voiceman_daemon.governor.nvml_query import NvmlQuery
    from voiceman_daemon.ser.cuda_graphs import GraphSettings

    segments = [
        samples[i : i + 4 * SAMPLE_RATE]
        for samples in audio.values()
        for i in range(0, max(1, samples.size - SAMPLE_RATE), 4 * SAMPLE_RATE)
    ]
    segments = [s for s in segments if s.size >= SAMPLE_RATE // 2]
    models = {k: m for k, m in _ser_models(models_dir, device, size, cache).items() if not isinstance(m, str)}
    if not models:
        raise RuntimeError("no SER model loaded")
    query = NvmlQuery()
    nvml = query.init()
    interval, duration = (0.05, 0.0) if dry_run else (0.1, 6.0)
    settle_s = 0.0 if dry_run else 1.0  # NVML averages over its own window: skip the run's first second
    out: dict[str, Any] = {
        "nvml": nvml,
        "no_nvml_reason": None if nvml else (query.unavailable_reason or "no NVML"),
        "device_name": query.device_name() if nvml else None,
        "segments": len(segments),
        "models": sorted(models),
        "interval_s": interval,
        "target": f">= {UTILISATION_TARGET_PCT:g} % (with CUDA graphs)",
    }
    try:
        for mode in ("graphs", "eager"):
            saved = {k: m.model.graphs for k, m in models.items()}
            if mode == "eager":
                for m in models.values():
                    m.model.graphs = m.model.graph_runner(GraphSettings.from_options("off"))
            samples: list[tuple[float, float | None]] = []
            stop = threading.Event()
            started = time.perf_counter()

            # This pass's samples, stop and start bound here: a sampler still running after its join timed out
            # must not append to the next pass's list.
            def sample(samples=samples, stop=stop, started=started) -> None:
                while not stop.is_set():
                    samples.append((time.perf_counter() - started, query.utilization_pct()))
                    stop.wait(interval)

            sampler = threading.Thread(target=sample, name="util-sampler", daemon=True)
            passes = 0
            sampler.start()
            try:
                while True:
                    for m in models.values():
                        m.predict(segments, batch_size=8)
                    _sync()
                    passes += 1
                    if time.perf_counter() - started >= duration:
                        break
            finally:
                wall = time.perf_counter() - started
                stop.set()
                sampler.join(timeout=5)
                for k, m in models.items():
                    m.model.graphs = saved[k]
            readings = [u for t, u in samples if u is not None and t >= settle_s]
            entry: dict[str, Any] = {
                "passes": passes,
                "wall_s": round(wall, 3),
                "segments_per_s": round(passes * len(segments) * len(models) / wall, 1),
                "samples": len(samples),
                "readings": len(readings),
                "graph_path": {
                    k: m.model.graphs.reason if mode == "graphs" else "eager (forced)" for k, m in models.items()
                },
            }
            if readings:
                entry.update(
                    mean_pct=round(float(np.mean(readings)), 1),
                    min_pct=float(np.min(readings)),
                    max_pct=float(np.max(readings)),
                    median_pct=float(np.median(readings)),
                )
                if mode == "graphs":
                    entry["meets_target"] = entry["mean_pct"] >= UTILISATION_TARGET_PCT
            else:
                entry["utilisation"] = "no NVML: " + out["no_nvml_reason"] if not nvml else "no readings"
            out[mode] = entry
    finally:
        query.close()
    return out


class _Shared:
    """A loaded model handed to several cores: unloading one core leaves it (and its graphs) intact."""

    def __init__(self, model: Any):
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def release(self) -> None:
        pass


def run_dynamic_batching(
    asr_dir: Path,
    asr_backend: str,
    models_dir: Path,
    device: str,
    paths: dict[str, Path],
    size: str,
    beam_size: int,
    cpu_threads: int,
    dry_run: bool,
    cache: dict[str, Any],
) -> dict[str, Any]:
    """(c) Dynamic (cross-file) batching on vs off: the same N files, each a ``transcribe`` then a
    ``ser`` request (its transcript's segments), all files concurrently, through the socket-free
    DaemonCore (batch_max_items=1 = off).  Wall seconds and, per stage, stats()'s
    mean_batch_size, requests_per_batch and padding_fraction; and whether both modes' outputs
    agree (transcripts identical, SER within 1e-3).  The models are loaded once and shared."""
    from concurrent.futures import ThreadPoolExecutor

    from voiceman_daemon.asr import load_asr
    from voiceman_daemon.core import DaemonCore
    from voiceman_daemon.inprocess import InProcessClient
    from voiceman_daemon.registry import ModelRegistry, ModelSpec

    ser = {k: m for k, m in _ser_models(models_dir, device, size, cache).items() if not isinstance(m, str)}
    asr_spec = ModelSpec.from_dict(
        "asr",
        {
            "id": str(asr_dir),
            "language": "en",
            "device": device,
            "backend": asr_backend,
            "beam_size": beam_size,
            "cpu_threads": cpu_threads,
        },
    )
    loaded: dict[str, Any] = {f"ser_{k}": m for k, m in ser.items()}
    started = time.perf_counter()
    loaded["asr"] = load_asr(asr_spec)
    asr_load_s = time.perf_counter() - started
    specs = {"asr": asr_spec, **{kind: m.spec for kind, m in loaded.items() if kind != "asr"}}
    loaders = {kind: (lambda spec, kind=kind: _Shared(loaded[kind])) for kind in specs}
    scratch = Path(tempfile.mkdtemp(prefix="voiceman-batching-"))
    if dry_run and len(paths) < 3:  # the dry run's one file, as three: cross-file batching needs files
        copies = scratch
        source = paths[sorted(paths)[0]]
        paths = {f"copy{i}-{source.name}": shutil.copy(source, copies / f"copy{i}-{source.name}") for i in range(3)}
        paths = {name: Path(p) for name, p in paths.items()}
    files = sorted(paths)
    out: dict[str, Any] = {
        "files": len(files),
        "asr_backend": asr_backend,
        "asr_load_s": round(asr_load_s, 2),
        "ser_models": sorted(ser),
        "batch_wait_s": 0.05,
    }
    replies: dict[str, dict[str, tuple[dict, dict]]] = {}
    from voiceman_daemon.governor_setup import build_governor

    for mode, max_items in (("off", 1), ("on", 64)):
        # As the daemon runs (build_core): with the governor (per-stage batch sizes, sampling).
        governor = build_governor({"governor": {"sample_log": str(scratch / f"governor-{mode}.jsonl")}})
        out["governor_sensor"] = governor.sensor.name
        core = DaemonCore(
            ModelRegistry(loaders),
            specs,
            preload=list(specs),
            governor=governor,
            batch_wait_s=0.05,
            batch_max_items=max_items,
        ).start()
        try:
            if core.wait_ready(120) != "ready":
                raise RuntimeError(f"core not ready: {core.load_errors()}")
            client = InProcessClient(core)

            def one(name: str, client: InProcessClient = client) -> tuple[dict, dict]:
                path = str(paths[name])
                transcript = client.call("transcribe", audio_path=path, options={"language": "en", "batch_size": 8})
                segments = [{"start": s["start"], "end": s["end"]} for s in transcript["segments"]]
                result = client.call("ser", audio_path=path, segments=segments, options={"batch_size": 8})
                return transcript, result

            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=len(files)) as pool:
                done = dict(zip(files, pool.map(one, files)))
            wall = time.perf_counter() - t0
            stages = core.stats()["stages"]
        finally:
            core.close()
        replies[mode] = done
        out[mode] = {
            "batch_max_items": max_items,
            "wall_s": round(wall, 3),
            "ser_segments": sum(len(r[1]["segments"]) for r in done.values()),
            "stages": {
                stage: {
                    key: (stages.get(stage) or {}).get(key)
                    for key in ("requests", "batches", "mean_batch_size", "requests_per_batch", "padding_fraction")
                }
                for stage in ("asr", "ser")
            },
        }
    off, on = replies["off"], replies["on"]
    texts_equal = all(
        [s["text"] for s in off[f][0]["segments"]] == [s["text"] for s in on[f][0]["segments"]] for f in files
    )
    diffs, compared = [], 0
    for f in files:
        if [(s["start"], s["end"]) for s in off[f][0]["segments"]] != [
            (s["start"], s["end"]) for s in on[f][0]["segments"]
        ]:
            continue  # other segments: nothing to compare SER on
        for a, b in zip(off[f][1]["segments"], on[f][1]["segments"]):
            for key in ("dimensional", "categorical"):
                x, y = a.get(key), b.get(key)
                if x and y:
                    x, y = x.get("probabilities", x), y.get("probabilities", y)
                    diffs += [abs(float(x[k]) - float(y[k])) for k in x]
                    compared += 1
    out["agreement"] = {
        "transcripts_identical": texts_equal,
        "ser_results_compared": compared,
        "ser_max_abs_diff": max(diffs) if diffs else None,
        "ser_within_1e-3": (max(diffs) <= 1e-3) if diffs else None,
    }
    out["speedup_on_vs_off"] = round(out["off"]["wall_s"] / out["on"]["wall_s"], 3) if out["on"]["wall_s"] else None
    return out


def run_nvml(dry_run: bool) -> dict[str, Any]:
    args = ["--samples", "1", "--interval", "0"] if dry_run else ["--samples", "3", "--interval", "1"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_nvml_check.py"), *args], capture_output=True, text=True, timeout=90
    )
    if proc.returncode != 0:
        raise RuntimeError(f"gpu_nvml_check.py exited {proc.returncode}: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout)


# -- driver ----------------------------------------------------------------------------------------
class Check:
    def __init__(self, out_dir: Path, budget_s: float):
        self.out_dir = out_dir
        self.path = out_dir / "gpu_check.json"
        self.deadline = time.monotonic() + budget_s
        self.result: dict[str, Any] = {"started_unix": round(time.time(), 1), "budget_s": budget_s}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def part(self, name: str, fn: Callable[..., Any], *args, need_s: float = 0.0, into: dict | None = None) -> Any:
        target = self.result if into is None else into
        started = time.perf_counter()
        value: Any = None
        if need_s and self.left() < need_s:
            entry: dict[str, Any] = {"status": "skipped", "reason": f"time budget: {self.left():.0f} s left"}
        else:
            try:
                value = fn(*args)
                entry = {"status": "ok", **{k: v for k, v in value.items() if not k.startswith("_")}}
            except Skip as exc:
                entry = {"status": "skipped", "reason": str(exc)}
            except Exception as exc:  # noqa: BLE001 - a failed part is a finding, not the end of the check
                entry = {
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()[-2000:],
                }
        entry["seconds"] = round(time.perf_counter() - started, 2)
        target[name] = entry
        print(
            f"[gpu_check] {name}: {entry['status']} ({entry['seconds']} s)"
            + (f" -- {entry.get('reason') or entry.get('error')}" if entry["status"] != "ok" else ""),
            flush=True,
        )
        self.save()
        return value if entry["status"] == "ok" else None

    def save(self) -> None:
        self.result["finished_unix"] = round(time.time(), 1)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result, indent=2, default=str) + "\n")
        tmp.replace(self.path)


def summary_table(result: dict[str, Any]) -> str:
    lines = ["model / backend                      device  load_s  wall_s  x realtime  repeat  peak_GB"]
    for model, runs in (result.get("asr") or {}).items():
        for backend, r in runs.items():
            if backend not in BACKENDS:
                continue
            if r.get("status") == "ok":
                lines.append(
                    f"{model + ' / ' + backend:36s} {str(r.get('device')):6s} {r['load_s']:7.1f} "
                    f"{r['transcribe_wall_s']:7.2f} {r['realtime_factor']:11.1f}  {str(r['repeat_identical']):6s}"
                    f"  {r.get('peak_gpu_memory_gb', '-')}"
                )
            else:
                lines.append(f"{model + ' / ' + backend:36s} {r.get('status')}: {r.get('reason') or r.get('error')}")
    for model, a in (result.get("agreement") or {}).items():
        if a.get("status") == "ok":
            lines.append(f"agreement {model}: WER {a['wer']}, mean |word start diff| {a['mean_word_start_diff_s']} s")
    ser = result.get("ser") or {}
    for kind in ("dimensional", "categorical"):
        if isinstance(ser.get(kind), dict) and "realtime_factor" in ser[kind]:
            lines.append(
                f"SER {kind} ({ser.get('size')}): {ser[kind]['realtime_factor']} x realtime on {ser[kind]['device']}"
            )
    lines += _throughput_lines(result)
    return "\n".join(lines)


def _throughput_lines(result: dict[str, Any]) -> list[str]:
    """The GPU-throughput parts: measured values next to their targets."""
    lines = []
    graphs = result.get("ser_graphs") or {}
    if graphs.get("status") == "ok":
        for kind in SER_KINDS:
            g = graphs.get(kind) or {}
            if "batches" not in g:
                lines.append(f"SER graphs {kind}: {g.get('status')}: {g.get('reason')}")
                continue
            speed = " ".join(f"b{r['batch']}:{r['speedup']}x" for r in g["batches"])
            lines.append(
                f"SER graphs {kind} [{g['graph_path']}; {g['reason']}]: graph/eager speed {speed}; "
                f"max |diff| {g['max_abs_diff']:.2e} (target <= 1e-3)"
            )
            lines.append(
                f"SER graphs {kind}: min speedup at batch <= 4 {g['min_speedup_batch_le_4']}x "
                f"(target >= {GRAPH_TARGET_SPEEDUP}x; met: {g['meets_speed_target']})"
            )
    elif graphs:
        lines.append(f"SER graphs: {graphs.get('status')}: {graphs.get('reason') or graphs.get('error')}")
    util = result.get("ser_utilisation") or {}
    if util.get("status") == "ok":
        for mode in ("graphs", "eager"):
            u = util.get(mode) or {}
            value = (
                f"{u['mean_pct']} % mean ({u['min_pct']:g}..{u['max_pct']:g}, {u['readings']} readings)"
                if "mean_pct" in u
                else u.get("utilisation", "-")
            )
            lines.append(
                f"SER-stage GPU utilisation ({mode}): {value} (target >= {UTILISATION_TARGET_PCT:g} %"
                + (f"; met: {u.get('meets_target')})" if mode == "graphs" else ")")
            )
    elif util:
        lines.append(f"SER-stage GPU utilisation: {util.get('status')}: {util.get('reason') or util.get('error')}")
    batching = result.get("dynamic_batching") or {}
    if batching.get("status") == "ok":
        for mode in ("off", "on"):
            b = batching[mode]
            stages = "; ".join(
                f"{stage}: mean batch {v['mean_batch_size']}, requests/batch {v['requests_per_batch']}, "
                f"padding {v['padding_fraction']}"
                for stage, v in b["stages"].items()
            )
            lines.append(f"dynamic batching {mode:3s}: {b['wall_s']:.2f} s for {batching['files']} files; {stages}")
        a = batching["agreement"]
        lines.append(
            f"dynamic batching on/off: {batching['speedup_on_vs_off']}x; transcripts identical "
            f"{a['transcripts_identical']}, SER max |diff| {a['ser_max_abs_diff']} "
            f"(within 1e-3: {a['ser_within_1e-3']})"
        )
    elif batching:
        lines.append(f"dynamic batching: {batching.get('status')}: {batching.get('reason') or batching.get('error')}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "gpu_check_out"))
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny inputs, tiny SER, tiny.en only")
    parser.add_argument("--models-dir", default=str(REPO / "models"))
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated (default: whisper-tiny.en,whisper-base; dry run: whisper-tiny.en)",
    )
    parser.add_argument("--audio", default=None, help="a folder of WAV files instead of synthesising")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="stop starting new parts after this long (default 420, dry run 110)",
    )
    parser.add_argument(
        "--cpu-threads",
        type=int,
        default=None,
        help="threads for CPU decoding (default: all; dry run: 1, steady on a busy machine)",
    )
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--make-audio", metavar="DIR", help="only synthesise the GPU workload's WAV files into DIR")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.make_audio:
        from voiceman.benchmark.workload import synthesise_case

        print(f"{synthesise_case(Path(args.make_audio), 6, 60.0):.1f} s of audio in {args.make_audio}")
        return 0

    import torch

    if args.cpu_threads is None:
        args.cpu_threads = 1 if args.dry_run else 0
    device = "cpu" if args.dry_run else ("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Scratch (synthesised audio, random-weight models) stays out of --out: a lent machine
    # sends back only a few files from there.
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="voiceman-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    models_dir = Path(args.models_dir)
    names = (args.models or ("whisper-tiny.en" if args.dry_run else "whisper-tiny.en,whisper-base")).split(",")
    check = Check(out_dir, args.budget_s or (110.0 if args.dry_run else 420.0))
    check.result.update(mode="dry-run (CPU)" if args.dry_run else "gpu", device=device)
    if device != "cuda" and not args.dry_run:
        print("[gpu_check] WARNING: torch sees no CUDA device; measuring on the CPU", flush=True)
    check.part("environment", environment, device)
    check.part("device_probe", device_probe, models_dir)
    loaded = check.part("workload", workload, work, args.dry_run, Path(args.audio) if args.audio else None)
    audio = (loaded or {}).get("_audio") or {}
    check.result["asr"], check.result["agreement"] = {}, {}
    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        runs[name] = {}
        check.result["asr"][name] = {}
        resolved = check.part(
            f"weights:{name}",
            lambda n=name: dict(zip(("path", "weights"), map(str, whisper_model(models_dir, n, work)))),
            into=check.result["asr"][name],
        )
        if not audio or not resolved:
            continue
        for backend in BACKENDS:
            runs[name][backend] = check.part(
                backend,
                run_asr,
                Path(resolved["path"]),
                backend,
                device,
                audio,
                args.batch_size,
                args.beam_size,
                args.cpu_threads,
                need_s=20.0,
                into=check.result["asr"][name],
            )
        if all(runs[name].get(b) for b in BACKENDS):

            def compare(n=name, resolved=resolved) -> dict[str, Any]:
                a, b = runs[n]["ctranslate2"]["_results"], runs[n]["transformers"]["_results"]
                per_file = {f: agreement(a[f], b[f]) for f in a}
                diffs = [
                    v["mean_word_start_diff_s"] for v in per_file.values() if v["mean_word_start_diff_s"] is not None
                ]
                return {
                    "reference": "ctranslate2",
                    "weights": resolved["weights"],
                    "wer": round(float(np.mean([v["wer"] for v in per_file.values()])), 4),
                    "mean_word_start_diff_s": round(float(np.mean(diffs)), 4) if diffs else None,
                    "per_file": per_file,
                }

            check.part(name, compare, into=check.result["agreement"])
    size = "tiny" if args.dry_run else "published"
    if audio:
        check.part("ser", run_ser, models_dir, device, audio, size, need_s=30.0)
        ser_cache: dict[str, Any] = {}  # the SER models of the three parts below, loaded once
        check.part("ser_graphs", run_ser_graphs, models_dir, device, audio, size, args.dry_run, ser_cache, need_s=40.0)
        check.part(
            "ser_utilisation",
            run_ser_utilisation,
            models_dir,
            device,
            audio,
            size,
            args.dry_run,
            ser_cache,
            need_s=30.0,
        )
        first = names[0]
        ok_backends = sorted((runs[first][b]["transcribe_wall_s"], b) for b in BACKENDS if runs.get(first, {}).get(b))
        if ok_backends:
            # The faster backend, and as many files as both modes' transcription fits in the time
            # left (the asr part measured what one file costs); at least 2, else nothing is batched.
            wall, backend = ok_backends[0]
            paths = (loaded or {}).get("_paths") or {}
            fit = int((check.left() - 30.0) / (2.5 * max(wall / max(len(paths), 1), 0.1)))
            paths = {name: paths[name] for name in sorted(paths)[: max(2, min(len(paths), fit))]}
            asr_dir = Path(check.result["asr"][first][f"weights:{first}"]["path"])
            check.part(
                "dynamic_batching",
                run_dynamic_batching,
                asr_dir,
                backend,
                models_dir,
                device,
                paths,
                size,
                args.beam_size,
                args.cpu_threads,
                args.dry_run,
                ser_cache,
                need_s=60.0,
            )
        else:
            check.result["dynamic_batching"] = {"status": "skipped", "reason": f"no ASR backend ran for {first}"}
        ser_cache.clear()
        _free()
    check.part("nvml", run_nvml, args.dry_run)
    check.save()
    print(summary_table(check.result), flush=True)
    print(f"[gpu_check] wrote {check.path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
