"""Diarization settings: the method and every knob that changes who is said to speak when,
read from ``models.diarization`` and checked once at load (they are recorded in custody)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .registry import ModelSpec

METHODS = ("resemblyzer", "pyannote")


@dataclass(frozen=True)
class DiarizationSettings:
    """Every setting that changes who is said to speak when (recorded in custody)."""

    method: str = "resemblyzer"
    min_speakers: int = 1
    max_speakers: int = 8
    window_s: float = 1.5  # embedding window
    step_s: float = 0.75  # hop between windows
    threshold: float = 0.3  # one speaker unless two groups of windows are this far apart (cosine)
    min_cluster_windows: int = 2  # a smaller cluster joins the nearest other one
    merge_gap_s: float = 0.3  # words closer than this form one stretch of speech
    min_window_s: float = 0.5  # shortest window embedded (a shorter stretch is widened)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> DiarizationSettings:
        defaults = cls()
        values = {
            name: type(getattr(defaults, name))(spec.option(name, getattr(defaults, name)))
            for name in cls.__dataclass_fields__
        }
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"models.diarization.method must be one of {', '.join(METHODS)}, not '{self.method}'")
        if not 1 <= self.min_speakers <= self.max_speakers:
            raise ValueError(
                f"models.diarization: need 1 <= min_speakers ({self.min_speakers}) "
                f"<= max_speakers ({self.max_speakers})"
            )
        if not 0 < self.step_s <= self.window_s:
            raise ValueError(f"models.diarization: need 0 < step_s ({self.step_s:g}) <= window_s ({self.window_s:g})")
        if not 0 < self.min_window_s <= self.window_s:
            raise ValueError(
                f"models.diarization: need 0 < min_window_s ({self.min_window_s:g}) <= window_s ({self.window_s:g})"
            )
        if not 0 < self.threshold < 2:
            raise ValueError(
                f"models.diarization.threshold is a cosine distance: 0 < threshold < 2, not {self.threshold:g}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.method == "pyannote":  # only the speaker bounds reach a pyannote pipeline
            d = {k: d[k] for k in ("method", "min_speakers", "max_speakers")}
        return d
