"""The torch Whisper backend (transformers) against the CTranslate2 one, on the same real
weights: the shipped float16 CTranslate2 tiny.en, mapped back into a transformers Whisper by
``voiceman.whisper_convert`` (what ``voiceman models prepare`` writes as ``<id>-hf``).

- the conversion is lossless (every tensor bit for bit) and idempotent;
- the converted model computes what CTranslate2 computes (encoder output, token
  probabilities), and transcribes the demo case like it: word error rate between the two
  <= 0.05, word start times within 0.2 s on average;
- ``models.asr.backend`` picks the engine as the GB10 needs (``choose_backend``);
- a real daemon with ``backend: transformers`` serves the demo case with word times, the same
  bytes every time, and says in custody which backend ran.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, daemon_overrides, running_daemon

sys.path.insert(0, str(REPO / "daemon"))

from voiceman_daemon.asr import choose_backend  # noqa: E402


# -- backend choice --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "requested, device, ct2_cuda, torch_cuda, expected",
    [
        ("auto", "auto", 1, True, "ctranslate2"),  # x86_64 + CUDA: CTranslate2 float16
        ("auto", "auto", 0, True, "transformers"),  # GB10: CTranslate2's aarch64 wheel has no CUDA
        ("auto", "cuda", 0, True, "transformers"),
        ("auto", "auto", 0, False, "ctranslate2"),  # CPU-only: CTranslate2 int8
        ("auto", "cpu", 1, True, "ctranslate2"),  # device cpu forces the CPU path
        ("transformers", "cpu", 0, False, "transformers"),
        ("ctranslate2", "auto", 0, True, "ctranslate2"),
    ],
)
def test_backend_choice(requested, device, ct2_cuda, torch_cuda, expected):
    backend, why = choose_backend(requested, device, ct2_cuda, torch_cuda)
    assert backend == expected and why


def test_backend_choice_follows_the_model_directory_and_refuses_unknown_names():
    assert choose_backend("auto", "cpu", 0, False, has_ct2=False, has_hf=True)[0] == "transformers"
    with pytest.raises(ValueError, match="models.asr.backend"):
        choose_backend("onnx", "auto", 0, False)


# -- the conversion --------------------------------------------------------------------------
def _hf(tiny_model: Path) -> Path:
    return tiny_model.with_name(tiny_model.name + "-hf")


def test_conversion_is_lossless(tiny_model):
    import torch
    from safetensors.torch import load_file

    from voiceman.whisper_convert import read_ct2_model

    ct2 = read_ct2_model(tiny_model / "model.bin")
    hf = load_file(str(_hf(tiny_model) / "model.safetensors"))
    assert all(t.dtype == torch.float16 for t in hf.values())

    def same(a, b) -> bool:
        return np.array_equal(np.asarray(a).view(np.uint16), b.numpy().view(np.uint16))

    for i in range(4):  # fused q/k/v come back as three projections; the absent k bias was zeros
        for side, attn in (("encoder", "self_attn"), ("decoder", "self_attn")):
            fused = ct2.variables[f"{side}/layer_{i}/self_attention/linear_0/weight"]
            parts = [hf[f"model.{side}.layers.{i}.{attn}.{p}_proj.weight"] for p in "qkv"]
            assert same(fused, torch.cat(parts))
            bias = ct2.variables[f"{side}/layer_{i}/self_attention/linear_0/bias"]
            assert not np.asarray(bias[384:768]).any()
            assert f"model.{side}.layers.{i}.{attn}.k_proj.bias" not in hf
        assert not np.asarray(ct2.variables[f"decoder/layer_{i}/attention/linear_1/bias"][:384]).any()
        kv = ct2.variables[f"decoder/layer_{i}/attention/linear_1/weight"]
        assert same(kv, torch.cat([hf[f"model.decoder.layers.{i}.encoder_attn.{p}_proj.weight"] for p in "kv"]))
    assert same(ct2.variables["decoder/embeddings/weight"], hf["model.decoder.embed_tokens.weight"])
    assert same(ct2.variables["encoder/conv2/weight"], hf["model.encoder.conv2.weight"])
    # every CTranslate2 float tensor went somewhere, element count for element count
    floats = sum(v.size for k, v in ct2.variables.items() if ct2.dtypes[k] == 4)
    k_biases = 3 * 4 * 384  # k biases of encoder self-, decoder self- and cross-attention (zeros, dropped)
    assert sum(t.numel() for t in hf.values()) == floats - k_biases
    config = json.loads((_hf(tiny_model) / "generation_config.json").read_text())
    assert config["alignment_heads"] == json.loads((tiny_model / "config.json").read_text())["alignment_heads"]
    record = json.loads((_hf(tiny_model) / "voiceman_conversion.json").read_text())
    assert record["lossless"] is True and record["source"]["sha256"]["model.bin"]


def test_conversion_is_idempotent_atomic_and_follows_its_source(tiny_model, tmp_path):
    import shutil

    from voiceman.whisper_convert import ConversionError, convert, read_ct2_model, state_dict_from_ct2

    src = tmp_path / "ct2"
    shutil.copytree(tiny_model, src)
    dst = convert(src, tmp_path / "ct2-hf")
    weights = dst / "model.safetensors"
    first = weights.stat().st_ino
    assert convert(src, dst) == dst and weights.stat().st_ino == first  # up to date: left alone
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps(config, indent=1))  # the source changed
    convert(src, dst)
    assert (dst / "model.safetensors").stat().st_ino != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct2", "ct2-hf"]  # no staging left behind
    quantized = read_ct2_model(src / "model.bin")
    quantized.dtypes["encoder/conv1/weight"] = 1  # int8: the original weights are gone
    with pytest.raises(ConversionError, match="quantized"):
        state_dict_from_ct2(quantized)


def test_converted_model_computes_what_ctranslate2_computes(tiny_model, speech_case):
    """float32 on both sides, same input features: the encoder output and the probabilities
    of the text tokens (CTranslate2's align) agree."""
    import ctranslate2
    import torch
    from faster_whisper.feature_extractor import FeatureExtractor
    from transformers import WhisperForConditionalGeneration, WhisperTokenizerFast

    from voiceman.audio import decode

    audio, _ = decode(speech_case / "call-01.wav")
    feats = FeatureExtractor(feature_size=80)(audio)[..., :-1]
    feats = np.pad(feats, ((0, 0), (0, 3000 - feats.shape[1])))[None].astype(np.float32)
    ct2 = ctranslate2.models.Whisper(str(tiny_model), device="cpu", compute_type="float32")
    enc_ct2 = np.array(ct2.encode(ctranslate2.StorageView.from_array(feats)))
    model = WhisperForConditionalGeneration.from_pretrained(
        _hf(tiny_model), local_files_only=True, dtype=torch.float32
    ).eval()
    tokenizer = WhisperTokenizerFast.from_pretrained(_hf(tiny_model), local_files_only=True)
    with torch.inference_mode():
        enc_hf = model.model.encoder(torch.from_numpy(feats)).last_hidden_state
    assert np.abs(enc_ct2 - enc_hf.numpy()).max() < 1e-3 * np.abs(enc_ct2).max()
    text = tokenizer.encode(
        " Please meet me at the harbour tomorrow morning. Bring the money.", add_special_tokens=False
    )
    sot, no_ts, eot = (
        tokenizer.convert_tokens_to_ids(t) for t in ("<|startoftranscript|>", "<|notimestamps|>", "<|endoftext|>")
    )
    expected = ct2.align(ctranslate2.StorageView.from_array(feats), [sot], [text], 3000)[0].text_token_probs
    with torch.inference_mode():
        logits = model(encoder_outputs=(enc_hf,), decoder_input_ids=torch.tensor([[sot, no_ts, *text, eot]])).logits[0]
    probs = torch.softmax(logits[:, :eot], dim=-1)
    got = [float(probs[1 + i, t]) for i, t in enumerate(text)]
    assert np.abs(np.array(got) - np.array(expected)).max() < 1e-4


# -- the two backends on the demo case -------------------------------------------------------
sys.path.insert(0, str(REPO / "bench"))
from gpu_check import agreement as _agreement  # noqa: E402  (the GPU check's metric, the same here)


def agreement(a: dict, b: dict) -> tuple[float, float, int]:
    """(WER of b against a, mean |start difference| over words both heard, words compared)."""
    result = _agreement(a, b)
    diff = result["mean_word_start_diff_s"]
    return result["wer"], (diff if diff is not None else float("inf")), result["words_compared"]


@pytest.fixture(scope="module")
def both_backends(tiny_model):
    from voiceman_daemon.asr import WhisperASR
    from voiceman_daemon.asr_transformers import TransformersWhisperASR
    from voiceman_daemon.registry import ModelSpec

    options = {"id": str(tiny_model), "language": "en", "device": "cpu"}
    ct2 = WhisperASR(ModelSpec.from_dict("asr", {**options, "compute_type": "float32"}))
    torch_backend = TransformersWhisperASR(ModelSpec.from_dict("asr", {**options, "backend": "transformers"}))
    return ct2, torch_backend


def test_transformers_backend_transcribes_the_demo_case_like_ctranslate2(both_backends, speech_case):
    from voiceman.audio import decode

    ct2, torch_backend = both_backends
    wers, diffs = [], []
    for clip in sorted(speech_case.iterdir()):
        audio, _ = decode(clip)
        a = ct2.transcribe(audio, {"language": "en"})
        b = torch_backend.transcribe(audio, {"language": "en"})
        assert set(a) == set(b) and [set(s) for s in a["segments"]] == [set(s) for s in b["segments"]]
        assert {k: a[k] for k in ("language", "vad_chunks", "batch_size_used")} == {
            k: b[k] for k in ("language", "vad_chunks", "batch_size_used")
        }
        wer, diff, compared = agreement(a, b)
        assert compared >= 8, (a, b)
        wers.append(wer)
        diffs.append(diff)
    print(
        f"\nct2 float32 vs transformers float32 on the demo case: WER per clip {wers}, "
        f"mean |word start diff| per clip {[round(d, 3) for d in diffs]} s"
    )
    assert np.mean(wers) <= 0.05 and np.mean(diffs) <= 0.2


def test_custody_names_the_backend_and_the_same_decoding_settings(both_backends, tiny_model):
    ct2, torch_backend = both_backends
    a, b = ct2.custody(), torch_backend.custody()
    assert a["decoding"]["backend"] == "ctranslate2" and b["decoding"]["backend"] == "transformers"
    assert a["backend"] == "ctranslate2" and b["backend"] == "transformers"
    for key in (
        "beam_size",
        "temperature",
        "temperature_fallback",
        "chunk_size_s",
        "vad",
        "condition_on_previous_text",
    ):
        assert a["decoding"][key] == b["decoding"][key], key
    assert b["path"] == str(_hf(tiny_model).resolve()) and b["sha256"]
    assert b["converted_from"]["model_bin_sha256"] and b["compute_type"] == "float32"
    model = torch_backend.model
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.config._attn_implementation == "sdpa"


def test_batched_chunks_decode_like_one_at_a_time(both_backends, speech_case):
    """Several VAD chunks in one batch (padding, beams of several items) give what each
    chunk gives alone."""
    from voiceman.audio import decode

    _, torch_backend = both_backends
    pieces = [decode(clip)[0] for clip in sorted(speech_case.iterdir())]
    gap = np.zeros(16000 * 2, dtype=np.float32)
    audio = np.concatenate([pieces[0], gap, pieces[1], gap, pieces[2]])
    torch_backend.chunk_size = 5.0  # one chunk per sentence
    try:
        together = torch_backend.transcribe(audio, {"language": "en", "batch_size": 3})
        alone = torch_backend.transcribe(audio, {"language": "en", "batch_size": 1})
    finally:
        torch_backend.chunk_size = 30.0
    assert together["vad_chunks"] >= 3 and together["batch_size_used"] == 3
    assert [s["text"] for s in together["segments"]] == [s["text"] for s in alone["segments"]]
    starts = [w["start"] for s in together["segments"] for w in s["words"]]
    assert starts == [w["start"] for s in alone["segments"] for w in s["words"]]


def test_transformers_backend_without_converted_weights_says_how_to_make_them(tmp_path):
    from voiceman_daemon.asr import load_asr
    from voiceman_daemon.registry import ModelSpec

    with pytest.raises(FileNotFoundError, match="whisper_convert"):
        load_asr(ModelSpec.from_dict("asr", {"id": str(tmp_path / "nowhere"), "backend": "transformers"}))


# -- a real daemon ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["ctranslate2", "transformers"])
def test_daemon_serves_the_demo_case_with_either_backend(backend, runtime_dir, tiny_model, speech_case):
    overrides = daemon_overrides(tiny_model)
    overrides["models"]["asr"]["backend"] = backend
    with running_daemon(runtime_dir, overrides) as (_, client):
        heard = {}
        for clip in sorted(speech_case.iterdir()):
            result = client.call("transcribe", deadline_s=300, audio_path=str(clip), options={"language": "en"})
            if clip.name == "call-01.wav":  # the same request again: the same bytes
                again = client.call("transcribe", deadline_s=300, audio_path=str(clip), options={"language": "en"})
                assert (
                    json.dumps([again["segments"], again["language"]], sort_keys=True).encode()
                    == json.dumps([result["segments"], result["language"]], sort_keys=True).encode()
                )
            words = [w for s in result["segments"] for w in s["words"]]
            assert words and all(0 <= w["start"] <= w["end"] for w in words)
            assert [w["start"] for w in words] == sorted(w["start"] for w in words)
            assert result["model"]["decoding"]["backend"] == backend
            heard[clip.name] = " ".join(s["text"] for s in result["segments"]).lower()
        assert "tomorrow" in heard["call-01.wav"] and "money" in heard["call-01.wav"]
        assert "police" in heard["call-02.mp3"]
        assert "friday" in heard["call-03.m4a"] and "station" in heard["call-03.m4a"]
        stats = client.stats()["models"]["asr"]
        assert stats["loads"] == 1 and stats["custody"]["backend"] == backend
        assert "backend" in stats["custody"]["backend_selection"]


def test_recordings_transcribed_together_equal_each_alone(both_backends, speech_case):
    """Cross-file batching on the torch backend (the GB10's path): the chunks of several
    recordings share batches that cut across recordings; each transcript -- text and word
    times -- is the one the recording gets alone."""
    from voiceman.audio import decode

    _, torch_backend = both_backends
    gap = np.zeros(16000, dtype=np.float32)
    clips = [decode(clip)[0] for clip in sorted(speech_case.iterdir())]
    audios = [np.concatenate([clips[0], gap, clips[1]]), clips[2], np.zeros(16000, dtype=np.float32), clips[1]]
    torch_backend.chunk_size = 5.0
    try:
        together, run = torch_backend.transcribe_many(audios, {"language": "en", "batch_size": 3})
        alone = [torch_backend.transcribe(a, {"language": "en", "batch_size": 3}) for a in audios]
    finally:
        torch_backend.chunk_size = 30.0
    assert [r["vad_chunks"] for r in together][2] == 0 and together[0]["vad_chunks"] >= 2
    assert run.chunks == sum(r["vad_chunks"] for r in together) and run.forward_batches == -(-run.chunks // 3)
    assert together == alone
