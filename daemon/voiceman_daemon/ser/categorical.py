"""Categorical speech emotion: one label per segment with its probability distribution.

`load_categorical` detects the directory's kind from its files:
- hyperparams.yaml -> a SpeechBrain model (speechbrain/emotion-recognition-wav2vec2-IEMOCAP
  layout, labels neu/ang/hap/sad from label_encoder.txt);
- config.json      -> a transformers audio-classification model (labels from id2label).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .batching import dummy_segment, min_samples_for, run_batched
from .categorical_hf import TransformersAudioClassifierBackend
from .categorical_speechbrain import SpeechBrainEmotionBackend
from .cuda_graphs import GraphRunner, GraphSettings
from .device import MemoryProbe, select_device
from .errors import ModelDirectoryError, SERLoadError
from .integrity import check_expected_sha256, hash_weight_files, require_directory
from .results import CategoricalItem, CategoricalResult, SegmentError

Backend = SpeechBrainEmotionBackend | TransformersAudioClassifierBackend


def detect_kind(model_dir: Path) -> str:
    if (model_dir / "hyperparams.yaml").is_file():
        return "speechbrain"
    if (model_dir / "config.json").is_file():
        return "transformers"
    raise ModelDirectoryError(
        f"{model_dir}: not a categorical emotion model: neither hyperparams.yaml "
        "(SpeechBrain) nor config.json (transformers audio classifier) found"
    )


class CategoricalSER:
    """A loaded, frozen, warmed-up categorical SER model."""

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
        self.kind = detect_kind(model_dir)
        self.model_id = str(model_dir)
        self.weights_sha256, self.weight_files = hash_weight_files(model_dir)
        check_expected_sha256(model_dir, self.weights_sha256, expected_sha256)

        choice = select_device(device, memory_probe)
        self.device, self.device_reason = choice.device, choice.reason
        backend_class = SpeechBrainEmotionBackend if self.kind == "speechbrain" else TransformersAudioClassifierBackend
        self.backend: Backend = backend_class(model_dir, self.device)
        self.labels = list(self.backend.labels)
        self.sample_rate = self.backend.sample_rate
        self._min_samples = min_samples_for(self.sample_rate, self.backend.min_samples)
        self.graphs = self.graph_runner(graphs or GraphSettings())
        self.graphs.warm_up()  # captures the CUDA graphs (on CUDA, unless off)

        warm = self.predict([dummy_segment(self.sample_rate)], self.sample_rate)[0]
        if isinstance(warm, SegmentError):
            raise SERLoadError(f"{model_dir}: warm-up forward failed: {warm.error}")
        self.load_seconds = time.perf_counter() - started

    def graph_runner(self, settings: GraphSettings, capture: bool = True) -> GraphRunner:
        """The bucketed/graph runner over the backend's prepared segments (capture=False: the
        bucketed forward without graphs, on any device; tests compare it with the eager path)."""
        return GraphRunner(
            f"ser_categorical {self.model_id}",
            self.device,
            settings,
            self.sample_rate,
            self.backend.padded_probabilities,
            self.backend.probabilities_prepared,
            unsupported=self.backend.padded_unsupported(),
            capture=capture,
        )

    def _infer(self, waveforms: list[torch.Tensor]) -> list[CategoricalResult]:
        prepared = [self.backend.prepare(w) for w in waveforms]
        probabilities = self.graphs.run(prepared).numpy().astype(np.float64)
        results = []
        for row in probabilities:
            best = int(np.argmax(row))
            results.append(
                CategoricalResult(
                    label=self.labels[best],
                    probabilities={label: float(p) for label, p in zip(self.labels, row)},
                )
            )
        return results

    def predict(
        self, waveforms: Sequence[np.ndarray], sample_rate: int = 16000, *, batch_size: int | None = None
    ) -> list[CategoricalItem]:
        """One result per segment, in order; bad segments get a SegmentError."""
        return run_batched(waveforms, sample_rate, self.sample_rate, self._min_samples, batch_size, self._infer)


def load_categorical(
    path: str,
    device: str = "auto",
    *,
    memory_probe: MemoryProbe | None = None,
    expected_sha256: str | None = None,
    graphs: GraphSettings | None = None,
) -> CategoricalSER:
    """Load a SpeechBrain IEMOCAP-layout or transformers audio-classification directory."""
    return CategoricalSER(
        require_directory(path), device, memory_probe=memory_probe, expected_sha256=expected_sha256, graphs=graphs
    )
