"""Reading a YAML settings file whose top level must be a mapping — one place for the errors
that name the file (unreadable, not YAML, not a mapping)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_mapping(path: str | Path, what: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The file's top-level mapping; ``error(message)`` naming ``what`` and the file otherwise.
    An empty file is an empty mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{what} {path}: cannot read file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{what} {path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{what} {path}: top level must be a mapping, got {type(data).__name__}")
    return data
