"""The forensic-analysis stages behind the rule scripts: SER (via the daemon), voice stress
features and crime-language patterns (CPU, in the rule job), and the per-file report.

Every stage passes an upstream failure on unchanged (see stages.upstream_failure), and none
invents a value: a model that is not there gives "not analysed: <why>", per segment.
"""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import voiceman

from .audio import SAMPLE_RATE, AudioDecodeError, decode_file
from .daemonlink.client import DaemonClient, RequestFailed
from .config import model_request
from .hashing import config_sha256, sha256_file
from .stages import failed, upstream_failure, utc_now

SER_KINDS = ("ser_dimensional", "ser_categorical")


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


def emotion(client: DaemonClient, transcript: dict[str, Any], config: dict[str, Any],
            deadline_s: float) -> dict[str, Any]:
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
    try:
        reply = client.call("ser", deadline_s=deadline_s, audio_path=transcript["audio_path"],
                            sha256=transcript.get("sha256"),  # the ingest hash, carried by the transcript
                            segments=[{"start": s["start"], "end": s["end"]} for s in segments],
                            models=models, options={"batch_size": batch})
    except RequestFailed as exc:
        if exc.scope != "request":
            raise
        return {"file": transcript["file"], **failed("ser", exc.reason)}
    devices = {m["kind"]: m.get("device") for m in reply["models"]}
    out = []
    for seg in reply["segments"]:
        if seg["dimensional"] is None and seg["categorical"] is None:
            out.append(_not_analysed("not analysed: " + "; ".join(seg["errors"] or ["no result"])))
            continue
        out.append({"status": "analysed", "reason": "; ".join(seg["errors"] + missing) or None,
                    "device": devices.get("ser_dimensional") or devices.get("ser_categorical"),
                    "dimensional": seg["dimensional"], "categorical": seg["categorical"]})
    return {**base, "finished_utc": utc_now(), "models": reply["models"], "segments": out,
            "timings": reply.get("timings")}


def _not_analysed(reason: str) -> dict[str, Any]:
    return {"status": "not_analysed", "reason": reason, "device": None, "dimensional": None, "categorical": None}


def voice(transcript: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Praat voice-stress features per segment, the speaker baselines, and z-scores."""
    from .voice import VoiceFeatureConfig, measure_segments, speaker_baselines, zscores

    failure = upstream_failure(transcript)
    if failure:
        return {"file": transcript["file"], **failure}
    vcfg = VoiceFeatureConfig.from_dict(config.get("voice"))
    # The bytes measured must be the bytes ingested (and transcribed): decode_file hashes exactly
    # what it decodes, so a file swapped after ingest fails here even if it is restored later.
    try:
        audio, _, decoded_sha256 = decode_file(transcript["audio_path"])
    except AudioDecodeError as exc:
        return {"file": transcript["file"], **failed("voice", str(exc))}
    ingested = transcript.get("sha256")
    if ingested and decoded_sha256 != ingested:
        return {"file": transcript["file"], "decoded_sha256": decoded_sha256,
                **failed("voice", f"{transcript['file']}: the bytes decoded for voice features differ from the "
                                  f"ingested evidence (ingest sha256 {ingested}, decoded now {decoded_sha256})")}
    segments = transcript["segments"]
    features = measure_segments(audio, SAMPLE_RATE, segments, vcfg)
    baselines = speaker_baselines(segments, features)
    z = zscores(features, segments, baselines)
    return {"file": transcript["file"], "status": "ok", "decoded_sha256": decoded_sha256, "config": vcfg.to_dict(),
            "segments": [{**f.to_dict(), "z": zi} for f, zi in zip(features, z)],
            "speakers": [b.to_dict() for b in baselines.values()]}


def patterns(transcript: dict[str, Any], language: str = "auto",
             database: str | Path | None = None) -> dict[str, Any]:
    """Crime-language hits per segment (offsets into the segment's text), scanned with the
    database in ``database`` (the folder the rule declares as input; None = config/patterns)."""
    from .patterns import load_database

    failure = upstream_failure(transcript)
    if failure:
        return {"file": transcript["file"], **failure}
    from .patterns.language import model_info

    db = load_database(database)
    # "auto": the language is chosen per segment (mixed Korean/English calls), not per file.
    scanned = [db.scan_segment(s["text"], lang=language) for s in transcript["segments"]]
    return {"file": transcript["file"], "status": "ok", "database": db.to_dict(), "language": language,
            "language_id": model_info() if language == "auto" else None,
            "segment_languages": [record for _, record in scanned],
            "segments": [[h.to_dict() for h in hits] for hits, _ in scanned]}


def _model_entry(custody: dict[str, Any]) -> dict[str, Any]:
    """A model's custody record in the report's shape (role, id, revision/path, sha256)."""
    entry = {"role": custody.get("kind"), **{k: v for k, v in custody.items() if k != "kind"}}
    return {k: v for k, v in entry.items() if v is not None}


def build_report(meta: dict, transcript: dict, ser: dict, voice_features: dict, hits: dict,
                 config: dict[str, Any]) -> dict[str, Any]:
    """The per-file forensic report, schema-validated, with its chain of custody.  The input
    is hashed again here: equal to the ingest hash proves the evidence was not modified.

    Custody also carries the evidence ledger's first-seen hash and the hash of the bytes each
    decoding stage really decoded (the daemon for transcribe and SER, the voice stage);
    ``input_unchanged`` is true only when every one of them equals the ingest hash and the hash
    taken now, so a file swapped after ingest and restored before the report is not "unchanged".
    """
    from .forensic import assemble_file_report, load_forensic_config

    after = sha256_file(meta["path"]) if Path(meta["path"]).is_file() else None
    before = meta.get("sha256")
    decoded = {stage: rec.get("decoded_sha256") for stage, rec in
               (("transcribe", transcript), ("ser", ser), ("voice", voice_features)) if rec.get("decoded_sha256")}
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
        failure = failed("report", f"{meta['file']}: bytes differ from the ingested evidence (ingest sha256 {before}; "
                                   + ", ".join(f"{k} {v}" for k, v in differing.items()) + ")")
    if failure:
        report = assemble_file_report(file=meta["file"], custody=custody, status="failed",
                                      reason=f"{failure['failed_stage']}: {failure['reason']}", rules=rules)
    else:
        report = assemble_file_report(
            file=meta["file"], custody=custody, segments=transcript["segments"], emotions=ser["segments"],
            voices=voice_features["segments"], patterns=hits["segments"], duration_s=meta["duration_s"],
            language=transcript.get("language"), rules=rules,
            segment_languages=hits.get("segment_languages"))  # the pattern language of each segment
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
            notes.append("speakers not diarised: no diarization model configured (models.diarization); "
                         "all segments 'unknown'")
        elif diarization.get("status") != "ok":
            notes.append(f"speakers not diarised: {diarization.get('method')} diarization failed "
                         f"({diarization.get('reason')}); all segments 'unknown'")
    return notes
