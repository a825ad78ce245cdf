"""Building the daemon's governor from the workflow config's ``governor:`` section, and the
sensor wrappers the daemon needs around the governor's sensors.

    governor:
      config: config/governor.yaml   # thresholds, sample interval, per-stage batch sizes
      sensor: auto                    # auto (NVML when present, else "no sensor") | none | trace
      trace: null                     # CSV replayed by sensor: trace (t_s,temp_c,mem_used_gb,mem_total_gb)
      sample_log: null                # JSON-lines sample log; null = <runtime dir>/governor_samples.jsonl
      ser_queue_pause_at: 5           # S5
      ser_queue_resume_below: 3
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from voiceman.daemonlink import runtime
from voiceman.resources import REPO_ROOT

from .governor import Governor, NvmlSensor, Snapshot, TraceSensor, load_governor_config

log = logging.getLogger(__name__)

SENSOR_CHOICES = ("auto", "none", "trace")


class NoSensor:
    """sensor: none -- every reading is missing; the policy keeps its states (no sensor mode)."""

    name = "none"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock

    def read(self) -> Snapshot:
        return Snapshot(self._clock(), None, None, None, None, None, "none")


class ReplaySensor:
    """A trace replayed in daemon time: one row per reading, stamped with the daemon's clock
    (so time-in-state is real time); after the last row the last reading stays."""

    name = "trace"

    def __init__(self, trace: TraceSensor, clock: Callable[[], float] = time.monotonic) -> None:
        self._trace = trace
        self._clock = clock
        self._last: Snapshot | None = None

    def read(self) -> Snapshot:
        if self._trace.remaining:
            self._last = self._trace.read()
        return replace(self._last, t_s=self._clock())


class RecordingSensor:
    """Keeps the latest readings for ``stats`` (the dashboard's live GPU line)."""

    def __init__(self, inner: Any, keep: int = 120) -> None:
        self.inner = inner
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return getattr(self.inner, "name", type(self.inner).__name__)

    def read(self) -> Snapshot:
        snap = self.inner.read()
        with self._lock:
            self.recent.append({**snap.to_dict(), "unix": round(time.time(), 3)})
        return snap

    def last(self) -> dict[str, Any] | None:
        with self._lock:
            return dict(self.recent[-1]) if self.recent else None


def _resolve(path: str | None) -> Path | None:
    """Relative paths: from the working directory when the file is there, else the repo."""
    if not path:
        return None
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


def make_sensor(kind: str, trace: str | None) -> Any:
    if kind == "none":
        return NoSensor()
    if kind == "trace":
        trace_path = _resolve(trace)
        if trace_path is None:
            raise ValueError("governor.sensor is 'trace' but governor.trace names no CSV file")
        return ReplaySensor(TraceSensor(trace_path))
    if kind == "auto":
        return NvmlSensor()
    raise ValueError(f"governor.sensor={kind!r}: expected one of {', '.join(SENSOR_CHOICES)}")


def sample_log_path(section: dict[str, Any]) -> Path:
    configured = section.get("sample_log")
    return Path(configured) if configured else runtime.runtime_dir() / "governor_samples.jsonl"


def build_governor(config: dict[str, Any]) -> Governor:
    """The daemon's Governor.  Raises ValueError naming the file/key on a bad setting."""
    section = dict(config.get("governor") or {})
    governor_config = load_governor_config(_resolve(section.get("config")))
    sensor = RecordingSensor(make_sensor(section.get("sensor") or "auto", section.get("trace")))
    governor = Governor(governor_config, sensor, sample_log_path=sample_log_path(section))
    log.info(
        "governor: sensor %s, sample every %g s, log %s, batch sizes %s",
        sensor.name,
        governor_config.sample_interval_s,
        governor.sample_log_path,
        dict(governor_config.batch_sizes),
    )
    return governor


def backpressure_thresholds(config: dict[str, Any]) -> tuple[int, int]:
    section = config.get("governor") or {}
    return int(section.get("ser_queue_pause_at", 5)), int(section.get("ser_queue_resume_below", 3))


def governor_stats(governor: Governor | None, brief: bool = False) -> dict[str, Any] | None:
    """The ``governor`` part of the daemon's stats reply."""
    if governor is None:
        return None
    summary = governor.state_summary()
    if brief:
        summary.pop("events", None)
    else:
        with governor._lock:  # U3: memory at the start/end of the most recent batches
            summary["batch_memory"] = list(governor.policy.batch_memory)[-200:]
    sensor = governor.sensor
    summary["last_sample"] = sensor.last() if isinstance(sensor, RecordingSensor) else None
    summary["sample_log_path"] = str(governor.sample_log_path) if governor.sample_log_path else None
    summary["sample_interval_s"] = governor.config.sample_interval_s
    summary["sampler_running"] = governor.sampler_running
    return summary
