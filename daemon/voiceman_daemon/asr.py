"""ASR backend: Whisper on CTranslate2 (faster-whisper, the engine WhisperX runs on) with a
VAD that ships inside a PyPI package, so nothing is fetched from a hub.

One decoding path: the VAD's speech regions are merged into chunks of at most
``chunk_size`` seconds, and faster-whisper's ``BatchedInferencePipeline`` decodes the chunks
in batches with word timestamps (from the model's cross-attention).

- VAD: ``silero`` (default; the ONNX model inside faster-whisper, ~17x faster than pyannote
  on a CPU) or ``pyannote`` (the segmentation model bundled in whisperx, imported only when
  configured).
- Deterministic: temperature 0 only (beam search, no sampling fallback), so the same file and
  settings give the same transcript every time.  Every setting that changes the output is
  in ``custody()["decoding"]``.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voiceman.audio import SAMPLE_RATE
from voiceman.hashing import sha256_weights

from .registry import ModelSpec

if TYPE_CHECKING:  # asr_batching imports faster-whisper; only the Whisper backends need it loaded
    from .asr_batching import ChunkBatching

log = logging.getLogger(__name__)

VAD_METHODS = ("silero", "pyannote")
TEMPERATURE = 0.0  # never sample: transcripts must be reproducible (no temperature fallback)
ASR_BACKENDS = ("auto", "ctranslate2", "transformers")


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


def merge_speech(regions: list[tuple[float, float]], max_s: float) -> list[tuple[float, float]]:
    """Join consecutive speech regions (seconds) into chunks spanning at most ``max_s``
    (Whisper's window), keeping their real positions; a longer region is cut into pieces."""
    chunks: list[tuple[float, float]] = []
    for start, end in regions:
        while end - start > max_s:  # one region longer than the window
            chunks.append((start, start + max_s))
            start += max_s
        if chunks and end - chunks[-1][0] <= max_s and start >= chunks[-1][1]:
            chunks[-1] = (chunks[-1][0], end)
        else:
            chunks.append((start, end))
    return chunks


class SileroVad:
    def __init__(self, onset: float, offset: float | None, min_silence_ms: int, speech_pad_ms: int):
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        self._detect = get_speech_timestamps
        self.options = VadOptions(
            threshold=onset, neg_threshold=offset, min_silence_duration_ms=min_silence_ms, speech_pad_ms=speech_pad_ms
        )

    def regions(self, audio: np.ndarray) -> list[tuple[float, float]]:
        return [
            (r["start"] / SAMPLE_RATE, r["end"] / SAMPLE_RATE)
            for r in self._detect(audio, self.options, sampling_rate=SAMPLE_RATE)
        ]


class PyannoteVad:
    def __init__(self, onset: float, offset: float, device: str):
        import torch
        from whisperx.vads import Pyannote

        self._vad = Pyannote(torch.device(device), token=None, vad_onset=onset, vad_offset=offset)

    def regions(self, audio: np.ndarray) -> list[tuple[float, float]]:
        scores = self._vad({"waveform": self._vad.preprocess_audio(audio), "sample_rate": SAMPLE_RATE})
        return [(float(s.start), float(s.end)) for s in scores.get_timeline().support()]


def no_speech(language: str | None, word_timestamps: bool) -> dict[str, Any]:
    """The reply for a recording in which the VAD found no speech."""
    return {
        "language": language,
        "language_probability": None,
        "segments": [],
        "vad_chunks": 0,
        "batch_size_used": None,
        "word_timestamps": word_timestamps,
    }


class SharedWhisperSettings:
    """What both Whisper backends read the same way (language, VAD, chunking, beam), so the
    two cut the same chunks and decode under the same rules."""

    device: str

    def _read_shared_settings(self, spec: ModelSpec) -> None:
        self.language = spec.option("language")
        self.vad_method = str(spec.option("vad_method", "silero"))
        if self.vad_method not in VAD_METHODS:
            raise ValueError(f"models.asr.vad_method must be one of {VAD_METHODS}, not '{self.vad_method}'")
        self.vad_onset = float(spec.option("vad_onset", 0.5))
        self.vad_offset = spec.option("vad_offset")
        self.chunk_size = float(spec.option("chunk_size", 30))
        self.beam_size = int(spec.option("beam_size", 5))
        self.min_silence_ms = int(spec.option("vad_min_silence_ms", 160))
        self.speech_pad_ms = int(spec.option("vad_speech_pad_ms", 200))

    def chunks(self, audio: np.ndarray) -> list[tuple[float, float]]:
        """The VAD's speech regions merged into chunks of at most ``chunk_size`` seconds."""
        return merge_speech(self.vad.regions(audio), self.chunk_size)

    def _plans(
        self,
        audios: list[np.ndarray],
        options: dict[str, Any],
        chunks: list[list[tuple[float, float]] | None] | None = None,
    ) -> list[tuple[str | None, bool, int, list]]:
        """Per recording of one ``transcribe_many`` call: the language, word-timestamp flag and
        batch size (the request options, shared) and its speech chunks (found here unless the
        I/O pool already did: SpeechChunker)."""
        language = options.get("language") or self.language
        word_timestamps = bool(options.get("word_timestamps", True))
        batch_size = max(1, int(options.get("batch_size") or 8))
        found = chunks or [None] * len(audios)
        return [
            (language, word_timestamps, batch_size, self.chunks(audio) if c is None else c)
            for audio, c in zip(audios, found)
        ]

    def transcribe(
        self, audio: np.ndarray, options: dict[str, Any], chunks: list[tuple[float, float]] | None = None
    ) -> dict[str, Any]:
        """One recording: a batch of one (each backend's ``transcribe_many``)."""
        replies, _ = self.transcribe_many([audio], options, [chunks])
        return replies[0]

    def vad_settings(self) -> dict[str, Any]:
        """The VAD settings that change the chunks, for the decoding custody of either backend."""
        silero = self.vad_method == "silero"
        return {
            "method": self.vad_method,
            "onset": self.vad_onset,
            "offset": self.vad_offset,
            "min_silence_ms": self.min_silence_ms if silero else None,
            "speech_pad_ms": self.speech_pad_ms if silero else None,
        }

    def _make_vad(self) -> SileroVad | PyannoteVad:
        if self.vad_method == "silero":
            offset = float(self.vad_offset) if self.vad_offset is not None else None
            return SileroVad(self.vad_onset, offset, self.min_silence_ms, self.speech_pad_ms)
        offset = float(self.vad_offset) if self.vad_offset is not None else 0.363
        return PyannoteVad(self.vad_onset, offset, self.device)


class SpeechChunker(SharedWhisperSettings):
    """An ASR model's VAD and chunking without the model, for the I/O pool: the speech
    chunks of a recording are found while the inference thread decodes others (N4).  Only
    for Silero (ONNX on the CPU); pyannote's VAD runs where the model does."""

    def __init__(self, spec: ModelSpec):
        self.device = "cpu"
        self._read_shared_settings(spec)
        self.vad = self._make_vad()


@functools.lru_cache(maxsize=8)
def speech_chunker(spec: ModelSpec) -> SpeechChunker | None:
    """The chunker for an ASR spec's VAD settings, made once (None: the VAD is not Silero)."""
    if str(spec.option("vad_method", "silero")) != "silero":
        return None
    return SpeechChunker(spec)


class WhisperASR(SharedWhisperSettings):
    """One loaded ASR model (Whisper + VAD), warmed up, ready for requests."""

    backend = "ctranslate2"

    def __init__(self, spec: ModelSpec, selection: str = "configured"):
        from faster_whisper import WhisperModel

        from .asr_batching import CrossFilePipeline

        local = Path(spec.id).is_dir()
        if local:  # a local model must never trigger a hub lookup (evidence machines are offline)
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.spec = spec
        self.selection = selection  # why this backend (models.asr.backend; choose_backend)
        self.device = pick_device(spec.option("device", "auto"))
        self.compute_type = pick_compute_type(spec.option("compute_type", "auto"), self.device)
        self._read_shared_settings(spec)
        threads = int(spec.option("cpu_threads", 0)) or (os.cpu_count() or 2)
        self.model = WhisperModel(
            spec.id,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=threads,
            local_files_only=local,
            download_root=spec.option("download_root"),
        )
        self.pipeline = CrossFilePipeline(self.model)
        self.vad = self._make_vad()
        self.weights_sha256 = sha256_weights(spec.id)
        self._warm_up()

    def _warm_up(self) -> None:
        """Run the VAD and one decoder pass so the first real file pays no lazy-init cost."""
        started = time.perf_counter()
        noise = (np.random.default_rng(0).standard_normal(SAMPLE_RATE) * 0.01).astype(np.float32)
        self.vad.regions(noise)
        segments, _ = self.model.transcribe(
            noise,
            language=self.language or "en",
            beam_size=1,
            without_timestamps=True,
            vad_filter=False,
            temperature=TEMPERATURE,
        )
        list(segments)
        log.info("ASR warm-up done in %.2f s", time.perf_counter() - started)

    def decoding(self) -> dict[str, Any]:
        """Every setting that changes the transcript (for the report's custody)."""
        import ctranslate2
        import faster_whisper

        return {
            "backend": "ctranslate2",
            "engine": f"faster-whisper {faster_whisper.__version__} batched, ctranslate2 {ctranslate2.__version__}",
            "beam_size": self.beam_size,
            "temperature": TEMPERATURE,
            "temperature_fallback": False,
            "compute_type": self.compute_type,
            "chunk_size_s": self.chunk_size,
            "condition_on_previous_text": False,
            "vad": self.vad_settings(),
        }

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
            "backend": "ctranslate2",
            "backend_selection": self.selection,
            "vad": {"method": self.vad_method, "onset": self.vad_onset, "offset": self.vad_offset},
            "decoding": self.decoding(),
        }

    def transcribe_many(
        self,
        audios: list[np.ndarray],
        options: dict[str, Any],
        chunks: list[list[tuple[float, float]] | None] | None = None,
    ) -> tuple[list[dict[str, Any]], ChunkBatching]:
        """Several recordings under the same request options, their speech chunks decoded in
        shared batches (asr_batching); each reply equals that recording transcribed alone.
        Returns the replies, in order, and how the chunks were batched."""
        plans = self._plans(audios, options, chunks)
        prepared = [
            self.pipeline.prepare(
                audio,
                language=language,
                beam_size=self.beam_size,
                temperature=TEMPERATURE,
                word_timestamps=word_timestamps,
                without_timestamps=False,
                batch_size=batch_size,
                clip_timestamps=[{"start": a, "end": b} for a, b in chunks],
                vad_filter=False,
            )
            if chunks
            else None
            for audio, (language, word_timestamps, batch_size, chunks) in zip(audios, plans)
        ]
        batch_size = plans[0][2]
        run = self.pipeline.run([p for p in prepared if p is not None], batch_size)
        decoded = iter(run.segments)
        replies = []
        for (language, word_timestamps, _, chunks), prep in zip(plans, prepared):
            if prep is None:
                replies.append(no_speech(language, word_timestamps))
                continue
            segments = [transcript_segment(s) for s in next(decoded)]
            replies.append(
                {
                    "language": prep.info.language,
                    "language_probability": round(float(prep.info.language_probability), 4),
                    "segments": [s for s in segments if s["text"]],
                    "vad_chunks": len(chunks),
                    "batch_size_used": min(batch_size, len(chunks)),
                    "word_timestamps": word_timestamps,
                }
            )
        return replies, run.batching


