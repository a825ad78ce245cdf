"""Same file + same settings -> the same transcript, word times and SER values, byte for byte,
every time (forensic-validity issue, item 1).  Decoding is at temperature 0 only (beam search,
no sampling fallback); the settings that change the output are in the model's custody."""
from __future__ import annotations

import json
import subprocess
import sys

import msgpack

from conftest import REPO, daemon_overrides
from voiceman.client import DaemonClient
from voiceman.daemonctl import wait_until_answering, wait_until_ready

REPEATS = 5


def _bytes(reply: dict, keys: tuple[str, ...]) -> bytes:
    return msgpack.packb({k: reply[k] for k in keys}, use_bin_type=True)


def test_same_file_five_times_gives_identical_bytes(runtime_dir, tiny_model, speech_case, tmp_path):
    from ser_fixtures import build_dimensional_model, build_speechbrain_iemocap_model

    overrides = daemon_overrides(tiny_model)
    overrides["models"].update({"ser_dimensional": {"id": str(build_dimensional_model(tmp_path / "dim"))},
                                "ser_categorical": {"id": str(build_speechbrain_iemocap_model(tmp_path / "cat"))}})
    log = runtime_dir / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "voiceman_daemon", "--overrides", json.dumps(overrides)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        client = DaemonClient(f"ipc://{runtime_dir / 'daemon.sock'}", connect_timeout_s=5, heartbeat_timeout_s=10)
        wait_until_answering(client, proc, 60, log)
        assert wait_until_ready(client, 180)["state"] == "ready", log.read_text()[-3000:]
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
    finally:
        proc.terminate()
        proc.wait(30)
