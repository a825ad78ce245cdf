"""Rule ``ingest``: hash the original recording, check it against the evidence ledger, prove it
decodes, and record its format (results/ingest/<file>.json)."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

from .. import atomic, case
from ..audio import AudioDecodeError, decode_file
from ..hashing import sha256_file
from ..ledger import EvidenceChanged, Ledger, LedgerError
from ..timestamps import utc_now
from .failures import failed
from .jobkit import RuleJob, job_logging

log = logging.getLogger(__name__)


def run(job: RuleJob) -> None:
    with job_logging(job):
        # The evidence's own name (the input may be results/custody/evidence/<key>, a link to a
        # file whose name cannot be an output path); its first-seen hash is kept in the ledger.
        name, path = case.evidence_name(job.input.audio)
        atomic.write_json(
            job.output.meta, ingest(path, name=name, key=job.wildcards.file, ledger=Ledger(job.config["results_dir"]))
        )


def _text_path(path: Path) -> str:
    """The real path as text for the records, or (when it is not valid UTF-8, which JSON and
    msgpack cannot carry) the absolute path it was given, e.g. a results/custody/evidence link."""
    real = os.path.realpath(path)
    return real if os.fsencode(real).decode("utf-8", "backslashreplace") == real else os.path.abspath(path)


def ingest(
    audio_path: str | Path, name: str | None = None, key: str | None = None, ledger: Ledger | None = None
) -> dict[str, Any]:
    """Hash the original, check the hash against the evidence ledger's first-seen hash of the
    file (recording it when the file is new), then prove it decodes; metadata for the report.

    ``name``: the evidence file's name (default: the path's); ``key``: the key its outputs are
    filed under when that is not the name.  A file whose bytes differ from the first-seen ones
    fails here, with both hashes; so does a file that changes while it is ingested (the hash of
    the bytes decoded must equal the hash taken first).
    """
    path = Path(audio_path)
    shown = case.display_name(path.name if name is None else name)
    started = utc_now()
    record: dict[str, Any] = {"file": shown, "path": _text_path(path), "started_utc": started}
    if key is not None and key != shown:
        record["key"] = key
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return {**record, **failed("ingest", f"{shown}: not a regular file"), "finished_utc": utc_now()}
        record["sha256"] = sha256_file(path)
        record["size_bytes"] = path.stat().st_size
    except OSError as exc:
        return {**record, **failed("ingest", f"{shown}: cannot read: {exc.strerror}"), "finished_utc": utc_now()}
    if ledger is not None:
        try:
            first = ledger.check(
                path.name if name is None else name,
                record["sha256"],
                key=key or shown,
                size_bytes=record["size_bytes"],
                path=record["path"],
            )
        except EvidenceChanged as exc:
            log.error("%s", exc)
            return {
                **record,
                "input_sha256_first_seen": exc.first_seen["sha256"],
                "input_first_seen_utc": exc.first_seen.get("first_seen_utc"),
                **failed("ingest", str(exc)),
                "finished_utc": utc_now(),
            }
        except LedgerError as exc:
            log.error("%s", exc)
            return {**record, **failed("ingest", str(exc)), "finished_utc": utc_now()}
        record["input_sha256_first_seen"] = first["sha256"]
        record["input_first_seen_utc"] = first.get("first_seen_utc")
    t0 = time.perf_counter()
    try:
        _, info, decoded_sha256 = decode_file(path)
    except AudioDecodeError as exc:
        return {**record, **failed("ingest", str(exc)), "finished_utc": utc_now()}
    if decoded_sha256 != record["sha256"]:
        reason = (
            f"{shown}: changed while it was ingested (sha256 {record['sha256']} when hashed, "
            f"{decoded_sha256} when decoded)"
        )
        log.error("%s", reason)
        return {**record, **failed("ingest", reason), "finished_utc": utc_now()}
    return {
        **record,
        "status": "ok",
        "audio": info.to_dict(),
        "duration_s": info.duration_s,
        "decode_s": round(time.perf_counter() - t0, 3),
        "finished_utc": utc_now(),
    }
