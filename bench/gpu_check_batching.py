"""The GPU check's dynamic-batching part (9): the files' ``transcribe`` then ``ser`` requests,
all files concurrently, through the socket-free ``DaemonCore``, cross-file batching off and on,
with the SER models of the SER parts (``_ser_models``) shared rather than loaded again."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from gpu_check_ser import _ser_models


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
