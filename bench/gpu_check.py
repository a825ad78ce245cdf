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
   published models' sizes and random weights (``tests/ser_fixtures.py``) on 4 s segments;
7. ``nvml``: ``bench/gpu_nvml_check.py`` (real NVML readings through the governor's wrapper).

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
from pathlib import Path
from typing import Any, Callable

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
    return {"wer": round(word_error_rate(ref, hyp), 4), "reference_words": len(ref),
            "mean_word_start_diff_s": round(float(np.mean(diffs)), 4) if diffs else None,
            "max_word_start_diff_s": round(float(np.max(diffs)), 4) if diffs else None, "words_compared": len(diffs)}


# -- the parts -------------------------------------------------------------------------------------
def environment(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"python": sys.version.split()[0], "machine": platform.machine(), "host": platform.node(),
                            "device": device, "executable": sys.executable}
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
        raise Skip(f"voiceman_daemon.device_probe is not there: {exc}")
    config = {"models": {"asr": {"id": str(models_dir / "whisper-tiny.en"), "device": "auto", "backend": "auto"},
                         "ser_dimensional": {"id": str(models_dir / "bench"), "device": "auto"}}}
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
            raise Skip("espeak-ng is not installed: pass --audio DIR with WAV files "
                       "(python bench/gpu_check.py --make-audio DIR on a machine that has it)")
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
    return {"source": source, "files": sorted(audio), "audio_s": round(total, 2), "_audio": audio}


def _random_whisper(skeleton: Path, out: Path) -> Path:
    """A Whisper of ``skeleton``'s shape (its config.json + tokenizer.json) with random,
    seeded weights: the transformers form at ``out-hf`` and the CTranslate2 form at ``out``."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from voiceman.whisper_convert import build_configs, build_processor

    ct2_config = json.loads((skeleton / "config.json").read_text())
    tokenizer_json = json.loads((skeleton / "tokenizer.json").read_text())
    multilingual = len(ct2_config.get("lang_ids") or []) > 98
    shape = {"vocab_size": 51865 if multilingual else 51864, "d_model": 512 if multilingual else 384,
             "encoder_layers": 6 if multilingual else 4, "decoder_layers": 6 if multilingual else 4,
             "encoder_attention_heads": 8 if multilingual else 6, "decoder_attention_heads": 8 if multilingual else 6,
             "encoder_ffn_dim": 2048 if multilingual else 1536, "decoder_ffn_dim": 2048 if multilingual else 1536,
             "num_mel_bins": 80, "max_source_positions": 1500, "max_target_positions": 448,
             "tie_word_embeddings": True, "dtype": "float16"}
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
        raise Skip(f"{name}: no weights under {models_dir} and none to prepare ({exc})")


def _free() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    except Exception:  # noqa: BLE001
        pass


def run_asr(model_dir: Path, backend: str, device: str, audio: dict[str, np.ndarray], batch_size: int,
            beam_size: int, cpu_threads: int = 0) -> dict[str, Any]:
    import torch

    from voiceman_daemon.asr import load_asr
    from voiceman_daemon.registry import ModelSpec

    _free()
    spec = ModelSpec.from_dict("asr", {"id": str(model_dir), "language": "en", "device": device, "backend": backend,
                                       "beam_size": beam_size, "cpu_threads": cpu_threads})
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
    out = {"backend": backend, "device": custody.get("device"), "compute_type": custody.get("compute_type"),
           "backend_selection": custody.get("backend_selection"), "engine": custody["decoding"].get("engine"),
           "load_s": round(load_s, 2), "transcribe_wall_s": round(wall, 3), "audio_s": round(audio_s, 2),
           "realtime_factor": round(audio_s / wall, 2) if wall > 0 else None, "per_file_s": per_file,
           "vad_chunks": sum(r["vad_chunks"] for r in results.values()), "batch_size": batch_size,
           "beam_size": beam_size, "repeat_identical": same,
           "texts": {k: " ".join(s["text"] for s in r["segments"]) for k, r in results.items()},
           "_results": results}
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
    segments = [samples[i:i + 4 * SAMPLE_RATE] for samples in audio.values()
                for i in range(0, max(1, samples.size - SAMPLE_RATE), 4 * SAMPLE_RATE)]
    segments = [s for s in segments if s.size >= SAMPLE_RATE // 2]
    audio_s = sum(s.size for s in segments) / SAMPLE_RATE
    out: dict[str, Any] = {"size": size, "segments": len(segments), "audio_s": round(audio_s, 2)}
    sync = torch.cuda.synchronize if device == "cuda" and torch.cuda.is_available() else (lambda: None)
    for kind, builder, loader, marker in (
            ("dimensional", build_dimensional_model, load_ser_dimensional, "config.json"),
            ("categorical", build_speechbrain_iemocap_model, load_ser_categorical, "hyperparams.yaml")):
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
            entry = {"device": model.custody().get("device"), "load_s": round(load_s, 2), "wall_s": round(wall, 3),
                     "realtime_factor": round(audio_s / wall, 2) if wall > 0 else None}
            if device == "cuda" and torch.cuda.is_available():
                entry["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
            out[kind] = entry
            del model
        except ImportError as exc:
            out[kind] = {"status": "skipped", "reason": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # noqa: BLE001
            out[kind] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-1500:]}
        _free()
    return out


def run_nvml(dry_run: bool) -> dict[str, Any]:
    args = ["--samples", "1", "--interval", "0"] if dry_run else ["--samples", "3", "--interval", "1"]
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_nvml_check.py"), *args],
                          capture_output=True, text=True, timeout=90)
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
                entry = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-2000:]}
        entry["seconds"] = round(time.perf_counter() - started, 2)
        target[name] = entry
        print(f"[gpu_check] {name}: {entry['status']} ({entry['seconds']} s)"
              + (f" -- {entry.get('reason') or entry.get('error')}" if entry["status"] != "ok" else ""), flush=True)
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
                lines.append(f"{model + ' / ' + backend:36s} {str(r.get('device')):6s} {r['load_s']:7.1f} "
                             f"{r['transcribe_wall_s']:7.2f} {r['realtime_factor']:11.1f}  {str(r['repeat_identical']):6s}"
                             f"  {r.get('peak_gpu_memory_gb', '-')}")
            else:
                lines.append(f"{model + ' / ' + backend:36s} {r.get('status')}: {r.get('reason') or r.get('error')}")
    for model, a in (result.get("agreement") or {}).items():
        if a.get("status") == "ok":
            lines.append(f"agreement {model}: WER {a['wer']}, mean |word start diff| {a['mean_word_start_diff_s']} s")
    ser = result.get("ser") or {}
    for kind in ("dimensional", "categorical"):
        if isinstance(ser.get(kind), dict) and "realtime_factor" in ser[kind]:
            lines.append(f"SER {kind} ({ser.get('size')}): {ser[kind]['realtime_factor']} x realtime on {ser[kind]['device']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "gpu_check_out"))
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny inputs, tiny SER, tiny.en only")
    parser.add_argument("--models-dir", default=str(REPO / "models"))
    parser.add_argument("--models", default=None, help="comma-separated (default: whisper-tiny.en,whisper-base; "
                                                       "dry run: whisper-tiny.en)")
    parser.add_argument("--audio", default=None, help="a folder of WAV files instead of synthesising")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=None, help="stop starting new parts after this long "
                                                                     "(default 420, dry run 110)")
    parser.add_argument("--cpu-threads", type=int, default=None,
                        help="threads for CPU decoding (default: all; dry run: 1, steady on a busy machine)")
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
        resolved = check.part(f"weights:{name}", lambda n=name: dict(zip(("path", "weights"),
                                                                       map(str, whisper_model(models_dir, n, work)))),
                              into=check.result["asr"][name])
        if not audio or not resolved:
            continue
        for backend in BACKENDS:
            runs[name][backend] = check.part(backend, run_asr, Path(resolved["path"]), backend, device, audio,
                                             args.batch_size, args.beam_size, args.cpu_threads, need_s=20.0,
                                             into=check.result["asr"][name])
        if all(runs[name].get(b) for b in BACKENDS):
            def compare(n=name) -> dict[str, Any]:
                a, b = runs[n]["ctranslate2"]["_results"], runs[n]["transformers"]["_results"]
                per_file = {f: agreement(a[f], b[f]) for f in a}
                diffs = [v["mean_word_start_diff_s"] for v in per_file.values() if v["mean_word_start_diff_s"] is not None]
                return {"reference": "ctranslate2", "weights": resolved["weights"],
                        "wer": round(float(np.mean([v["wer"] for v in per_file.values()])), 4),
                        "mean_word_start_diff_s": round(float(np.mean(diffs)), 4) if diffs else None,
                        "per_file": per_file}
            check.part(name, compare, into=check.result["agreement"])
    if audio:
        check.part("ser", run_ser, models_dir, device, audio, "tiny" if args.dry_run else "published", need_s=30.0)
    check.part("nvml", run_nvml, args.dry_run)
    check.save()
    print(summary_table(check.result), flush=True)
    print(f"[gpu_check] wrote {check.path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
