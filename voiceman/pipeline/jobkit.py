"""The job harness every rule job runs in: the job's named inputs/outputs and the settings its
rule declares, logging into the rule's ``log:`` file, a clear one-line failure, and one timing
event per job (``job_events``: what the run report reads).

Rule jobs run as ``run:`` blocks.  The profiles set ``force-use-threads``, so on one machine a
job is a thread of the Snakemake process (no interpreter start and no re-import per job;
inference happens in the daemon, so these threads only do light CPU work).  On a cluster each
job still runs in its own Snakemake process.  Because several jobs share one process, a job's
log handler takes only the records its own thread emits.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..timestamps import utc_from_unix
from .job_events import append_event

log = logging.getLogger("voiceman.rule")
LIBRARY_LOGGER = "voiceman"  # the library's loggers all live under this name

# The config sections that findings depend on.  A rule body sees only the parts its rule
# declares in RULE_SETTINGS -- passed as the rule's ``params: settings=...``, so Snakemake
# reruns exactly the jobs whose settings changed -- plus the sections that never change a
# finding (folders, daemon transport, governor).  Reading an undeclared setting fails loudly
# instead of leaving stale outputs behind.
ANALYSIS_SECTIONS = ("models", "voice", "patterns", "forensic_rules")
RULE_SETTINGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "transcribe": (("models", "asr"), ("models", "diarization")),
    "ser": (("models", "ser_dimensional"), ("models", "ser_categorical")),
    "voice": (("voice",),),
    "patterns": (("patterns",),),
}


def settings_for(config: dict[str, Any], rule: str) -> dict[str, Any]:
    """The slice of ``config`` that ``rule``'s outputs depend on (its ``params: settings``)."""
    out: dict[str, Any] = {}
    for path in RULE_SETTINGS[rule]:
        value: Any = config
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


@dataclass(frozen=True)
class RuleJob:
    """One job of a rule: Snakemake's named lists as the run block sees them, plus the config."""

    rule: str
    input: Any
    output: Any
    params: Any
    log: Any
    wildcards: Any
    config: dict[str, Any]

    @property
    def settings(self) -> dict[str, Any]:
        """The config the body may read: its declared settings (``params.settings``) and the
        sections that never change a finding.  Rules without declared settings (report, case
        summary: they record the whole analysis config's hash as a param) see all of it."""
        declared = self.params.get("settings") if hasattr(self.params, "get") else None
        if declared is None:
            return self.config
        base = {k: v for k, v in self.config.items() if k not in ANALYSIS_SECTIONS}
        return {**base, **declared}

    @property
    def label(self) -> str:
        return f"rule {self.rule}, wildcards {dict(self.wildcards)}"

    @property
    def file_key(self) -> str | None:
        """The ``{file}`` wildcard (the key the file's outputs are filed under); None for the
        case-wide rule."""
        return dict(self.wildcards).get("file")


class _FromThread(logging.Filter):
    def __init__(self, thread_id: int):
        super().__init__()
        self.thread_id = thread_id

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread_id


@contextlib.contextmanager
def job_logging(job: RuleJob) -> Iterator[logging.Logger]:
    """Log this job's records to ``job.log[0]``; log an exception with its cause, then re-raise
    so Snakemake marks the job failed and keeps going with other files.  Either way the job's
    timing goes to the events file (the log lines are for people; nothing parses them)."""
    library = logging.getLogger(LIBRARY_LOGGER)
    if library.level == logging.NOTSET:
        library.setLevel(logging.INFO)
    handler: logging.Handler | None = None
    if job.log:
        handler = logging.FileHandler(job.log[0], mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_FromThread(threading.get_ident()))
        library.addHandler(handler)
    started_unix, started = time.time(), time.monotonic()
    status = "failed"
    log.info("%s", job.label)
    try:
        yield log
    except Exception as exc:
        log.error("%s failed: %s", job.label, exc)
        raise
    else:
        status = "ok"
        log.info("rule %s done in %.2f s", job.rule, time.monotonic() - started)
    finally:
        seconds = time.monotonic() - started
        if job.config.get("results_dir"):
            append_event(
                job.config["results_dir"],
                {
                    "rule": job.rule,
                    "file": job.file_key,
                    "start_utc": utc_from_unix(started_unix),
                    "end_utc": utc_from_unix(started_unix + seconds),
                    "seconds": round(seconds, 3),
                    "status": status,
                },
            )
        if handler is not None:
            library.removeHandler(handler)
            handler.close()
