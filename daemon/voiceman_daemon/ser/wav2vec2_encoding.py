"""Batched wav2vec2 encoding whose per-segment output does not depend on the batch.

`Wav2Vec2Model.forward` with an attention mask is batch-independent only when
the conv feature encoder uses per-frame layer norm (feat_extract_norm="layer",
e.g. wav2vec2-large-robust). With "group" norm (wav2vec2-base) the first conv
layer normalises each channel over the whole time axis, padding included, so a
padded segment would change with its neighbours. There we run the conv encoder
per segment (on its own samples only) and batch the transformer, which masks
padding exactly. The steps are those of `Wav2Vec2Model.forward` in eval mode
(spec-augment masking is a no-op outside training).
"""

from __future__ import annotations

import torch
from transformers import Wav2Vec2Model
from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2Encoder, Wav2Vec2EncoderStableLayerNorm

from .errors import SERLoadError


def check_supported_encoder(model: Wav2Vec2Model, where: str) -> None:
    if getattr(model.config, "add_adapter", False):
        raise SERLoadError(f"{where}: wav2vec2 encoders with an adapter (add_adapter=true) are not supported")


def min_input_samples(model: Wav2Vec2Model) -> int:
    """Fewest samples that give at least one frame out of the conv stack."""
    receptive, jump = 1, 1
    for kernel, stride in zip(model.config.conv_kernel, model.config.conv_stride):
        receptive += (kernel - 1) * jump
        jump *= stride
    return receptive


