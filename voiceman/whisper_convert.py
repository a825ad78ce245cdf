"""A CTranslate2 Whisper directory -> the same model as a transformers Whisper directory.

The Whisper models ``voiceman models prepare`` ships are float16 CTranslate2 files
(``model.bin``).  CTranslate2's converter only re-arranges transformers' tensors (it fuses
the q/k/v projections into one matrix, stores the absent k bias as zeros and aliases the
output projection to the token embeddings), so the tensors map back bit for bit: this
module reads ``model.bin`` itself (CTranslate2's binary layout, version 6: see
``ctranslate2/specs/model_spec.py`` ``_serialize``), undoes those steps, and writes a
``WhisperForConditionalGeneration`` directory (config, generation config with the
alignment heads, tokenizer and feature-extractor files, ``model.safetensors``) that the
torch backend (``voiceman_daemon.asr_transformers``) loads with ``local_files_only``.

Nothing is lost: every float16 tensor is copied as is, and `convert` reads the written
safetensors back and compares each tensor with its source bytes before the directory is
put in place.  Quantized (int8/int16) CTranslate2 models cannot be turned back into their
original weights, so they are refused.

    python -m voiceman.whisper_convert models/whisper-tiny.en models/whisper-tiny.en-hf
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .hashing import sha256_file, sha256_weights

CONVERTER_VERSION = 1
RECORD = "voiceman_conversion.json"  # provenance: the CTranslate2 source and its digests
SUPPORTED_BINARY_VERSIONS = (6,)
# CTranslate2's DataType enum (include/ctranslate2/types.h): id -> numpy dtype.  bfloat16 has
# no numpy type; its bits are kept as uint16 and reinterpreted by torch.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_BFLOAT16 = 5
_FLOAT_TYPES = (0, 4, 5)
SAMPLE_RATE = 16000


class ConversionError(RuntimeError):
    """The directory is not a CTranslate2 Whisper model this converter can map back losslessly."""


# -- reading model.bin -----------------------------------------------------------------------
class Ct2Model:
    """The variables of a CTranslate2 ``model.bin``: ``variables`` name -> numpy array,
    ``dtypes`` name -> CTranslate2 type id, ``aliases`` alias -> variable name."""

    def __init__(
        self,
        spec: str,
        revision: int,
        variables: dict[str, np.ndarray],
        dtypes: dict[str, int],
        aliases: dict[str, str],
    ):
        self.spec, self.revision = spec, revision
        self.variables, self.dtypes, self.aliases = variables, dtypes, aliases

    def get(self, name: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        if name not in self.variables:
            raise ConversionError(f"model.bin has no variable '{name}'")
        return self.variables[name]

    def scalar(self, name: str) -> Any:
        return self.get(name).reshape(()).item()

    def count_layers(self, prefix: str) -> int:
        n = 0
        while any(k.startswith(f"{prefix}/layer_{n}/") for k in self.variables):
            n += 1
        return n


def read_ct2_model(path: str | Path) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin`` (binary version 6) without loading CTranslate2."""
    path = Path(path)
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ConversionError(f"{path}: truncated at byte {pos}")
        value = struct.unpack_from(fmt, data, pos)[0]
        pos += size
        return value

    def string() -> str:
        nonlocal pos
        length = take("<H")
        raw = data[pos : pos + length]
        pos += length
        return raw[:-1].decode("utf-8")

    version = take("<I")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise ConversionError(
            f"{path}: CTranslate2 binary version {version}, this converter reads "
            f"{SUPPORTED_BINARY_VERSIONS} (re-save the model with a current ctranslate2)"
        )
    spec, revision = string(), take("<I")
    variables: dict[str, np.ndarray] = {}
    dtypes: dict[str, int] = {}
    for _ in range(take("<I")):
        name = string()
        shape = tuple(take("<I") for _ in range(take("<B")))
        type_id = take("<B")
        nbytes = take("<I")
        if type_id not in _DTYPES:
            raise ConversionError(f"{path}: variable {name} has unknown CTranslate2 type id {type_id}")
        array = np.frombuffer(
            data, dtype=_DTYPES[type_id], count=nbytes // np.dtype(_DTYPES[type_id]).itemsize, offset=pos
        )
        pos += nbytes
        variables[name] = array.reshape(shape)
        dtypes[name] = type_id
    aliases = {}
    for _ in range(take("<I")):
        alias = string()
        aliases[alias] = string()
    if pos != len(data):
        raise ConversionError(f"{path}: {len(data) - pos} unread bytes after the variables")
    return Ct2Model(spec, revision, variables, dtypes, aliases)


