"""CUDA-graph SER (O1): length buckets, padding into a bucket, the bucketed forward that the
graphs capture, and the eager fallback with its reasons.

On a CPU the graphs themselves cannot be captured, so the bucketed forward runs without
them (``graph_runner(..., capture=False)``): the very function a graph records, on the very
padded batches it replays, compared per segment with the eager path of the real loaders'
models (random weights, published layouts).  Where CUDA is present the last test captures
real graphs and compares them with eager too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pytest
import torch

import ser_fixtures as fx
from voiceman_daemon.registry import ModelRegistry, ModelSpec
from voiceman_daemon.ser import (
    CategoricalResult,
    DimensionalResult,
    load_categorical,
    load_dimensional,
    wav2vec2_encoding,
)
from voiceman_daemon.ser import cuda_graphs as cg
from voiceman_daemon.ser_backend import load_ser_dimensional

torch.set_num_threads(1)
SR = 16000
NO_CUDA = lambda: None  # noqa: E731
# Small buckets for the tiny models: 0.25 / 0.5 / 1 s; batch sizes 1, 2, 4.
SETTINGS = cg.GraphSettings.from_options("auto", [0.25, 0.5, 1.0], [1, 2, 4])
# Lengths across all buckets, a batch of 3 in one bucket (one dummy row), one too long (eager).
LENGTHS = (16000, 1700, 3900, 4000, 2500, 7000, 7999, 8000, 12000, 20000, 1650)


def segments(*lengths: int, seed: int = 11) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = [np.arange(n) / SR for n in lengths]
    return [
        (0.2 * np.sin(2 * np.pi * (120 + 37 * i) * x) + 0.05 * rng.standard_normal(x.size)).astype(np.float32)
        for i, x in enumerate(t)
    ]


def values(result) -> np.ndarray:
    if isinstance(result, DimensionalResult):
        return np.array([result.arousal, result.dominance, result.valence])
    assert isinstance(result, CategoricalResult), result
    return np.array(list(result.probabilities.values()))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ser_graph_models")


@pytest.fixture(scope="module")
def models(root):
    return {
        "dimensional": load_dimensional(str(fx.build_dimensional_model(root / "dim")), memory_probe=NO_CUDA),
        "speechbrain": load_categorical(str(fx.build_speechbrain_iemocap_model(root / "sb")), memory_probe=NO_CUDA),
        "hf_layer": load_categorical(str(fx.build_hf_audio_classifier(root / "hf")), memory_probe=NO_CUDA),
        "hf_group": load_categorical(
            str(fx.build_hf_audio_classifier(root / "hfg", feat_extract_norm="group")), memory_probe=NO_CUDA
        ),
    }


# ------------------------------------------------------------------ settings, buckets, padding


def test_settings_defaults_validation_and_yaml_off():
    default = cg.GraphSettings.from_options()
    assert default.mode == "auto" and default.buckets_s == (2.0, 4.0, 8.0, 16.0)
    assert default.batch_sizes == (1, 2, 4, 8)
    assert cg.GraphSettings.from_options(False).mode == "off"  # unquoted YAML `off`
    assert cg.GraphSettings.from_options("OFF").mode == "off"
    assert cg.GraphSettings.from_options("auto", (8, 2, 4, 2), (4, 1)).buckets_s == (2.0, 4.0, 8.0)
    for bad in ({"mode": "on"}, {"buckets_s": []}, {"buckets_s": [0, 2]}, {"batch_sizes": [0]}):
        with pytest.raises(ValueError):
            cg.GraphSettings.from_options(**bad)


def test_bucket_and_batch_size_choice():
    buckets = cg.bucket_samples([2, 0.5, 1], SR)
    assert buckets == (8000, 16000, 32000)
    assert cg.choose_bucket(1, buckets) == 8000
    assert cg.choose_bucket(8000, buckets) == 8000  # a segment exactly a bucket long fits it
    assert cg.choose_bucket(8001, buckets) == 16000
    assert cg.choose_bucket(32000, buckets) == 32000
    assert cg.choose_bucket(32001, buckets) is None  # longer than all: eager
    assert [cg.choose_batch_size(n, (1, 2, 4, 8)) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, None]


def test_plan_groups_by_bucket_splits_at_the_largest_batch_and_pads_rows():
    buckets, sizes = (100, 200), (1, 2, 4)
    lengths = [150, 90, 200, 201, 10, 120, 199, 180, 160, 100]
    planned, eager = cg.plan_batches(lengths, buckets, sizes)
    assert eager == [3]
    covered = sorted(i for b in planned for i in b.indices)
    assert covered == [i for i in range(len(lengths)) if i != 3]  # every other segment exactly once
    for batch in planned:
        assert all(lengths[i] <= batch.bucket for i in batch.indices)
        assert all(lengths[i] > 100 for i in batch.indices) or batch.bucket == 100  # smallest bucket that fits
        assert len(batch.indices) <= batch.batch_size <= 4 and batch.batch_size in sizes
    big = [b for b in planned if b.bucket == 200]
    assert [len(b.indices) for b in big] == [4, 2] and [b.batch_size for b in big] == [4, 2]
    small = [b for b in planned if b.bucket == 100]
    assert [len(b.indices) for b in small] == [3] and small[0].batch_size == 4 and small[0].padding_rows == 1


def test_pad_into_bucket_keeps_samples_and_true_lengths():
    a, b = torch.arange(1, 6, dtype=torch.float32), torch.tensor([7.0, 8.0])
    waves, lengths = cg.pad_into_bucket([a, b], bucket=8, batch_size=4)
    assert waves.shape == (4, 8) and waves.dtype == torch.float32 and lengths.dtype == torch.long
    assert lengths.tolist() == [5, 2, 8, 8]  # dummy rows: full-length silence, so they have frames
    assert waves[0, :5].tolist() == a.tolist() and waves[0, 5:].abs().sum() == 0
    assert waves[1, :2].tolist() == [7.0, 8.0] and waves[1, 2:].abs().sum() == 0
    assert waves[2:].abs().sum() == 0
    with pytest.raises(ValueError):
        cg.pad_into_bucket([torch.zeros(9)], bucket=8, batch_size=1)
    with pytest.raises(ValueError):
        cg.pad_into_bucket([a, a, a], bucket=8, batch_size=2)


def test_bucket_frame_count_covers_the_true_length():
    """The frame arithmetic of a padded bucket: the true frame count of a segment is what its
    own encoding gives, and never more frames than the bucket has."""
    config = fx.tiny_wav2vec2_config("layer")
    model = wav2vec2_encoding.Wav2Vec2Model(config).eval()
    with torch.inference_mode():
        for n in (400, 1650, 3999, 4000, 4001):
            alone = model.feature_extractor(torch.zeros(1, n)).shape[-1]
            waves, lengths = cg.pad_into_bucket([torch.zeros(n)], 8000, 1)
            _, mask = wav2vec2_encoding.encode_padded(model, waves, lengths)
            assert int(mask.sum()) == alone
            assert mask.shape[1] == model.feature_extractor(torch.zeros(1, 8000)).shape[-1]


# ------------------------------------------------------------------ bucketed forward == eager


@pytest.mark.parametrize("name", ["dimensional", "speechbrain", "hf_layer", "hf_group"])
def test_bucketed_forward_equals_eager_per_segment(models, name):
    model = models[name]
    waves = segments(*LENGTHS)
    eager_runner = model.graphs
    assert not eager_runner.active  # CPU: the loader's runner is eager
    eager = model.predict(waves, batch_size=8)
    model.graphs = model.graph_runner(SETTINGS, capture=False)
    try:
        padded = model.predict(waves, batch_size=8)
        stats = model.graphs.stats()
    finally:
        model.graphs = eager_runner
    for n, e, p in zip(LENGTHS, eager, padded):
        np.testing.assert_allclose(values(p), values(e), atol=1e-4, err_msg=f"{name}, segment of {n} samples")
    # The results depend on the audio (not a constant), and the padded path really ran.
    assert len({tuple(np.round(values(e), 6)) for e in eager}) == len(LENGTHS)
    assert stats["padded_segments"] == len(LENGTHS) - 1 and stats["dummy_rows"] > 0
    assert 0 < stats["bucket_padding_fraction"] < 1
    assert stats["eager_segments"] == 1 and "longer than the largest bucket" in next(iter(stats["eager_reasons"]))


def test_padding_would_leak_without_the_masks(models, monkeypatch):
    """The equality above is not trivially true: with the group-norm statistics or the
    attention taken over the bucket's padding, results move by far more than 1e-3."""
    model = models["speechbrain"]
    waves = segments(1700, 2500, seed=3)
    eager = [values(r) for r in model.predict(waves)]
    runner = model.graph_runner(SETTINGS, capture=False)
    prepared = [model.backend.prepare(torch.from_numpy(w)) for w in waves]

    def unmasked_norm(x, valid, norm):
        return torch.nn.functional.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)

    with monkeypatch.context() as patch:
        patch.setattr(wav2vec2_encoding, "masked_group_norm", unmasked_norm)
        leaked = runner.run(prepared).numpy()
    assert max(np.abs(leaked[i] - eager[i]).max() for i in range(2)) > 1e-3

    real_encoder_forward = wav2vec2_encoding.encoder_forward
    with monkeypatch.context() as patch:
        patch.setattr(
            wav2vec2_encoding,
            "encoder_forward",
            lambda enc, hidden, mask: real_encoder_forward(enc, hidden, torch.ones_like(mask)),
        )
        leaked = runner.run(prepared).numpy()
    assert max(np.abs(leaked[i] - eager[i]).max() for i in range(2)) > 1e-3
    np.testing.assert_allclose(runner.run(prepared).numpy(), np.stack(eager), atol=1e-4)


