"""SHA-256 for the chain of custody (inputs, model weights, config) — the one place that
defines how each digest is computed, so a report's hashes can be recomputed by an auditor."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".ckpt", ".onnx", ".pth")
_CHUNK = 1 << 20  # 1 MiB reads keep memory flat for hour-long recordings


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:  # read-only: evidence is never opened for writing
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_file_digests(model_dir: str | Path) -> dict[str, str]:
    """{relative path: sha256} of every weight file under ``model_dir`` (hidden folders such
    as .cache are skipped)."""
    root = Path(model_dir)
    digests = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.suffix in WEIGHT_SUFFIXES and path.is_file() and not any(p.startswith(".") for p in rel.parts):
            digests[rel.as_posix()] = sha256_file(path)
    return digests


def combine_digests(digests: dict[str, str]) -> str:
    """SHA-256 of the ``sha256sum`` listing ("<sha256>  <path>" lines, sorted by path):
    ``sha256sum $(find . -name '*.bin' | sort) | sed 's| ./| |' | sha256sum`` gives the same."""
    listing = "".join(f"{sha}  {name}\n" for name, sha in sorted(digests.items()))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def sha256_weights(model_dir: str | Path) -> str | None:
    """One digest over a model directory's weight files; changes when any weight file
    changes, appears or disappears.  None when there are none (e.g. an unresolved hub id)."""
    if not Path(model_dir).is_dir():
        return None
    digests = weight_file_digests(model_dir)
    return combine_digests(digests) if digests else None


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-able object in canonical form (sorted keys, no whitespace)."""
    canon = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()
