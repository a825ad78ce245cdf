"""Same file + same settings -> the same transcript, word times and SER values, byte for byte,
every time (forensic-validity issue, item 1).  Decoding is at temperature 0 only (beam search,
no sampling fallback); the settings that change the output are in the model's custody."""

from __future__ import annotations

import json

import msgpack

from conftest import daemon_overrides, running_daemon

REPEATS = 5


def _bytes(reply: dict, keys: tuple[str, ...]) -> bytes:
    return msgpack.packb({k: reply[k] for k in keys}, use_bin_type=True)


def test_same_file_five_times_gives_identical_bytes(runtime_dir, tiny_model, speech_case, tmp_path):
    from ser_fixtures import build_dimensional_model, build_speechbrain_iemocap_model

    overrides = daemon_overrides(tiny_model)
    overrides["models"].update(
        {
            "ser_dimensional": {"id": str(build_dimensional_model(tmp_path / "dim"))},
            "ser_categorical": {"id": str(build_speechbrain_iemocap_model(tmp_path / "cat"))},
        }
    )
    with running_daemon(runtime_dir, overrides) as (_, client):
        clip = str(speech_case / "call-02.mp3")
        transcripts, emotions = set(), set()
        for _ in range(REPEATS):
            t = client.call("transcribe", deadline_s=120, audio_path=clip, options={"language": "en"})
            transcripts.add(_bytes(t, ("segments", "language")))
            segments = [{"start": s["start"], "end": s["end"]} for s in t["segments"]]
            e = client.call("ser", deadline_s=120, audio_path=clip, segments=segments)
            emotions.add(_bytes(e, ("segments",)))
        assert len(transcripts) == 1 and len(emotions) == 1
        assert "police" in json.dumps(t["segments"]).lower()  # a real transcript, not an empty one
        decoding = t["model"]["decoding"]
        assert decoding["temperature"] == 0.0 and decoding["temperature_fallback"] is False
        for setting in ("beam_size", "compute_type", "chunk_size_s", "vad"):
            assert setting in decoding
        assert {"method", "onset", "offset"} <= set(decoding["vad"])
