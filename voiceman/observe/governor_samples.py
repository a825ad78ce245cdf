"""The run report's GPU figures: the governor's samples (its sample log, one JSON line each)
that lie inside the run window, summed up as utilisation percentiles, peak temperature and
memory, and the time spent cooling down or halted.  Without samples, the figures are the
governor's own totals from the daemon's stats."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class SampleStats:
    samples: int
    sensor: str | None
    util_mean: float | None
    util_p50: float | None
    util_p95: float | None
    temp_max_c: float | None
    temp_mean_c: float | None
    mem_peak_gb: float | None
    mem_peak_frac: float | None
    time_in_cooldown_s: float
    time_in_halted_s: float
    source: str  # "sample_log" | "governor_summary" | "none"

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def read_samples(path: str | Path | None, start: float | None, end: float) -> list[dict[str, Any]]:
    """Governor samples (JSON lines) whose wall-clock time lies in [start, end]."""
    if not path or not Path(path).is_file():
        return []
    samples = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                sample = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash; the rest still counts
            t = sample.get("unix")
            if isinstance(t, (int, float)) and (start is None or t >= start) and t <= end:
                samples.append(sample)
    return samples


def sample_stats(samples: list[dict[str, Any]], governor: dict[str, Any]) -> SampleStats:
    if not samples:
        return SampleStats(
            0,
            governor.get("sensor"),
            None,
            None,
            None,
            governor.get("temp_max_c"),
            governor.get("temp_mean_c"),
            None,
            None,
            float(governor.get("time_in_cooldown_s") or 0.0),
            float(governor.get("time_in_halted_s") or 0.0),
            "governor_summary" if governor else "none",
        )
    util = [s["util_pct"] for s in samples if s.get("util_pct") is not None]
    temps = [s["temp_c"] for s in samples if s.get("temp_c") is not None]
    mem = [s["mem_used_gb"] for s in samples if s.get("mem_used_gb") is not None]
    fracs = [s["mem_frac"] for s in samples if s.get("mem_frac") is not None]
    in_state = {"cooldown": 0.0, "halted": 0.0}
    for a, b in zip(samples, samples[1:]):
        if a.get("state") in in_state:
            in_state[a["state"]] += max(0.0, b["unix"] - a["unix"])
    return SampleStats(
        samples=len(samples),
        sensor=samples[-1].get("sensor"),
        util_mean=sum(util) / len(util) if util else None,
        util_p50=_percentile(util, 0.5),
        util_p95=_percentile(util, 0.95),
        temp_max_c=max(temps) if temps else None,
        temp_mean_c=sum(temps) / len(temps) if temps else None,
        mem_peak_gb=max(mem) if mem else None,
        mem_peak_frac=max(fracs) if fracs else None,
        time_in_cooldown_s=in_state["cooldown"],
        time_in_halted_s=in_state["halted"],
        source="sample_log",
    )