# ------------------------------------------------------------------ fallback and reasons


def test_cpu_models_run_eagerly_and_say_why(models):
    for model in models.values():
        stats = model.graphs.stats()
        assert stats["active"] is False and "runs on cpu" in stats["reason"]
        assert stats["graphs"] == [] and stats["graph_batches"] == 0
        assert stats["eager_batches"] > 0 and stats["eager_segments"] > 0  # warm-up + predictions


def test_off_unsupported_and_failed_capture_fall_back_to_eager(models, monkeypatch):
    dim = models["dimensional"]
    off = dim.graph_runner(cg.GraphSettings.from_options("off"), capture=False)
    assert not off.active and "off" in off.reason
    unsupported = cg.GraphRunner(
        "x",
        "cuda",
        SETTINGS,
        SR,
        dim.model.predict_padded,
        dim.model.predict_segments,
        unsupported="use_weighted_layer_sum classifiers are not supported",
    )
    assert not unsupported.active and "use_weighted_layer_sum" in unsupported.reason

    # CUDA "present" but the capture raises (here: no real GPU behind it): no graph is used
    # at all, the reason says so, and the results are the eager ones.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    runner = cg.GraphRunner("x", "cuda", SETTINGS, SR, dim.model.predict_padded, dim.model.predict_segments)
    assert runner.active
    runner.warm_up()
    assert not runner.active and runner.reason.startswith("eager: graph capture failed")
    tensors = [dim._normalise(torch.from_numpy(w)) for w in segments(3000, 5000)]
    with torch.inference_mode():
        reference = dim.model.predict_segments(tensors)
    np.testing.assert_allclose(runner.run(tensors).numpy(), reference.numpy(), atol=1e-6)
    assert runner.stats()["eager_reasons"] == {runner.reason: 2}


