"""Rule ``voice``: voice-stress features per segment (Praat definitions), the speaker
baselines and z-scores, measured on the CPU in the rule job (results/voice/<file>.json)."""

from __future__ import annotations

from typing import Any

from .. import atomic
from ..audio import SAMPLE_RATE, AudioDecodeError, decode_file
from .failures import failed, upstream_failure
from .jobkit import RuleJob, job_logging


def run(job: RuleJob) -> None:
    with job_logging(job):
        transcript = atomic.read_json(job.input.transcript)
        atomic.write_json(job.output.features, voice(transcript, job.settings))


def voice(transcript: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Praat voice-stress features per segment, the speaker baselines, and z-scores."""
    from ..voice import VoiceFeatureConfig, measure_segments, speaker_baselines, zscores

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
        return {
            "file": transcript["file"],
            "decoded_sha256": decoded_sha256,
            **failed(
                "voice",
                f"{transcript['file']}: the bytes decoded for voice features differ from the "
                f"ingested evidence (ingest sha256 {ingested}, decoded now {decoded_sha256})",
            ),
        }
    segments = transcript["segments"]
    features = measure_segments(audio, SAMPLE_RATE, segments, vcfg)
    baselines = speaker_baselines(segments, features)
    z = zscores(features, segments, baselines)
    return {
        "file": transcript["file"],
        "status": "ok",
        "decoded_sha256": decoded_sha256,
        "config": vcfg.to_dict(),
        "segments": [{**f.to_dict(), "z": zi} for f, zi in zip(features, z)],
        "speakers": [b.to_dict() for b in baselines.values()],
    }
