"""Cross-file ASR batching in the daemon core (GPU-throughput issue): the speech chunks of
several in-flight transcriptions share the Whisper passes, and every recording's transcript
-- text, segment times, word times -- is exactly the one it gets when transcribed alone
(accuracy preserved, seed 7.3).  Real tiny.en weights (CTranslate2), real espeak speech,
the real core; chunks of 5 s and batches of 4 so batches cut across recordings and a
recording's chunks span batches (the per-recording word-time state)."""

from __future__ import annotations

import numpy as np
import pytest

from voiceman.audio import SAMPLE_RATE
from voiceman.demo import encode, speak
from voiceman_daemon.asr import load_asr
from voiceman_daemon.asr_batching import owner_runs
from voiceman_daemon.core import DaemonCore
from voiceman_daemon.registry import ModelRegistry, ModelSpec

TEXTS = [
    "Please meet me at the harbour tomorrow morning. Bring the money. Come alone and tell nobody about the boat.",
    "I know where you live.",
    "The meeting is on Friday at the old train station. Wear a red coat so that I can see you.",
]
OPTIONS = {"batch_size": 4, "word_timestamps": True}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr-clips")
    pause = np.zeros(int(0.8 * SAMPLE_RATE), dtype=np.float32)
    paths = []
    for i, text in enumerate(TEXTS):
        sentences = [speak(s.strip() + ".") for s in text.split(".") if s.strip()]
        audio = np.concatenate([pause] + [x for s in sentences for x in (s, pause)])
        paths.append(encode(audio, root / f"rec-{i}.wav", "wav"))
    silent = encode(np.zeros(SAMPLE_RATE * 2, dtype=np.float32), root / "silent.wav", "wav")
    return paths, silent


def _core(tiny_model, **batching) -> DaemonCore:
    registry = ModelRegistry({"asr": load_asr})
    spec = ModelSpec.from_dict(
        "asr", {"id": str(tiny_model), "device": "cpu", "backend": "ctranslate2", "chunk_size": 5, "language": "en"}
    )
    return DaemonCore(registry, {"asr": spec}, **batching)


def _transcript(outcome) -> dict:
    return {k: outcome.content[k] for k in ("segments", "language", "vad_chunks", "word_timestamps")}


