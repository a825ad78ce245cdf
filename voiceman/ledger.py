"""The evidence ledger: the first-seen SHA-256 of every evidence file, kept write-once in the
results folder (``<results>/custody/ledger/``).

Ingest hashes each recording and looks it up here.  The first time a file is seen its digest is
recorded; every later ingest of that file (a resumed run, a rerun after an output was deleted,
a rerun because the file's mtime changed) must find the same digest, or the file fails loudly
with both digests.  So a replaced recording can never quietly become the new "before" of the
chain of custody: the original digest stays on record.

Format: one JSON file per evidence file, ``<sha256 of the file's name, as bytes>.json``::

    {"ledger_version": 1, "name": "call-01.wav", "key": "call-01.wav",
     "sha256": "<64 hex>", "size_bytes": 12345, "first_seen_utc": "2026-11-28T05:00:00.000Z",
     "case_dir": "/cases/2026-017", "software_version": "0.1.0"}

Write-once: an entry is written to a temp file in the ledger folder and then ``link(2)``-ed to
its final name, which fails with EEXIST when an entry is already there.  That is atomic between
threads of one Snakemake process and between processes on different cluster nodes sharing the
results folder (link is atomic on local file systems and on NFS), a reader never sees a
half-written entry, and no code path opens an existing entry for writing.  Entries are made
read-only (0400).  A ledger entry that cannot be read or parsed is an error, never rewritten.

The ledger belongs to the results folder: a new results folder starts a new ledger.  To analyse
different bytes under a name that is already in the ledger, use a new results folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .timestamps import utc_now

LEDGER_VERSION = 1
LEDGER_SUBDIR = Path("custody") / "ledger"


class LedgerError(RuntimeError):
    """The ledger cannot be read or written (the file fails; nothing is overwritten)."""


class EvidenceChanged(LedgerError):
    """The bytes seen now differ from the first-seen bytes of the same evidence file."""

    def __init__(self, message: str, first_seen: dict[str, Any], sha256: str):
        super().__init__(message)
        self.first_seen = first_seen
        self.sha256 = sha256


def _display(name: str) -> str:
    """A file name as text JSON can hold (bytes that are not UTF-8 as \\xNN)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def entry_id(name: str) -> str:
    """The ledger file's stem for an evidence file name: SHA-256 of the name's bytes, so any
    name (braces, newlines, 250 bytes, not UTF-8) maps to a short, safe, unique file name."""
    return hashlib.sha256(os.fsencode(name)).hexdigest()


class Ledger:
    """The write-once first-seen ledger of one results folder."""

    def __init__(self, results_dir: str | Path):
        self.dir = Path(results_dir) / LEDGER_SUBDIR

    def path_for(self, name: str) -> Path:
        return self.dir / f"{entry_id(name)}.json"

    def get(self, name: str) -> dict[str, Any] | None:
        """The first-seen entry of ``name``, or None when the file was never seen."""
        path = self.path_for(name)
        try:
            with open(path, encoding="utf-8") as fh:
                entry = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LedgerError(
                f"{_display(name)}: evidence ledger entry {path} cannot be read "
                f"({type(exc).__name__}: {exc}); it is never rewritten: check it by hand"
            ) from None
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise LedgerError(
                f"{_display(name)}: evidence ledger entry {path} is not a ledger entry; "
                "it is never rewritten: check it by hand"
            )
        return entry

    def first_seen(self, name: str, sha256: str, **facts: Any) -> dict[str, Any]:
        """The entry that holds for ``name``: the existing one, or a new one recording ``sha256``
        (plus ``facts``: size_bytes, key, case_dir, ...) as first seen now.  Never rewrites."""
        existing = self.get(name)
        if existing is not None:
            return existing
        entry = {
            "ledger_version": LEDGER_VERSION,
            "name": _display(name),
            "sha256": sha256,
            "first_seen_utc": utc_now(),
            **facts,
        }
        self._create(self.path_for(name), entry)
        held = self.get(name)  # ours, or the one another job linked first
        if held is None:
            raise LedgerError(f"{_display(name)}: evidence ledger entry vanished right after it was written")
        return held

    def check(self, name: str, sha256: str, **facts: Any) -> dict[str, Any]:
        """Record ``sha256`` as first seen, or compare it with the first-seen digest: returns the
        entry when they agree, raises :class:`EvidenceChanged` (both digests named) when not."""
        entry = self.first_seen(name, sha256, **facts)
        if entry["sha256"] != sha256:
            raise EvidenceChanged(
                f"{_display(name)}: bytes differ from the first-seen evidence (first seen sha256 "
                f"{entry['sha256']} at {entry.get('first_seen_utc', 'an unknown time')}, now {sha256}); "
                f"the first-seen record is {self.path_for(name)}",
                entry,
                sha256,
            )
        return entry

    def _create(self, path: Path, entry: dict[str, Any]) -> None:
        """Write ``entry`` to ``path`` unless an entry is there already (then leave both alone)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".new-", suffix=".tmp", dir=self.dir)
        except OSError as exc:
            raise LedgerError(f"evidence ledger {self.dir} cannot be written: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, indent=2, ensure_ascii=False)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o400)
            try:
                os.link(tmp, path)  # atomic create-if-absent, like O_EXCL, with the content already there
            except FileExistsError:
                pass  # someone else was first: theirs holds
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise LedgerError(f"evidence ledger {self.dir} cannot be written: {exc.strerror}") from None
            else:
                _fsync_dir(self.dir)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
