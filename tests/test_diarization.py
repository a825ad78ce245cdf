"""Diarization: the GE2E encoder shipped in the Resemblyzer wheel, run by the real daemon inside
``transcribe`` after tiny.en, on dialogues of clearly different synthesised voices with known
turn times; the clustering on synthetic embeddings; segment splitting; the pyannote option's
errors; and the speakers reaching voice baselines, speaker scores, custody and notes."""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from voiceman.audio import SAMPLE_RATE, decode
from voiceman.demo import encode
from voiceman_daemon.diarize import diarize_transcript, load_diarization
from voiceman_daemon.diarize_clustering import cluster_embeddings, silhouette
from voiceman_daemon.diarize_labels import label_segments, speech_regions
from voiceman_daemon.diarize_settings import DiarizationSettings
from voiceman_daemon.registry import ModelSpec

pytestmark = pytest.mark.timeout(900)

# Two voices that differ clearly (espeak-ng voice variant, pitch and speed).
VOICE_A = ("en-us", 40, 150)
VOICE_B = ("en+f3", 75, 170)
LINES = [
    "Did you get the package I sent to your office yesterday afternoon?",
    "Yes, it arrived this morning. The box was damaged on one side.",
    "That is strange. I packed it carefully with plenty of paper.",
    "Maybe the courier dropped it. Everything inside looks fine though.",
    "Good. Please check the documents and sign the second page.",
    "I will do it tonight and send them back on Monday.",
    "Thank you. Call me if anything is missing from the list.",
    "Sure. Have a nice weekend and say hello to your family.",
]


