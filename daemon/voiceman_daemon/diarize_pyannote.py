"""The pyannote diarizer: a local pyannote.audio pipeline directory (no hub access) whose
speaker turns label the transcript's words."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from voiceman.audio import SAMPLE_RATE
from voiceman.hashing import sha256_weights

from .diarize_labels import label_segments, relabel, turn_labeller
from .diarize_settings import DiarizationSettings
from .registry import ModelSpec


class PyannoteDiarizer:
    """A local pyannote.audio speaker-diarization pipeline directory (no hub access)."""

    def __init__(self, spec: ModelSpec, settings: DiarizationSettings):
        path = Path(spec.id)
        if not path.is_dir():
            raise FileNotFoundError(
                f"models.diarization.id: no pyannote pipeline directory at '{spec.id}' (method pyannote needs a "
                f"local folder with the pipeline's config.yaml and the models it names; with no such folder use "
                f"method resemblyzer, id resemblyzer)"
            )
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(f"models.diarization.id: '{spec.id}' has no config.yaml: not a pyannote pipeline")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # evidence machines are offline
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")  # and send no telemetry
        import importlib.metadata

        import torch
        from pyannote.audio import Pipeline

        from .asr import pick_device

        self.spec, self.settings = spec, settings
        self.device = pick_device(spec.option("device", "auto"))
        self.path = path.resolve()
        self.pipeline = Pipeline.from_pretrained(self.path)
        if self.pipeline is None:
            raise RuntimeError(f"pyannote could not build a pipeline from {self.path}")
        self.pipeline.to(torch.device(self.device))
        self.version = importlib.metadata.version("pyannote.audio")
        self.weights_sha256 = sha256_weights(self.path)
        self._torch = torch

    def custody(self) -> dict[str, Any]:
        return {
            "kind": "diarization",
            "id": self.spec.id,
            "revision": self.spec.revision,
            "method": "pyannote",
            "package": {"name": "pyannote.audio", "version": self.version},
            "path": str(self.path),
            "sha256": self.weights_sha256,
            "device": self.device,
            "settings": self.settings.to_dict(),
        }

    def diarize(self, audio: np.ndarray, segments: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        waveform = self._torch.from_numpy(np.asarray(audio, dtype=np.float32)).unsqueeze(0)
        output = self.pipeline(
            {"waveform": waveform, "sample_rate": SAMPLE_RATE},
            min_speakers=self.settings.min_speakers,
            max_speakers=self.settings.max_speakers,
        )
        # pyannote 4: DiarizeOutput (the exclusive annotation has no overlapping turns); 3.x: Annotation.
        annotation = getattr(output, "exclusive_speaker_diarization", None) or getattr(
            output, "speaker_diarization", output
        )
        names: dict[str, int] = {}
        turns = []
        for turn, _, name in annotation.itertracks(yield_label=True):
            turns.append((float(turn.start), float(turn.end), names.setdefault(str(name), len(names))))
        labelled = label_segments(segments, turn_labeller(turns))
        return relabel(labelled), {"turns": len(turns)}
