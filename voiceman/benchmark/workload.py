"""The benchmark's workload: synthesised recordings, the models, and the config every mode runs.

Default: 6 recordings of about 60 s of speech each (espeak-ng), the real Whisper base weights,
and SER models with the published architectures' sizes (dimensional: wav2vec2-large-robust cut
to 12 layers, as audeering's model; categorical: wav2vec2-base, as SpeechBrain's IEMOCAP
model).  The SER weights are random: timing needs the shape, not the training.  They are
built once and cached under models/bench/.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE
from ..resources import REPO_ROOT

SENTENCES = [
    "Please meet me at the harbour tomorrow morning and bring the money with you.",
    "I know where you live. Do not call the police again or you will regret it.",
    "The meeting is on Friday at the old train station near the river.",
    "We talked about the contract for a long time and then we went home.",
    "If you tell anyone about this, your family will pay for it.",
    "The weather was cold, so we stayed inside and watched a film.",
    "You are worthless and nobody will ever believe a word you say.",
    "Send the documents by noon, otherwise the photos go to your boss.",
]
PAUSE_S = 0.6
MODEL_SIZES = ("published", "tiny")


@dataclass(frozen=True)
class Workload:
    case_dir: Path
    files: list[str]
    audio_s: float
    models: dict[str, str]  # role -> local directory
    description: dict[str, str]  # role -> what it is

    def config_overrides(self) -> dict[str, Any]:
        return {
            "models": {
                "asr": {"id": self.models["asr"], "language": "en"},
                "ser_dimensional": {"id": self.models["ser_dimensional"]},
                "ser_categorical": {"id": self.models["ser_categorical"]},
            }
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": len(self.files),
            "audio_s": round(self.audio_s, 1),
            "models": dict(self.description),
            "stages": "ingest, transcribe, ser, voice, patterns, report, case",
        }


def synthesise_case(case_dir: Path, files: int, seconds: float) -> float:
    """``files`` WAV recordings of at least ``seconds`` of speech each; returns total seconds."""
    from ..demo import encode, speak

    case_dir.mkdir(parents=True, exist_ok=True)
    spoken = {}
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.float32)
    total = 0.0
    for i in range(files):
        parts, length, k = [], 0.0, 0
        while length < seconds:
            sentence = SENTENCES[(i + k) % len(SENTENCES)]
            if sentence not in spoken:
                spoken[sentence] = speak(sentence)
            parts += [spoken[sentence], pause]
            length += (spoken[sentence].size + pause.size) / SAMPLE_RATE
            k += 1
        audio = np.concatenate(parts)
        encode(audio, case_dir / f"rec-{i:02d}.wav", "wav")
        total += audio.size / SAMPLE_RATE
    return total


def prepare_models(size: str, asr: str) -> tuple[dict[str, str], dict[str, str]]:
    """(role -> directory, role -> description); SER models are built once per size."""
    from ..models import prepare

    if size not in MODEL_SIZES:
        raise ValueError(f"model size must be one of {MODEL_SIZES}")
    models_dir = REPO_ROOT / "models"
    asr_dir = prepare(models_dir, [asr])[asr]
    sys.path.insert(0, str(REPO_ROOT / "tests"))  # the random-weight SER builders the tests use
    from ser_fixtures import build_dimensional_model, build_speechbrain_iemocap_model

    cache = models_dir / "bench" / size
    dims, cat = cache / "ser-dimensional", cache / "ser-categorical"
    if not (dims / "config.json").is_file():
        build_dimensional_model(dims, size=size)
    if not (cat / "hyperparams.yaml").is_file():
        build_speechbrain_iemocap_model(cat, size=size)
    shape = {
        "published": (
            "wav2vec2-large-robust, 12 layers (audeering layout)",
            "wav2vec2-base (SpeechBrain IEMOCAP layout)",
        ),
        "tiny": ("tiny wav2vec2 (audeering layout)", "tiny wav2vec2 (SpeechBrain IEMOCAP layout)"),
    }[size]
    return (
        {"asr": str(asr_dir), "ser_dimensional": str(dims), "ser_categorical": str(cat)},
        {
            "asr": f"{asr} (real weights, CTranslate2)",
            "ser_dimensional": f"{shape[0]}, random weights",
            "ser_categorical": f"{shape[1]}, random weights",
        },
    )


def build(work: Path, files: int, seconds: float, size: str, asr: str) -> Workload:
    case_dir = work / "case"
    audio_s = synthesise_case(case_dir, files, seconds)
    models, description = prepare_models(size, asr)
    return Workload(case_dir, sorted(p.name for p in case_dir.iterdir()), audio_s, models, description)
