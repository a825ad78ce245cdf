"""Chain of custody for model weights: which files, and their SHA-256.

The combined digest is the SHA-256 of the lines "<file sha256>  <relative path>\n"
over all weight files in sorted path order (the `sha256sum` format), so it
changes when any weight file changes, appears or disappears.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from .errors import ModelDirectoryError, WeightIntegrityError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def find_weight_files(model_dir: Path) -> list[Path]:
    """Weight files anywhere under model_dir (hidden folders such as .cache skipped)."""
    found = []
    for path in sorted(model_dir.rglob("*")):
        relative = path.relative_to(model_dir)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix in WEIGHT_SUFFIXES and path.is_file():
            found.append(path)
    return found


def hash_weight_files(model_dir: Path) -> tuple[str, dict[str, str]]:
    """(combined sha256, {relative path: sha256}) of every weight file under model_dir."""
    files = find_weight_files(model_dir)
    if not files:
        raise ModelDirectoryError(
            f"{model_dir}: no weight file found (looked for {', '.join(WEIGHT_SUFFIXES)})"
        )
    per_file = {str(p.relative_to(model_dir)): file_sha256(p) for p in files}
    listing = "".join(f"{sha}  {name}\n" for name, sha in sorted(per_file.items()))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest(), per_file


def check_expected_sha256(model_dir: Path, actual: str, expected: Optional[str]) -> None:
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
        raise ModelDirectoryError(
            f"{model_dir}: missing {', '.join(missing)} (required for {what})"
        )
