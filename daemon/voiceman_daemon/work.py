"""What flows through the daemon core: accepted jobs, their outcomes, the items of an inference
lane's queue, and the rules for which jobs may share a batch.  Plain typed data, no threads
of its own (core.py runs them)."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .handlers import Handler
from .registry import ModelSpec


class RequestRejected(ValueError):
    """A request the core will not run (unknown type, model kinds it cannot serve)."""


@dataclass(frozen=True)
class Outcome:
    """What a request ended with: a result, or an error with its scope (request / daemon /
    protocol; see voiceman.daemonlink.protocol.error_reply)."""

    request_id: str
    kind: str
    ok: bool
    content: dict[str, Any]
    scope: str | None = None

    @classmethod
    def failure(cls, request_id: str, kind: str, reason: str, scope: str) -> Outcome:
        return cls(request_id, kind, False, {"reason": reason, "scope": scope}, scope)


@dataclass
class Job:
    """One accepted work request on its way through the core."""

    request_id: str
    kind: str
    content: dict[str, Any]
    handler: Handler
    specs: dict[str, ModelSpec]
    future: Future = field(default_factory=Future)
    payload: Any = None
    accepted: float = field(default_factory=time.monotonic)
    prepared: float = 0.0

    @property
    def file_key(self) -> str:
        return str(self.content.get("audio_path") or self.request_id)


# What the inference thread's queue holds.
@dataclass(frozen=True)
class LoadModel:
    spec: ModelSpec


@dataclass(frozen=True)
class UnloadModels:
    kind: str | None
    future: Future


@dataclass(frozen=True)
class RunJob:
    job: Job


@dataclass
class Lane:
    """One inference thread, its queue, and the items it met while gathering a batch (run
    before the queue's next ones)."""

    name: str
    queue: queue.Queue[LoadModel | UnloadModels | RunJob] = field(default_factory=queue.Queue)
    deferred: deque[LoadModel | UnloadModels | RunJob] = field(default_factory=deque)
    thread: threading.Thread | None = None
    stream: Any = None  # torch.cuda.Stream of this lane, made on first use


@dataclass
class RequestCounters:
    accepted: int = 0
    ok: int = 0
    failed: int = 0


def joined_futures(parts: list[Future]) -> Future:
    """A future for the concatenated results of ``parts``."""
    joined: Future = Future()
    results: dict[int, list[str]] = {}
    lock = threading.Lock()

    def done(index: int, part: Future) -> None:
        with lock:
            results[index] = part.result()
            if len(results) == len(parts):
                joined.set_result([k for i in sorted(results) for k in results[i]])

    for index, part in enumerate(parts):
        part.add_done_callback(partial(done, index))
    return joined


def same_batch(job: Job, first: Job) -> bool:
    """May ``job`` share ``first``'s model passes: same kind, models and request options."""
    return (
        job.kind == first.kind
        and job.specs == first.specs
        and job.content.get("options") == first.content.get("options")
    )


def item_count(payload: Any) -> int | None:
    """Units of work in a prepared request where the handler says (SER: segment waveforms;
    ASR: speech chunks when the I/O pool found them)."""
    for key in ("waveforms", "chunks"):
        if isinstance(payload, dict) and isinstance(payload.get(key), list):
            return len(payload[key]) or 1
    return None
