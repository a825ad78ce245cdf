"""ASR backend: Whisper on PyTorch (transformers' ``WhisperForConditionalGeneration``), for
machines where CTranslate2 has no CUDA but torch has (the GB10: CTranslate2's linux-aarch64
wheels are CPU-only).  ``models.asr.backend`` picks it (``asr.choose_backend``).

It decodes the way the CTranslate2 backend (faster-whisper's batched pipeline) does, so the
two give the same transcript from the same weights (``voiceman models prepare`` writes the
shipped CTranslate2 models in this form too, losslessly: ``voiceman.whisper_convert``):

- the same VAD and the same chunks (``asr.merge_speech``), decoded ``batch_size`` chunks at a
  time; each chunk's log-mel (WhisperProcessor's feature extractor) padded to 30 s;
- temperature 0 only: beam search (``beam_size``, patience 1, length penalty 1) or greedy,
  never sampling (``do_sample=False``); the CTranslate2 decoding rules (suppressed tokens,
  blank suppression at the start, Whisper's timestamp rules with the first timestamp at most
  1 s) as one logits processor that also renormalises, as CTranslate2 does;
- segments split at consecutive timestamp tokens exactly as faster-whisper does;
- word times from the cross-attention of the model's alignment heads
  (``generation_config.alignment_heads``): a teacher-forced pass over the text tokens, the
  attention of those heads (softmax over the chunk's frames, normalised over tokens,
  median-filtered, averaged), dynamic time warping, then faster-whisper's word grouping,
  punctuation merging and long-word clipping;
- float16 on CUDA (``compute_type: bfloat16`` possible), float32 on a CPU; SDPA attention;
  ``eval()``, no gradients.

The decoding rules live in ``whisper_rules.py``, segmenting and word times in
``whisper_word_times.py``, the passes over a batch of chunks (features, encoder, language
detection, generation, alignment) in ``whisper_passes.py``; this module finds and loads the
model and runs requests through those passes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from voiceman.audio import SAMPLE_RATE
from voiceman.hashing import sha256_weights

from .asr import TEMPERATURE, SharedWhisperSettings, no_speech, pick_device, transcript_segment
from .asr_batching import ChunkBatching, owner_runs
from .registry import ModelSpec
from .whisper_passes import MEDIAN_FILTER_WIDTH, N_FRAMES, WhisperPasses
from .whisper_rules import MAX_INITIAL_TIMESTAMP_INDEX
from .whisper_word_times import TIME_PRECISION, place_words, split_by_timestamps

log = logging.getLogger(__name__)

FRAMES_PER_SECOND = 100  # mel frames (hop 160 at 16 kHz)
COMPUTE_TYPES = {"float16", "bfloat16", "float32"}


# -- where the transformers form lives -----------------------------------------------------------
def is_hf_whisper_dir(path: str | Path) -> bool:
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return config.get("model_type") == "whisper"


def hf_model_dir(model_id: str | Path) -> Path:
    """The transformers Whisper directory for ``models.asr.id``: the id itself when it is one,
    else ``<id>-hf`` (what ``voiceman models prepare`` / ``voiceman.whisper_convert`` write
    next to a CTranslate2 directory)."""
    path = Path(model_id)
    if is_hf_whisper_dir(path):
        return path
    return path.with_name(path.name.rstrip("/") + "-hf")


def conversion_source(hf_dir: Path, model_id: str) -> dict[str, Any] | None:
    """The CTranslate2 model a converted directory came from; refuses a conversion that no
    longer matches its source (the CTranslate2 weights changed after ``models prepare``)."""
    from voiceman.whisper_convert import read_record, source_digests

    record = read_record(hf_dir)
    if record is None:
        return None
    source = Path(model_id)
    if source.resolve() != hf_dir.resolve() and (source / "model.bin").is_file():
        now = source_digests(source)
        if record.get("source", {}).get("sha256") != now:
            raise ValueError(
                f"{hf_dir} was converted from other weights than {source}'s current ones: "
                f"run `voiceman models prepare` (or python -m voiceman.whisper_convert {source}) again"
            )
    return {
        "path": record.get("source", {}).get("path"),
        "format": record.get("source", {}).get("format"),
        "model_bin_sha256": record.get("source", {}).get("sha256", {}).get("model.bin"),
        "converter_version": record.get("converter_version"),
        "lossless": record.get("lossless"),
    }


# -- the backend ---------------------------------------------------------------------------------
def pick_dtype(requested: str | None, device: str):
    import torch

    requested = requested or "auto"
    if requested == "auto":
        requested = "float16" if device.startswith("cuda") else "float32"
    if requested not in COMPUTE_TYPES:
        raise ValueError(
            f"models.asr.compute_type '{requested}' is a CTranslate2 type; the transformers backend "
            f"takes auto, {', '.join(sorted(COMPUTE_TYPES))}"
        )
    if requested != "float32" and not device.startswith("cuda"):
        raise ValueError(
            f"models.asr.compute_type {requested} needs CUDA; on the CPU the transformers backend runs float32"
        )
    return requested, getattr(torch, requested)


class TransformersWhisperASR(WhisperPasses, SharedWhisperSettings):
    """One loaded Whisper (transformers) + VAD, warmed up; the same interface and output as
    ``asr.WhisperASR``."""

    backend = "transformers"

    def __init__(self, spec: ModelSpec, selection: str = "configured"):
        import torch
        from faster_whisper.tokenizer import Tokenizer
        from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

        self.spec = spec
        self.selection = selection
        self.hf_dir = hf_model_dir(spec.id)
        if not is_hf_whisper_dir(self.hf_dir):
            raise FileNotFoundError(
                f"no transformers Whisper model for '{spec.id}': expected {self.hf_dir} "
                "(`voiceman models prepare` writes it for the shipped models; for your own CTranslate2 model run "
                f"python -m voiceman.whisper_convert {spec.id}), "
                "or set models.asr.id to a transformers Whisper directory"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.source = conversion_source(self.hf_dir, spec.id)
        self.device = pick_device(spec.option("device", "auto"))
        self.compute_type, dtype = pick_dtype(spec.option("compute_type", "auto"), self.device)
        self._read_shared_settings(spec)
        if self.device == "cpu" and int(spec.option("cpu_threads", 0)):
            torch.set_num_threads(int(spec.option("cpu_threads")))

        self.processor = WhisperProcessor.from_pretrained(self.hf_dir, local_files_only=True)
        self.model = WhisperForConditionalGeneration.from_pretrained(
            self.hf_dir, local_files_only=True, dtype=dtype, attn_implementation="sdpa"
        ).to(self.device)
        self.model.eval()
        self.model.requires_grad_(False)
        self.torch_device = torch.device(self.device)
        self.dtype = dtype
        config, generation = self.model.config, self.model.generation_config
        # generate() merges a model's own generation config into the one it is given (its
        # suppress lists, forced ids, timestamp settings); every rule here is DecodingRules',
        # so the model keeps a bare one.
        self.model.generation_config = GenerationConfig(
            decoder_start_token_id=config.decoder_start_token_id,
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
        )
        self.multilingual = bool(getattr(generation, "is_multilingual", config.vocab_size >= 51865))
        self.hf_tokenizer = self.processor.tokenizer.backend_tokenizer
        self.lang_ids = sorted((getattr(generation, "lang_to_id", None) or {}).values())
        heads = getattr(generation, "alignment_heads", None)
        if not heads:
            n, h = config.decoder_layers, config.decoder_attention_heads
            heads = [[layer, head] for layer in range(n // 2, n) for head in range(h)]
        self.alignment_heads = [(int(layer), int(head)) for layer, head in heads]
        self.suppress_begin = list(
            getattr(generation, "begin_suppress_tokens", None) or config.begin_suppress_tokens or []
        )
        self.vad = self._make_vad()
        self._tokenizer_cls = Tokenizer
        self.weights_sha256 = sha256_weights(self.hf_dir)
        self._warm_up()

    # -- custody -----------------------------------------------------------------------------
    def decoding(self) -> dict[str, Any]:
        import transformers

        return {
            "backend": "transformers",
            "engine": f"transformers {transformers.__version__} WhisperForConditionalGeneration (sdpa)",
            "beam_size": self.beam_size,
            "patience": 1.0,
            "length_penalty": 1.0,
            "temperature": TEMPERATURE,
            "temperature_fallback": False,
            "do_sample": False,
            "compute_type": self.compute_type,
            "chunk_size_s": self.chunk_size,
            "condition_on_previous_text": False,
            "max_initial_timestamp_s": MAX_INITIAL_TIMESTAMP_INDEX * TIME_PRECISION,
            "word_alignment": {
                "heads": [list(h) for h in self.alignment_heads],
                "median_filter_width": MEDIAN_FILTER_WIDTH,
            },
            "vad": self.vad_settings(),
        }

    def custody(self) -> dict[str, Any]:
        return {
            "kind": "asr",
            "id": self.spec.id,
            "revision": self.spec.revision,
            "path": str(self.hf_dir.resolve()),
            "sha256": self.weights_sha256,
            "device": self.device,
            "compute_type": self.compute_type,
            "backend": "transformers",
            "backend_selection": self.selection,
            "converted_from": self.source,
            "vad": {"method": self.vad_method, "onset": self.vad_onset, "offset": self.vad_offset},
            "decoding": self.decoding(),
        }

    # -- warm-up -----------------------------------------------------------------------------
    def _warm_up(self) -> None:
        import torch

        started = time.perf_counter()
        noise = (np.random.default_rng(0).standard_normal(SAMPLE_RATE) * 0.01).astype(np.float32)
        self.vad.regions(noise)
        with torch.inference_mode():
            encoded = self.encode(self.features([noise]))
            tokenizer = self.tokenizer(self.language if self.language else "en")
            self.model.model.decoder(
                input_ids=torch.tensor([list(tokenizer.sot_sequence)], device=self.torch_device),
                encoder_hidden_states=encoded,
                use_cache=False,
            )
        log.info(
            "ASR (transformers, %s %s) warm-up done in %.2f s",
            self.device,
            self.compute_type,
            time.perf_counter() - started,
        )

    # -- requests ----------------------------------------------------------------------------
    def _language(self, language: str | None, pieces: list[np.ndarray]) -> tuple[str, float]:
        """The recording's language and its probability (detected from its first 30 s of speech)."""
        if not self.multilingual:
            if language not in (None, "en"):
                log.warning("the model is English-only; language '%s' requested, using 'en'", language)
            return "en", 1.0
        if language is None:
            speech = np.concatenate(pieces)[: N_FRAMES * 160]
            return self.detect_language(self.encode(self.features([speech])))
        return language, 1.0

    def transcribe_many(
        self,
        audios: list[np.ndarray],
        options: dict[str, Any],
        chunks: list[list[tuple[float, float]] | None] | None = None,
    ) -> tuple[list[dict[str, Any]], ChunkBatching]:
        """Several recordings under the same request options: chunks of recordings in the same
        language share encoder/decoder batches (each recording's chunks contiguous, in order),
        word times carry their state per recording, so each reply equals the recording alone."""
        import torch

        plans = self._plans(audios, options, chunks)
        word_timestamps, batch_size = plans[0][1], plans[0][2]
        work: list[tuple[int, tuple[float, float], np.ndarray]] = []  # (recording, chunk, samples)
        languages: dict[int, tuple[str, float]] = {}
        segments: dict[int, list[dict]] = {}
        chunks_total = forward_batches = 0
        with torch.inference_mode():
            for index, (audio, (language, _, _, spans)) in enumerate(zip(audios, plans)):
                pieces = [audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in spans]
                if spans:
                    languages[index] = self._language(language, pieces)
                    segments[index] = []
                    work.extend((index, span, piece) for span, piece in zip(spans, pieces))
            for language in dict.fromkeys(lang for lang, _ in languages.values()):
                tokenizer = self.tokenizer(language)
                mine = [w for w in work if languages[w[0]][0] == language]
                carry = dict.fromkeys((w[0] for w in mine), 0.0)  # last speech time, per recording
                for first in range(0, len(mine), batch_size):
                    batch = mine[first : first + batch_size]
                    encoded = self.encode(self.features([piece for _, _, piece in batch]))
                    decoded = self.generate(encoded, tokenizer)
                    forward_batches += 1
                    per_chunk, sizes = [], []
                    for (_, (start, end), _), (tokens, avg_logprob) in zip(batch, decoded):
                        parts = split_by_timestamps(tokens, tokenizer.timestamp_begin, start, end - start)
                        for part in parts:
                            part["text_tokens"] = [t for t in part["tokens"] if t < tokenizer.eot]
                            part["text"] = tokenizer.decode(part["tokens"])
                            part["avg_logprob"] = avg_logprob
                            part["words"] = []
                        per_chunk.append(parts)
                        sizes.append(int(math.ceil(end - start) * FRAMES_PER_SECOND))
                    alignments = (
                        self.align(
                            encoded,
                            tokenizer,
                            [[t for part in parts for t in part["text_tokens"]] for parts in per_chunk],
                            sizes,
                        )
                        if word_timestamps
                        else None
                    )
                    for owner, a, b in owner_runs([owner for owner, _, _ in batch]):
                        if alignments is not None:
                            carry[owner] = place_words(
                                per_chunk[a:b], alignments[a:b], [span[0] for _, span, _ in batch[a:b]], carry[owner]
                            )
                        segments[owner].extend(part for parts in per_chunk[a:b] for part in parts)
                chunks_total += len(mine)
        replies = []
        for index, (language, word_ts, size, spans) in enumerate(plans):
            if index not in segments:
                replies.append(no_speech(language, word_ts))
                continue
            out = [transcript_segment(s) for s in segments[index]]
            replies.append(
                {
                    "language": languages[index][0],
                    "language_probability": round(float(languages[index][1]), 4),
                    "segments": [s for s in out if s["text"]],
                    "vad_chunks": len(spans),
                    "batch_size_used": min(size, len(spans)),
                    "word_timestamps": word_ts,
                }
            )
        return replies, ChunkBatching(chunks_total, forward_batches)
