"""Request handlers: one per work request type.  Adding a kind of work (alignment, ...)
means adding a handler here, its schema in requests.py and a loader in the registry -- the
protocol does not change.

A handler is split in two so the inference thread never blocks on file I/O (N4):
``prepare`` runs on the I/O pool (decode the evidence file), ``run`` on the inference thread
with the models the request needs, already loaded.  Both see the request's validated content
(requests.py), never the raw message.

Evidence is read through :class:`Evidence`: confined to the case roots, opened by the daemon
itself (FFmpeg never sees a path), hashed over exactly the bytes decoded, and compared with
the ingest hash the request carries (``sha256``); a mismatch fails that request.  Decoding
has a time limit.  It runs on a thread of its own that the I/O pool worker waits for, so a
decode stuck inside FFmpeg (past the limit, where the per-read check cannot stop it) costs
that one thread -- counted and logged -- while the pool and every other request go on.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from voiceman.audio import SAMPLE_RATE, AudioInfo, DecodeTimeout, decode_fd, open_evidence

from .asr import speech_chunker
from .confinement import CaseRoots
from .diarize import diarize_transcript
from .registry import LoadedModel, ModelSpec

log = logging.getLogger(__name__)

DEFAULT_DECODE_TIMEOUT_S = 600.0
WHISPER_WINDOW_SAMPLES = 30 * SAMPLE_RATE
WATCHDOG_GRACE_S = 2.0  # past the limit, before a decode that ignores it counts as stuck


class EvidenceChanged(ValueError):
    """The bytes decoded are not the bytes ingested: the request fails, naming both hashes."""


class Evidence:
    """How the daemon reads evidence files.  ``case_roots=None`` leaves paths unconfined: for
    in-process library use only; the daemon itself is always built with roots (build_core)."""

    def __init__(
        self,
        case_roots: CaseRoots | None = None,
        decode_timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S,
        decoder: Callable[..., tuple[np.ndarray, AudioInfo, str]] = decode_fd,
    ):
        self.case_roots = case_roots
        self.decode_timeout_s = decode_timeout_s
        self._decoder = decoder
        self._lock = threading.Lock()
        self.stuck_decodes = 0  # decode threads still running past their limit (+ grace)

    def decode(self, audio_path: str) -> tuple[np.ndarray, AudioInfo, str]:
        """(audio, info, sha256 of the bytes decoded) of the request's file."""
        name = os.path.basename(audio_path.rstrip("/")) or "audio_path"
        fd = self.case_roots.open(audio_path) if self.case_roots is not None else open_evidence(audio_path)
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def work() -> None:
            try:
                outcome["value"] = self._decoder(fd, name, SAMPLE_RATE, self.decode_timeout_s)
            except BaseException as exc:  # handed to the waiting I/O worker
                outcome["error"] = exc
            finally:
                os.close(fd)  # here, not by the waiter: the descriptor is this thread's while it runs
                with self._lock:
                    finished.set()
                    if outcome.get("stuck"):
                        self.stuck_decodes -= 1
                        log.warning("%s: a decode left behind as stuck finished after all", name)

        try:
            threading.Thread(target=work, name=f"decode-{name[:24]}", daemon=True).start()
        except BaseException:
            os.close(fd)
            raise
        limit = None if self.decode_timeout_s is None else self.decode_timeout_s + WATCHDOG_GRACE_S
        finished.wait(limit)
        with self._lock:
            if not finished.is_set():
                outcome["stuck"] = True
                self.stuck_decodes += 1
                stuck = self.stuck_decodes
        if outcome.get("stuck"):
            log.error(
                "%s: decode still running after %.0f s; left behind (%d stuck decode threads)", name, limit, stuck
            )
            raise DecodeTimeout(
                f"{name}: decoding took longer than {self.decode_timeout_s:g} s (daemon.decode_timeout_s)"
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]


def _prepare_audio(
    evidence: Evidence, content: dict[str, Any], specs: dict[str, ModelSpec] | None = None
) -> dict[str, Any]:
    path = content["audio_path"]
    audio, info, digest = evidence.decode(path)
    expected = content.get("sha256")
    if expected and expected != digest:
        name = os.path.basename(path.rstrip("/"))
        raise EvidenceChanged(
            f"{name}: the bytes decoded have sha256 {digest} but the ingest hash is {expected}; "
            f"the file changed since ingest, so it is not analysed"
        )
    return {"audio": audio, "info": info.to_dict(), "sha256": digest}


@dataclass(frozen=True)
class BatchRun:
    """A handler's answer for the requests it ran together: one reply content per request,
    in order, and what it really batched (for the stage's mean batch size in ``stats`` and
    the run report) where it knows."""

    replies: list[dict[str, Any]]
    items: int | None = None  # units of work: ASR speech chunks, SER segments
    forward_batches: int | None = None  # model passes they took (None: items / batch size)
    # (samples of audio in the items, samples the model saw with padding) where the handler
    # knows; else the core estimates it from SER waveforms (scheduler.padded_size).
    padding: tuple[int, int] | None = None


