"""Cross-file batching in the daemon core (GPU-throughput issue): SER segments of several
in-flight requests share one length-sorted pass, each request still gets exactly its own
reply, a bad item fails alone, and the results equal the one-request-at-a-time ones
(accuracy preserved, seed 7.3).  Real SER architectures (random weights) through the real
loaders, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from voiceman.audio import SAMPLE_RATE
from voiceman.demo import encode
from voiceman_daemon.core import DaemonCore
from voiceman_daemon.registry import ModelRegistry, ModelSpec
from voiceman_daemon.scheduler import padded_size
from voiceman_daemon.ser_backend import load_ser_categorical, load_ser_dimensional

SEGMENTS = [
    [{"start": 0.0, "end": 1.2}, {"start": 1.2, "end": 2.0}],
    [{"start": 0.1, "end": 0.7}, {"start": 0.7, "end": 2.2}, {"start": 2.2, "end": 2.25}],  # last: too short
    [{"start": 0.0, "end": 2.4}],
]


@pytest.fixture(scope="module")
def ser_models(tmp_path_factory):
    from ser_fixtures import build_dimensional_model, build_speechbrain_iemocap_model

    root = tmp_path_factory.mktemp("ser")
    return build_dimensional_model(root / "dim"), build_speechbrain_iemocap_model(root / "cat")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(3):
        t = np.arange(int(2.5 * SAMPLE_RATE)) / SAMPLE_RATE
        audio = (0.3 * np.sin(2 * np.pi * (140 + 40 * i) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
        paths.append(encode(audio, root / f"clip-{i}.wav", "wav"))
    return paths


def _core(ser_models, **batching) -> DaemonCore:
    dim, cat = ser_models
    registry = ModelRegistry({"ser_dimensional": load_ser_dimensional, "ser_categorical": load_ser_categorical})
    specs = {
        "ser_dimensional": ModelSpec.from_dict("ser_dimensional", {"id": str(dim), "device": "cpu"}),
        "ser_categorical": ModelSpec.from_dict("ser_categorical", {"id": str(cat), "device": "cpu"}),
    }
    return DaemonCore(registry, specs, **batching)


def _request(path, segments):
    return {"audio_path": str(path), "segments": segments, "options": {"batch_size": 2}}


def test_ser_requests_of_several_files_share_a_batch_and_equal_sequential_results(ser_models, clips, tmp_path):
    batched = _core(ser_models, batch_wait_s=1.0, batch_max_items=64)
    # Submitted before the inference thread starts: all three are prepared and queued, so
    # the first one gathers the other two (plus a request whose file does not decode).
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00not audio")
    futures = [batched.submit("ser", _request(p, s)) for p, s in zip(clips, SEGMENTS)]
    bad = batched.submit("ser", _request(broken, SEGMENTS[0]))
    try:
        batched.start()
        together = [f.result(timeout=300) for f in futures]
        bad_outcome = bad.result(timeout=60)
        stats = batched.stats()["stages"]["ser"]
    finally:
        batched.close()

    alone_core = _core(ser_models, batch_max_items=1).start()
    try:
        alone = [alone_core.submit("ser", _request(p, s)).result(timeout=300) for p, s in zip(clips, SEGMENTS)]
        alone_stats = alone_core.stats()["stages"]["ser"]
    finally:
        alone_core.close()

    assert not bad_outcome.ok and "broken.wav" in bad_outcome.content["reason"]  # fails alone
    assert all(o.ok for o in together + alone)
    assert {o.content["timings"]["batched_requests"] for o in together} == {3}
    assert stats["batches"] == 1 and stats["requests_per_batch"] == 3.0
    assert alone_stats["batches"] == 3 and alone_stats["requests_per_batch"] == 1.0
    # No governor here: the stage still says where its models ran (their custody's device).
    assert stats["last_device"] == alone_stats["last_device"] == "cpu" and stats["last_planned_device"] is None
    lengths = [int((s["end"] - s["start"]) * SAMPLE_RATE) for segs in SEGMENTS for s in segs]
    assert stats["padding_fraction"] == pytest.approx(1 - sum(lengths) / padded_size(lengths, 2), abs=1e-3)
    for mine, ref, segments in zip(together, alone, SEGMENTS):
        got, want = mine.content["segments"], ref.content["segments"]
        assert len(got) == len(want) == len(segments)  # exactly its own segments, in its order
        for g, w in zip(got, want):
            if w["dimensional"] is None:  # the too-short segment: its own error, both ways
                assert g["dimensional"] is None and g["errors"] and w["errors"]
                continue
            for key, value in w["dimensional"].items():
                assert g["dimensional"][key] == pytest.approx(value, abs=1e-3)
            for label, p in w["categorical"]["probabilities"].items():
                assert g["categorical"]["probabilities"][label] == pytest.approx(p, abs=1e-3)
    # the results really come from the audio: different files, different values
    firsts = [o.content["segments"][0]["dimensional"]["arousal"] for o in together]
    assert len(set(firsts)) == 3


def test_padding_of_length_sorted_batches():
    assert padded_size([10, 1, 5, 5], 2) == 10 * 2 + 5 * 2
    assert padded_size([3, 3, 3], 8) == 9