# -- tensors ---------------------------------------------------------------------------------
def _tensor(model: Ct2Model, name: str):
    import torch

    real = model.aliases.get(name, name)
    type_id = model.dtypes.get(real)
    if type_id not in _FLOAT_TYPES:
        raise ConversionError(
            f"variable '{name}' is stored as CTranslate2 type {type_id} (quantized): "
            "its original weights cannot be recovered; convert from a float16/float32 model"
        )
    array = np.ascontiguousarray(model.get(name))
    tensor = torch.from_numpy(array.copy())
    return tensor.view(torch.bfloat16) if type_id == _BFLOAT16 else tensor


def _linear(model: Ct2Model, src: str, out: dict, dst: str, parts: tuple[str, ...] = ("",)) -> None:
    """One CTranslate2 linear layer -> one or more transformers projections (fused q/k/v are
    split in rows; a k bias must be all zeros: transformers' k_proj has none)."""
    weight = _tensor(model, f"{src}/weight")
    bias = _tensor(model, f"{src}/bias") if f"{src}/bias" in model.variables else None
    n = len(parts)
    if weight.shape[0] % n:
        raise ConversionError(f"{src}/weight has {weight.shape[0]} rows, not divisible into {n} projections")
    rows = weight.shape[0] // n
    for i, part in enumerate(parts):
        name = dst + part
        out[f"{name}.weight"] = weight[i * rows : (i + 1) * rows].clone()
        if bias is None:
            continue
        piece = bias[i * rows : (i + 1) * rows].clone()
        if part == "k_proj":
            if bool(piece.float().abs().max() > 0):
                raise ConversionError(f"{src}: the k projection has a non-zero bias, which Whisper's k_proj lacks")
            continue
        out[f"{name}.bias"] = piece


def _layer_norm(model: Ct2Model, src: str, out: dict, dst: str) -> None:
    out[f"{dst}.weight"] = _tensor(model, f"{src}/gamma")
    out[f"{dst}.bias"] = _tensor(model, f"{src}/beta")


def state_dict_from_ct2(model: Ct2Model) -> tuple[dict, dict[str, Any]]:
    """(transformers state dict, architecture facts) for a CTranslate2 WhisperSpec."""
    if model.spec != "WhisperSpec":
        raise ConversionError(f"model.bin holds a {model.spec}, not a Whisper model")
    expected = {"decoder/pre_norm": True, "decoder/scale_embeddings": False, "decoder/alibi": False}
    for name, value in expected.items():
        if name in model.variables and bool(model.scalar(name)) != value:
            raise ConversionError(
                f"{name} is {model.scalar(name)}: not the Whisper architecture transformers implements"
            )
    out: dict = {}
    enc_layers, dec_layers = model.count_layers("encoder"), model.count_layers("decoder")
    for conv in ("conv1", "conv2"):
        out[f"model.encoder.{conv}.weight"] = _tensor(model, f"encoder/{conv}/weight")
        out[f"model.encoder.{conv}.bias"] = _tensor(model, f"encoder/{conv}/bias")
    out["model.encoder.embed_positions.weight"] = _tensor(model, "encoder/position_encodings/encodings")
    for i in range(enc_layers):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        _linear(model, f"{src}/self_attention/linear_0", out, f"{dst}.self_attn.", ("q_proj", "k_proj", "v_proj"))
        _linear(model, f"{src}/self_attention/linear_1", out, f"{dst}.self_attn.out_proj")
        _layer_norm(model, f"{src}/self_attention/layer_norm", out, f"{dst}.self_attn_layer_norm")
        _linear(model, f"{src}/ffn/linear_0", out, f"{dst}.fc1")
        _linear(model, f"{src}/ffn/linear_1", out, f"{dst}.fc2")
        _layer_norm(model, f"{src}/ffn/layer_norm", out, f"{dst}.final_layer_norm")
    _layer_norm(model, "encoder/layer_norm", out, "model.encoder.layer_norm")
    out["model.decoder.embed_tokens.weight"] = _tensor(model, "decoder/embeddings/weight")
    out["model.decoder.embed_positions.weight"] = _tensor(model, "decoder/position_encodings/encodings")
    for i in range(dec_layers):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        _linear(model, f"{src}/self_attention/linear_0", out, f"{dst}.self_attn.", ("q_proj", "k_proj", "v_proj"))
        _linear(model, f"{src}/self_attention/linear_1", out, f"{dst}.self_attn.out_proj")
        _layer_norm(model, f"{src}/self_attention/layer_norm", out, f"{dst}.self_attn_layer_norm")
        _linear(model, f"{src}/attention/linear_0", out, f"{dst}.encoder_attn.q_proj")
        _linear(model, f"{src}/attention/linear_1", out, f"{dst}.encoder_attn.", ("k_proj", "v_proj"))
        _linear(model, f"{src}/attention/linear_2", out, f"{dst}.encoder_attn.out_proj")
        _layer_norm(model, f"{src}/attention/layer_norm", out, f"{dst}.encoder_attn_layer_norm")
        _linear(model, f"{src}/ffn/linear_0", out, f"{dst}.fc1")
        _linear(model, f"{src}/ffn/linear_1", out, f"{dst}.fc2")
        _layer_norm(model, f"{src}/ffn/layer_norm", out, f"{dst}.final_layer_norm")
    _layer_norm(model, "decoder/layer_norm", out, "model.decoder.layer_norm")
    tied = model.aliases.get("decoder/projection/weight") == "decoder/embeddings/weight"
    if not tied:
        out["proj_out.weight"] = _tensor(model, "decoder/projection/weight")
    if "decoder/projection/bias" in model.variables:
        raise ConversionError("decoder/projection has a bias, which Whisper's proj_out lacks")
    embed = out["model.decoder.embed_tokens.weight"]
    facts = {
        "vocab_size": int(embed.shape[0]),
        "d_model": int(embed.shape[1]),
        "encoder_layers": enc_layers,
        "decoder_layers": dec_layers,
        "encoder_attention_heads": int(model.scalar("encoder/num_heads")),
        "decoder_attention_heads": int(model.scalar("decoder/num_heads")),
        "encoder_ffn_dim": int(out["model.encoder.layers.0.fc1.weight"].shape[0]),
        "decoder_ffn_dim": int(out["model.decoder.layers.0.fc1.weight"].shape[0]),
        "num_mel_bins": int(out["model.encoder.conv1.weight"].shape[1]),
        "max_source_positions": int(out["model.encoder.embed_positions.weight"].shape[0]),
        "max_target_positions": int(out["model.decoder.embed_positions.weight"].shape[0]),
        "tie_word_embeddings": tied,
        "dtype": str(embed.dtype).replace("torch.", ""),
    }
    return out, facts