def _say(text: str, voice: str, pitch: int, speed: int) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (scripts/setup.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "line.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        audio, _ = decode(wav)
    voiced = np.nonzero(np.abs(audio) > 1e-3)[0]  # espeak's own leading/trailing silence off
    return audio[voiced[0] : voiced[-1] + 1]


def _conversation(path: Path, voices, gap_s: float) -> list[dict]:
    """Turns A B A B ... (3-6 s each) with ``gap_s`` between them; returns the true turns."""
    parts, turns, t = [np.zeros(int(0.3 * SAMPLE_RATE), np.float32)], [], 0.3
    for i, line in enumerate(LINES):
        name, voice = voices[i % len(voices)]
        audio = _say(line, *voice)
        turns.append({"speaker": name, "start": t, "end": t + len(audio) / SAMPLE_RATE})
        parts += [audio, np.zeros(int(gap_s * SAMPLE_RATE), np.float32)]
        t += len(audio) / SAMPLE_RATE + gap_s
    encode(np.concatenate(parts), path, "wav")
    return turns


def word_accuracy(segments: list[dict], turns: list[dict]) -> float:
    """Share of words whose speaker is right under the best mapping of labels to true speakers
    (a word's true speaker: the turn holding its midpoint, else the nearest turn)."""
    words = [w for s in segments for w in s["words"]]

    def truth(w):
        mid = (w["start"] + w["end"]) / 2
        return min(turns, key=lambda t: max(t["start"] - mid, mid - t["end"], 0.0))["speaker"]

    true = [truth(w) for w in words]
    said = [w["speaker"] for w in words]
    names = sorted({t["speaker"] for t in turns})
    labels = sorted({s for s in said if s is not None})
    best = 0
    for perm in itertools.permutations(names, min(len(names), len(labels))):
        mapping = dict(zip(labels, perm))
        best = max(best, sum(mapping.get(s) == t for s, t in zip(said, true)))
    return best / len(words)


@pytest.fixture(scope="module")
def dialogues(tmp_path_factory) -> dict[str, tuple[Path, list[dict]]]:
    root = tmp_path_factory.mktemp("dialogues")
    out = {}
    for name, voices, gap in (
        ("two-speakers.wav", [("A", VOICE_A), ("B", VOICE_B)], 0.05),
        ("one-speaker.wav", [("A", VOICE_A)], 0.3),
    ):
        out[name] = (root / name, _conversation(root / name, voices, gap))
    return out


# ---------------------------------------------------------------------------- the real daemon
def test_daemon_diarizes_a_two_speaker_call_and_a_single_speaker(daemon_process, dialogues, tiny_model, tmp_path):
    """A real daemon process (tiny.en + the default resemblyzer diarization) transcribes the
    dialogue: >= 80 % of the words go to the right speaker, two speakers are counted, a
    single speaker is counted once; then the report is per speaker."""
    from conftest import daemon_overrides
    from voiceman import pipeline
    from voiceman.config import load_config

    proc, client = daemon_process
    config = load_config(None, daemon_overrides(tiny_model))
    request = pipeline.transcribe.asr_request(config)
    assert request["models"]["diarization"] == {"id": "resemblyzer", "revision": None}

    path, turns = dialogues["two-speakers.wav"]
    meta = pipeline.ingest.ingest(path)
    transcript = pipeline.transcribe.transcribe(client, meta, request, deadline_s=600)
    block = transcript["diarization"]
    accuracy = word_accuracy(transcript["segments"], turns)
    print(
        f"two-speaker dialogue: {accuracy:.3f} of {sum(len(s['words']) for s in transcript['segments'])} "
        f"words attributed right; {block['speaker_count']} speakers; "
        f"{block['segments_in']} -> {block['segments_out']} segments"
    )
    assert block["status"] == "ok" and block["method"] == "resemblyzer"
    assert block["speaker_count"] == 2
    assert accuracy >= 0.80
    assert {s["speaker"] for s in transcript["segments"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert transcript["segments"][0]["speaker"] == "SPEAKER_00"  # labels in order of first appearance
    for seg in transcript["segments"]:  # a segment is one speaker's: split where the speaker changes
        assert {w["speaker"] for w in seg["words"]} <= {seg["speaker"]}
    model = block["model"]
    assert model["kind"] == "diarization" and model["package"]["version"] == "0.1.4"
    assert model["sha256"] == hashlib.sha256(Path(model["path"]).read_bytes()).hexdigest()

    # Same file again: the same speakers, word for word (nothing random).
    again = pipeline.transcribe.transcribe(client, meta, request, deadline_s=600)
    assert [(s["speaker"], s["text"]) for s in again["segments"]] == [
        (s["speaker"], s["text"]) for s in transcript["segments"]
    ]

    single_path, _ = dialogues["one-speaker.wav"]
    single = pipeline.transcribe.transcribe(client, pipeline.ingest.ingest(single_path), request, deadline_s=600)
    assert single["diarization"]["speaker_count"] == 1
    assert {s["speaker"] for s in single["segments"]} == {"SPEAKER_00"}

    stats = client.stats()["models"]["diarization"]
    assert stats["loads"] == 1 and stats["requests"] == 3

    # Downstream: voice baselines, z-scores and speaker scores per speaker; custody and notes.
    ser = pipeline.ser.emotion(client, transcript, config, deadline_s=60)  # no SER model configured
    features = pipeline.voice.voice(transcript, config)
    hits = pipeline.patterns.patterns(transcript)
    report = pipeline.report.build_report(meta, transcript, ser, features, hits, config)
    assert report["status"] == "done"
    assert {b["speaker"] for b in report["speaker_baselines"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert {s["speaker"] for s in report["speakers"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert report["file_score"]["speaker_count"] == 2
    roles = {m["role"]: m for m in report["custody"]["models"]}
    assert roles["diarization"]["sha256"] == model["sha256"] and roles["diarization"]["method"] == "resemblyzer"
    assert report["custody"]["diarization"]["speaker_count"] == 2
    assert report["custody"]["diarization"]["settings"]["window_s"] == 1.5
    assert not any("not diarised" in n for n in report["notes"])
    # z-scores against each speaker's own baseline: a speaker's mean z of F0 is 0 by construction
    by_speaker: dict[str, list[float]] = {}
    for seg in report["segments"]:
        z = (seg["voice"] or {}).get("z", {}).get("f0_mean_hz")
        if z is not None:
            by_speaker.setdefault(seg["speaker"], []).append(z)
    assert set(by_speaker) == {"SPEAKER_00", "SPEAKER_01"}
    assert all(abs(float(np.mean(v))) < 1e-6 for v in by_speaker.values())


# ---------------------------------------------------------------------------- clustering
def _speakers(rng, n_speakers: int, per_speaker: int, spread: float = 0.35, dim: int = 256):
    """Embeddings like GE2E's (non-negative, unit norm) around one random centre per speaker,
    interleaved in turns; returns (embeddings, true speaker per window)."""
    centres = np.abs(rng.standard_normal((n_speakers, dim)))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb, truth = [], []
    for _turn in range(4):
        for s in range(n_speakers):
            for _ in range(per_speaker // 4):
                v = np.abs(centres[s] + spread * rng.standard_normal(dim) / np.sqrt(dim))
                emb.append(v / np.linalg.norm(v))
                truth.append(s)
    return np.array(emb), np.array(truth)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("n_speakers", [1, 2, 3, 4])
def test_clustering_estimates_the_speaker_count_on_synthetic_embeddings(n_speakers):
    rng = np.random.default_rng(n_speakers)
    emb, truth = _speakers(rng, n_speakers, 16)
    labels, centroids = cluster_embeddings(emb, DiarizationSettings())
    assert len(centroids) == n_speakers and _same_partition(labels, truth)
    assert labels[0] == 0 and list(dict.fromkeys(labels.tolist())) == list(range(n_speakers))  # first appearance
    again, _ = cluster_embeddings(emb, DiarizationSettings())
    assert np.array_equal(labels, again)  # deterministic
    if n_speakers > 1:
        assert silhouette(emb, labels) > 0.3


def test_clustering_bounds_and_outliers():
    rng = np.random.default_rng(7)
    emb, truth = _speakers(rng, 3, 16)
    labels, _ = cluster_embeddings(emb, DiarizationSettings(max_speakers=2))
    assert len(set(labels.tolist())) == 2
    one, _ = _speakers(rng, 1, 16)
    labels, _ = cluster_embeddings(one, DiarizationSettings(min_speakers=2))
    assert len(set(labels.tolist())) == 2
    # One stray window (a cough) far from a single speaker's others is not a second speaker.
    stray = np.abs(rng.standard_normal((1, one.shape[1])))
    labels, _ = cluster_embeddings(np.vstack([one[:8], stray / np.linalg.norm(stray), one[8:]]), DiarizationSettings())
    assert set(labels.tolist()) == {0}
    assert cluster_embeddings(np.zeros((0, 256)), DiarizationSettings())[0].size == 0


# ---------------------------------------------------------------------------- labelling and splitting
def test_words_get_speakers_and_a_segment_splits_where_the_speaker_changes():
    words = [
        {"word": w, "start": s, "end": s + 0.4, "probability": 0.9}
        for w, s in (("Yes,", 0.0), ("fine.", 0.5), ("Who", 1.2), ("is", 1.7), ("this?", 2.2))
    ]
    segments = [
        {
            "start": 0.0,
            "end": 2.7,
            "text": "Yes, fine. Who is this?",
            "speaker": None,
            "words": words,
            "avg_logprob": -0.2,
        },
        {"start": 3.0, "end": 3.5, "text": "Me.", "speaker": None, "words": []},
    ]
    out = label_segments(segments, lambda start, end: 0 if end <= 1.0 else 1)
    assert [(s["speaker"], s["text"], s["start"], s["end"]) for s in out] == [
        ("SPEAKER_00", "Yes, fine.", 0.0, 0.9),
        ("SPEAKER_01", "Who is this?", 1.2, 2.7),
        ("SPEAKER_01", "Me.", 3.0, 3.5),
    ]
    assert [w["speaker"] for w in out[0]["words"]] == ["SPEAKER_00"] * 2
    assert [w["speaker"] for w in out[1]["words"]] == ["SPEAKER_01"] * 3
    assert segments[0]["words"][0].get("speaker") is None  # the input is not modified
    assert speech_regions(segments, 0.3) == [(0.0, 2.6), (3.0, 3.5)]


def test_a_failed_diarization_keeps_the_transcript_and_says_why():
    class Broken:
        settings = DiarizationSettings()

        def custody(self):
            return {"kind": "diarization", "id": "resemblyzer"}

        def diarize(self, audio, segments):
            raise RuntimeError("out of memory")

    segments = [{"start": 0.0, "end": 1.0, "text": "hi", "speaker": None, "words": []}]
    out, block = diarize_transcript(Broken(), np.zeros(SAMPLE_RATE, np.float32), segments)
    assert out == segments and block["status"] == "failed" and "out of memory" in block["reason"]
    from voiceman.pipeline.report import _notes

    assert any(
        "diarization failed (RuntimeError: out of memory)" in n
        for n in _notes({}, {"segments": segments, "diarization": block})
    )
    assert any("no diarization model configured" in n for n in _notes({}, {"segments": segments}))
    ok = {"status": "ok", "method": "resemblyzer"}
    labelled = [{**segments[0], "speaker": "SPEAKER_00"}]
    assert not any("diarised" in n for n in _notes({}, {"segments": labelled, "diarization": ok}))


# ---------------------------------------------------------------------------- the model itself
def test_encoder_loads_offline_from_the_wheel_frozen(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("diarization tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    model = load_diarization(ModelSpec("diarization", "resemblyzer", options=(("device", "cpu"),)))
    custody = model.custody()
    assert Path(custody["path"]).name == "pretrained.pt" and Path(custody["path"]).stat().st_size > 10_000_000
    assert custody["sha256"] == hashlib.sha256(Path(custody["path"]).read_bytes()).hexdigest()
    meta = importlib.metadata.metadata("resemblyzer")
    assert meta["Version"] == "0.1.4" and "License :: OSI Approved :: Apache Software License" in meta.get_all(
        "Classifier"
    )
    assert not model.encoder.training and not any(p.requires_grad for p in model.encoder.parameters())


def test_mel_spectrogram_equals_the_packages_librosa_one(dialogues, monkeypatch):
    """The torch mel the daemon computes (in blocks) is resemblyzer.audio.wav_to_mel_spectrogram's."""
    from resemblyzer import audio as rz_audio

    from voiceman_daemon import diarize_resemblyzer

    model = load_diarization(ModelSpec("diarization", "resemblyzer", options=(("device", "cpu"),)))
    monkeypatch.setattr(diarize_resemblyzer, "MEL_BLOCK_FRAMES", 777)  # several blocks, one ragged
    audio, _ = decode(dialogues["one-speaker.wav"][0])
    ours, theirs = model.mel_spectrogram(audio), rz_audio.wav_to_mel_spectrogram(audio)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-5 * float(theirs.max()))


def test_pyannote_needs_a_local_pipeline_directory(tmp_path):
    missing = tmp_path / "no-pipeline"
    with pytest.raises(FileNotFoundError, match="no pyannote pipeline directory at"):
        load_diarization(ModelSpec("diarization", str(missing), options=(("method", "pyannote"),)))
    missing.mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.yaml"):
        load_diarization(ModelSpec("diarization", str(missing), options=(("method", "pyannote"),)))
    with pytest.raises(ValueError, match="must be 'resemblyzer'"):
        load_diarization(ModelSpec("diarization", str(missing), options=(("method", "resemblyzer"),)))
    with pytest.raises(ValueError, match="min_speakers"):
        load_diarization(ModelSpec("diarization", "resemblyzer", options=(("max_speakers", 1), ("min_speakers", 2))))


def test_config_enables_resemblyzer_by_default_and_null_turns_it_off():
    from voiceman import pipeline
    from voiceman.config import ConfigError, load_config

    config = load_config()
    assert config["models"]["diarization"]["method"] == "resemblyzer"
    assert pipeline.transcribe.asr_request(config)["models"]["diarization"]["id"] == "resemblyzer"
    off = load_config(None, {"models": {"diarization": {"id": None}}})
    assert "diarization" not in pipeline.transcribe.asr_request(off)["models"]
    with pytest.raises(ConfigError, match="method"):
        load_config(None, {"models": {"diarization": {"method": "kmeans"}}})


def test_a_pyannote_config_without_its_directory_is_a_load_error_the_daemon_reports(tmp_path, tiny_model):
    from voiceman.config import load_config
    from voiceman_daemon.__main__ import build_core

    config = load_config(
        None,
        {
            "models": {
                "asr": {"id": str(tiny_model)},
                "diarization": {"method": "pyannote", "id": str(tmp_path / "nope")},
            },
            "daemon": {"case_roots": [str(tmp_path)]},
            "governor": {"sensor": "none"},
        },
    )
    core = build_core(config).start()
    try:
        assert core.wait_ready(60) == "degraded"
        errors = core.load_errors()
        assert set(errors) == {"diarization"} and "no pyannote pipeline directory" in errors["diarization"]
    finally:
        core.close()
