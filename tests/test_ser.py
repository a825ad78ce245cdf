"""Speech-emotion backends: tiny random-weight models with the published layouts,
loaded through the public loaders exactly as a user's real checkpoint would be."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Wav2Vec2Model

import ser_fixtures as fx
from voiceman_daemon.ser import (
    CategoricalResult,
    DeviceUnavailableError,
    DimensionalResult,
    ModelDirectoryError,
    SegmentError,
    SERLoadError,
    WeightIntegrityError,
    load_categorical,
    load_dimensional,
    select_device,
    wav2vec2_encoding,
)
from voiceman_daemon.ser.device import GIB
from voiceman_daemon.ser.integrity import hash_weight_files

torch.set_num_threads(1)
SR = 16000
NO_CUDA = lambda: None  # noqa: E731  (memory probe of a machine without CUDA)


def segments(*lengths: int, seed: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


@pytest.fixture(scope="module")
def model_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ser_models")


@pytest.fixture(scope="module")
def dim_dir(model_root):
    return fx.build_dimensional_model(model_root / "dim")


@pytest.fixture(scope="module")
def sb_dir(model_root):
    return fx.build_speechbrain_iemocap_model(model_root / "iemocap")


@pytest.fixture(scope="module")
def hf_dir(model_root):
    return fx.build_hf_audio_classifier(model_root / "hf_cls")


@pytest.fixture(scope="module")
def dim(dim_dir):
    return load_dimensional(str(dim_dir), device="auto", memory_probe=NO_CUDA)


@pytest.fixture(scope="module")
def sb(sb_dir):
    return load_categorical(str(sb_dir), memory_probe=NO_CUDA)


@pytest.fixture(scope="module")
def hf(hf_dir):
    return load_categorical(str(hf_dir), memory_probe=NO_CUDA)


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- dimensional


def test_dimensional_checkpoint_has_published_key_layout(dim_dir, dim):
    keys = set(load_file(str(dim_dir / "model.safetensors")))
    head = {k for k in keys if not k.startswith("wav2vec2.")}
    assert head == {
        "classifier.dense.weight",
        "classifier.dense.bias",
        "classifier.out_proj.weight",
        "classifier.out_proj.bias",
    }
    assert set(dim.model.state_dict()) == keys
    assert dim.model_id == str(dim_dir.resolve())
    assert dim.weights_sha256 == hash_weight_files(dim_dir)[0]
    assert not dim.model.training
    assert all(not p.requires_grad for p in dim.model.parameters())


def test_dimensional_predicts_named_floats_that_depend_on_audio(dim):
    results = dim.predict(segments(16000, 8000))
    assert all(isinstance(r, DimensionalResult) for r in results)
    dicts = [r.to_dict() for r in results]
    assert all(set(d) == {"arousal", "dominance", "valence"} for d in dicts)
    assert all(isinstance(v, float) and np.isfinite(v) for d in dicts for v in d.values())
    assert dicts[0] != dicts[1]
    assert json.loads(json.dumps(dicts)) == dicts


def test_dimensional_equals_model_forward_and_follows_id2label(dim, dim_dir, tmp_path):
    wave = segments(12000)[0]
    normalised = dim.feature_extractor(wave, sampling_rate=SR, return_tensors="pt").input_values
    with torch.inference_mode():
        _, reference = dim.model(normalised)
    got = dim.predict([wave])[0]
    np.testing.assert_allclose([got.arousal, got.dominance, got.valence], reference[0].numpy(), atol=1e-5)

    # Same weights, outputs relabelled: the result must follow config.id2label.
    permuted = copy_model(dim_dir, tmp_path / "permuted")
    config = json.loads((permuted / "config.json").read_text())
    config["id2label"] = {"0": "valence", "1": "arousal", "2": "dominance"}
    config["label2id"] = {"valence": 0, "arousal": 1, "dominance": 2}
    (permuted / "config.json").write_text(json.dumps(config))
    other = load_dimensional(str(permuted), device="cpu").predict([wave])[0]
    assert other.valence == pytest.approx(reference[0, 0].item(), abs=1e-5)
    assert other.arousal == pytest.approx(reference[0, 1].item(), abs=1e-5)
    assert other.dominance == pytest.approx(reference[0, 2].item(), abs=1e-5)


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_batched_encoder_equals_wav2vec2_forward(norm):
    torch.manual_seed(3)
    model = Wav2Vec2Model(fx.tiny_wav2vec2_config(norm)).eval()
    waves = [torch.from_numpy(w) for w in segments(9000, 3000, 5000)]
    with torch.inference_mode():
        hidden, mask = wav2vec2_encoding.encode(model, waves)
        for i, wave in enumerate(waves):
            alone = model(wave[None]).last_hidden_state[0]
            assert int(mask[i].sum()) == alone.shape[0]
            torch.testing.assert_close(hidden[i, : alone.shape[0]], alone, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- categorical


def test_speechbrain_iemocap_labels_and_probabilities(sb):
    assert sb.kind == "speechbrain"
    assert sb.labels == list(fx.IEMOCAP_LABELS)
    results = sb.predict(segments(16000, 6000, 24000))
    for result in results:
        assert isinstance(result, CategoricalResult)
        d = result.to_dict()
        assert set(d) == {"label", "probabilities"}
        assert set(d["probabilities"]) == {"neu", "ang", "hap", "sad"}
        assert sum(d["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert d["label"] == max(d["probabilities"], key=d["probabilities"].get)
    assert results[0].probabilities != results[1].probabilities


def test_speechbrain_matches_its_own_interface_and_finetuned_weights(sb, sb_dir):
    wave = segments(16000)[0]
    with torch.inference_mode():
        out_prob, _, _, text_lab = sb.backend.interface.classify_batch(torch.from_numpy(wave)[None])
    got = sb.predict([wave])[0]
    # The interface's pooling adds up to 9e-5 of random noise; hence the tolerance.
    np.testing.assert_allclose([got.probabilities[label] for label in sb.labels], out_prob[0].numpy(), atol=2e-3)
    assert got.label == text_lab[0]
    # wav2vec2.ckpt (fine-tuned) replaced the encoder folder's base weights.
    finetuned = torch.load(sb_dir / "wav2vec2.ckpt", weights_only=True)
    loaded = sb.backend.lobe.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in finetuned.items())
    base = load_file(str(sb_dir / fx.SPEECHBRAIN_ENCODER_SUBDIR / "model.safetensors"))
    key = "feature_projection.projection.weight"
    assert not torch.equal(loaded["model." + key], base[key])


def test_speechbrain_load_reads_in_place_and_leaves_no_files(sb_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in sb_dir.rglob("*"))
    path_before = list(sys.path)
    load_categorical(str(sb_dir), device="cpu")
    assert list(tmp_path.iterdir()) == []
    assert sorted(p.name for p in sb_dir.rglob("*") if "__pycache__" not in p.parts) == [
        n for n in before if n != "__pycache__"
    ]
    assert sys.path == path_before


def test_hf_audio_classifier_labels_from_config(hf):
    assert hf.kind == "transformers"
    assert hf.labels == list(fx.HF_CLASSIFIER_LABELS)
    result = hf.predict(segments(10000))[0]
    assert set(result.probabilities) == set(fx.HF_CLASSIFIER_LABELS)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    with torch.inference_mode():
        inputs = hf.backend.feature_extractor(segments(10000)[0], sampling_rate=SR, return_tensors="pt")
        expected = torch.softmax(hf.backend.model(**inputs).logits, -1)[0].numpy()
    np.testing.assert_allclose([result.probabilities[label] for label in hf.labels], expected, atol=1e-5)


# ------------------------------------------------ batching, determinism, errors


def _values(result) -> list[float]:
    if isinstance(result, DimensionalResult):
        return [result.arousal, result.dominance, result.valence]
    return list(result.probabilities.values())


@pytest.mark.parametrize("name", ["dim", "sb", "hf", "hf_group"])
def test_result_alone_equals_result_in_batch(name, request, model_root):
    if name == "hf_group":
        model = load_categorical(str(fx.build_hf_audio_classifier(model_root / "hf_group", feat_extract_norm="group")))
        assert not model.backend.uses_attention_mask
    else:
        model = request.getfixturevalue(name)
    waves = segments(20000, 1700, 7300, 12000, seed=11)
    batched = model.predict(waves)
    chunked = model.predict(waves, batch_size=2)
    for wave, in_batch, in_chunks in zip(waves, batched, chunked):
        alone = model.predict([wave])[0]
        np.testing.assert_allclose(_values(in_batch), _values(alone), atol=1e-4)
        np.testing.assert_allclose(_values(in_chunks), _values(alone), atol=1e-4)
    assert [r.to_dict() for r in model.predict(waves)] == [r.to_dict() for r in batched]  # deterministic


@pytest.mark.parametrize("name", ["dim", "sb", "hf"])
def test_bad_segments_get_error_items_and_batch_survives(name, request):
    model = request.getfixturevalue(name)
    good = segments(8000)[0]
    nan = good.copy()
    nan[100] = np.nan
    batch = [good, np.zeros(1000, np.float32), np.zeros(0, np.float32), nan, np.zeros((2, 8000), np.float32), good]
    results = model.predict(batch)
    assert len(results) == len(batch)
    assert isinstance(results[0], (DimensionalResult, CategoricalResult))
    assert _values(results[0]) == _values(results[5])
    for bad in results[1:5]:
        assert isinstance(bad, SegmentError)
        assert set(bad.to_dict()) == {"error"}
    assert "too short" in results[1].error and "0.1" in results[1].error
    assert "NaN" in results[3].error
    assert model.predict([]) == []
    with pytest.raises(ValueError, match="8000 Hz"):
        model.predict([good], sample_rate=8000)


# ---------------------------------------------------------------- device


def test_device_selection_with_fake_probe():
    assert select_device("auto", NO_CUDA).device == "cpu"
    plenty = select_device("auto", lambda: (12 * GIB, 16 * GIB))
    assert plenty.device == "cuda" and "12.0 GiB" in plenty.reason
    scarce = select_device("auto", lambda: (4 * GIB, 16 * GIB))
    assert scarce.device == "cpu" and "4.0 GiB" in scarce.reason and "8.0 GiB" in scarce.reason

    def broken():
        raise RuntimeError("driver gone")

    assert "driver gone" in select_device("auto", broken).reason
    assert select_device("cpu", lambda: (80 * GIB, 80 * GIB)).device == "cpu"
    with pytest.raises(DeviceUnavailableError):
        select_device("cuda", NO_CUDA)
    with pytest.raises(DeviceUnavailableError):
        select_device("tpu", NO_CUDA)


def test_loader_reports_device_and_reason(dim_dir, dim):
    assert dim.device == "cpu" and "not available" in dim.device_reason
    low = load_dimensional(str(dim_dir), memory_probe=lambda: (2 * GIB, 8 * GIB))
    assert low.device == "cpu" and "2.0 GiB" in low.device_reason


# ---------------------------------------------------------------- integrity


def test_missing_directory_and_unknown_kind(tmp_path):
    with pytest.raises(ModelDirectoryError, match="does not exist"):
        load_dimensional(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirectoryError, match="hyperparams.yaml"):
        load_categorical(str(tmp_path / "empty"))


def test_missing_weight_files_fail_loudly(dim_dir, sb_dir, hf_dir, tmp_path):
    broken = copy_model(dim_dir, tmp_path / "dim")
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelDirectoryError, match=str(broken)):
        load_dimensional(str(broken))

    broken = copy_model(sb_dir, tmp_path / "sb")
    (broken / "model.ckpt").unlink()
    with pytest.raises(SERLoadError, match="model.ckpt"):
        load_categorical(str(broken))

    broken = copy_model(sb_dir, tmp_path / "sb_labels")
    (broken / "label_encoder.txt").unlink()
    with pytest.raises(ModelDirectoryError, match="label_encoder.txt"):
        load_categorical(str(broken))

    broken = copy_model(hf_dir, tmp_path / "hf")
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelDirectoryError, match="no weight file"):
        load_categorical(str(broken))


def test_tampered_weights_fail_loudly(dim_dir, sb_dir, dim, tmp_path):
    truncated = copy_model(dim_dir, tmp_path / "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(SERLoadError, match=str(truncated)):
        load_dimensional(str(truncated))

    # A flipped byte inside tensor data still parses; only the recorded hash catches it.
    flipped = copy_model(dim_dir, tmp_path / "flipped")
    raw = bytearray((flipped / "model.safetensors").read_bytes())
    raw[-10] ^= 0xFF
    (flipped / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(WeightIntegrityError, match=dim.weights_sha256):
        load_dimensional(str(flipped), expected_sha256=dim.weights_sha256)
    assert load_dimensional(str(dim_dir), expected_sha256=dim.weights_sha256).weights_sha256 == dim.weights_sha256

    headless = copy_model(dim_dir, tmp_path / "headless")
    state = load_file(str(headless / "model.safetensors"))
    del state["classifier.out_proj.weight"]
    save_file(state, str(headless / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(WeightIntegrityError, match="classifier.out_proj.weight"):
        load_dimensional(str(headless))

    partial = copy_model(sb_dir, tmp_path / "partial_ckpt")
    state = torch.load(partial / "wav2vec2.ckpt", weights_only=True)
    state.pop("model.feature_projection.projection.weight")
    torch.save(state, partial / "wav2vec2.ckpt")
    with pytest.raises(WeightIntegrityError, match="feature_projection.projection.weight"):
        load_categorical(str(partial))
