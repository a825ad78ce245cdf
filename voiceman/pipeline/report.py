"""Rule ``report``: the per-file forensic report -- cross-check, explained scores and the chain
of custody -- as schema-valid JSON and a self-contained HTML page (results/report/<file>.*)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import voiceman

from .. import atomic
from ..hashing import config_sha256, sha256_file
from ..timestamps import utc_now
from .failures import failed, upstream_failure
from .jobkit import RuleJob, job_logging


def run(job: RuleJob) -> None:
    from ..htmlreport import render_file_report

    with job_logging(job):
        parts = {
            name: atomic.read_json(job.input[name]) for name in ("meta", "transcript", "emotion", "features", "hits")
        }
        result = build_report(
            parts["meta"], parts["transcript"], parts["emotion"], parts["features"], parts["hits"], job.config
        )
        atomic.write_json(job.output.report, result)
        # Play controls link the evidence relative to the page; the codec says whether a browser can play it.
        atomic.write_text(
            job.output.html,
            render_file_report(result, page_dir=Path(job.output.html).parent, audio=parts["meta"].get("audio")),
        )


def _model_entry(custody: dict[str, Any]) -> dict[str, Any]:
    """A model's custody record in the report's shape (role, id, revision/path, sha256)."""
    entry = {"role": custody.get("kind"), **{k: v for k, v in custody.items() if k != "kind"}}
    return {k: v for k, v in entry.items() if v is not None}


def build_report(
    meta: dict, transcript: dict, ser: dict, voice_features: dict, hits: dict, config: dict[str, Any]
) -> dict[str, Any]:
    """The per-file forensic report, schema-validated, with its chain of custody.  The input
    is hashed again here: equal to the ingest hash proves the evidence was not modified.

    Custody also carries the evidence ledger's first-seen hash and the hash of the bytes each
    decoding stage really decoded (the daemon for transcribe and SER, the voice stage);
    ``input_unchanged`` is true only when every one of them equals the ingest hash and the hash
    taken now, so a file swapped after ingest and restored before the report is not "unchanged".
    """
    from ..forensic import assemble_file_report, load_forensic_config

    after = sha256_file(meta["path"]) if Path(meta["path"]).is_file() else None
    before = meta.get("sha256")
    decoded = {
        stage: rec.get("decoded_sha256")
        for stage, rec in (("transcribe", transcript), ("ser", ser), ("voice", voice_features))
        if rec.get("decoded_sha256")
    }
    diarization = transcript.get("diarization") or {}
    models = [transcript.get("model"), diarization.get("model")] + list(ser.get("models") or [])
    custody = {
        "input_path": meta["path"],
        "input_size_bytes": meta.get("size_bytes"),
        "input_sha256_first_seen": meta.get("input_sha256_first_seen"),
        "input_first_seen_utc": meta.get("input_first_seen_utc"),
        "input_sha256_before": before,
        "input_sha256_decoded": decoded or None,
        "input_sha256_after": after,
        "models": [_model_entry(m) for m in models if m],
        "pattern_database": {k: hits["database"][k] for k in ("version", "sha256")} if hits.get("database") else None,
        # who spoke when: method, settings, estimated speaker count (the model itself is in models[])
        "diarization": {k: v for k, v in diarization.items() if k != "model"} or None,
        "config_sha256": config_sha256(config),
        "software_version": voiceman.__version__,
        "host": socket.gethostname(),
        "started_utc": meta.get("started_utc"),
        "finished_utc": utc_now(),
    }
    custody = {k: v for k, v in custody.items() if v is not None}
    first_seen = meta.get("input_sha256_first_seen")
    seen = {"first seen": first_seen, "ingest": before, **decoded, "report": after}
    differing = {k: v for k, v in seen.items() if v is not None and v != before}
    rules = load_forensic_config(config.get("forensic_rules"))
    failure = upstream_failure(meta, transcript, ser, voice_features, hits)
    if failure is None and after != before:
        failure = failed("report", f"{meta['file']}: input changed during analysis ({before} -> {after})")
    if failure is None and differing:
        failure = failed(
            "report",
            f"{meta['file']}: bytes differ from the ingested evidence (ingest sha256 {before}; "
            + ", ".join(f"{k} {v}" for k, v in differing.items())
            + ")",
        )
    if failure:
        report = assemble_file_report(
            file=meta["file"],
            custody=custody,
            status="failed",
            reason=f"{failure['failed_stage']}: {failure['reason']}",
            rules=rules,
        )
    else:
        report = assemble_file_report(
            file=meta["file"],
            custody=custody,
            segments=transcript["segments"],
            emotions=ser["segments"],
            voices=voice_features["segments"],
            patterns=hits["segments"],
            duration_s=meta["duration_s"],
            language=transcript.get("language"),
            rules=rules,
            segment_languages=hits.get("segment_languages"),
        )  # the pattern language of each segment
        report["speaker_baselines"] = voice_features["speakers"]
        report["notes"] = _notes(ser, transcript)
    if differing and report["custody"].get("input_unchanged") is not None:
        report["custody"]["input_unchanged"] = False  # some stage saw other bytes than ingest hashed
    return report


def _notes(ser: dict, transcript: dict) -> list[str]:
    notes = [f"emotion {m}" for m in ser.get("missing_models", [])]
    diarization = transcript.get("diarization")
    if all(s.get("speaker") is None for s in transcript["segments"]):
        if not diarization:
            notes.append(
                "speakers not diarised: no diarization model configured (models.diarization); all segments 'unknown'"
            )
        elif diarization.get("status") != "ok":
            notes.append(
                f"speakers not diarised: {diarization.get('method')} diarization failed "
                f"({diarization.get('reason')}); all segments 'unknown'"
            )
    return notes
