"""Do the modes agree?  Identical transcripts (text, word times) and SER within a tolerance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _transcript(results: Path, name: str) -> list[Any]:
    data = json.loads((results / "transcribe" / f"{name}.json").read_text())
    return [(s["start"], s["end"], s["text"], s.get("words")) for s in data.get("segments", [])]


def _emotions(results: Path, name: str) -> list[float]:
    data = json.loads((results / "ser" / f"{name}.json").read_text())
    values = []
    for seg in data.get("segments", []):
        values += [float(v) for v in (seg.get("dimensional") or {}).values() if isinstance(v, (int, float))]
        cat = seg.get("categorical") or {}
        values += [float(v) for v in (cat.get("probabilities") or {}).values()]
    return values


def agreement(results: dict[str, Path], files: list[str], tolerance: float) -> dict[str, Any]:
    """Compare every mode with the first one, file by file."""
    if len(results) < 2:
        return {"compared": list(results)}
    modes = list(results)
    ref = modes[0]
    identical, ser_diff, ser_values = True, 0.0, 0
    for name in files:
        for other in modes[1:]:
            identical &= _transcript(results[ref], name) == _transcript(results[other], name)
            a, b = _emotions(results[ref], name), _emotions(results[other], name)
            if len(a) != len(b):
                ser_diff = float("inf")
                continue
            ser_values += len(a)
            ser_diff = max([ser_diff] + [abs(x - y) for x, y in zip(a, b)])
    return {
        "compared": modes,
        "transcripts_identical": identical,
        "ser_values": ser_values,
        "ser_max_abs_diff": ser_diff,
        "ser_within_tolerance": ser_diff <= tolerance,
        "tolerance": tolerance,
    }
