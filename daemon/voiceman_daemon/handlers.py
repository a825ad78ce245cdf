"""Request handlers: one per work request type.  Adding a kind of work (alignment, ...)
means adding a handler here and a loader in the registry — the protocol does not change.

A handler is split in two so the inference thread never blocks on file I/O (N4):
``prepare`` runs on the I/O pool (decode the evidence file), ``run`` on the inference thread
with the models the request needs, already loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from voiceman.audio import SAMPLE_RATE, decode

from .registry import LoadedModel


@dataclass(frozen=True)
class HandlerResult:
    """A handler's answer: the reply content, and what it really batched (for the stage's
    mean batch size in ``stats`` and the run report) where it knows."""
    content: dict[str, Any]
    items: int | None = None
    batch_size: int | None = None


@dataclass(frozen=True)
class Handler:
    name: str
    model_kinds: tuple[str, ...]  # kinds this request type may use; the request picks among them
    prepare: Callable[[dict[str, Any]], Any]
    run: Callable[[dict[str, LoadedModel], Any, dict[str, Any]], HandlerResult]


def _prepare_audio(content: dict[str, Any]) -> dict[str, Any]:
    path = content.get("audio_path")
    if not path:
        raise ValueError("request has no 'audio_path'")
    audio, info = decode(path)
    return {"audio": audio, "info": info.to_dict()}


def _run_transcribe(models: dict[str, LoadedModel], payload: dict[str, Any], content: dict[str, Any]) -> HandlerResult:
    model = models["asr"]
    result = model.transcribe(payload["audio"], content.get("options") or {})
    result["model"] = model.custody()
    result["audio"] = payload["info"]
    return HandlerResult(result, items=result.get("vad_chunks") or None,
                         batch_size=result.get("batch_size_used") if result.get("vad_chunks") else None)


def _prepare_segments(content: dict[str, Any]) -> dict[str, Any]:
    """Decode once, then cut the transcript's segments out (the waveforms SER sees)."""
    payload = _prepare_audio(content)
    audio = payload.pop("audio")
    waveforms = []
    for seg in content.get("segments") or []:
        a, b = int(float(seg["start"]) * SAMPLE_RATE), int(float(seg["end"]) * SAMPLE_RATE)
        waveforms.append(audio[max(a, 0):max(b, 0)])
    payload["waveforms"] = waveforms
    return payload


def _run_ser(models: dict[str, LoadedModel], payload: dict[str, Any], content: dict[str, Any]) -> HandlerResult:
    waveforms = payload["waveforms"]
    batch_size = (content.get("options") or {}).get("batch_size")
    none = [None] * len(waveforms)  # a kind the request did not ask for
    per_model = {kind: model.predict(waveforms, batch_size=batch_size) for kind, model in models.items()}
    segments = []
    for dim, cat in zip(per_model.get("ser_dimensional", none), per_model.get("ser_categorical", none)):
        errors = [r["error"] for r in (dim, cat) if r and "error" in r]
        segments.append({
            "dimensional": dim if dim and "error" not in dim else None,
            "categorical": cat if cat and "error" not in cat else None,
            "errors": errors,
        })
    return HandlerResult({"segments": segments, "models": [m.custody() for m in models.values()],
                          "audio": payload["info"]})


HANDLERS: dict[str, Handler] = {
    "transcribe": Handler("transcribe", ("asr",), _prepare_audio, _run_transcribe),
    "ser": Handler("ser", ("ser_dimensional", "ser_categorical"), _prepare_segments, _run_ser),
}