# -- configs -----------------------------------------------------------------------------------
def _special_ids(tokenizer_json: dict) -> dict[str, int]:
    return {t["content"]: int(t["id"]) for t in tokenizer_json.get("added_tokens", [])}


def _need(ids: dict[str, int], token: str) -> int:
    if token not in ids:
        raise ConversionError(f"tokenizer.json has no special token {token}")
    return ids[token]


def build_configs(facts: dict[str, Any], ct2_config: dict, tokenizer_json: dict):
    """(WhisperConfig, GenerationConfig) from the architecture facts, CTranslate2's
    config.json (suppress lists, language ids, alignment heads) and the tokenizer's ids."""
    from transformers import GenerationConfig, WhisperConfig

    ids = _special_ids(tokenizer_json)
    eot, sot = _need(ids, "<|endoftext|>"), _need(ids, "<|startoftranscript|>")
    no_timestamps = _need(ids, "<|notimestamps|>")
    lang_ids = [int(i) for i in ct2_config.get("lang_ids") or []]
    by_id = {v: k for k, v in ids.items()}
    multilingual = facts["vocab_size"] >= 51865
    suppress = [int(i) for i in ct2_config.get("suppress_ids") or []]
    begin_suppress = [int(i) for i in ct2_config.get("suppress_ids_begin") or [220, eot]]
    heads = [[int(layer), int(head)] for layer, head in (ct2_config.get("alignment_heads") or [])]
    if not heads:  # CTranslate2's own default: every head of the second half of the decoder layers
        n, h = facts["decoder_layers"], facts["decoder_attention_heads"]
        heads = [[layer, head] for layer in range(n // 2, n) for head in range(h)]
    config = WhisperConfig(
        vocab_size=facts["vocab_size"],
        num_mel_bins=facts["num_mel_bins"],
        d_model=facts["d_model"],
        encoder_layers=facts["encoder_layers"],
        decoder_layers=facts["decoder_layers"],
        encoder_attention_heads=facts["encoder_attention_heads"],
        decoder_attention_heads=facts["decoder_attention_heads"],
        encoder_ffn_dim=facts["encoder_ffn_dim"],
        decoder_ffn_dim=facts["decoder_ffn_dim"],
        max_source_positions=facts["max_source_positions"],
        max_target_positions=facts["max_target_positions"],
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=facts["tie_word_embeddings"],
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=begin_suppress,
        architectures=["WhisperForConditionalGeneration"],
        torch_dtype=facts["dtype"],
        use_cache=True,
    )
    generation = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=facts["max_target_positions"],
        begin_suppress_tokens=begin_suppress,
        suppress_tokens=suppress,
        no_timestamps_token_id=no_timestamps,
        alignment_heads=heads,
        is_multilingual=multilingual,
        prev_sot_token_id=ids.get("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )
    if multilingual:
        generation.lang_to_id = {by_id[i]: i for i in lang_ids if i in by_id}
        generation.task_to_id = {"transcribe": _need(ids, "<|transcribe|>"), "translate": _need(ids, "<|translate|>")}
    return config, generation


def build_processor(src: Path, num_mel_bins: int):
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    special = "<|endoftext|>"
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(src / "tokenizer.json"),
        unk_token=special,
        bos_token=special,
        eos_token=special,
        pad_token=special,
    )
    extractor = WhisperFeatureExtractor(
        feature_size=num_mel_bins, sampling_rate=SAMPLE_RATE, hop_length=160, chunk_length=30, n_fft=400
    )
    return WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer)


# -- the directory -----------------------------------------------------------------------------
def source_digests(src: Path) -> dict[str, str]:
    return {name: sha256_file(src / name) for name in ("model.bin", "config.json", "tokenizer.json")}


def read_record(dst: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(dst) / RECORD).read_text())
    except (OSError, ValueError):
        return None


