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
        per_segment = [
            model.feature_extractor(w.to(device)[None, :])[0].transpose(0, 1) for w in waveforms
        ]
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
