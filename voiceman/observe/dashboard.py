"""``voiceman dashboard``: a live terminal view of a running case (O3).

It only looks: one brief ``stats`` call to the daemon per refresh (answered on the daemon's
socket thread, never queued behind inference) and a directory listing of results/<stage>/,
reading each finished file's small JSON once.  It never takes a lock the run needs.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..atomic import read_json
from ..case import CaseError, discover
from ..daemonlink.client import DaemonClient, DaemonError
from ..pipeline.stage_names import DAEMON_STAGES, FILE_STAGES, UPSTREAM
from .runreport import RUN_START_FILE


@dataclass
class DashboardState:
    files_total: int
    files_done: int
    files_failed: int
    stage_done: dict[str, int]
    stage_waiting: dict[str, int]
    elapsed_s: float | None
    files_per_min: float | None
    audio_s_done: float
    eta_s: float | None
    daemon: dict[str, Any] | None
    daemon_error: str | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OutputWatcher:
    """Reads each finished per-file JSON once (keyed by path and mtime)."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[float, dict[str, Any]]] = {}

    def record(self, path: Path, mtime: float) -> dict[str, Any]:
        hit = self._cache.get(path)
        if hit and hit[0] == mtime:
            return hit[1]
        try:
            data = read_json(path)
        except (OSError, ValueError):
            data = {}  # being written right now (atomic rename pending): try next refresh
            return data
        self._cache[path] = (mtime, data if isinstance(data, dict) else {})
        return self._cache[path][1]


def _listing(stage_dir: Path) -> dict[str, float]:
    """{file name: mtime} of a stage's finished JSON outputs."""
    out = {}
    try:
        with os.scandir(stage_dir) as entries:
            for entry in entries:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    out[entry.name[:-5]] = entry.stat().st_mtime
    except FileNotFoundError:
        return {}  # the stage has not written anything yet
    return out


