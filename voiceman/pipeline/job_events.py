"""The jobs' timing events: one JSON line per finished rule job in
``results/logs/job_events.jsonl`` -- rule, file key, start and end (UTC), seconds, status.

The job harness (``jobkit.job_logging``) appends them; the run report reads them.  Rule jobs
run as threads of one Snakemake process, or as processes of their own on a cluster, all
appending to the one file: each event is a single ``os.write`` of one whole line on an
``O_APPEND`` descriptor, which the kernel appends as one piece, so lines never interleave.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EVENTS_FILE = Path("logs") / "job_events.jsonl"  # under the results dir


def events_path(results_dir: str | Path) -> Path:
    return Path(results_dir) / EVENTS_FILE


def append_event(results_dir: str | Path, event: dict[str, Any]) -> None:
    """Append one event line.  A timing that cannot be written is logged, never raised: it
    must not fail a job whose outputs are fine."""
    path = events_path(results_dir)
    line = (json.dumps(event, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            written = os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("job event not recorded in %s: %s", path, exc)
        return
    if written != len(line):  # a full disk: the reader skips the cut line
        log.warning("job event cut short in %s (%d of %d bytes)", path, written, len(line))


def read_events(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every event in the order written; lines that are not an event (cut short) are skipped."""
    try:
        text = events_path(results_dir).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events