def transcript_segment(s: dict[str, Any]) -> dict[str, Any]:
    """One of the library's segment dicts, as the transcript stores it."""
    words = [
        {
            "word": w["word"].strip(),
            "start": round(float(w["start"]), 3),
            "end": round(float(w["end"]), 3),
            "probability": round(float(w["probability"]), 4),
        }
        for w in (s.get("words") or [])
    ]
    return {
        "start": round(float(s["start"]), 3),
        "end": round(float(s["end"]), 3),
        "text": s["text"].strip(),
        "speaker": None,
        "words": words,
        "avg_logprob": round(float(s["avg_logprob"]), 4),
    }


def import_backend() -> None:
    """Import torch and the Whisper engine up front.  Loading their native libraries holds
    the GIL for seconds; done before the socket is bound, it cannot stall request handling."""
    import ctranslate2
    import faster_whisper  # noqa: F401
    import torch  # noqa: F401

    if torch.cuda.is_available() and ctranslate2.get_cuda_device_count() == 0:  # auto picks transformers
        import transformers.models.whisper.modeling_whisper  # noqa: F401


def choose_backend(
    requested: str, device: str, ct2_cuda_devices: int, torch_cuda: bool, has_ct2: bool = True, has_hf: bool = False
) -> tuple[str, str]:
    """(backend, why) for ``models.asr.backend``.  ``auto``: CTranslate2 when it sees a CUDA
    device; transformers when only torch has CUDA (CTranslate2's linux-aarch64 wheels carry
    none, e.g. on the GB10); CTranslate2 int8 on a CPU.  A directory holding only one form
    decides by itself."""
    if requested not in ASR_BACKENDS:
        raise ValueError(f"models.asr.backend must be one of {ASR_BACKENDS}, not '{requested}'")
    if requested != "auto":
        return requested, f"models.asr.backend: {requested}"
    if has_hf and not has_ct2:
        return "transformers", "auto: the model directory is a transformers Whisper"
    if device == "cpu":
        return "ctranslate2", "auto: device cpu, CTranslate2 int8 is the fast CPU path"
    if ct2_cuda_devices > 0:
        return "ctranslate2", f"auto: CTranslate2 sees {ct2_cuda_devices} CUDA device(s)"
    if torch_cuda:
        return "transformers", "auto: torch has CUDA, this CTranslate2 build sees no CUDA device"
    return "ctranslate2", "auto: no CUDA device, CTranslate2 int8 on the CPU"


def select_backend(spec: ModelSpec) -> tuple[str, str]:
    requested = str(spec.option("backend", "auto") or "auto")
    device = str(spec.option("device", "auto") or "auto")
    if requested != "auto":
        return choose_backend(requested, device, 0, False)
    import ctranslate2
    import torch

    from .asr_transformers import hf_model_dir, is_hf_whisper_dir

    local = Path(spec.id).is_dir()
    has_ct2 = (Path(spec.id) / "model.bin").is_file() or not local
    return choose_backend(
        requested,
        device,
        0 if device == "cpu" else ctranslate2.get_cuda_device_count(),
        device != "cpu" and torch.cuda.is_available(),
        has_ct2=has_ct2,
        has_hf=is_hf_whisper_dir(hf_model_dir(spec.id)),
    )


def load_asr(spec: ModelSpec):
    backend, why = select_backend(spec)
    log.info("ASR backend %s (%s)", backend, why)
    if backend == "transformers":
        from .asr_transformers import TransformersWhisperASR

        return TransformersWhisperASR(spec, selection=why)
    return WhisperASR(spec, selection=why)