@dataclass(frozen=True)
class Handler:
    name: str
    model_kinds: tuple[str, ...]  # kinds this request type may use; the request picks among them
    # On the I/O pool: the request's validated content and the models it will run on.
    prepare: Callable[[dict[str, Any], dict[str, ModelSpec]], Any]
    # One or several prepared requests (cross-file batching: same kind, models and options)
    # in shared model passes; each request's reply equals what it would get alone.
    run: Callable[[dict[str, LoadedModel], list[Any], dict[str, Any]], BatchRun]
    cross_file: bool = True


def _run_transcribe(
    models: dict[str, LoadedModel], payloads: list[dict[str, Any]], content: dict[str, Any]
) -> BatchRun:
    """The speech chunks of all the requests decoded in shared batches (asr_batching), then
    speakers per recording from the same decoded audio (diarize.py)."""
    model, options = models["asr"], content.get("options") or {}
    chunks = [p.get("chunks") for p in payloads]
    if hasattr(model, "transcribe_many"):
        replies, batching = model.transcribe_many([p["audio"] for p in payloads], options, chunks)
    else:  # an ASR model without cross-file batching: one recording after the other
        replies, batching = [model.transcribe(p["audio"], options) for p in payloads], None
    custody = model.custody()
    for payload, reply in zip(payloads, replies):
        reply["model"] = custody
        reply["audio"] = payload["info"]
        reply["decoded_sha256"] = payload["sha256"]
        if "diarization" in models:
            reply["segments"], reply["diarization"] = diarize_transcript(
                models["diarization"], payload["audio"], reply["segments"]
            )
    spans = [c for p, r in zip(payloads, replies) if r.get("vad_chunks") for c in (p.get("chunks") or [])]
    # Whisper pads every chunk to its 30 s window: what it decodes beyond the speech is padding.
    padding = (int(sum(b - a for a, b in spans) * SAMPLE_RATE), len(spans) * WHISPER_WINDOW_SAMPLES) if spans else None
    if batching is not None:
        return BatchRun(
            replies, items=batching.chunks or None, forward_batches=batching.forward_batches or None, padding=padding
        )
    return BatchRun(replies, items=sum(r.get("vad_chunks") or 0 for r in replies) or None, padding=padding)


def _prepare_recording(evidence: Evidence, content: dict[str, Any], specs: dict[str, ModelSpec]) -> dict[str, Any]:
    """Decode, then find the speech chunks with the ASR model's VAD where it can run here
    (Silero on the CPU), so the inference thread only decodes speech."""
    payload = _prepare_audio(evidence, content)
    chunker = speech_chunker(specs["asr"]) if "asr" in specs else None
    if chunker is not None:
        payload["chunks"] = chunker.chunks(payload["audio"])
    return payload


def _prepare_segments(
    evidence: Evidence, content: dict[str, Any], specs: dict[str, ModelSpec] | None = None
) -> dict[str, Any]:
    """Decode once, then cut the transcript's segments out (the waveforms SER sees)."""
    payload = _prepare_audio(evidence, content)
    audio = payload.pop("audio")
    waveforms = []
    for seg in content["segments"]:
        a, b = int(float(seg["start"]) * SAMPLE_RATE), int(float(seg["end"]) * SAMPLE_RATE)
        waveforms.append(audio[max(a, 0) : max(b, 0)])
    payload["waveforms"] = waveforms
    return payload


def _run_ser(models: dict[str, LoadedModel], payloads: list[dict[str, Any]], content: dict[str, Any]) -> BatchRun:
    """The segments of one or several requests (files) in one pass per model: the models sort
    them by length and batch them, and every segment's result is independent of its
    neighbours, so each request gets exactly what it would get alone (a test checks it)."""
    waveforms = [w for p in payloads for w in p["waveforms"]]
    batch_size = content["options"].get("batch_size")
    none = [None] * len(waveforms)  # a kind the request did not ask for
    per_model = {kind: model.predict(waveforms, batch_size=batch_size) for kind, model in models.items()}
    segments = []
    for dim, cat in zip(per_model.get("ser_dimensional", none), per_model.get("ser_categorical", none)):
        errors = [r["error"] for r in (dim, cat) if r and "error" in r]
        segments.append(
            {
                "dimensional": dim if dim and "error" not in dim else None,
                "categorical": cat if cat and "error" not in cat else None,
                "errors": errors,
            }
        )
    custody = [m.custody() for m in models.values()]
    replies, start = [], 0
    for p in payloads:
        n = len(p["waveforms"])
        replies.append(
            {
                "segments": segments[start : start + n],
                "models": custody,
                "audio": p["info"],
                "decoded_sha256": p["sha256"],
            }
        )
        start += n
    return BatchRun(replies, items=len(waveforms) or None)


def build_handlers(evidence: Evidence | None = None) -> dict[str, Handler]:
    evidence = evidence or Evidence()
    return {
        "transcribe": Handler(
            "transcribe", ("asr", "diarization"), partial(_prepare_recording, evidence), _run_transcribe
        ),
        "ser": Handler("ser", ("ser_dimensional", "ser_categorical"), partial(_prepare_segments, evidence), _run_ser),
    }


# Unconfined paths: for DaemonCore built in-process without a config (tests, library use).
# The daemon (build_core) always builds its handlers with the configured case roots.
HANDLERS: dict[str, Handler] = build_handlers()