def is_current(src: str | Path, dst: str | Path, digests: dict[str, str] | None = None) -> bool:
    """``dst`` is this converter's output for ``src`` as ``src`` is now."""
    record = read_record(dst)
    if not record or record.get("converter_version") != CONVERTER_VERSION:
        return False
    if not (Path(dst) / "model.safetensors").is_file():
        return False
    return record.get("source", {}).get("sha256") == (digests or source_digests(Path(src)))


def write_hf_dir(src: Path, out_dir: Path, digests: dict[str, str]) -> dict[str, Any]:
    """Write the transformers form of ``src`` into ``out_dir`` (which must exist, empty) and
    verify it tensor by tensor.  Returns the provenance record."""
    import torch
    from safetensors.torch import load_file
    from transformers import WhisperForConditionalGeneration

    model_bin = read_ct2_model(src / "model.bin")
    state, facts = state_dict_from_ct2(model_bin)
    ct2_config = json.loads((src / "config.json").read_text())
    tokenizer_json = json.loads((src / "tokenizer.json").read_text())
    config, generation = build_configs(facts, ct2_config, tokenizer_json)
    dtype = getattr(torch, facts["dtype"])
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (k == "proj_out.weight" and facts["tie_word_embeddings"])]
    if missing or unexpected:
        raise ConversionError(
            f"tensor names do not match transformers' Whisper: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if facts["tie_word_embeddings"]:
        model.tie_weights()
    model.generation_config = generation
    model.to(dtype)
    model.save_pretrained(out_dir, safe_serialization=True)
    build_processor(src, facts["num_mel_bins"]).save_pretrained(out_dir)
    # Lossless: every written tensor equals its source bytes.
    written = load_file(str(out_dir / "model.safetensors"))
    for name, tensor in state.items():
        if name not in written or written[name].dtype != tensor.dtype or not torch.equal(written[name], tensor):
            raise ConversionError(f"{name}: the written tensor differs from model.bin's")
    record = {
        "converter": "voiceman.whisper_convert",
        "converter_version": CONVERTER_VERSION,
        "source": {
            "path": str(src.resolve()),
            "format": f"CTranslate2 {model_bin.spec} revision {model_bin.revision}",
            "sha256": digests,
        },
        "lossless": True,
        "tensors": len(state),
        "dtype": facts["dtype"],
        "weights_sha256": sha256_weights(out_dir),
        "architecture": facts,
    }
    (out_dir / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def convert(src: str | Path, dst: str | Path, force: bool = False) -> Path:
    """Write the transformers form of the CTranslate2 Whisper directory ``src`` at ``dst``.

    Idempotent (an up-to-date ``dst`` is left alone) and atomic: the new directory is built
    next to ``dst`` and renamed into place, so ``dst`` is either the old complete directory
    or the new complete one, never a half-written mix."""
    src, dst = Path(src), Path(dst)
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (src / name).is_file():
            raise ConversionError(f"{src} is not a CTranslate2 Whisper directory: {name} is missing")
    digests = source_digests(src)
    if not force and is_current(src, dst, digests):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".converting", dir=dst.parent))
    try:
        write_hf_dir(src, staging, digests)
        for path in staging.iterdir():  # readable like the CTranslate2 files beside it
            os.chmod(path, 0o644)
        os.chmod(staging, 0o755)
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
            os.rename(dst, old / dst.name)
            os.rename(staging, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, dst)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voiceman.whisper_convert", description=__doc__.splitlines()[0])
    parser.add_argument("src", help="CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json)")
    parser.add_argument("dst", nargs="?", help="output directory (default: SRC-hf)")
    parser.add_argument("--force", action="store_true", help="rewrite even when DST is up to date")
    args = parser.parse_args(argv)
    dst = args.dst or f"{args.src.rstrip('/')}-hf"
    try:
        out = convert(args.src, dst, force=args.force)
    except ConversionError as exc:
        print(f"whisper_convert: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
