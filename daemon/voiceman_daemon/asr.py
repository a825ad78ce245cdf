"""ASR backend: WhisperX (faster-whisper / CTranslate2) with the pyannote VAD that ships
inside the whisperx package, so nothing is fetched from a hub.

Two decoding paths, both through the model that ``whisperx.load_model`` built:
- word timestamps (default when no alignment model is configured): the VAD's speech chunks
  are handed to faster-whisper as ``clip_timestamps`` with ``word_timestamps=True`` —
  one decode, real word times from the model's cross-attention;
- batched: WhisperX's batched pipeline over the VAD chunks (segment times only), the fast
  path when word times are not needed or come from a later alignment stage.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from voiceman.audio import SAMPLE_RATE
from voiceman.hashing import sha256_weights

from .registry import ModelSpec

log = logging.getLogger(__name__)


def pick_device(requested: str) -> str:
    import torch

    if requested in ("", "auto", None):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def pick_compute_type(requested: str, device: str) -> str:
    if requested in ("", "auto", None):
        # int8 keeps CPU decoding fast; float16 is the native fast path on NVIDIA GPUs.
        return "float16" if device == "cuda" else "int8"
    return requested


class WhisperXASR:
    """One loaded ASR model (Whisper + VAD), warmed up, ready for requests."""

    def __init__(self, spec: ModelSpec):
        import whisperx  # heavy import stays inside the daemon

        if Path(spec.id).is_dir():
            # A local model must never trigger a hub lookup (evidence machines are offline).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.spec = spec
        self.device = pick_device(spec.option("device", "auto"))
        self.compute_type = pick_compute_type(spec.option("compute_type", "auto"), self.device)
        self.language = spec.option("language")
        self.vad_onset = float(spec.option("vad_onset", 0.5))
        self.vad_offset = float(spec.option("vad_offset", 0.363))
        self.chunk_size = int(spec.option("chunk_size", 30))
        self.beam_size = int(spec.option("beam_size", 5))
        self.pipeline = whisperx.load_model(
            spec.id,
            device=self.device,
            compute_type=self.compute_type,
            language=self.language,
            vad_method="pyannote",
            vad_options={"vad_onset": self.vad_onset, "vad_offset": self.vad_offset, "chunk_size": self.chunk_size},
            download_root=spec.option("download_root"),
            local_files_only=bool(spec.option("local_files_only", False)),
            threads=int(spec.option("cpu_threads", 0)) or max(1, (os.cpu_count() or 2) // 2),
        )
        self.weights_sha256 = sha256_weights(spec.id)
        self._warm_up()

    def _warm_up(self) -> None:
        """Run the VAD and one decoder pass so the first real file pays no lazy-init cost."""
        started = time.perf_counter()
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(SAMPLE_RATE) * 0.01).astype(np.float32)
        self._vad_chunks(noise)
        segments, _ = self.pipeline.model.transcribe(
            noise, language=self.language or "en", beam_size=1, without_timestamps=True, vad_filter=False
        )
        list(segments)
        log.info("ASR warm-up done in %.2f s", time.perf_counter() - started)

    def custody(self) -> dict[str, Any]:
        path = str(Path(self.spec.id).resolve()) if Path(self.spec.id).is_dir() else None
        return {
            "kind": "asr",
            "id": self.spec.id,
            "revision": self.spec.revision,
            "path": path,
            "sha256": self.weights_sha256,
            "device": self.device,
            "compute_type": self.compute_type,
            "vad": {"method": "pyannote (whisperx bundled)", "onset": self.vad_onset, "offset": self.vad_offset},
        }

    def _vad_chunks(self, audio: np.ndarray) -> list[dict[str, float]]:
        vad = self.pipeline.vad_model
        waveform = vad.preprocess_audio(audio)
        scores = vad({"waveform": waveform, "sample_rate": SAMPLE_RATE})
        return vad.merge_chunks(scores, self.chunk_size, onset=self.vad_onset, offset=self.vad_offset)

    def transcribe(self, audio: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        language = options.get("language") or self.language
        chunks = self._vad_chunks(audio)
        if not chunks:
            return {"language": language, "language_probability": None, "segments": [], "vad_chunks": 0,
                    "batch_size_used": None, "word_timestamps": bool(options.get("word_timestamps", True))}
        if options.get("word_timestamps", True):
            segments, language, probability = self._decode_with_words(audio, chunks, language)
        else:
            result = self.pipeline.transcribe(
                audio, batch_size=int(options.get("batch_size", 8)), language=language, chunk_size=self.chunk_size
            )
            language, probability = result["language"], None
            segments = [
                {"start": s["start"], "end": s["end"], "text": s["text"].strip(), "speaker": None, "words": []}
                for s in result["segments"]
            ]
        # The word-timestamp path decodes chunk by chunk; only the batched path batches.
        batch_used = 1 if options.get("word_timestamps", True) else int(options.get("batch_size", 8))
        return {"language": language, "language_probability": probability, "segments": segments,
                "vad_chunks": len(chunks), "batch_size_used": batch_used,
                "word_timestamps": bool(options.get("word_timestamps", True))}

    def _decode_with_words(self, audio: np.ndarray, chunks: list[dict], language: str | None):
        clip = [t for c in chunks for t in (float(c["start"]), float(c["end"]))]
        seg_iter, info = self.pipeline.model.transcribe(
            audio,
            language=language,
            beam_size=self.beam_size,
            word_timestamps=True,
            clip_timestamps=clip,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        segments = []
        for s in seg_iter:
            words = [
                {"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3),
                 "probability": round(float(w.probability), 4)}
                for w in (s.words or [])
            ]
            segments.append({"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text.strip(),
                             "speaker": None, "words": words, "avg_logprob": round(float(s.avg_logprob), 4)})
        return segments, info.language, round(float(info.language_probability), 4)


def import_backend() -> None:
    """Import torch/whisperx up front.  Loading their native libraries holds the GIL for
    seconds; done before the socket is bound, it cannot stall request handling."""
    import torch  # noqa: F401
    import whisperx  # noqa: F401


def load_asr(spec: ModelSpec) -> WhisperXASR:
    return WhisperXASR(spec)
