"""Where the review lives on disk and its stored state: ``results/review/verdicts.json`` (the
current verdict of each finding, with its history), ``results/review/imports/<id>.json`` (every
import as it came), the error every review step raises, and the case's analysed recordings as
``case.json`` lists them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .. import atomic

FORMAT, VERSION = "voiceman-review", 1
STATE_FORMAT = "voiceman-verdicts"
VERDICTS = ("confirmed", "rejected", "unsure")
REVIEW_DIR = "review"
STATE_FILE = "verdicts.json"
IMPORTS_DIR = "imports"


class ReviewError(ValueError):
    """A verdicts file or the review folder cannot be used; the message says why."""


def review_dir(results_dir: str | Path) -> Path:
    return Path(results_dir) / REVIEW_DIR


def state_path(results_dir: str | Path) -> Path:
    return review_dir(results_dir) / STATE_FILE


def verdict_inputs(results_dir: str | Path) -> list[str]:
    """The case summary's review input: ``[results/review/verdicts.json]`` once a verdict was
    imported, else nothing (a Snakemake input function; an import reruns the case summary)."""
    path = state_path(results_dir)
    return [str(path)] if path.is_file() else []


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def empty_state() -> dict[str, Any]:
    return {"format": STATE_FORMAT, "version": VERSION, "updated_utc": None, "imports": [], "verdicts": []}


def load_state(results_dir: str | Path) -> dict[str, Any]:
    """results/review/verdicts.json, or an empty state when nothing was imported yet."""
    path = state_path(results_dir)
    if not path.exists():
        return empty_state()
    try:
        state = atomic.read_json(path)
    except (OSError, ValueError) as exc:
        raise ReviewError(f"{path}: cannot read the stored verdicts: {exc}") from exc
    if (
        not isinstance(state, dict)
        or state.get("format") != STATE_FORMAT
        or not isinstance(state.get("verdicts"), list)
    ):
        raise ReviewError(f"{path}: not a voiceman verdicts file (format {STATE_FORMAT!r})")
    return state


def _case_keys(results_dir: Path) -> dict[str, str]:
    """{key: name} of the recordings case.json lists as done."""
    path = results_dir / "case.json"
    try:
        summary = atomic.read_json(path)
    except FileNotFoundError:
        raise ReviewError(f"{path} not found: run the workflow for this case first (or pass --results)") from None
    except (OSError, ValueError) as exc:
        raise ReviewError(f"{path}: cannot read: {exc}") from exc
    return {f["key"]: f["name"] for f in summary.get("files") or [] if f.get("status") == "done" and f.get("key")}
