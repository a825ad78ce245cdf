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

Where the parts live (modules beside this file, imported as top-level modules: bench/ is
sys.path[0] when this runs as a script): ``gpu_check_machine`` (parts 1 and 2),
``gpu_check_common`` (``Skip``, the workload of part 3, the agreement metrics of part 5, the
free / sync / timing helpers), ``gpu_check_asr`` (part 4 and the random-weight Whisper),
``gpu_check_ser`` (parts 6-8 and the SER models they share with 9), ``gpu_check_batching``
(part 9).  This file keeps part 10, the ``Check`` runner that runs them, the summary table and
``main``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gpu_check_asr import run_asr, whisper_model
from gpu_check_batching import run_dynamic_batching
from gpu_check_common import Skip, _free, agreement, workload
from gpu_check_machine import device_probe, environment
from gpu_check_ser import (
    GRAPH_TARGET_SPEEDUP,
    SER_KINDS,
    UTILISATION_TARGET_PCT,
    run_ser,
    run_ser_graphs,
    run_ser_utilisation,
)

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "daemon", REPO / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

BACKENDS = ("ctranslate2", "transformers")


# -- part 10 (parts 1-9 live in the gpu_check_* modules) -------------------------------------------
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
