"""Rule ``transcribe``: speech to text with word times (and speakers, when a diarization model
is configured), done by the daemon's resident ASR model (results/transcribe/<file>.json)."""

from __future__ import annotations

from typing import Any

from .. import atomic
from ..config import model_request
from ..daemonlink import node_daemon
from ..daemonlink.client import DaemonClient
from ..timestamps import utc_now
from .daemon_call import call_daemon
from .failures import upstream_failure
from .jobkit import RuleJob, job_logging


def run(job: RuleJob, client: DaemonClient | None = None) -> None:
    """``client``: the in-process benchmark hands one that drives the daemon core directly."""
    with job_logging(job):
        client = client or node_daemon.client_for_job(job.config)  # daemon.per_node: this node's daemon
        meta = atomic.read_json(job.input.meta)
        result = transcribe(client, meta, asr_request(job.settings), float(job.config["daemon"]["request_deadline_s"]))
        atomic.write_json(job.output.transcript, result)
        node_daemon.job_done(job.config, client)  # daemon.per_node: keep the node daemon's stats


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
        "options": {
            "language": asr.get("language"),
            "word_timestamps": asr["word_timestamps"],
            "batch_size": asr["batch_size"],
        },
    }


def transcribe(
    client: DaemonClient, meta: dict[str, Any], request: dict[str, Any], deadline_s: float
) -> dict[str, Any]:
    failure = upstream_failure(meta)
    if failure:
        return {"file": meta["file"], **failure}
    started = utc_now()
    # The ingest hash goes along: the daemon hashes the bytes it decodes and refuses others.
    result, failure = call_daemon(
        client, "transcribe", deadline_s, audio_path=meta["path"], sha256=meta.get("sha256"), **request
    )
    if failure:
        return {"file": meta["file"], **failure, "started_utc": started, "finished_utc": utc_now()}
    return {
        "file": meta["file"],
        "audio_path": meta["path"],
        "sha256": meta.get("sha256"),
        "status": "ok",
        "started_utc": started,
        "finished_utc": utc_now(),
        **result,
    }
