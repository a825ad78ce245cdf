"""Chain-of-custody helpers: digests and UTC timestamps for the report's `custody` block."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

_CHUNK = 1 << 20  # 1 MiB reads keep memory flat for hour-long recordings


def sha256_of_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (raises OSError naming the file when unreadable)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_directory(path: str | Path) -> str:
    """Digest of a model directory: SHA-256 over the sorted "relative/path  digest" manifest.

    Hashing a manifest (not a tarball) makes the digest independent of file order and
    timestamps, and lets an auditor recompute it with sha256sum.
    """
    root = Path(path)
    lines = [
        f"{file.relative_to(root).as_posix()}  {sha256_of_file(file)}\n"
        for file in sorted(p for p in root.rglob("*") if p.is_file())
    ]
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with a trailing Z (the report schema's format)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
