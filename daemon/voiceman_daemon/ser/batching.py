"""Shared per-segment validation and length-sorted batching.

Every backend computes each segment's result independently of its batch
neighbours, so segments can be sorted by length (less padding) and cut into
chunks freely; results are put back in the caller's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

from .results import SegmentError

MIN_SEGMENT_SECONDS = 0.1

R = TypeVar("R")


def check_segment(waveform: np.ndarray, sample_rate: int, min_samples: int) -> torch.Tensor | SegmentError:
    """A float32 CPU tensor of the segment, or the reason it cannot be scored."""
    try:
        array = np.asarray(waveform)
    except Exception as exc:
        return SegmentError(f"segment is not an array: {exc}")
    if array.ndim != 1:
        return SegmentError(f"segment must be 1-D mono audio, got shape {tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.number):
        return SegmentError(f"segment has non-numeric dtype {array.dtype}")
    n = int(array.shape[0])
    if n < min_samples:
        return SegmentError(
            f"segment too short: {n} samples ({n / sample_rate:.3f} s) at {sample_rate} Hz; "
            f"minimum is {min_samples} samples ({min_samples / sample_rate:.3f} s)"
        )
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        return SegmentError("segment contains NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(array))


def min_samples_for(sample_rate: int, model_min_samples: int) -> int:
    """At least 0.1 s, and at least what the model's conv stack needs for one frame."""
    return max(int(round(MIN_SEGMENT_SECONDS * sample_rate)), int(model_min_samples))


def run_batched(
    waveforms: Sequence[np.ndarray],
    sample_rate: int,
    expected_rate: int,
    min_samples: int,
    batch_size: int | None,
    infer: Callable[[list[torch.Tensor]], list[R]],
) -> list[R | SegmentError]:
    """Validate segments, run `infer` over length-sorted chunks under inference_mode.

    `infer` gets a list of 1-D float32 tensors and returns one result per tensor.
    """
    if int(sample_rate) != int(expected_rate):
        raise ValueError(
            f"sample_rate {sample_rate} Hz does not match the model's {expected_rate} Hz; "
            "resample before calling predict"
        )
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    results: list[R | SegmentError | None] = [None] * len(waveforms)
    valid: list[tuple[int, torch.Tensor]] = []
    for index, waveform in enumerate(waveforms):
        checked = check_segment(waveform, sample_rate, min_samples)
        if isinstance(checked, SegmentError):
            results[index] = checked
        else:
            valid.append((index, checked))

    # Longest first: the first chunk shows the peak memory use straight away.
    valid.sort(key=lambda item: item[1].shape[0], reverse=True)
    step = batch_size or max(len(valid), 1)
    with torch.inference_mode():
        for start in range(0, len(valid), step):
            chunk = valid[start : start + step]
            outputs = infer([tensor for _, tensor in chunk])
            if len(outputs) != len(chunk):
                raise RuntimeError(f"backend returned {len(outputs)} results for {len(chunk)} segments")
            for (index, _), output in zip(chunk, outputs):
                results[index] = output
    return results  # type: ignore[return-value]


def pad_batch(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded (B, T) batch and (B,) lengths."""
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)
    return padded, lengths


def dummy_segment(sample_rate: int, seconds: float = 1.0) -> np.ndarray:
    """Deterministic low-level noise used only for the load-time warm-up forward."""
    generator = np.random.default_rng(0)
    return (0.01 * generator.standard_normal(int(sample_rate * seconds))).astype(np.float32)
