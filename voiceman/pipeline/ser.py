"""Rule ``ser``: speech emotion per segment (dimensional + categorical) by the daemon's resident
SER models (results/ser/<file>.json).  A model that is not there gives "not analysed: <why>"
per segment, never an invented value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import atomic
from ..config import model_request
from ..daemonlink import node_daemon
from ..daemonlink.client import DaemonClient
from ..timestamps import utc_now
from .daemon_call import call_daemon
from .failures import upstream_failure
from .jobkit import RuleJob, job_logging

SER_KINDS = ("ser_dimensional", "ser_categorical")


def run(job: RuleJob, client: DaemonClient | None = None) -> None:
    """``client``: the in-process benchmark hands one that drives the daemon core directly."""
    with job_logging(job):
        client = client or node_daemon.client_for_job(job.config)
        transcript = atomic.read_json(job.input.transcript)
        atomic.write_json(
            job.output.emotion,
            emotion(client, transcript, job.settings, float(job.config["daemon"]["request_deadline_s"])),
        )
        node_daemon.job_done(job.config, client)


def ser_models_available(config: dict[str, Any]) -> tuple[dict[str, dict], list[str]]:
    """(models to request, reasons for those that cannot be used)."""
    wanted, missing = {}, []
    for kind in SER_KINDS:
        req = model_request(config, kind)
        if req is None:
            missing.append(f"{kind}: no model configured (models.{kind}.id)")
        elif not Path(req["id"]).is_dir():
            missing.append(f"{kind}: no model at {req['id']}")
        else:
            wanted[kind] = req
    return wanted, missing


def emotion(
    client: DaemonClient, transcript: dict[str, Any], config: dict[str, Any], deadline_s: float
) -> dict[str, Any]:
    failure = upstream_failure(transcript)
    if failure:
        return {"file": transcript["file"], **failure}
    segments = transcript["segments"]
    models, missing = ser_models_available(config)
    base = {"file": transcript["file"], "status": "ok", "started_utc": utc_now(), "missing_models": missing}
    if not models:
        reason = "not analysed: " + "; ".join(missing)
        return {**base, "models": [], "segments": [_not_analysed(reason) for _ in segments]}
    batch = min(config["models"][k]["batch_size"] for k in models)
    reply, failure = call_daemon(
        client,
        "ser",
        deadline_s,
        audio_path=transcript["audio_path"],
        sha256=transcript.get("sha256"),  # the ingest hash, carried by the transcript
        segments=[{"start": s["start"], "end": s["end"]} for s in segments],
        models=models,
        options={"batch_size": batch},
    )
    if failure:
        return {"file": transcript["file"], **failure}
    devices = {m["kind"]: m.get("device") for m in reply["models"]}
    out = []
    for seg in reply["segments"]:
        if seg["dimensional"] is None and seg["categorical"] is None:
            out.append(_not_analysed("not analysed: " + "; ".join(seg["errors"] or ["no result"])))
            continue
        out.append(
            {
                "status": "analysed",
                "reason": "; ".join(seg["errors"] + missing) or None,
                "device": devices.get("ser_dimensional") or devices.get("ser_categorical"),
                "dimensional": seg["dimensional"],
                "categorical": seg["categorical"],
            }
        )
    return {
        **base,
        "finished_utc": utc_now(),
        "models": reply["models"],
        "segments": out,
        "timings": reply.get("timings"),
    }


def _not_analysed(reason: str) -> dict[str, Any]:
    return {"status": "not_analysed", "reason": reason, "device": None, "dimensional": None, "categorical": None}
