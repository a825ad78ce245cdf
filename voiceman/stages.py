"""The logic behind the first rule scripts (ingest, transcribe) and the failure records
every stage shares.

Failure records pass downstream: when a file cannot be decoded (or the daemon rejects it as
input), each later stage writes a record that carries the reason instead of results, so the
case summary can list the file as failed and every other file goes on (U4).  Infrastructure
failures (no daemon, daemon lost) are raised instead: nothing is wrong with the evidence, and
``--rerun-incomplete`` completes the file later.
"""
from __future__ import annotations

import logging
import os
import stat
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .audio import AudioDecodeError, decode_file
from .daemonlink.client import DaemonClient, RequestFailed
from .config import model_request
from .hashing import sha256_file

if TYPE_CHECKING:
    from .ledger import Ledger

log = logging.getLogger(__name__)


def utc_now() -> str:
    """ISO 8601 UTC with milliseconds and a trailing Z (the report schema's format)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def failed(stage: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"status": "failed", "failed_stage": stage, "reason": reason, **extra}


def upstream_failure(*records: dict[str, Any]) -> dict[str, Any] | None:
    """The first failed upstream record, passed on unchanged (its stage and reason stay)."""
    for rec in records:
        if rec.get("status") == "failed":
            return {k: rec[k] for k in ("status", "failed_stage", "reason") if k in rec}
    return None


def _text_path(path: Path) -> str:
    """The real path as text for the records, or (when it is not valid UTF-8, which JSON and
    msgpack cannot carry) the absolute path it was given, e.g. a results/custody/evidence link."""
    real = os.path.realpath(path)
    return real if os.fsencode(real).decode("utf-8", "backslashreplace") == real else os.path.abspath(path)


def ingest(audio_path: str | Path, name: str | None = None, key: str | None = None,
           ledger: Ledger | None = None) -> dict[str, Any]:
    """Hash the original, check the hash against the evidence ledger's first-seen hash of the
    file (recording it when the file is new), then prove it decodes; metadata for the report.

    ``name``: the evidence file's name (default: the path's); ``key``: the key its outputs are
    filed under when that is not the name.  A file whose bytes differ from the first-seen ones
    fails here, with both hashes; so does a file that changes while it is ingested (the hash of
    the bytes decoded must equal the hash taken first).
    """
    from .case import display_name

    path = Path(audio_path)
    shown = display_name(path.name if name is None else name)
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
        from .ledger import EvidenceChanged, LedgerError

        try:
            first = ledger.check(path.name if name is None else name, record["sha256"], key=key or shown,
                                 size_bytes=record["size_bytes"], path=record["path"])
        except EvidenceChanged as exc:
            log.error("%s", exc)
            return {**record, "input_sha256_first_seen": exc.first_seen["sha256"],
                    "input_first_seen_utc": exc.first_seen.get("first_seen_utc"),
                    **failed("ingest", str(exc)), "finished_utc": utc_now()}
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
        reason = (f"{shown}: changed while it was ingested (sha256 {record['sha256']} when hashed, "
                  f"{decoded_sha256} when decoded)")
        log.error("%s", reason)
        return {**record, **failed("ingest", reason), "finished_utc": utc_now()}
    return {**record, "status": "ok", "audio": info.to_dict(), "duration_s": info.duration_s,
            "decode_s": round(time.perf_counter() - t0, 3), "finished_utc": utc_now()}


def asr_request(config: dict[str, Any]) -> dict[str, Any]:
    """What the transcribe rule asks of the daemon: the models it expects (ASR, and the
    diarization model when one is configured) and the options."""
    asr = config["models"]["asr"]
    models = {"asr": model_request(config, "asr")}
    diarization = model_request(config, "diarization")
    if diarization:  # models.diarization.id null = no speakers
        models["diarization"] = diarization
    return {
        "models": models,
        "options": {"language": asr.get("language"), "word_timestamps": asr["word_timestamps"],
                    "batch_size": asr["batch_size"]},
    }


def transcribe(client: DaemonClient, meta: dict[str, Any], request: dict[str, Any],
               deadline_s: float) -> dict[str, Any]:
    failure = upstream_failure(meta)
    if failure:
        return {"file": meta["file"], **failure}
    started = utc_now()
    try:
        # The ingest hash goes along: the daemon hashes the bytes it decodes and refuses others.
        result = client.call("transcribe", deadline_s=deadline_s, audio_path=meta["path"],
                             sha256=meta.get("sha256"), **request)
    except RequestFailed as exc:
        if exc.scope != "request":
            raise  # the daemon cannot serve anyone: not this file's fault
        return {"file": meta["file"], **failed("transcribe", exc.reason), "started_utc": started,
                "finished_utc": utc_now()}
    return {"file": meta["file"], "audio_path": meta["path"], "sha256": meta.get("sha256"), "status": "ok",
            "started_utc": started, "finished_utc": utc_now(), **result}
