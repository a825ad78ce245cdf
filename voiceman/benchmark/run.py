"""``voiceman bench``: the three modes side by side on one workload, in one invocation.

1. ``naive``     the seed's "before": a fresh process per file that loads every model, then
                 runs the stages one after another;
2. ``inprocess`` one process, models loaded once (the daemon core), files one after another;
3. ``pipeline``  ``snakemake --profile profiles/local`` with an auto-started daemon, timed
                 until Snakemake exits.

All three run the same rule bodies (voiceman.pipeline) and the same daemon core, so they
differ only in orchestration.  The JSON names the workload, each mode's wall time and model
loads, the ratios, and whether the results agree (identical transcripts, SER within 1e-3).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..config import load_config
from ..resources import REPO_ROOT
from .compare import agreement
from .workload import MODEL_SIZES, Workload, build

MODES = ("naive", "inprocess", "pipeline")
SER_TOLERANCE = 1e-3


def _env(work: Path) -> dict[str, str]:
    # A private, short runtime dir (ipc paths are limited to ~107 bytes): never a user's daemon.
    return {
        **os.environ,
        "VOICEMAN_RUNTIME_DIR": tempfile.mkdtemp(prefix="vm-bench-", dir="/tmp"),
        "HF_HUB_OFFLINE": "1",
    }


def _config(workload: Workload, results: Path) -> dict[str, Any]:
    return load_config(
        None, {**workload.config_overrides(), "case_dir": str(workload.case_dir), "results_dir": str(results)}
    )


def _inprocess(
    work: Path, workload: Workload, results: Path, files: list[str], tag: str, summary: bool
) -> dict[str, Any]:
    cfg_path, out = work / f"{tag}.config.json", work / f"{tag}.stats.json"
    cfg_path.write_text(json.dumps(_config(workload, results)))
    cmd = [
        sys.executable,
        "-m",
        "voiceman.benchmark.inprocess",
        "--config-json",
        str(cfg_path),
        "--out",
        str(out),
        "--files",
        *files,
    ] + (["--case-summary"] if summary else [])
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(work), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{tag} failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def run_naive(work: Path, workload: Workload) -> dict[str, Any]:
    results = work / "results-naive"
    started = time.perf_counter()
    loads: dict[str, int] = {}
    failures: dict[str, str] = {}
    for i, name in enumerate(workload.files):
        last = i == len(workload.files) - 1
        stats = _inprocess(work, workload, results, [name], f"naive-{i}", summary=last)
        for kind, n in stats["model_loads"].items():
            loads[kind] = loads.get(kind, 0) + n
        failures.update(stats["failures"])
    return {
        "wall_s": round(time.perf_counter() - started, 2),
        "model_loads": loads,
        "failures": failures,
        "results": str(results),
    }


def run_inprocess(work: Path, workload: Workload) -> dict[str, Any]:
    results = work / "results-inprocess"
    started = time.perf_counter()
    stats = _inprocess(work, workload, results, workload.files, "inprocess", summary=True)
    return {
        "wall_s": round(time.perf_counter() - started, 2),
        "model_loads": stats["model_loads"],
        "model_load_s": stats["load_s"],
        "failures": stats["failures"],
        "results": str(results),
    }


def run_pipeline(work: Path, workload: Workload) -> dict[str, Any]:
    results = work / "results-pipeline"
    overrides = work / "pipeline.yaml"
    overrides.write_text(json.dumps(workload.config_overrides()))
    snakemake = Path(sys.executable).with_name("snakemake")
    cmd = [
        str(snakemake),
        "--profile",
        "profiles/local",
        "--configfile",
        str(overrides),
        "--config",
        f"case_dir={workload.case_dir}",
        f"results_dir={results}",
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(work), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    stats = json.loads((results / "daemon_stats.json").read_text())
    case = json.loads((results / "case.json").read_text())
    return {
        "wall_s": round(wall, 2),
        "model_loads": {k: m["loads"] for k, m in stats["models"].items() if m["loads"]},
        "model_load_s": round(sum(m["load_s"] for m in stats["models"].values()), 2),
        "failures": {f["name"]: f.get("reason") for f in case.get("files", []) if f.get("status") != "done"},
        # How the daemon batched across files (the other modes send one file at a time).
        "daemon_stages": {
            stage: {
                k: s.get(k)
                for k in ("requests", "batches", "mean_batch_size", "requests_per_batch", "padding_fraction")
            }
            for stage, s in stats.get("stages", {}).items()
            if s.get("requests")
        },
        "results": str(results),
    }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def table(result: dict[str, Any]) -> str:
    w, modes = result["workload"], result["modes"]
    lines = [
        f"workload: {w['files']} files, {w['audio_s']} s of audio; "
        + "; ".join(f"{k}: {v}" for k, v in w["models"].items()),
        f"{'mode':<10} {'wall s':>8}  model loads",
        *(
            f"{m:<10} {modes[m]['wall_s']:>8.1f}  "
            + ", ".join(f"{k} {n}" for k, n in sorted(modes[m]["model_loads"].items()))
            for m in modes
        ),
        *(
            f"pipeline {stage}: mean batch {s['mean_batch_size']}, requests per batch "
            f"{s['requests_per_batch']}, padding {s['padding_fraction']}"
            for stage, s in modes.get("pipeline", {}).get("daemon_stages", {}).items()
        ),
        "ratios: " + ", ".join(f"{k} = {v}" for k, v in result["ratios"].items()),
        "agreement: " + json.dumps(result["agreement"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="voiceman bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=6, help="recordings in the case (default 6)")
    parser.add_argument("--seconds", type=float, default=60.0, help="speech per recording (default 60)")
    parser.add_argument(
        "--model-size",
        choices=MODEL_SIZES,
        default="published",
        help="SER model shapes: the published sizes (default) or tiny (smoke test)",
    )
    parser.add_argument("--asr", default="whisper-base", help="Whisper model from `voiceman models prepare`")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--out", default="bench.json")
    parser.add_argument("--keep", help="keep the case and the results in this folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="voiceman-bench-") as tmp:
        work = Path(args.keep or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        workload = build(work, args.files, args.seconds, args.model_size, args.asr)
        print(f"bench: {len(workload.files)} files, {workload.audio_s:.0f} s of audio in {work}", file=sys.stderr)
        runners = {"naive": run_naive, "inprocess": run_inprocess, "pipeline": run_pipeline}
        modes = {}
        for mode in args.modes:
            print(f"bench: running {mode} ...", file=sys.stderr)
            modes[mode] = runners[mode](work, workload)
        walls = {m: modes[m]["wall_s"] for m in modes}
        ratios = {
            f"{a}/{b}": _ratio(walls[a], walls[b])
            for a, b in (("naive", "pipeline"), ("inprocess", "pipeline"), ("naive", "inprocess"))
            if a in walls and b in walls
        }
        result = {
            "workload": workload.to_dict(),
            "modes": modes,
            "ratios": ratios,
            "agreement": agreement({m: Path(modes[m]["results"]) for m in modes}, workload.files, SER_TOLERANCE),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "command": "voiceman bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        for mode in modes.values():
            if not args.keep:
                mode.pop("results")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0