def collect(
    results_dir: str | Path,
    case_dir: str | Path | None,
    extensions: list[str],
    client: DaemonClient | None,
    watcher: OutputWatcher | None = None,
    now: float | None = None,
) -> DashboardState:
    results = Path(results_dir)
    watcher = watcher or OutputWatcher()
    now = time.time() if now is None else now
    notes = []
    files: list[str] = []
    if case_dir:
        try:
            files = discover(case_dir, extensions)[0]
        except CaseError as exc:
            notes.append(str(exc))
    listings = {stage: _listing(results / stage) for stage in FILE_STAGES}
    present = [s for s in FILE_STAGES if (results / s).is_dir()]
    names = set(files) | set(listings["ingest"])
    done_names = set(listings["report"])
    failed = sum(
        watcher.record(results / "report" / f"{n}.json", m).get("status") == "failed"
        for n, m in listings["report"].items()
    )
    waiting = {}
    # A stage's queue: the files its inputs are ready for that it has not done yet.
    for stage in present:
        ups = [u for u in UPSTREAM.get(stage, ()) if u in present]
        ready = names if not ups else set.intersection(*(set(listings[u]) for u in ups))
        waiting[stage] = len(ready - set(listings[stage]))
    start = None
    try:
        start = float(read_json(results / RUN_START_FILE)["unix"])
    except (OSError, ValueError, KeyError, TypeError):
        notes.append(f"no {RUN_START_FILE}: elapsed time and ETA unknown")
    done_now = [n for n, m in listings["report"].items() if start is None or m >= start]
    audio = sum(
        float(watcher.record(results / "ingest" / f"{n}.json", listings["ingest"][n]).get("duration_s") or 0)
        for n in done_now
        if n in listings["ingest"]
    )
    elapsed = now - start if start is not None else None
    rate = (len(done_now) / elapsed * 60) if elapsed and done_now else None
    remaining = max(0, len(names) - len(done_names))
    daemon, error = None, None
    if client is not None:
        try:
            daemon = client.call("stats", deadline_s=5, brief=True)
        except DaemonError as exc:
            error = str(exc)
    return DashboardState(
        files_total=len(names),
        files_done=len(done_names),
        files_failed=failed,
        stage_done={s: len(listings[s]) for s in present},
        stage_waiting=waiting,
        elapsed_s=elapsed,
        files_per_min=rate,
        audio_s_done=audio,
        eta_s=(remaining / rate * 60) if rate else (0.0 if names and not remaining else None),
        daemon=daemon,
        daemon_error=error,
        notes=notes,
    )


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def render(state: DashboardState, title: str = "voiceman") -> Group:
    head = Text.assemble(
        (f"files {state.files_done}/{state.files_total} finished", "bold"),
        f"  ({state.files_failed} failed)   elapsed {_fmt_s(state.elapsed_s)}   ",
        f"throughput {_fmt(state.files_per_min, ' files/min', 2)}, {state.audio_s_done:.0f} s audio   ",
        ("ETA " + _fmt_s(state.eta_s), "bold cyan"),
    )
    daemon = state.daemon or {}
    stages = daemon.get("stages") or {}
    governor = daemon.get("governor") or {}
    table = Table(title="stages", expand=False)
    for column in ("stage", "done", "waiting (workflow)", "daemon queued", "running", "held", "batch size"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for stage, done in state.stage_done.items():
        on_daemon = stage in DAEMON_STAGES and state.daemon is not None
        d = stages.get(DAEMON_STAGES.get(stage, ""), {})
        batch = (governor.get("batch_sizes") or {}).get(DAEMON_STAGES.get(stage, ""))
        table.add_row(
            stage,
            str(done),
            str(state.stage_waiting.get(stage, 0)),
            str(d.get("queued", 0) + d.get("preparing", 0)) if on_daemon else "",
            str(d.get("running", 0)) if on_daemon else "",
            str(d.get("held", 0)) if on_daemon else "",
            str(batch) if batch else "",
        )
    if state.daemon_error:
        gpu_line = Text(f"daemon: {state.daemon_error}", style="red")
    else:
        last = governor.get("last_sample") or {}
        admission = daemon.get("admission") or {}
        state_style = {"normal": "green", "cooldown": "yellow", "halted": "bold red"}.get(governor.get("state"), "")
        gpu_line = Text.assemble(
            f"daemon {daemon.get('state', '?')}   governor ",
            (str(governor.get("state", "off")), state_style),
            f" / memory {governor.get('memory_state', '—')}   sensor {governor.get('sensor', '—')}\n",
            f"GPU util {_fmt(last.get('util_pct'), ' %', 0)}   temp {_fmt(last.get('temp_c'), ' °C')}   "
            f"memory {_fmt(last.get('mem_used_gb'), ' GB', 2)} of {_fmt(last.get('mem_total_gb'), ' GB', 1)}   "
            f"max temp {_fmt(governor.get('temp_max_c'), ' °C')}\n",
            f"CPU fallback: {', '.join(governor.get('cpu_fallback_stages') or []) or 'none'}   "
            f"SER backpressure: {'PAUSED' if admission.get('paused') else 'open'} "
            f"({admission.get('ser_files_waiting', 0)} files wait for SER, {admission.get('transcribe_held', 0)} held)",
        )
    notes = [Text(n, style="dim") for n in state.notes]
    return Group(Panel(head, title=title), table, Panel(gpu_line, title="GPU / governor"), *notes)


def run(
    results_dir: str | Path,
    case_dir: str | Path | None,
    extensions: list[str],
    client: DaemonClient | None,
    interval_s: float = 2.0,
    once: bool = False,
    console: Console | None = None,
) -> int:
    console = console or Console()
    watcher = OutputWatcher()
    title = f"voiceman — {results_dir}"
    if once:
        console.print(render(collect(results_dir, case_dir, extensions, client, watcher), title))
        return 0
    with Live(
        render(collect(results_dir, case_dir, extensions, client, watcher), title),
        console=console,
        refresh_per_second=4,
        screen=False,
    ) as live:
        try:
            while True:
                time.sleep(interval_s)
                live.update(render(collect(results_dir, case_dir, extensions, client, watcher), title))
        except KeyboardInterrupt:
            return 0
