"""Chain of custody for model weights: which files, and their SHA-256.

The combined digest is the SHA-256 of the lines "<file sha256>  <relative path>\n"
over all weight files in sorted path order (the `sha256sum` format), so it
changes when any weight file changes, appears or disappears.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from voiceman.hashing import WEIGHT_SUFFIXES, combine_digests, weight_file_digests

from .errors import ModelDirectoryError, SERLoadError, WeightIntegrityError

log = logging.getLogger(__name__)


def hash_weight_files(model_dir: Path) -> tuple[str, dict[str, str]]:
    """(combined sha256, {relative path: sha256}) of every weight file under model_dir."""
    per_file = weight_file_digests(model_dir)
    if not per_file:
        raise ModelDirectoryError(f"{model_dir}: no weight file found (looked for {', '.join(WEIGHT_SUFFIXES)})")
    return combine_digests(per_file), per_file


def check_expected_sha256(model_dir: Path, actual: str, expected: str | None) -> None:
    if expected is not None and actual.lower() != expected.strip().lower():
        raise WeightIntegrityError(
            f"{model_dir}: weight files SHA-256 is {actual}, expected {expected.strip()}; "
            "the weights were modified or replaced"
        )


def require_directory(path: str | Path) -> Path:
    model_dir = Path(path).expanduser()
    if not model_dir.exists():
        raise ModelDirectoryError(f"{model_dir}: model directory does not exist")
    if not model_dir.is_dir():
        raise ModelDirectoryError(f"{model_dir}: is not a directory")
    return model_dir.resolve()


def require_files(model_dir: Path, names: list[str], what: str) -> None:
    missing = [name for name in names if not (model_dir / name).is_file()]
    if missing:
        raise ModelDirectoryError(f"{model_dir}: missing {', '.join(missing)} (required for {what})")


def load_complete_checkpoint(
    model_dir: Path, extractor_cls: Any, model_cls: Any, what: str, layout_hint: str = ""
) -> tuple[Any, Any]:
    """(feature extractor, model) from a local transformers directory, refusing a checkpoint
    that lacks or mismatches any weight the model needs: transformers would fill those with
    random values and only log it, and a report must never rest on invented weights."""
    try:
        extractor = extractor_cls.from_pretrained(str(model_dir), local_files_only=True)
        model, info = model_cls.from_pretrained(str(model_dir), local_files_only=True, output_loading_info=True)
    except Exception as exc:  # safetensors, torch and HF raise assorted types
        raise SERLoadError(f"{model_dir}: could not load the {what}: {type(exc).__name__}: {exc}") from exc
    missing = list(info.get("missing_keys", [])) + [str(k) for k in info.get("mismatched_keys", [])]
    if missing:
        raise WeightIntegrityError(
            f"{model_dir}: checkpoint lacks or mismatches {len(missing)} weights the model needs, "
            f"e.g. {missing[:5]}{layout_hint}"
        )
    unexpected = list(info.get("unexpected_keys", []))
    if unexpected:
        log.warning("%s: ignoring %d unexpected weights, e.g. %s", model_dir, len(unexpected), unexpected[:5])
    return extractor, model
