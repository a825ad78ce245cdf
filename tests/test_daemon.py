"""The daemon with the real tiny.en Whisper model: loaded once, reloaded only when a request
names another revision (S3), unloaded only on request (N1), one bad file never hurts the
others (U4), and a killed daemon is reported clearly by the client."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from conftest import wait_for
from voiceman.audio import decode
from voiceman.daemonlink.client import DaemonLost, RequestFailed
from voiceman.demo import encode


def _words(result) -> str:
    return " ".join(s["text"] for s in result["segments"]).lower()


def test_transcribes_real_speech_with_word_times_and_one_load(daemon_process, speech_case, tiny_model):
    proc, client = daemon_process
    results = {}
    for clip in sorted(speech_case.iterdir()):
        results[clip.name] = client.call("transcribe", deadline_s=120, audio_path=str(clip), options={"language": "en"})
    assert "tomorrow" in _words(results["call-01.wav"]) and "money" in _words(results["call-01.wav"])
    assert "police" in _words(results["call-02.mp3"])
    assert "friday" in _words(results["call-03.m4a"]) and "station" in _words(results["call-03.m4a"])
    for result in results.values():
        words = [w for s in result["segments"] for w in s["words"]]
        assert words, "word timestamps expected when no alignment model is configured"
        assert all(w["start"] <= w["end"] for w in words)
        starts = [w["start"] for w in words]
        assert starts == sorted(starts)
        assert result["model"]["sha256"] and result["model"]["path"] == str(tiny_model)
    stats = client.stats()
    assert stats["models"]["asr"]["loads"] == 1
    assert stats["models"]["asr"]["requests"] == 3
    assert stats["requests"]["transcribe"] == {"accepted": 3, "ok": 3, "failed": 0}
    # The word-timestamp path decodes one VAD chunk at a time: stats must not claim batching.
    assert stats["stages"]["asr"]["mean_batch_size"] == 1.0


def test_bad_file_gets_its_own_error_and_daemon_keeps_serving(daemon_process, speech_case, tmp_path):
    proc, client = daemon_process
    broken = tmp_path / "broken.m4a"
    broken.write_bytes(b"\x00\x00\x00\x18ftypM4A not really")
    with pytest.raises(RequestFailed) as err:
        client.call("transcribe", deadline_s=60, audio_path=str(broken))
    assert err.value.scope == "request" and "broken.m4a" in err.value.reason
    ok = client.call("transcribe", deadline_s=60, audio_path=str(speech_case / "call-02.mp3"))
    assert "police" in _words(ok)


def test_other_revision_reloads_once_and_unload_is_explicit(daemon_process, speech_case, tiny_model):
    proc, client = daemon_process
    clip = str(speech_case / "call-01.wav")
    other = {"id": str(tiny_model), "revision": "pinned-for-case-17"}
    client.call("transcribe", deadline_s=120, audio_path=clip, models={"asr": other})
    client.call("transcribe", deadline_s=120, audio_path=clip, models={"asr": other})
    asr = client.stats()["models"]["asr"]
    assert asr["loads"] == 2 and asr["unloads"] == 1  # one reload, not one per request
    assert asr["custody"]["revision"] == "pinned-for-case-17"
    # every model leaves: ASR and the default diarization encoder (models.diarization)
    assert sorted(client.call("unload", deadline_s=30)["unloaded"]) == ["asr", "diarization"]
    assert client.stats()["models"]["asr"]["loaded"] is False
    client.call("transcribe", deadline_s=120, audio_path=clip, models={"asr": other})
    assert client.stats()["models"]["asr"]["loads"] == 3


def test_killed_daemon_is_reported_clearly(daemon_process, speech_case, tmp_path):
    proc, client = daemon_process
    # ~90 s of speech so the request is still running when the daemon is killed.
    parts = [decode(p)[0] for p in sorted(speech_case.iterdir())] * 6
    long_clip = encode(np.concatenate(parts), tmp_path / "long.wav", "wav")
    outcome = {}

    def request():
        started = time.monotonic()
        try:
            client.call("transcribe", deadline_s=600, audio_path=str(long_clip))
            outcome["result"] = "finished"
        except Exception as exc:  # recorded for the assertions below
            outcome["error"] = exc
        outcome["after_s"] = time.monotonic() - started

    thread = threading.Thread(target=request)
    thread.start()
    from voiceman.daemonlink.client import DaemonClient

    probe = DaemonClient(client.endpoint, connect_timeout_s=5)
    wait_for(lambda: probe.stats()["in_flight"] > 0, 30, "the request to be in flight")
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive(), "client blocked on a dead daemon"
    assert isinstance(outcome.get("error"), DaemonLost), outcome
    message = str(outcome["error"])
    assert client.endpoint in message and "stopped answering" in message


def test_ser_request_uses_both_resident_models(runtime_dir, tiny_model, speech_case, tmp_path):
    """SER models of the real architectures (random weights) served by a real daemon process:
    loaded once at start, per-segment results, too-short segments get their own error."""
    from conftest import daemon_overrides, running_daemon
    from ser_fixtures import build_dimensional_model, build_speechbrain_iemocap_model

    dim = build_dimensional_model(tmp_path / "dim")
    cat = build_speechbrain_iemocap_model(tmp_path / "cat")
    overrides = daemon_overrides(tiny_model)
    overrides["models"].update({"ser_dimensional": {"id": str(dim)}, "ser_categorical": {"id": str(cat)}})
    with running_daemon(runtime_dir, overrides) as (_, client):
        segments = [{"start": 0.5, "end": 2.0}, {"start": 2.0, "end": 4.0}, {"start": 4.0, "end": 4.05}]
        reply = client.call("ser", deadline_s=120, audio_path=str(speech_case / "call-01.wav"), segments=segments)
        first, second, short = reply["segments"]
        assert set(first["dimensional"]) == {"arousal", "dominance", "valence"}
        assert set(first["categorical"]["probabilities"]) == {"neu", "ang", "hap", "sad"}
        assert abs(sum(first["categorical"]["probabilities"].values()) - 1) < 1e-4
        assert first["dimensional"] != second["dimensional"]  # really computed from the audio
        assert short["dimensional"] is None and short["errors"]
        stats = client.stats()["models"]
        assert stats["ser_dimensional"]["loads"] == 1 and stats["ser_categorical"]["loads"] == 1
        assert {m["kind"] for m in reply["models"]} == {"ser_dimensional", "ser_categorical"}
        assert all(m["sha256"] and m["device"] == "cpu" for m in reply["models"])
