"""The logic behind the first rule scripts (ingest, transcribe) and the failure records
every stage shares.

Failure records pass downstream: when a file cannot be decoded (or the daemon rejects it as
input), each later stage writes a record that carries the reason instead of results, so the
case summary can list the file as failed and every other file goes on (U4).  Infrastructure
failures (no daemon, daemon lost) are raised instead: nothing is wrong with the evidence, and
``--rerun-incomplete`` completes the file later.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .audio import AudioDecodeError, decode
from .client import DaemonClient, RequestFailed
from .config import model_request
from .hashing import sha256_file


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


def ingest(audio_path: str | Path) -> dict[str, Any]:
    """Hash the original, then prove it decodes; metadata for the report."""
    path = Path(audio_path)
    started = utc_now()
    record: dict[str, Any] = {"file": path.name, "path": str(path.resolve()), "started_utc": started}
    try:
        record["sha256"] = sha256_file(path)
        record["size_bytes"] = path.stat().st_size
    except OSError as exc:
        return {**record, **failed("ingest", f"{path.name}: cannot read: {exc.strerror}"), "finished_utc": utc_now()}
    t0 = time.perf_counter()
    try:
        _, info = decode(path)
    except AudioDecodeError as exc:
        return {**record, **failed("ingest", str(exc)), "finished_utc": utc_now()}
    return {**record, "status": "ok", "audio": info.to_dict(), "duration_s": info.duration_s,
            "decode_s": round(time.perf_counter() - t0, 3), "finished_utc": utc_now()}


def asr_request(config: dict[str, Any]) -> dict[str, Any]:
    """What the transcribe rule asks of the daemon: the model it expects and the options."""
    asr = config["models"]["asr"]
    return {
        "models": {"asr": model_request(config, "asr")},
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
        result = client.call("transcribe", deadline_s=deadline_s, audio_path=meta["path"], **request)
    except RequestFailed as exc:
        if exc.scope != "request":
            raise  # the daemon cannot serve anyone: not this file's fault
        return {"file": meta["file"], **failed("transcribe", exc.reason), "started_utc": started,
                "finished_utc": utc_now()}
    return {"file": meta["file"], "audio_path": meta["path"], "status": "ok", "started_utc": started,
            "finished_utc": utc_now(), **result}
