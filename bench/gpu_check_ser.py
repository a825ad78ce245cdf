"""The GPU check's SER parts: ``ser`` (6: both SER models with the published sizes and random
weights, realtime factor), ``ser_graphs`` (7: CUDA-graph vs eager at batch 1-8) and
``ser_utilisation`` (8: GPU utilisation through NVML while the SER stage runs), and the one load
of the SER models that parts 7-9 share (``_ser_models``)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gpu_check_common import SAMPLE_RATE, _free, _median_ms, _sync


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


# -- CUDA-graph SER, GPU utilisation during SER (GPU-throughput issue) -----------------------------
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
