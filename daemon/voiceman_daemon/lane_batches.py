"""One batch on an inference lane: gathering it across files (cross-file batching), running it
under the GPU governor and turning the handler's replies into outcomes, and the lane's CUDA
stream.

Free functions of what DaemonCore hands them, called only on a lane's inference thread;
core.py keeps the threads, their queues and the request bookkeeping.  ``load_errors`` is the
core's own dict, updated here as before (a kind whose model loaded is cleared, a kind left
with no model is set), so the core's "degraded" state sees it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from typing import Any

from .handlers import BatchRun
from .registry import ModelLoadError, ModelRegistry
from .scheduler import DaemonStopping, GovernedRunner, StageBoard
from .work import Job, Lane, Outcome, RunJob, item_count, same_batch

log = logging.getLogger(__name__)


def gather_batch(first: Job, lane: Lane, stop: threading.Event, batch_wait_s: float, batch_max_items: int) -> list[Job]:
    """Cross-file batching: ``first`` plus the requests of the same kind, models and
    options that arrive within ``batch_wait_s``, up to ``batch_max_items`` units of work
    (SER segments; one per ASR request).  Anything else met meanwhile (other kinds,
    loads) is kept, in order, for the next turns."""
    jobs = [first]
    if not first.handler.cross_file or batch_max_items <= 1:
        return jobs
    items = item_count(first.payload) or 1
    deadline = time.monotonic() + batch_wait_s
    while items < batch_max_items and not stop.is_set():
        remaining = deadline - time.monotonic()
        try:
            item = lane.queue.get(timeout=remaining) if remaining > 0 else lane.queue.get_nowait()
        except queue.Empty:
            break
        if isinstance(item, RunJob) and same_batch(item.job, first):
            jobs.append(item.job)
            items += item_count(item.job.payload) or 1
        else:
            lane.deferred.append(item)
    return jobs


def run_governed_batch(
    jobs: list[Job],
    runner: GovernedRunner,
    registry: ModelRegistry,
    board: StageBoard,
    load_errors: dict[str, str],
) -> list[Outcome]:
    """One governed batch: one request, or several of one kind gathered across files."""
    job = jobs[0]
    for j in jobs:
        board.move(j.request_id, j.kind, "running")
    try:
        # May wait (N2 halt, E2 cooldown delay) and move models between devices (E3).
        ticket = runner.before_batch(job.kind, job.specs, job.content)
        models = {kind: registry.get(spec) for kind, spec in ticket.specs.items()}
        for kind, model in models.items():
            load_errors.pop(kind, None)
            ticket.model_devices[kind] = str(model.custody().get("device"))
    except (ModelLoadError, DaemonStopping, ValueError) as exc:
        # A failed load for one request leaves the held model serving: the daemon is
        # "degraded" only when a kind has no model at all.
        if isinstance(exc, ModelLoadError) and not registry.is_loaded(exc.kind):
            load_errors[exc.kind] = str(exc)
        return [Outcome.failure(j.request_id, j.kind, str(exc), "daemon") for j in jobs]
    started = time.monotonic()
    lengths = [len(w) for j in jobs for w in ((j.payload or {}).get("waveforms") or [])]
    batch = BatchRun([])
    ok = False
    try:
        batch = runner.run_batch(ticket, lambda: job.handler.run(models, [j.payload for j in jobs], ticket.content))
        if len(batch.replies) != len(jobs):
            raise RuntimeError(f"handler returned {len(batch.replies)} replies for {len(jobs)} requests")
        inference_s = round(time.monotonic() - started, 3)
        outcomes = [
            Outcome(
                j.request_id,
                j.kind,
                True,
                {
                    **reply,
                    "timings": {
                        "queue_s": round(started - j.prepared, 3),
                        "prepare_s": round(j.prepared - j.accepted, 3),
                        "inference_s": inference_s,
                        "halted_wait_s": round(ticket.halted_wait_s, 3),
                        "batched_requests": len(jobs),
                    },
                    "governor": ticket.to_dict(),
                },
            )
            for j, reply in zip(jobs, batch.replies)
        ]
        ok = True
    except Exception as exc:  # one bad input must not take the daemon down
        log.exception("%s failed", job.kind)
        outcomes = [Outcome.failure(j.request_id, j.kind, f"{type(exc).__name__}: {exc}", "request") for j in jobs]
    runner.after_batch(
        ticket,
        ok,
        batch.items,
        requests=len(jobs),
        lengths=lengths,
        forward_batches=batch.forward_batches,
        padding=batch.padding,
    )
    busy = (time.monotonic() - started) / len(jobs)
    for _job in jobs:  # one request each, for every model kind it used
        for kind in ticket.specs:
            registry.record_request(kind, busy, ok)
    return outcomes


def lane_stream(lane: Lane, lane_count: int) -> Any:
    """The lane's own CUDA stream (torch work of concurrent lanes overlaps on the GPU);
    nothing on a machine where torch has no CUDA, or with a single lane."""
    if lane_count < 2 or not _torch_has_cuda():
        return contextlib.nullcontext()
    import torch

    if lane.stream is None:
        lane.stream = torch.cuda.Stream()
    return torch.cuda.stream(lane.stream)


@functools.lru_cache(maxsize=1)
def _torch_has_cuda() -> bool:
    """Asked once: every batch of a multi-lane core picks its lane's stream by it."""
    import torch

    return torch.cuda.is_available()
