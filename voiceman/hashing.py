"""SHA-256 helpers for the chain of custody (inputs, model weights, config)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".ckpt", ".onnx", ".pth")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:  # read-only: evidence is never opened for writing
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_weights(model_dir: str | Path) -> str | None:
    """One digest over every weight file under ``model_dir`` (relative name + content hash,
    sorted), so any changed, added or removed weight file changes it.  None when the
    directory holds no weight files (e.g. a hub id that was never resolved locally)."""
    root = Path(model_dir)
    if not root.is_dir():
        return None
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        return None
    digest = hashlib.sha256()
    for p in files:
        digest.update(f"{p.relative_to(root).as_posix()}\0{sha256_file(p)}\n".encode())
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-able object in canonical form (sorted keys, no whitespace)."""
    canon = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()
