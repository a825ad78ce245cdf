"""The daemon's socket-free core: it owns the models, the governor, the I/O pool and the
inference thread, and turns submitted requests into outcomes.

Nothing here knows about ZeroMQ.  The socket server (server.py) feeds the core and sends
its outcomes back; the in-process benchmark and tests drive the very same core directly
(``InProcessClient``), so "pipeline" and "in-process" differ only in orchestration.

Threads:
- callers (the server's main thread, a benchmark) ``submit`` requests;
- the I/O pool decodes evidence files (N4: no file I/O on an inference thread);
- one inference thread per lane owns its lane's models: loads them once, runs one batch at a
  time under the GPU governor (scheduler.GovernedRunner), and only these threads touch the
  accelerator.  With ``lanes="per_stage"`` ASR (with diarization) and SER are two lanes, so
  their batches overlap (E4), each on a CUDA stream of its own when torch has CUDA;
  ``lanes="single"`` runs everything on one thread.  Every exception a lane meets becomes
  that request's error outcome; if a lane's thread ever dies, the core reports state
  "failed" so the service exits non-zero.  How a lane gathers one batch across files and
  runs it under the governor: lane_batches.py.
- S5 backpressure: while too many files wait for SER, new transcription requests are held
  and started when the SER backlog drains.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .admission import SerBackpressure
from .confinement import Refused
from .governor import Governor
from .governor_setup import governor_stats
from .handlers import HANDLERS, Handler
from .lane_batches import gather_batch, lane_stream, run_governed_batch
from .registry import ModelLoadError, ModelRegistry, ModelSpec
from .requests import ModelRef, RequestInvalid, parse_work
from .scheduler import REQUEST_STAGES, GovernedRunner, StageBoard
from .work import (
    Job,
    Lane,
    LoadModel,
    Outcome,
    RequestCounters,
    RequestRejected,
    RunJob,
    UnloadModels,
    joined_futures,
)

log = logging.getLogger(__name__)

QUEUE_POLL_S = 0.2  # how often an idle inference thread looks at the stop flag
LANE_MODES = ("per_stage", "single")
SINGLE_LANE = "all"


class DaemonCore:
    def __init__(
        self,
        registry: ModelRegistry,
        default_specs: dict[str, ModelSpec],
        preload: list[str] | None = None,
        io_workers: int = 2,
        handlers: dict[str, Handler] | None = None,
        governor: Governor | None = None,
        backpressure: SerBackpressure | None = None,
        batch_wait_s: float = 0.05,
        batch_max_items: int = 64,
        lanes: str = "per_stage",
    ):
        self.registry = registry
        self.default_specs = default_specs
        self.preload = preload or []
        self.handlers = handlers or HANDLERS
        self.governor = governor
        self.backpressure = backpressure or SerBackpressure()
        self.started_unix = time.time()
        self._io_pool = ThreadPoolExecutor(max_workers=io_workers, thread_name_prefix="io")
        if lanes not in LANE_MODES:
            raise ValueError(f"daemon.lanes must be one of {LANE_MODES}, not '{lanes}'")
        # Which lane serves each request type and model kind: a request type's stage, and the
        # model kinds its handler uses (per_stage), or everything on one lane (single).
        self._lane_of: dict[str, str] = {}
        for name, handler in self.handlers.items():
            lane = REQUEST_STAGES.get(name, name) if lanes == "per_stage" else SINGLE_LANE
            self._lane_of[name] = lane
            for kind in handler.model_kinds:
                self._lane_of.setdefault(kind, lane)
        self._lanes = {name: Lane(name) for name in dict.fromkeys(self._lane_of.values() or [SINGLE_LANE])}
        for lane in self._lanes.values():
            lane.thread = threading.Thread(
                target=self._inference_loop, args=(lane,), name=f"inference-{lane.name}", daemon=True
            )
        self.batch_wait_s = batch_wait_s
        self.batch_max_items = batch_max_items
        self._stop = threading.Event()
        self._lock = threading.Lock()  # counters, backpressure, pending loads
        self._counters: dict[str, RequestCounters] = {}
        self._in_flight: dict[str, Job] = {}
        self._pending_loads = 0
        self._load_errors: dict[str, str] = {}
        self._inference_error: str | None = None
        self.runner = GovernedRunner(governor, registry, self._stop)
        self.board = StageBoard()
        # device_probe.DeviceReport set by __main__ at start: GPU vs what the model libraries can use.
        self.device_report: Any = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> DaemonCore:
        for lane in self._lanes.values():
            lane.thread.start()
        if self.governor is not None:
            self.governor.start_sampler()  # U2: samples (and logs) every interval from now on
        for kind in self.preload:  # E1: configured models load at start, not on the first file
            with self._lock:
                self._pending_loads += 1
            self._lane(kind).queue.put(LoadModel(self.default_specs[kind]))
        return self

    def request_stop(self) -> None:
        """Finish the request that is running; queued ones get a 'daemon stopping' error."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self, join_timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self.governor is not None:
            self.governor.stop_sampler()
        self._io_pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + join_timeout_s
        for lane in self._lanes.values():
            if lane.thread.is_alive():
                lane.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._fail_remaining("daemon stopped before this request ran")
        self.registry.unload()

    def state(self) -> str:
        if self._inference_error is not None:
            return "failed"
        if self._stop.is_set():
            return "stopping"
        if self._pending_loads:
            return "loading"
        return "degraded" if self._load_errors else "ready"

    # ------------------------------------------------------------------ requests
    def submit(self, kind: str, content: dict[str, Any], request_id: str | None = None) -> Future:
        """Accept a work request; the returned future resolves to its Outcome (never raises).
        A request that cannot be run resolves at once with an error outcome."""
        request_id = request_id or uuid.uuid4().hex
        handler = self.handlers.get(kind)
        with self._lock:
            self._counters.setdefault(kind, RequestCounters()).accepted += 1
        try:
            if handler is None:
                raise RequestRejected(f"unknown request type '{kind}'")
            if self._stop.is_set():
                raise RequestRejected("daemon is stopping")
            # Every field checked against the type's schema; the rest of the core sees only
            # the validated, normalised content (requests.py).
            request = parse_work(kind, content, handler.model_kinds)
            content = request.content()
            with self._lock:
                if request_id in self._in_flight:
                    raise RequestInvalid(f"a request with msg_id {request_id[:40]!r} is already in flight")
            job = Job(request_id, kind, content, handler, self._specs_for(handler, request.models))
        except RequestRejected as exc:
            scope = "protocol" if handler is None else "daemon"
            return self._resolved(Outcome.failure(request_id, kind, str(exc), scope))
        except Refused as exc:  # malformed (protocol), or a model the daemon does not trust (daemon)
            log.warning("refused %s %s: %s", kind, request_id[:8], exc)
            return self._resolved(Outcome.failure(request_id, kind, str(exc), exc.scope))
        job.future.add_done_callback(lambda fut, job=job: self._finished(job, fut.result()))
        log.info("accepted %s %s (%s)", kind, request_id[:8], content.get("audio_path"))
        stage = REQUEST_STAGES.get(kind)
        with self._lock:
            self._in_flight[request_id] = job
            if stage == "ser":
                self.backpressure.ser_entered(job.file_key)
            held = stage == "asr" and not self.backpressure.admit_or_hold(job)
        if held:  # S5: kept, not rejected; it starts when the SER backlog drains
            self.board.move(request_id, kind, "held")
            log.info("held %s %s: %d files wait for SER", kind, request_id[:8], self.backpressure.ser_files_waiting)
        else:
            self._start(job)
        return job.future

    def unload(self, kind: str | None) -> Future:
        """Drop a model (or all): the only way a model leaves memory (N1)."""
        if kind is not None:
            future: Future = Future()
            self._lane(kind).queue.put(UnloadModels(kind, future))
            return future
        # Every lane drops its own models; the caller gets all the kinds dropped.
        parts = []
        for lane in self._lanes.values():
            part: Future = Future()
            lane.queue.put(UnloadModels(None, part))
            parts.append(part)
        return joined_futures(parts)

    def _lane(self, name: str) -> Lane:
        """The lane of a request type or model kind (unknown ones: the first lane)."""
        return self._lanes.get(self._lane_of.get(name, ""), next(iter(self._lanes.values())))

    def _resolved(self, outcome: Outcome) -> Future:
        with self._lock:
            self._counters.setdefault(outcome.kind, RequestCounters()).failed += 1
        future: Future = Future()
        future.set_result(outcome)
        return future

    def _start(self, job: Job) -> None:
        self.board.move(job.request_id, job.kind, "preparing")
        try:
            self._io_pool.submit(self._prepare, job)
        except RuntimeError:  # pool shut down: the daemon is stopping
            job.future.set_result(Outcome.failure(job.request_id, job.kind, "daemon is stopping", "daemon"))

    def _specs_for(self, handler: Handler, requested: dict[str, ModelRef]) -> dict[str, ModelSpec]:
        """The models a request needs: those it names (id/revision; load options stay the
        daemon's), else the daemon's configured defaults for the handler's kinds.  A named id
        must be the kind's configured one or lie inside the model roots (registry.ModelTrust):
        anything else raises ModelRefused and nothing is loaded."""
        if requested:
            return {
                kind: self.registry.trust.spec_for(kind, want.id, want.revision, self.default_specs.get(kind))
                for kind, want in requested.items()
            }
        specs = {kind: self.default_specs[kind] for kind in handler.model_kinds if kind in self.default_specs}
        if not specs:
            raise RequestRejected(
                f"no {'/'.join(handler.model_kinds)} model configured in the daemon and none named in the request"
            )
        return specs

    def _finished(self, job: Job, outcome: Outcome) -> None:
        """Bookkeeping when a request's outcome is set (any thread), then release held
        transcriptions if the SER backlog drained."""
        self.board.drop(job.request_id)
        with self._lock:
            self._in_flight.pop(job.request_id, None)
            counters = self._counters.setdefault(job.kind, RequestCounters())
            counters.ok += int(outcome.ok)
            counters.failed += int(not outcome.ok)
            if REQUEST_STAGES.get(job.kind) == "ser":
                self.backpressure.ser_left(job.file_key)
            released = self.backpressure.release()
        for held in released:
            log.info("released held %s %s", held.kind, held.request_id[:8])
            self._start(held)

    # ------------------------------------------------------------------ I/O pool
    def _prepare(self, job: Job) -> None:
        try:
            job.payload = job.handler.prepare(job.content, job.specs)
        except Exception as exc:
            log.warning("%s %s: %s", job.kind, job.content.get("audio_path"), exc)
            job.future.set_result(Outcome.failure(job.request_id, job.kind, str(exc), "request"))
            return
        job.prepared = time.monotonic()
        self.board.move(job.request_id, job.kind, "queued")
        self._lane(job.kind).queue.put(RunJob(job))

    # ------------------------------------------------------------------ inference thread
    def _inference_loop(self, lane: Lane) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = lane.deferred.popleft() if lane.deferred else lane.queue.get(timeout=QUEUE_POLL_S)
                except queue.Empty:
                    continue
                if isinstance(item, LoadModel):
                    self._preload(item.spec)
                elif isinstance(item, UnloadModels):
                    kinds = [item.kind] if item.kind else [k for k in self.registry.stats() if self._lane(k) is lane]
                    item.future.set_result([k for kind in kinds for k in self.registry.unload(kind)])
                else:
                    with lane_stream(lane, len(self._lanes)):
                        self._run_guarded(
                            gather_batch(item.job, lane, self._stop, self.batch_wait_s, self.batch_max_items)
                        )
        except BaseException as exc:  # never silently: the service must restart us
            self._inference_error = f"{lane.name}: {type(exc).__name__}: {exc}"
            log.critical("inference thread %s died: %s", lane.name, self._inference_error, exc_info=True)
            self._stop.set()

    def _preload(self, spec: ModelSpec) -> None:
        try:
            self.registry.get(spec)
            self._load_errors.pop(spec.kind, None)
        except ModelLoadError as exc:
            log.error("%s", exc)
            self._load_errors[spec.kind] = str(exc)
        finally:
            with self._lock:
                self._pending_loads -= 1

    def _run_guarded(self, jobs: list[Job]) -> None:
        try:
            outcomes = run_governed_batch(jobs, self.runner, self.registry, self.board, self._load_errors)
        except Exception as exc:  # a bug on this path fails these requests only
            log.exception("%s failed outside its handler", jobs[0].kind)
            outcomes = [
                Outcome.failure(j.request_id, j.kind, f"internal error: {type(exc).__name__}", "request") for j in jobs
            ]
        finally:
            for job in jobs:
                job.payload = None  # drop the decoded audio now, not when the job is collected
        for job, outcome in zip(jobs, outcomes):
            if not job.future.done():
                job.future.set_result(outcome)

    def _fail_remaining(self, reason: str) -> None:
        with self._lock:
            jobs = list(self._in_flight.values())
        for job in jobs:
            if not job.future.done():
                job.future.set_result(Outcome.failure(job.request_id, job.kind, reason, "daemon"))

    # ------------------------------------------------------------------ reports
    def load_errors(self) -> dict[str, str]:
        return dict(self._load_errors)

    def stats(self, brief: bool = False) -> dict[str, Any]:
        """Everything ``stats`` reports (brief: the dashboard's per-second poll, no event list)."""
        stages = self.runner.stats()
        for stage, depths in self.board.depths().items():
            stages.setdefault(stage, {}).update(depths)
        with self._lock:
            requests = {k: vars(v).copy() for k, v in self._counters.items()}
            admission = self.backpressure.to_dict()
            in_flight = len(self._in_flight)
        return {
            "governor": governor_stats(self.governor, brief=brief),
            "stages": stages,
            "admission": admission,
            "device_changes": self.runner.device_changes_dicts(),
            "state": self.state(),
            "uptime_s": round(time.time() - self.started_unix, 3),
            "models": self.registry.stats(),
            "requests": requests,
            "queue_depth": sum(lane.queue.qsize() for lane in self._lanes.values()),
            "lanes": {name: lane.queue.qsize() for name, lane in self._lanes.items()},
            "in_flight": in_flight,
            "load_errors": self.load_errors(),
            "inference_error": self._inference_error,
            "device": self.device_report.to_dict() if self.device_report is not None else None,
        }

    def wait_ready(self, timeout_s: float) -> str:
        """Wait until preloads are done (or timeout); returns the state."""
        deadline = time.monotonic() + timeout_s
        while self.state() == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.state()