def test_encoder_support_checks():
    layer = wav2vec2_encoding.Wav2Vec2Model(fx.tiny_wav2vec2_config("layer"))
    assert wav2vec2_encoding.supports_padded(layer) is None
    assert wav2vec2_encoding.supports_padded(wav2vec2_encoding.Wav2Vec2Model(fx.tiny_wav2vec2_config("group"))) is None
    layer.config._attn_implementation = "flash_attention_2"
    assert "additive mask" in wav2vec2_encoding.supports_padded(layer)


def test_config_options_reach_the_runner_and_custody(root):
    directory = fx.build_dimensional_model(root / "dim_opts", seed=5)
    spec = ModelSpec.from_dict(
        "ser_dimensional",
        {
            "id": str(directory),
            "device": "cpu",
            "cuda_graphs": "auto",
            "graph_buckets_s": [1, 0.5],
            "graph_batch_sizes": [2, 1],
        },
    )
    assert spec.option("graph_buckets_s") == (1, 0.5)  # a list option survives as a tuple
    registry = ModelRegistry({"ser_dimensional": load_ser_dimensional})
    model = registry.get(spec)
    assert model.model.graphs.settings.buckets_s == (0.5, 1.0) and model.model.graphs.batch_sizes == (1, 2)
    assert "runs on cpu" in model.custody()["cuda_graphs"]
    model.predict(segments(4000, 6000), batch_size=2)
    runtime = registry.stats()["ser_dimensional"]["runtime"]["cuda_graphs"]
    assert runtime["eager_segments"] >= 2 and runtime["graph_batches"] == 0
    off = load_ser_dimensional(
        ModelSpec.from_dict("ser_dimensional", {"id": str(directory), "device": "cpu", "cuda_graphs": False})
    )
    assert "off" in off.custody()["cuda_graphs"]


# ------------------------------------------------------------------ real graphs (CUDA only)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graphs_equal_eager_on_the_gpu(root):
    dim = load_dimensional(str(fx.build_dimensional_model(root / "dim_gpu")), device="cuda", graphs=SETTINGS)
    sb = load_categorical(str(fx.build_speechbrain_iemocap_model(root / "sb_gpu")), device="cuda", graphs=SETTINGS)
    waves = segments(*LENGTHS)
    for model in (dim, sb):
        assert model.graphs.active and model.graphs.graphs_captured == 9, model.graphs.reason
        graphed = model.predict(waves, batch_size=8)
        prepared = (
            [model._normalise(torch.from_numpy(w)) for w in waves]
            if model is dim
            else [model.backend.prepare(torch.from_numpy(w)) for w in waves]
        )
        eager = model.graphs.run(prepared, force_eager=True).numpy()
        for row, result in zip(eager, graphed):
            np.testing.assert_allclose(values(result), row, atol=1e-3)
        assert model.graphs.stats()["graph_segments"] >= len(LENGTHS) - 1
