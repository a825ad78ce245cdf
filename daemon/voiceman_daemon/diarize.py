"""Speaker diarization in the daemon: who spoke each word of a transcript.

It runs inside the ``transcribe`` request, after ASR, on the same decoded audio (nothing is
decoded twice), when a ``diarization`` model is configured (``models.diarization``):

- ``resemblyzer`` (default, offline): the GE2E speaker encoder whose weights ship inside the
  Resemblyzer wheel (``resemblyzer/pretrained.pt``, Apache-2.0).  The speech that ASR found
  (its word times) is cut into sliding windows (``window_s`` long, every ``step_s``); each
  window gets a 256-d embedding; the windows are clustered agglomeratively (average linkage on
  cosine distance, cut at ``threshold``), refined by reassigning every window to the nearest
  cluster centroid, and clusters of fewer than ``min_cluster_windows`` windows join the nearest
  other one.  The number of clusters is the estimated speaker count, bounded by
  ``min_speakers``/``max_speakers``.  Nothing is random: the same audio and settings give the
  same labels.
- ``pyannote``: a local pyannote.audio diarization pipeline directory the user points
  ``id`` at (``config.yaml`` plus the models it names), loaded with
  ``Pipeline.from_pretrained(<dir>)``; its speaker turns label the words.

Either way each word gets the speaker whose evidence covers it best (resemblyzer: the windows
overlapping the word, weighted by overlap and by their similarity to each speaker's centroid;
pyannote: the turn that overlaps it most), a segment whose words change speaker is split there,
and segments and words carry ``speaker`` ("SPEAKER_00", ... in order of first appearance).  The
transcript's ``diarization`` block records the method, the model (package version, sha256 of
the weights), the settings and the estimated count.  A diarization that fails leaves the
speakers null with the reason in that block; the transcript itself stands.

This module holds the loader and the request entry point; the settings are in
``diarize_settings``, the clustering in ``diarize_clustering``, putting speakers onto the
transcript in ``diarize_labels``, and the two backends in ``diarize_resemblyzer`` and
``diarize_pyannote``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .diarize_labels import summarise
from .diarize_pyannote import PyannoteDiarizer
from .diarize_resemblyzer import ResemblyzerDiarizer
from .diarize_settings import DiarizationSettings
from .registry import ModelSpec

log = logging.getLogger(__name__)


def load_diarization(spec: ModelSpec) -> ResemblyzerDiarizer | PyannoteDiarizer:
    """Registry loader for model kind ``diarization``."""
    settings = DiarizationSettings.from_spec(spec)
    if settings.method == "pyannote":
        return PyannoteDiarizer(spec, settings)
    return ResemblyzerDiarizer(spec, settings)


def diarize_transcript(
    model, audio: np.ndarray, segments: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(segments with speakers, the transcript's ``diarization`` block).  A failure leaves the
    ASR segments as they were (speakers null) and says why in the block."""
    block: dict[str, Any] = {
        "method": model.settings.method,
        "model": model.custody(),
        "settings": model.settings.to_dict(),
    }
    try:
        labelled, detail = model.diarize(audio, segments)
    except Exception as exc:  # speakers are lost, the transcript is not
        log.exception("diarization failed")
        return segments, {
            **block,
            "status": "failed",
            "reason": f"{type(exc).__name__}: {exc}",
            "speaker_count": None,
            "speakers": [],
        }
    speakers = summarise(labelled)
    return labelled, {
        **block,
        "status": "ok",
        "speaker_count": len(speakers),
        "speakers": speakers,
        "segments_in": len(segments),
        "segments_out": len(labelled),
        **detail,
    }
