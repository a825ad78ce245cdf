"""Cross-file batching for the CTranslate2 Whisper backend.

faster-whisper's ``BatchedInferencePipeline`` batches the speech chunks of ONE recording.
Here the chunks of several recordings (requests gathered by the daemon core) share the
model passes, while every recording still gets exactly what it would get alone:

- each recording is prepared by the library's own ``transcribe`` (features, tokenizer,
  options, language detection), which ends by handing its inputs to
  ``_batched_segments_generator``; :class:`CrossFilePipeline` keeps them instead of starting
  a generator;
- the chunks of recordings with the same tokenizer and options are concatenated (each
  recording's chunks contiguous, in order) and cut into batches of ``batch_size``; one
  ``generate_segment_batched`` (encoder + beam search) runs per batch;
- the library's ``forward`` then splits segments and adds word times for each recording's
  run of chunks on its slice of the encoder output.  Word times carry state from chunk to
  chunk (``last_speech_timestamp``); it is kept per recording, so a neighbour's speech never
  shifts them.  Whisper pads every chunk to 30 s, so a batch's composition does not change
  what the encoder sees.

A test checks that files transcribed together equal the files transcribed one at a time.
Written against faster-whisper 1.2.1 (pinned); the test fails if its internals move.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from faster_whisper import BatchedInferencePipeline


@dataclass
class PreparedRecording:
    """What the library's ``transcribe`` computed for one recording, before decoding."""

    features: Any  # (chunks, n_mels, frames) or [] when there is no speech
    tokenizer: Any
    chunks_metadata: list[dict[str, Any]]
    options: Any  # faster_whisper TranscriptionOptions
    info: Any = None  # TranscriptionInfo (language, its probability)

    @property
    def chunks(self) -> int:
        return len(self.chunks_metadata)

    def shares_batch_with(self, other: PreparedRecording) -> bool:
        """Same prompt and decoding rules: their chunks may be decoded in one pass."""
        return (
            self.tokenizer.language_code == other.tokenizer.language_code
            and self.tokenizer.task == other.tokenizer.task
            and _decoding_rules(self.options) == _decoding_rules(other.options)
        )


@dataclass(frozen=True)
class ChunkBatching:
    """How one ``transcribe_many`` call batched its recordings' speech chunks (either backend)."""

    chunks: int
    forward_batches: int


@dataclass
class CrossFileRun:
    """Raw segment dicts per recording, and how the chunks were batched."""

    segments: list[list[dict[str, Any]]]
    batching: ChunkBatching


def encoder_rows(view: Any, start: int, stop: int) -> tuple[Any, Any]:
    """Rows ``start:stop`` of a CTranslate2 encoder output, as a new StorageView, plus the
    array that owns its memory (keep it alive while the view is used)."""
    import ctranslate2

    if view.device == "cpu":
        rows = np.ascontiguousarray(np.asarray(view)[start:stop])
    else:  # a CUDA StorageView exposes __cuda_array_interface__
        import torch

        rows = torch.as_tensor(view, device=f"cuda:{view.device_index}")[start:stop].contiguous()
    return ctranslate2.StorageView.from_array(rows), rows


class CrossFilePipeline(BatchedInferencePipeline):
    """A ``BatchedInferencePipeline`` whose decoding loop spans several recordings."""

    def __init__(self, model: Any):
        super().__init__(model)
        self._encoded: tuple[Any, list[dict[str, Any]]] | None = None

    def _batched_segments_generator(self, features, tokenizer, chunks_metadata, batch_size, options, log_progress):
        # transcribe() ends here: keep its inputs; decoding happens in run(), across recordings.
        return PreparedRecording(features, tokenizer, chunks_metadata, options)

    def prepare(self, audio: np.ndarray, **transcribe_kwargs: Any) -> PreparedRecording:
        prepared, info = self.transcribe(audio, **transcribe_kwargs)
        prepared.info = info
        return prepared

    def generate_segment_batched(self, features, tokenizer, options):
        if self._encoded is not None:  # this run's rows of a batch already decoded in run()
            encoded, self._encoded = self._encoded, None
            return encoded
        return super().generate_segment_batched(features, tokenizer, options)

    def run(self, recordings: list[PreparedRecording], batch_size: int) -> CrossFileRun:
        segments: list[list[dict[str, Any]]] = [[] for _ in recordings]
        forward_batches = 0
        for group in _groups(recordings):
            first = recordings[group[0]]
            owners = [i for i in group for _ in range(recordings[i].chunks)]
            features = np.concatenate([recordings[i].features for i in group])
            metadata = [m for i in group for m in recordings[i].chunks_metadata]
            carry = dict.fromkeys(group, 0.0)  # last_speech_timestamp, per recording
            for start in range(0, len(owners), batch_size):
                stop = min(start + batch_size, len(owners))
                encoder_output, outputs = super().generate_segment_batched(
                    features[start:stop], first.tokenizer, first.options
                )
                forward_batches += 1
                for owner, a, b in owner_runs(owners[start:stop]):
                    whole = b - a == stop - start
                    rows, keep = (encoder_output, None) if whole else encoder_rows(encoder_output, a, b)
                    self._encoded = (rows, outputs[a:b])
                    self.last_speech_timestamp = carry[owner]
                    try:
                        done = self.forward(
                            features[start + a : start + b],
                            first.tokenizer,
                            metadata[start + a : start + b],
                            first.options,
                        )
                    finally:
                        self._encoded = None
                    del keep
                    carry[owner] = self.last_speech_timestamp
                    segments[owner].extend(s for chunk in done for s in chunk)
        self.last_speech_timestamp = 0.0
        return CrossFileRun(segments, ChunkBatching(sum(r.chunks for r in recordings), forward_batches))


def _decoding_rules(options: Any) -> Any:
    """The options without the recording's own speech regions (its ``clip_timestamps``,
    already cut into its chunks): what must match for chunks to share a pass."""
    return dataclasses.replace(options, clip_timestamps=None)


def _groups(recordings: list[PreparedRecording]) -> list[list[int]]:
    """Indices of recordings with speech, grouped by what may share a decoding pass."""
    groups: list[list[int]] = []
    for i, rec in enumerate(recordings):
        if not rec.chunks:
            continue
        for group in groups:
            if recordings[group[0]].shares_batch_with(rec):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def owner_runs(owners: list[int]) -> list[tuple[int, int, int]]:
    """(owner, start, stop) for each stretch of equal owners."""
    runs: list[tuple[int, int, int]] = []
    for i, owner in enumerate(owners):
        if runs and runs[-1][0] == owner:
            runs[-1] = (owner, runs[-1][1], i + 1)
        else:
            runs.append((owner, i, i + 1))
    return runs
