"""Dimensional speech emotion: arousal, dominance, valence.

Architecture of audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim: a wav2vec2
encoder, mean pooling of the last hidden state over time, and a regression head
`classifier.dense` (hidden->hidden, tanh, dropout) + `classifier.out_proj`
(hidden->3). The checkpoint keys are `wav2vec2.*`, `classifier.dense.*`,
`classifier.out_proj.*`; outputs are ordered by the config's id2label
(arousal, dominance, valence in the published model).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model, Wav2Vec2PreTrainedModel

from . import wav2vec2_encoding
from .batching import dummy_segment, min_samples_for, run_batched
from .cuda_graphs import GraphRunner, GraphSettings
from .device import MemoryProbe, select_device
from .errors import ModelDirectoryError, SERLoadError
from .integrity import (
    check_expected_sha256,
    hash_weight_files,
    load_complete_checkpoint,
    require_directory,
    require_files,
)
from .results import DimensionalItem, DimensionalResult, SegmentError

DIMENSIONS = ("arousal", "dominance", "valence")


class RegressionHead(nn.Module):
    """dropout -> dense -> tanh -> dropout -> out_proj, as in the audeering model."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.final_dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = self.dropout(pooled)
        x = torch.tanh(self.dense(x))
        x = self.dropout(x)
        return self.out_proj(x)


class AudeeringDimensionalModel(Wav2Vec2PreTrainedModel):
    """wav2vec2 + mean pooling + regression head; loads the audeering checkpoint layout."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__(config)
        self.wav2vec2 = Wav2Vec2Model(config)
        self.classifier = RegressionHead(config)
        self.post_init()

    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled hidden state, arousal/dominance/valence) for a padded batch."""
        hidden = self.wav2vec2(input_values, attention_mask=attention_mask).last_hidden_state
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            frame_lengths = self.wav2vec2._get_feat_extract_output_lengths(attention_mask.sum(-1))
            mask = wav2vec2_encoding.frame_mask(frame_lengths, hidden.shape[1])
            pooled = wav2vec2_encoding.masked_mean(hidden, mask)
        return pooled, self.classifier(pooled)

    def predict_segments(self, waveforms: list[torch.Tensor]) -> torch.Tensor:
        """(B, 3) outputs for normalised 1-D waveforms, each independent of the batch."""
        hidden, mask = wav2vec2_encoding.encode(self.wav2vec2, waveforms)
        return self.classifier(wav2vec2_encoding.masked_mean(hidden, mask))

    def predict_padded(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, 3) outputs of a fixed-shape (B, L) batch with true lengths: the CUDA-graph path."""
        hidden, mask = wav2vec2_encoding.encode_padded(self.wav2vec2, waves, lengths)
        return self.classifier(wav2vec2_encoding.masked_mean(hidden, mask))


def _output_order(config: Wav2Vec2Config, model_dir: Path) -> list[int]:
    """Index of arousal, dominance, valence in the model output, from config.id2label."""
    names = {int(i): str(name).strip().lower() for i, name in (config.id2label or {}).items()}
    if config.num_labels != 3 or sorted(names.values()) != sorted(DIMENSIONS):
        raise ModelDirectoryError(
            f"{model_dir / 'config.json'}: id2label must name exactly {', '.join(DIMENSIONS)} "
            f"(3 outputs); found {config.num_labels} outputs labelled {sorted(names.values())}"
        )
    by_name = {name: index for index, name in names.items()}
    return [by_name[d] for d in DIMENSIONS]


class DimensionalSER:
    """A loaded, frozen, warmed-up dimensional SER model."""

    def __init__(
        self,
        model_dir: Path,
        device: str = "auto",
        *,
        memory_probe: MemoryProbe | None = None,
        expected_sha256: str | None = None,
        graphs: GraphSettings | None = None,
    ):
        started = time.perf_counter()
        require_files(model_dir, ["config.json", "preprocessor_config.json"], "a dimensional wav2vec2 SER model")
        self.model_id = str(model_dir)
        self.weights_sha256, self.weight_files = hash_weight_files(model_dir)
        check_expected_sha256(model_dir, self.weights_sha256, expected_sha256)
        if not any(Path(name).suffix in (".safetensors", ".bin") and "/" not in name for name in self.weight_files):
            raise ModelDirectoryError(f"{model_dir}: missing model.safetensors or pytorch_model.bin")

        choice = select_device(device, memory_probe)
        self.device, self.device_reason = choice.device, choice.reason

        self.feature_extractor, model = load_complete_checkpoint(
            model_dir,
            Wav2Vec2FeatureExtractor,
            AudeeringDimensionalModel,
            "dimensional model",
            "; not the wav2vec2 + classifier.dense/out_proj layout",
        )
        wav2vec2_encoding.check_supported_encoder(model.wav2vec2, str(model_dir))

        self._order = _output_order(model.config, model_dir)
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self._min_samples = min_samples_for(self.sample_rate, wav2vec2_encoding.min_input_samples(model.wav2vec2))
        model.requires_grad_(False)
        self.model = model.to(self.device).eval()
        self.graphs = self.graph_runner(graphs or GraphSettings())
        self.graphs.warm_up()  # captures the CUDA graphs (on CUDA, unless off)

        warm = self.predict([dummy_segment(self.sample_rate)], self.sample_rate)[0]
        if isinstance(warm, SegmentError):
            raise SERLoadError(f"{model_dir}: warm-up forward failed: {warm.error}")
        self.load_seconds = time.perf_counter() - started

    def _normalise(self, waveform: torch.Tensor) -> torch.Tensor:
        # The feature extractor's own per-segment normalisation (zero mean, unit variance).
        values = self.feature_extractor(
            waveform.numpy(), sampling_rate=self.sample_rate, return_tensors="np"
        ).input_values[0]
        return torch.from_numpy(np.asarray(values, dtype=np.float32))

    def graph_runner(self, settings: GraphSettings, capture: bool = True) -> GraphRunner:
        """The bucketed/graph runner for this model (capture=False: the bucketed forward without
        graphs, on any device; tests compare it with the eager path)."""
        return GraphRunner(
            f"ser_dimensional {self.model_id}",
            self.device,
            settings,
            self.sample_rate,
            self.model.predict_padded,
            self.model.predict_segments,
            unsupported=wav2vec2_encoding.supports_padded(self.model.wav2vec2),
            capture=capture,
        )

    def _infer(self, waveforms: list[torch.Tensor]) -> list[DimensionalResult]:
        outputs = self.graphs.run([self._normalise(w) for w in waveforms])
        ordered = outputs[:, self._order]
        return [DimensionalResult(*(float(v) for v in row)) for row in ordered]

    def predict(
        self, waveforms: Sequence[np.ndarray], sample_rate: int = 16000, *, batch_size: int | None = None
    ) -> list[DimensionalItem]:
        """One result per segment, in order; bad segments get a SegmentError."""
        return run_batched(waveforms, sample_rate, self.sample_rate, self._min_samples, batch_size, self._infer)


def load_dimensional(
    path: str,
    device: str = "auto",
    *,
    memory_probe: MemoryProbe | None = None,
    expected_sha256: str | None = None,
    graphs: GraphSettings | None = None,
) -> DimensionalSER:
    """Load an audeering-layout dimensional SER checkpoint from a local directory."""
    return DimensionalSER(
        require_directory(path), device, memory_probe=memory_probe, expected_sha256=expected_sha256, graphs=graphs
    )