def frame_mask(frame_lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    positions = torch.arange(n_frames, device=frame_lengths.device)
    return positions[None, :] < frame_lengths[:, None]


def encode(model: Wav2Vec2Model, waveforms: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden states (B, T, C) and a bool frame mask (B, T) for 1-D waveforms.

    Frames where the mask is True equal those of encoding the segment alone.
    """
    device = next(model.parameters()).device
    if model.config.feat_extract_norm == "group":
        per_segment = [model.feature_extractor(w.to(device)[None, :])[0].transpose(0, 1) for w in waveforms]
        frame_lengths = torch.tensor([f.shape[0] for f in per_segment], device=device)
        features = torch.nn.utils.rnn.pad_sequence(per_segment, batch_first=True)
    else:
        lengths = torch.tensor([w.shape[0] for w in waveforms])
        padded = torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True).to(device)
        features = model.feature_extractor(padded).transpose(1, 2)
        frame_lengths = model._get_feat_extract_output_lengths(lengths).to(device)

    mask = frame_mask(frame_lengths, features.shape[1])
    hidden, _ = model.feature_projection(features)
    hidden = model.encoder(hidden, attention_mask=mask, return_dict=True).last_hidden_state
    return hidden, mask


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames only: (B, T, C), (B, T) -> (B, C)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


# -- static-shape encoding (the CUDA-graph path, ser/cuda_graphs.py) ---------------------------------
# `encode` above builds its batch from Python lists and lets the HF encoder turn the mask into
# an attention mask; both steps depend on the data (the encoder's `hidden[~mask] = 0` is a
# boolean-mask index_put, and the SDPA mask helper checks `torch.all(mask == 1)` on the host),
# so neither can be captured in a CUDA graph. `encode_padded` takes a fixed-shape (B, L)
# batch and its (B,) true lengths, both already on the device, and runs the same eval-mode
# steps with tensor operations only: the mask is a multiplication and an additive attention
# mask, the group-norm layer normalises over each segment's own frames. Every frame inside a
# segment's true length equals that of encoding the segment alone, whatever L is.


def supports_padded(model: Wav2Vec2Model) -> str | None:
    """None when `encode_padded` can run this encoder, else why not."""
    config = model.config
    if getattr(config, "add_adapter", False):
        return "wav2vec2 adapter layers are not supported on the bucketed path"
    implementation = getattr(config, "_attn_implementation", None) or "eager"
    if implementation not in ("eager", "sdpa"):
        return f"attention implementation {implementation!r} takes no additive mask"
    if config.feat_extract_norm == "group":
        norm = getattr(model.feature_extractor.conv_layers[0], "layer_norm", None)
        if not isinstance(norm, torch.nn.GroupNorm) or norm.num_groups != norm.num_channels:
            return "group-norm conv stack whose first norm is not one group per channel"
    elif config.feat_extract_norm != "layer":
        return f"feat_extract_norm {config.feat_extract_norm!r} is not 'layer' or 'group'"
    if not isinstance(model.encoder, (Wav2Vec2Encoder, Wav2Vec2EncoderStableLayerNorm)):
        return f"encoder {type(model.encoder).__name__} is not a wav2vec2 encoder"
    return None


def _conv_length(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    return torch.div(lengths - kernel, stride, rounding_mode="floor") + 1


def masked_group_norm(x: torch.Tensor, valid: torch.Tensor, norm: torch.nn.GroupNorm) -> torch.Tensor:
    """GroupNorm with one group per channel over the valid frames only: (B, C, T), (B, T)."""
    weights = valid[:, None, :].to(x.dtype)
    count = weights.sum(dim=-1, keepdim=True).clamp(min=1.0)
    mean = (x * weights).sum(dim=-1, keepdim=True) / count
    var = (((x - mean) * weights) ** 2).sum(dim=-1, keepdim=True) / count
    x = (x - mean) * torch.rsqrt(var + norm.eps)
    return x * norm.weight[None, :, None] + norm.bias[None, :, None]


def encoder_forward(encoder: torch.nn.Module, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`Wav2Vec2Encoder` / `Wav2Vec2EncoderStableLayerNorm` in eval mode, capturable.

    Padded frames are zeroed by multiplication (the HF code's `hidden[~mask] = 0`) and the
    attention mask is the additive (B, 1, T, T) mask `_prepare_4d_attention_mask` builds.
    """
    hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)
    n_frames = mask.shape[1]
    additive = torch.zeros(mask.shape, dtype=hidden.dtype, device=hidden.device)
    additive = additive.masked_fill(~mask, torch.finfo(hidden.dtype).min)
    additive = additive[:, None, None, :].expand(-1, 1, n_frames, -1)
    hidden = hidden + encoder.pos_conv_embed(hidden)
    stable = isinstance(encoder, Wav2Vec2EncoderStableLayerNorm)
    if not stable:
        hidden = encoder.layer_norm(hidden)
    for layer in encoder.layers:
        hidden = layer(hidden, attention_mask=additive)[0]
    if stable:
        hidden = encoder.layer_norm(hidden)
    return hidden


def encode_padded(
    model: Wav2Vec2Model, waves: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden states (B, T, C) and frame mask (B, T) of a fixed-shape batch.

    waves: (B, L) float, zero beyond each row's length; lengths: (B,) long, 1 <= length <= L.
    Both on the model's device. Only tensor operations: capturable in a CUDA graph.
    """
    config = model.config
    conv_layers = model.feature_extractor.conv_layers
    x = waves[:, None, :]
    if config.feat_extract_norm == "group":
        # wav2vec2-base: the first layer's GroupNorm normalises each channel over time, so
        # it must see the segment's own frames only, not the bucket's padding.
        first = conv_layers[0]
        x = first.conv(x)
        valid = frame_mask(_conv_length(lengths, config.conv_kernel[0], config.conv_stride[0]), x.shape[-1])
        x = first.activation(masked_group_norm(x, valid, first.layer_norm))
        conv_layers = conv_layers[1:]
    for layer in conv_layers:
        x = layer(x)
    features = x.transpose(1, 2)
    frame_lengths = lengths
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        frame_lengths = _conv_length(frame_lengths, kernel, stride)
    mask = frame_mask(frame_lengths, features.shape[1])
    hidden, _ = model.feature_projection(features)
    return encoder_forward(model.encoder, hidden, mask), mask
