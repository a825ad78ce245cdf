"""Registry adapters for the two SER models (E1, S2, S3, N1): the daemon loads each once,
warmed up, and keeps it; the adapters add what the registry needs (spec, custody)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .registry import ModelSpec


class SERModel:
    """A loaded SER model (dimensional or categorical) behind the registry's interface."""

    def __init__(self, spec: ModelSpec, kind: str):
        from . import ser
        from .ser.cuda_graphs import GraphSettings

        if not Path(spec.id).is_dir():
            raise FileNotFoundError(f"no model at {spec.id}")
        loader = ser.load_dimensional if kind == "dimensional" else ser.load_categorical
        self.spec = spec
        self.kind = kind
        # O1: CUDA graphs per (length bucket, batch size), captured at load when on CUDA.
        graphs = GraphSettings.from_options(
            spec.option("cuda_graphs"), spec.option("graph_buckets_s"), spec.option("graph_batch_sizes")
        )
        self.model = loader(spec.id, spec.option("device", "auto"), graphs=graphs)

    def custody(self) -> dict[str, Any]:
        return {
            "kind": f"ser_{self.kind}",
            "id": self.spec.id,
            "revision": self.spec.revision,
            "path": str(Path(self.spec.id).resolve()),
            "sha256": self.model.weights_sha256,
            "device": self.model.device,
            "device_reason": self.model.device_reason,
            "cuda_graphs": self.model.graphs.reason,  # graphs, or why the model runs eagerly
        }

    def runtime_stats(self) -> dict[str, Any]:
        """What changes while the model serves (the registry's stats): graph vs eager batches."""
        return {"cuda_graphs": self.model.graphs.stats()}

    def release(self) -> None:
        """On unload: drop the captured graphs (their memory pool) with the model."""
        self.model.graphs.release()

    def predict(self, waveforms: list[np.ndarray], batch_size: int | None = None) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.model.predict(waveforms, batch_size=batch_size)]


def load_ser_dimensional(spec: ModelSpec) -> SERModel:
    return SERModel(spec, "dimensional")


def load_ser_categorical(spec: ModelSpec) -> SERModel:
    return SERModel(spec, "categorical")
