"""Sensors that produce `Snapshot`s: the live NVML sensor (with memory fallbacks) and a
trace sensor that replays a CSV for simulation and tests.

Memory fallbacks when NVML gives no memory reading:
1. torch.cuda.mem_get_info (only when CUDA is available; injectable);
2. /proc/meminfo (injectable path) -- only when a GPU device exists, because then the
   GPU's memory *is* system memory (unified-memory machines such as the GB10, where NVML
   answers NotSupported for memory). Without a GPU, system RAM says nothing about GPU memory.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from .nvml_query import BYTES_PER_GB, NvmlQuery

log = logging.getLogger(__name__)

MemGetInfo = Callable[[], "tuple[int, int] | None"]  # -> (free_bytes, total_bytes)


@dataclass(frozen=True)
class Snapshot:
    """One reading of the GPU; None wherever the value is unknown."""

    t_s: float
    temp_c: float | None
    util_pct: float | None
    mem_used_gb: float | None
    mem_total_gb: float | None
    mem_source: str | None  # "nvml" | "torch" | "meminfo" | "trace" | None
    sensor: str  # "nvml" | "none" | "trace"

    @property
    def mem_frac(self) -> float | None:
        if self.mem_used_gb is None or not self.mem_total_gb:
            return None
        return self.mem_used_gb / self.mem_total_gb

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mem_frac"] = self.mem_frac
        return out


class Sensor(Protocol):
    name: str

    def read(self) -> Snapshot: ...


def torch_mem_get_info() -> tuple[int, int] | None:
    """Production fallback: torch.cuda.mem_get_info() when CUDA is available, else None."""
    try:
        import torch  # the daemon owns torch; imported only when NVML has no memory reading
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return int(free), int(total)


def read_meminfo_gb(path: str | Path = "/proc/meminfo") -> tuple[float, float] | None:
    """(used, total) GB from a /proc/meminfo-style file: used = MemTotal - MemAvailable."""
    values: dict[str, int] = {}
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if key in ("MemTotal", "MemAvailable") and parts:
                    # The kernel writes "kB" but means KiB.
                    values[key] = int(parts[0]) * 1024
    except (OSError, ValueError) as exc:
        log.debug("governor: cannot read %s: %s", path, exc)
        return None
    if "MemTotal" not in values or "MemAvailable" not in values or values["MemTotal"] <= 0:
        return None
    total = values["MemTotal"] / BYTES_PER_GB
    return total - values["MemAvailable"] / BYTES_PER_GB, total


class NvmlSensor:
    """Live sensor: NVML through `NvmlQuery`, then the memory fallbacks."""

    def __init__(
        self,
        query: NvmlQuery | None = None,
        *,
        mem_get_info: MemGetInfo | None = torch_mem_get_info,
        meminfo_path: str | Path | None = "/proc/meminfo",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.query = query if query is not None else NvmlQuery()
        self._mem_get_info = mem_get_info
        self._meminfo_path = meminfo_path
        self._clock = clock
        self.query.init()

    @property
    def name(self) -> str:
        return "nvml" if self.query.available else "none"

    def read(self) -> Snapshot:
        query = self.query
        temp = query.temperature_c()
        util = query.utilization_pct()
        used, total = query.memory_gb()
        source = "nvml" if used is not None else None
        if used is None:
            used, total, source = self._fallback_memory()
        return Snapshot(
            t_s=self._clock(),
            temp_c=temp,
            util_pct=util,
            mem_used_gb=used,
            mem_total_gb=total,
            mem_source=source,
            sensor=self.name,
        )

    def _fallback_memory(self) -> tuple[float | None, float | None, str | None]:
        if self._mem_get_info is not None:
            info = self._mem_get_info()
            if info is not None and info[1] > 0:
                free, total = info
                return (total - free) / BYTES_PER_GB, total / BYTES_PER_GB, "torch"
        if self.query.available and self._meminfo_path is not None:
            meminfo = read_meminfo_gb(self._meminfo_path)
            if meminfo is not None:
                return meminfo[0], meminfo[1], "meminfo"
        return None, None, None


class TraceExhausted(RuntimeError):
    """The trace sensor has no more rows."""


TRACE_COLUMNS = ("t_s", "temp_c", "mem_used_gb", "mem_total_gb")


class TraceSensor:
    """Replays a CSV `t_s,temp_c,mem_used_gb,mem_total_gb[,util_pct]`; an empty cell is None."""

    name = "trace"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.snapshots = _read_trace(self.path)
        self._next = 0

    def __len__(self) -> int:
        return len(self.snapshots)

    @property
    def remaining(self) -> int:
        return len(self.snapshots) - self._next

    def peek_time(self) -> float | None:
        """t_s of the next row (None at the end) -- lets a simulated clock follow the trace."""
        return self.snapshots[self._next].t_s if self.remaining else None

    def read(self) -> Snapshot:
        if not self.remaining:
            raise TraceExhausted(f"trace {self.path}: no rows left after {len(self.snapshots)}")
        snapshot = self.snapshots[self._next]
        self._next += 1
        return snapshot


def _read_trace(path: Path) -> list[Snapshot]:
    try:
        handle = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"trace {path}: cannot read file ({exc.strerror})") from exc
    with handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [c for c in TRACE_COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"trace {path}: header lacks column(s) {', '.join(missing)}; expected {','.join(TRACE_COLUMNS)}"
            )
        snapshots = []
        previous_t = None
        for row in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            line = reader.line_num
            t_s = _cell(row, "t_s", path, line)
            if t_s is None:
                raise ValueError(f"trace {path} line {line}: t_s is empty")
            if previous_t is not None and t_s < previous_t:
                raise ValueError(f"trace {path} line {line}: t_s {t_s} goes back in time")
            previous_t = t_s
            used = _cell(row, "mem_used_gb", path, line)
            total = _cell(row, "mem_total_gb", path, line)
            snapshots.append(
                Snapshot(
                    t_s=t_s,
                    temp_c=_cell(row, "temp_c", path, line),
                    util_pct=_cell(row, "util_pct", path, line),
                    mem_used_gb=used,
                    mem_total_gb=total,
                    mem_source="trace" if used is not None and total is not None else None,
                    sensor="trace",
                )
            )
    if not snapshots:
        raise ValueError(f"trace {path}: no data rows")
    return snapshots


def _cell(row: dict[str, str], column: str, path: Path, line: int) -> float | None:
    text = row.get(column, "")
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"trace {path} line {line}: {column}={text!r} is not a number") from None