def test_transcriptions_of_several_files_share_batches_and_equal_one_at_a_time(tiny_model, recordings, tmp_path):
    paths, silent = recordings
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00not audio")
    batched = _core(tiny_model, batch_wait_s=1.0, batch_max_items=64)
    # Submitted before the inference thread starts: all are prepared and queued, so the
    # first one gathers the others (a file that does not decode fails alone, in prepare).
    futures = [batched.submit("transcribe", {"audio_path": str(p), "options": OPTIONS}) for p in paths + [silent]]
    bad = batched.submit("transcribe", {"audio_path": str(broken), "options": OPTIONS})
    try:
        batched.start()
        together = [f.result(timeout=600) for f in futures]
        bad_outcome = bad.result(timeout=60)
        stats = batched.stats()["stages"]["asr"]
    finally:
        batched.close()

    alone_core = _core(tiny_model, batch_max_items=1).start()
    try:
        alone = [
            alone_core.submit("transcribe", {"audio_path": str(p), "options": OPTIONS}).result(timeout=600)
            for p in paths + [silent]
        ]
        alone_stats = alone_core.stats()["stages"]["asr"]
    finally:
        alone_core.close()

    assert not bad_outcome.ok and "broken.wav" in bad_outcome.content["reason"]
    assert all(o.ok for o in together + alone), [o.content.get("reason") for o in together + alone]
    assert {o.content["timings"]["batched_requests"] for o in together} == {4}
    chunks = [o.content["vad_chunks"] for o in together]
    assert chunks[0] >= 2 and chunks[2] >= 2 and chunks[-1] == 0, chunks  # multi-chunk recordings; a silent one
    # One governed batch of 4 requests; its chunks in ceil(total / 4) shared passes.
    assert stats["batches"] == 1 and stats["requests_per_batch"] == 4.0
    assert stats["items"] == sum(chunks) and stats["forward_batches"] == -(-sum(chunks) // 4)
    assert stats["mean_batch_size"] > alone_stats["mean_batch_size"] and stats["mean_batch_size"] > 1
    # Whisper's 30 s windows around 5 s chunks: most of what it decodes is padding, both ways.
    assert 0.5 < stats["padding_fraction"] < 1 and stats["padding_fraction"] == alone_stats["padding_fraction"]
    assert alone_stats["batches"] == 4
    for mine, ref in zip(together, alone):
        assert _transcript(mine) == _transcript(ref)  # byte for byte: text, times, word times
    words = [" ".join(w["word"] for s in o.content["segments"] for w in s["words"]).lower() for o in together]
    assert "harbour" in words[0] or "harbor" in words[0]
    assert "live" in words[1] and "station" in words[2] and words[3] == ""


def test_runs_of_equal_owners():
    assert owner_runs([0, 0, 1, 2, 2, 2]) == [(0, 0, 2), (1, 2, 3), (2, 3, 6)]
    assert owner_runs([]) == []


@pytest.fixture(scope="module")
def ser_model(tmp_path_factory):
    from ser_fixtures import build_dimensional_model

    return build_dimensional_model(tmp_path_factory.mktemp("ser") / "dim")


def _timed_handlers(windows: list):
    """The real handlers, each run recorded as (request type, lane thread, start, end).  SER
    first waits (up to 5 s) for a transcription to be running: with lanes of their own the
    two then overlap for sure; on one thread they cannot, whatever the timing."""
    import threading
    import time
    from dataclasses import replace

    from voiceman_daemon.handlers import build_handlers

    asr_running = threading.Event()

    def timed(kind, run):
        def wrapper(models, payloads, content):
            if kind == "transcribe":
                asr_running.set()
            else:
                asr_running.wait(5)
            started = time.monotonic()
            try:
                return run(models, payloads, content)
            finally:
                windows.append((kind, threading.current_thread().name, started, time.monotonic()))

        return wrapper

    return {kind: replace(h, run=timed(kind, h.run)) for kind, h in build_handlers().items()}


@pytest.mark.parametrize("lanes", ["per_stage", "single"])
def test_asr_and_ser_lanes_overlap_only_when_per_stage(tiny_model, ser_model, recordings, lanes):
    from voiceman_daemon.ser_backend import load_ser_dimensional

    paths, _ = recordings
    windows: list = []
    registry = ModelRegistry({"asr": load_asr, "ser_dimensional": load_ser_dimensional})
    specs = {
        "asr": ModelSpec.from_dict("asr", {"id": str(tiny_model), "device": "cpu", "language": "en"}),
        "ser_dimensional": ModelSpec.from_dict("ser_dimensional", {"id": str(ser_model), "device": "cpu"}),
    }
    core = DaemonCore(
        registry, specs, preload=["asr", "ser_dimensional"], lanes=lanes, handlers=_timed_handlers(windows)
    )
    segments = [{"start": 0.5 + i, "end": 1.5 + i} for i in range(6)]
    core.start()
    try:
        assert core.wait_ready(300) == "ready"
        asr = core.submit("transcribe", {"audio_path": str(paths[0]), "options": {}})
        ser = core.submit("ser", {"audio_path": str(paths[2]), "segments": segments, "options": {}})
        outcomes = [asr.result(timeout=300), ser.result(timeout=300)]
        stats = core.stats()
    finally:
        core.close()
    assert all(o.ok for o in outcomes), [o.content.get("reason") for o in outcomes]
    assert len(outcomes[1].content["segments"]) == 6 and outcomes[1].content["segments"][0]["dimensional"]
    (k1, t1, a1, b1), (k2, t2, a2, b2) = sorted(windows, key=lambda w: w[2])
    overlap = min(b1, b2) - max(a1, a2)
    if lanes == "per_stage":
        assert {t1, t2} == {"inference-asr", "inference-ser"} and set(stats["lanes"]) == {"asr", "ser"}
        assert overlap > 0, windows  # both ran at once
    else:
        assert t1 == t2 == "inference-all" and set(stats["lanes"]) == {"all"}
        assert overlap <= 0, windows  # one after the other


def test_speech_chunks_are_found_on_the_io_pool_as_the_model_would(tiny_model, recordings):
    """N4: the VAD runs while the request is prepared (I/O pool), with the model's settings."""
    from voiceman.audio import decode
    from voiceman_daemon.asr import speech_chunker
    from voiceman_daemon.handlers import build_handlers

    paths, silent = recordings
    spec = ModelSpec.from_dict("asr", {"id": str(tiny_model), "device": "cpu", "chunk_size": 5})
    model = load_asr(spec)
    payload = build_handlers()["transcribe"].prepare({"audio_path": str(paths[0])}, {"asr": spec})
    assert payload["chunks"] == model.chunks(decode(paths[0])[0]) and len(payload["chunks"]) >= 2
    assert build_handlers()["transcribe"].prepare({"audio_path": str(silent)}, {"asr": spec})["chunks"] == []
    pyannote = ModelSpec.from_dict("asr", {"id": str(tiny_model), "vad_method": "pyannote"})
    assert speech_chunker(pyannote) is None  # runs where the model does
