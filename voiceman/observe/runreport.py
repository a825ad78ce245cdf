"""The run report (E5): what one workflow run did and what it cost, computed from the run's
real outputs -- the per-file stage records (results/<stage>/<file>.json with started_utc /
finished_utc), the jobs' timing events (results/logs/job_events.jsonl: the span of a stage
whose record carries no times of its own), the daemon's stats (results/daemon_stats.json,
saved by daemon_down before this report is written) and the governor's sample log (the samples
inside the run window).

    results/run_report.json   for machines
    results/run_report.html   for people (inline SVG plots, no scripts, no network)

``daemon_up`` records the run start (results/logs/run_started.json); ``daemon_down`` writes the
report at the end of every run, success or error.  ``python -m voiceman.observe.runreport
RESULTS`` writes it again by hand.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import read_json, write_json, write_text
from ..pipeline.job_events import read_events
from ..pipeline.stage_names import FILE_STAGES
from ..timestamps import unix_from_utc, utc_from_unix, utc_now
from .governor_samples import SampleStats, read_samples, sample_stats

log = logging.getLogger(__name__)

RUN_START_FILE = Path("logs") / "run_started.json"
# Stages in pipeline order (FILE_STAGES); any other results/<dir>/ with per-file records is added after.
NOT_STAGES = {"logs"}


def record_run_start(results_dir: str | Path, config: dict[str, Any]) -> Path:
    """Called by daemon_up: the run window starts now."""
    path = Path(results_dir) / RUN_START_FILE
    write_json(
        path,
        {
            "started_utc": utc_now(),
            "unix": time.time(),
            "case_dir": config.get("case_dir"),
            "results_dir": str(results_dir),
            "audio_extensions": config.get("audio_extensions"),
        },
    )
    return path


@dataclass
class StageTime:
    stage: str
    files: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "files": self.files,
            "total_s": round(self.total_s, 3),
            "mean_s": round(self.total_s / self.files, 3) if self.files else None,
            "max_s": round(self.max_s, 3),
        }


@dataclass
class FileTimes:
    file: str
    status: str  # done | failed | incomplete
    reason: str | None
    failed_stage: str | None
    audio_s: float | None
    stages_s: dict[str, float]
    wall_s: float | None  # first stage start to last stage end
    finished_unix: float | None
    in_this_run: bool  # False: outputs reused from an earlier run

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stages_s"] = {k: round(v, 3) for k, v in self.stages_s.items()}
        out["wall_s"] = None if self.wall_s is None else round(self.wall_s, 3)
        return out


@dataclass
class RunReport:
    status: str
    started_utc: str | None
    finished_utc: str
    wall_s: float | None
    files_total: int
    files_done: int
    files_failed: int
    files_incomplete: int
    files_reused: int
    audio_s: float
    realtime_factor: float | None  # processing seconds per second of audio (lower = faster)
    speed_x_realtime: float | None  # audio seconds per wall second
    stages: list[StageTime]
    files: list[FileTimes]
    failed: list[dict[str, Any]]
    model_loads: dict[str, int]
    daemon_stages: dict[str, dict[str, Any]]
    gpu: SampleStats
    governor: dict[str, Any]
    backpressure: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    throughput: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The daemon's device probe: a GPU the models could not use is the first thing the report says.
    device_warnings: list[str] = field(default_factory=list)
    device: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stages"] = [s.to_dict() for s in self.stages]
        out["files"] = [f.to_dict() for f in self.files]
        out["gpu"] = self.gpu.to_dict()
        for key in ("wall_s", "audio_s", "realtime_factor", "speed_x_realtime"):
            if out[key] is not None:
                out[key] = round(out[key], 3)
        return out


# -- reading ---------------------------------------------------------------------------
def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        log.warning("run report: skipping %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _stage_dirs(results: Path) -> list[str]:
    present = [d.name for d in sorted(results.iterdir()) if d.is_dir() and d.name not in NOT_STAGES]
    return [s for s in FILE_STAGES if s in present] + [s for s in present if s not in FILE_STAGES]


# A job's span from its timing event: {(rule, file key): (start, end)} in Unix seconds.
JobSpans = dict[tuple[str, str], tuple[float, float]]


def _records(results: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{file: {stage: record}} from results/<stage>/<key>.json; each record's file key (the
    output's name, the ``{file}`` wildcard) is kept as ``_key``, for its job's event."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for stage in _stage_dirs(results):
        for path in sorted((results / stage).glob("*.json")):
            record = _read(path)
            if record is not None:
                out.setdefault(str(record.get("file") or path.stem), {})[stage] = {**record, "_key": path.stem}
    return out


def _job_spans(results: Path) -> JobSpans:
    """The span of each rule job that succeeded, from the events file (the latest run of a
    job wins: the events file keeps every run's)."""
    spans: JobSpans = {}
    for event in read_events(results):
        start, end = unix_from_utc(event.get("start_utc")), unix_from_utc(event.get("end_utc"))
        if event.get("status") == "ok" and event.get("file") and start is not None and end is not None:
            spans[(str(event.get("rule")), str(event["file"]))] = (start, end)
    return spans


def _span(stage: str, record: dict[str, Any], spans: JobSpans) -> tuple[float | None, float | None]:
    """A stage's start/end: the record's own UTC times, else its job's timing event."""
    start, end = unix_from_utc(record.get("started_utc")), unix_from_utc(record.get("finished_utc"))
    if start is None or end is None:
        job_start, job_end = spans.get((stage, record.get("_key", "")), (None, None))
        start = start if start is not None else job_start
        end = end if end is not None else job_end
    return start, end


def _file_times(name: str, recs: dict[str, dict[str, Any]], run_start: float | None, spans: JobSpans) -> FileTimes:
    stages_s: dict[str, float] = {}
    starts, ends = [], []
    for stage, rec in recs.items():
        start, end = _span(stage, rec, spans)
        if start is not None and end is not None and end >= start:
            stages_s[stage] = end - start
        starts += [t for t in (start,) if t is not None]
        ends += [t for t in (end,) if t is not None]
    ingest = recs.get("ingest", {})
    final = recs.get("report")
    failure = next((r for r in recs.values() if r.get("status") == "failed"), None)
    if final is not None and final.get("status") != "failed" and failure is None:
        status, reason, stage = "done", None, None
    elif failure is not None:
        status, reason, stage = "failed", failure.get("reason"), failure.get("failed_stage")
    else:
        last = [s for s in FILE_STAGES if s in recs]
        status, stage = "incomplete", None
        reason = f"run ended before the report stage (last output: {last[-1] if last else 'none'})"
    finished = max(ends) if ends else None
    return FileTimes(
        file=name,
        status=status,
        reason=reason,
        failed_stage=stage,
        audio_s=ingest.get("duration_s"),
        stages_s=stages_s,
        wall_s=(max(ends) - min(starts)) if starts and ends else None,
        finished_unix=finished,
        in_this_run=run_start is None or (finished is not None and finished >= run_start),
    )


def _case_files(run_info: dict[str, Any]) -> list[str]:
    from ..case import CaseError, discover

    if not run_info.get("case_dir"):
        return []
    try:
        return discover(run_info["case_dir"], run_info.get("audio_extensions") or ["wav", "mp3", "m4a", "flac"])[0]
    except (CaseError, OSError):
        return []


# -- building ----------------------------------------------------------------------------
def build_run_report(results_dir: str | Path, status: str | None = None, now: float | None = None) -> RunReport:
    results = Path(results_dir)
    run_info = _read(results / RUN_START_FILE) or {}
    start = run_info.get("unix")
    end = now if now is not None else _run_end(results, start)
    notes = []
    if start is None:
        notes.append(f"no {RUN_START_FILE} (daemon_up did not run): run window and wall time unknown")
    daemon = _read(results / "daemon_stats.json") or {}
    if not daemon:
        notes.append("no daemon_stats.json: model loads, batch sizes and GPU samples unknown")
    governor = daemon.get("governor") or {}
    records = _records(results) if results.is_dir() else {}
    names = sorted(set(records) | set(_case_files(run_info)))
    spans = _job_spans(results) if results.is_dir() else {}
    files = [_file_times(n, records.get(n, {}), start, spans) for n in names]
    stages: dict[str, StageTime] = {}
    for f in files:
        if not f.in_this_run:
            continue
        for stage, seconds in f.stages_s.items():
            st = stages.setdefault(stage, StageTime(stage))
            st.files += 1
            st.total_s += seconds
            st.max_s = max(st.max_s, seconds)
    order = _stage_dirs(results) if results.is_dir() else []
    done_now = [f for f in files if f.status == "done" and f.in_this_run]
    audio_s = sum(f.audio_s or 0.0 for f in done_now)
    wall = end - start if start is not None else None
    samples = read_samples(governor.get("sample_log_path"), start, end)
    if governor and not samples:
        notes.append("no governor samples inside the run window; GPU figures are the daemon's totals")
    failed = [
        {"file": f.file, "status": f.status, "stage": f.failed_stage, "reason": f.reason}
        for f in files
        if f.status != "done"
    ]
    cum, throughput = 0.0, []
    for i, f in enumerate(sorted((f for f in done_now if f.finished_unix), key=lambda f: f.finished_unix)):
        cum += f.audio_s or 0.0
        throughput.append({"unix": f.finished_unix, "files_done": i + 1, "audio_s_done": round(cum, 3)})
    return RunReport(
        status=status or _infer_status(results, start),
        started_utc=run_info.get("started_utc"),
        finished_utc=utc_from_unix(end),
        wall_s=wall,
        files_total=len(files),
        files_done=sum(f.status == "done" for f in files),
        files_failed=sum(f.status == "failed" for f in files),
        files_incomplete=sum(f.status == "incomplete" for f in files),
        files_reused=sum(not f.in_this_run for f in files),
        audio_s=audio_s,
        realtime_factor=(wall / audio_s) if wall and audio_s else None,
        speed_x_realtime=(audio_s / wall) if wall and audio_s else None,
        stages=sorted(stages.values(), key=lambda s: order.index(s.stage) if s.stage in order else 99),
        files=files,
        failed=failed,
        model_loads={k: int(m.get("loads", 0)) for k, m in (daemon.get("models") or {}).items()},
        daemon_stages=daemon.get("stages") or {},
        gpu=sample_stats(samples, governor),
        governor={
            k: governor.get(k)
            for k in (
                "state",
                "memory_state",
                "cpu_fallback_stages",
                "memory_budget",
                "empty_cache_calls",
                "batch_sizes",
            )
        }
        | {
            "events": [
                e for e in governor.get("events") or [] if e.get("kind") not in ("temp_missing", "memory_missing")
            ],
            "device_changes": daemon.get("device_changes") or [],
        },
        backpressure=daemon.get("admission") or {},
        samples=[
            {k: s.get(k) for k in ("unix", "temp_c", "util_pct", "mem_used_gb", "mem_frac", "state")} for s in samples
        ],
        throughput=throughput,
        notes=notes,
        device_warnings=list((daemon.get("device") or {}).get("warnings") or []),
        device=daemon.get("device"),
    )


def _run_end(results: Path, start: float | None) -> float:
    """daemon_down saves daemon_stats.json as the run ends, just before this report: its
    mtime is the run's end (also when the report is rewritten by hand later)."""
    try:
        saved = (results / "daemon_stats.json").stat().st_mtime
    except OSError:
        return time.time()
    return saved if start is None or saved >= start else time.time()


def _infer_status(results: Path, start: float | None) -> str:
    """success when case.json was written in this run, else error (daemon_down is called by
    onsuccess and onerror alike and cannot always be told which)."""
    case = results / "case.json"
    if case.is_file() and (start is None or case.stat().st_mtime >= start):
        return "success"
    return "error"


def write_run_report(results_dir: str | Path, status: str | None = None, now: float | None = None) -> tuple[Path, Path]:
    """now: the run's end (daemon_down passes the moment the daemon has stopped, so the wall
    time is the real one); None = when the daemon's stats were saved (a rewrite by hand)."""
    from .runreport_html import render_run_report

    results = Path(results_dir)
    report = build_run_report(results, status, now).to_dict()
    json_path, html_path = results / "run_report.json", results / "run_report.html"
    write_json(json_path, report)
    write_text(html_path, render_run_report(report))
    return json_path, html_path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m voiceman.observe.runreport RESULTS_DIR", file=sys.stderr)
        return 2
    for path in write_run_report(args[0]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
