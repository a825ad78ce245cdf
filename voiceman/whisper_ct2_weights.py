"""A CTranslate2 Whisper ``model.bin`` -> transformers' Whisper state dict, tensor for tensor.

CTranslate2's converter only re-arranges transformers' tensors (it fuses the q/k/v
projections into one matrix, stores the absent k bias as zeros and aliases the output
projection to the token embeddings), so the tensors map back bit for bit: this module reads
``model.bin`` itself (CTranslate2's binary layout, version 6: see
``ctranslate2/specs/model_spec.py`` ``_serialize``) and undoes those steps.  Quantized
(int8/int16) variables are refused: their original weights cannot be recovered.
``voiceman.whisper_convert`` writes the result as a transformers directory.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED_BINARY_VERSIONS = (6,)
# CTranslate2's DataType enum (include/ctranslate2/types.h): id -> numpy dtype.  bfloat16 has
# no numpy type; its bits are kept as uint16 and reinterpreted by torch.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_BFLOAT16 = 5
_FLOAT_TYPES = (0, 4, 5)


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
