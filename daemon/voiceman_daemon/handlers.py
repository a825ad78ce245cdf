"""Request handlers: one per work request type.  Adding a kind of work (SER, alignment, ...)
means adding a handler here and a loader in the registry — the protocol does not change.

A handler is split in two so the inference thread never blocks on file I/O (N4):
``prepare`` runs on the I/O pool (decode the evidence file), ``run`` on the inference thread.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from voiceman.audio import decode

from .registry import LoadedModel


@dataclass(frozen=True)
class Handler:
    name: str
    model_kind: str
    prepare: Callable[[dict[str, Any]], Any]
    run: Callable[[LoadedModel, Any, dict[str, Any]], dict[str, Any]]


def _prepare_audio(content: dict[str, Any]) -> dict[str, Any]:
    path = content.get("audio_path")
    if not path:
        raise ValueError("request has no 'audio_path'")
    audio, info = decode(path)
    return {"audio": audio, "info": info.to_dict()}


def _run_transcribe(model: LoadedModel, payload: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    result = model.transcribe(payload["audio"], content.get("options") or {})
    result["model"] = model.custody()
    result["audio"] = payload["info"]
    return result


HANDLERS: dict[str, Handler] = {
    "transcribe": Handler("transcribe", "asr", _prepare_audio, _run_transcribe),
}
