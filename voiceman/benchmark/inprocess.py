"""The benchmark's in-process modes, run as their own interpreter so each pays its own start,
imports and model loads, exactly as the pipeline's processes do:

    python -m voiceman.benchmark.inprocess --config-json CFG --files a.wav b.wav --out stats.json

One process builds the daemon core (loading every configured model once) and runs the rule
bodies (``voiceman.pipeline.<rule>.run``) for the given files one after another, with a client
that drives the core directly.  ``naive`` runs this once per file (models reloaded for every file);
``inprocess`` runs it once for all files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .. import pipeline
from ..patterns import database_files
from ..pipeline.jobkit import RULE_SETTINGS, RuleJob, settings_for
from ..pipeline.stage_names import DAEMON_STAGES, FILE_STAGES


class Named(dict):
    """Snakemake's named lists as far as the rule bodies use them: attributes + items()."""

    __getattr__ = dict.__getitem__


def file_job(rule: str, name: str, config: dict[str, Any]) -> RuleJob:
    """The job Snakemake would build for ``rule`` on file ``name`` (workflow/rules/*.smk paths)."""
    case, results = Path(config["case_dir"]), Path(config["results_dir"])

    def out(stage: str, ext: str = "json") -> str:
        return str(results / stage / f"{name}.{ext}")

    inputs = {
        "ingest": Named(audio=str(case / name)),
        "transcribe": Named(meta=out("ingest")),
        "ser": Named(transcript=out("transcribe")),
        "voice": Named(transcript=out("transcribe")),
        "patterns": Named(transcript=out("transcribe"), database=database_files()),
        "report": Named(
            meta=out("ingest"),
            transcript=out("transcribe"),
            emotion=out("ser"),
            features=out("voice"),
            hits=out("patterns"),
        ),
    }[rule]
    outputs = {
        "ingest": Named(meta=out("ingest")),
        "transcribe": Named(transcript=out("transcribe")),
        "ser": Named(emotion=out("ser")),
        "voice": Named(features=out("voice")),
        "patterns": Named(hits=out("patterns")),
        "report": Named(report=out("report"), html=out("report", "html")),
    }[rule]
    log = results / "logs" / rule / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    params = Named(settings=settings_for(config, rule)) if rule in RULE_SETTINGS else Named()
    return RuleJob(rule, inputs, outputs, params, [str(log)], Named(file=name), config)


def run(config: dict[str, Any], files: list[str]) -> dict[str, Any]:
    from voiceman_daemon.__main__ import build_core
    from voiceman_daemon.asr import import_backend
    from voiceman_daemon.inprocess import InProcessClient

    started = time.perf_counter()
    import_backend()
    core = build_core(config).start()
    state = core.wait_ready(timeout_s=float(config["daemon"]["start_timeout_s"]))
    if state != "ready":
        raise SystemExit(f"models did not load: {core.load_errors()}")
    loaded = time.perf_counter()
    client = InProcessClient(core)
    failures = {}
    try:
        for name in files:
            for rule in FILE_STAGES:  # in DAG order
                body = getattr(pipeline, rule).run
                job = file_job(rule, name, config)
                try:
                    body(job, client) if rule in DAEMON_STAGES else body(job)
                except Exception as exc:  # a benchmark file that fails is reported, not hidden
                    failures[name] = f"{rule}: {exc}"
                    break
        stats = core.stats()
    finally:
        core.close()
    return {
        "wall_s": round(time.perf_counter() - started, 3),
        "load_s": round(loaded - started, 3),
        "model_loads": {k: m["loads"] for k, m in stats["models"].items() if m["loads"]},
        "requests": {k: m["requests"] for k, m in stats["models"].items() if m["requests"]},
        "failures": failures,
    }


def case_summary(config: dict[str, Any], files: list[str]) -> None:
    """The case summary, as the workflow's case_summary rule writes it."""
    from ..case import inventory
    from ..hashing import config_sha256

    results = Path(config["results_dir"])
    inv = inventory(config["case_dir"], config["audio_extensions"], results_dir=results)
    params = SimpleNamespace(
        recordings=inv.recording_records(), entries=inv.entries, config_sha256=config_sha256(config)
    )
    job = RuleJob(
        "case_summary",
        Named(reports=[str(results / "report" / f"{k}.json") for k in inv.keys]),
        Named(case=str(results / "case.json"), html=str(results / "case.html")),
        params,
        [str(results / "logs" / "case_summary.log")],
        Named(),
        config,
    )
    pipeline.case_summary.run(job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voiceman.benchmark.inprocess")
    parser.add_argument("--config-json", required=True, help="the validated config (JSON file)")
    parser.add_argument("--files", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--case-summary", action="store_true")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config_json).read_text())
    result = run(config, args.files)
    if args.case_summary:
        case_summary(config, args.files)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
