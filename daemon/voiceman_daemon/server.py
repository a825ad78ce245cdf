"""The daemon: one ROUTER socket, one I/O pool, one inference thread.

- The main thread owns the socket (ZeroMQ sockets are not thread-safe): it answers control
  messages at once, hands work to the I/O pool, sends replies and heartbeats.
- The I/O pool decodes evidence files (N4: no file I/O on the inference thread).
- The inference thread owns the models: it loads them (once), runs requests one batch at a
  time, and is the only thread that touches the accelerator.  Each batch runs under the GPU
  governor (scheduler.GovernedRunner: halt wait, batch size, cooldown delay, CPU fallback);
  the governor's sampler thread reads the sensor every few seconds.
- S5 backpressure (admission.SerBackpressure) is decided on the main thread: while too many
  files wait for SER, new transcription requests are held (heartbeats keep their clients
  waiting) and started once the SER backlog has drained.
A failed request gets its own error reply; it never takes the daemon or other requests down.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import zmq

import voiceman
from voiceman import protocol
from voiceman.protocol import Message

from .admission import SerBackpressure
from .governor import Governor
from .governor_setup import governor_stats
from .handlers import HANDLERS, Handler
from .registry import ModelLoadError, ModelRegistry, ModelSpec
from .scheduler import REQUEST_STAGES, DaemonStopping, GovernedRunner, StageBoard

log = logging.getLogger(__name__)


@dataclass
class Job:
    identity: bytes
    request: Message
    handler: Handler
    specs: dict[str, ModelSpec]
    payload: Any = None
    accepted: float = field(default_factory=time.monotonic)
    prepared: float = 0.0


@dataclass
class RequestCounters:
    accepted: int = 0
    ok: int = 0
    failed: int = 0


class DaemonServer:
    def __init__(
        self,
        endpoint: str,
        registry: ModelRegistry,
        default_specs: dict[str, ModelSpec],
        preload: list[str] | None = None,
        heartbeat_interval_s: float = 2.0,
        io_workers: int = 2,
        handlers: dict[str, Handler] | None = None,
        governor: Governor | None = None,
        backpressure: SerBackpressure | None = None,
    ):
        self.endpoint = endpoint
        self.registry = registry
        self.default_specs = default_specs
        self.preload = preload or []
        self.heartbeat_interval_s = heartbeat_interval_s
        self.handlers = handlers or HANDLERS
        self.started_unix = time.time()
        self._io_pool = ThreadPoolExecutor(max_workers=io_workers, thread_name_prefix="io")
        self._work: queue.Queue = queue.Queue()
        self._outbox: queue.Queue = queue.Queue()
        self._in_flight: dict[str, tuple[bytes, Message]] = {}
        self._counters: dict[str, RequestCounters] = {}
        self._stop = threading.Event()
        self._pending_loads = 0  # touched by the main thread (+) and the inference thread (-)
        self._pending_lock = threading.Lock()
        self._load_errors: dict[str, str] = {}
        self._inference = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        self.governor = governor
        self.runner = GovernedRunner(governor, registry, self._stop)
        self.board = StageBoard()
        self.backpressure = backpressure or SerBackpressure()

    # ------------------------------------------------------------------ main thread
    def serve_forever(self) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        sock.bind(self.endpoint)
        log.info("voiceman daemon %s listening on %s (pid %d)", voiceman.__version__, self.endpoint, os.getpid())
        self._inference.start()
        if self.governor is not None:
            self.governor.start_sampler()  # U2: samples (and logs) every interval from now on
        for kind in self.preload:
            with self._pending_lock:
                self._pending_loads += 1
            self._work.put(("load", self.default_specs[kind]))
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        next_beat = time.monotonic() + self.heartbeat_interval_s
        try:
            while not self._stop.is_set() or not self._outbox.empty():
                if poller.poll(50):
                    identity, frame = self._recv(sock)
                    if identity is not None:
                        self._dispatch(sock, identity, frame)
                self._flush_outbox(sock)
                if time.monotonic() >= next_beat:
                    self._heartbeat(sock)
                    next_beat = time.monotonic() + self.heartbeat_interval_s
        finally:
            self._shutdown_workers()
            sock.close(linger=500)
            log.info("daemon stopped")

    @staticmethod
    def _recv(sock: zmq.Socket) -> tuple[bytes | None, bytes]:
        frames = sock.recv_multipart()
        if len(frames) != 2:
            log.warning("dropping message with %d frames (expected identity + payload)", len(frames))
            return None, b""
        return frames[0], frames[1]

    def _send(self, sock: zmq.Socket, identity: bytes, msg: Message) -> None:
        try:
            sock.send_multipart([identity, protocol.pack(msg)], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone: its answer has nowhere to go
            log.warning("could not send %s to a client: %s", msg.msg_type, exc)

    def _dispatch(self, sock: zmq.Socket, identity: bytes, frame: bytes) -> None:
        try:
            request = protocol.unpack(frame)
        except protocol.ProtocolError as exc:
            log.warning("bad frame: %s", exc)
            self._send(sock, identity, Message(protocol.ERROR, {"reason": f"bad frame: {exc}", "scope": "protocol"}))
            return
        if request.version != protocol.PROTOCOL_VERSION:
            self._send(sock, identity, protocol.error_reply(
                request, f"protocol version {request.version} not supported (daemon speaks {protocol.PROTOCOL_VERSION})",
                scope="protocol"))
            return
        control = {
            protocol.PING: self._on_ping,
            protocol.STATS: self._on_stats,
            protocol.SHUTDOWN: self._on_shutdown,
        }
        if request.msg_type in control:
            self._send(sock, identity, control[request.msg_type](request))
        elif request.msg_type == protocol.UNLOAD:
            self._work.put(("unload", identity, request))
        elif request.msg_type in self.handlers:
            self._accept(sock, identity, request)
        else:
            self._send(sock, identity, protocol.error_reply(
                request, f"unknown request type '{request.msg_type}'", scope="protocol"))

    def _accept(self, sock: zmq.Socket, identity: bytes, request: Message) -> None:
        handler = self.handlers[request.msg_type]
        counters = self._counters.setdefault(request.msg_type, RequestCounters())
        counters.accepted += 1
        try:
            specs = self._specs_for(handler, request.content.get("models"))
        except ValueError as exc:
            counters.failed += 1
            self._send(sock, identity, protocol.error_reply(request, str(exc), scope="daemon"))
            return
        job = Job(identity, request, handler, specs)
        log.info("accepted %s %s (%s)", request.msg_type, request.msg_id[:8], request.content.get("audio_path"))
        self._in_flight[request.msg_id] = (identity, request)
        stage = REQUEST_STAGES.get(request.msg_type)
        if stage == "ser":
            self.backpressure.ser_entered(self._file_key(request))
        # Acknowledge at once: the client now knows a daemon holds its request.
        self._send(sock, identity, request.reply(protocol.HEARTBEAT, state="accepted"))
        if stage == "asr" and not self.backpressure.admit_or_hold(job):
            # S5: kept, not rejected; heartbeats go on, it starts when the SER backlog drains.
            self.board.move(request.msg_id, request.msg_type, "held")
            log.info("held %s %s: %d files wait for SER", request.msg_type, request.msg_id[:8],
                     self.backpressure.ser_files_waiting)
            return
        self._start(job)

    def _start(self, job: Job) -> None:
        self.board.move(job.request.msg_id, job.request.msg_type, "preparing")
        self._io_pool.submit(self._prepare, job)

    @staticmethod
    def _file_key(request: Message) -> str:
        return str(request.content.get("audio_path") or request.msg_id)

    def _specs_for(self, handler: Handler, requested: dict[str, Any] | None) -> dict[str, ModelSpec]:
        """The models a request needs: those it names (id/revision; load options stay the
        daemon's), else the daemon's configured defaults for the handler's kinds."""
        if requested:
            unknown = set(requested) - set(handler.model_kinds)
            if unknown:
                raise ValueError(f"{handler.name} cannot use model kinds {sorted(unknown)}")
            specs = {}
            for kind, want in requested.items():
                default = self.default_specs.get(kind)
                specs[kind] = ModelSpec(kind=kind, id=str(want["id"]), revision=want.get("revision"),
                                        options=default.options if default else ())
            return specs
        specs = {kind: self.default_specs[kind] for kind in handler.model_kinds if kind in self.default_specs}
        if not specs:
            raise ValueError(f"no {'/'.join(handler.model_kinds)} model configured in the daemon "
                             f"and none named in the request")
        return specs

    def _flush_outbox(self, sock: zmq.Socket) -> None:
        while True:
            try:
                identity, msg, msg_type, ok = self._outbox.get_nowait()
            except queue.Empty:
                return
            answered = self._in_flight.pop(msg.parent_id, None)
            self.board.drop(msg.parent_id)
            if answered is not None and REQUEST_STAGES.get(answered[1].msg_type) == "ser":
                self.backpressure.ser_left(self._file_key(answered[1]))
            if msg_type is not None:
                counters = self._counters.setdefault(msg_type, RequestCounters())
                counters.ok += int(ok)
                counters.failed += int(not ok)
            self._send(sock, identity, msg)
            for job in self.backpressure.release():
                log.info("released held %s %s", job.request.msg_type, job.request.msg_id[:8])
                self._start(job)

    def _heartbeat(self, sock: zmq.Socket) -> None:
        for identity, request in list(self._in_flight.values()):
            self._send(sock, identity, request.reply(protocol.HEARTBEAT, state="working"))

    # ------------------------------------------------------------------ control
    def state(self) -> str:
        if self._stop.is_set():
            return "stopping"
        if self._pending_loads:
            return "loading"
        return "degraded" if self._load_errors else "ready"

    def _on_ping(self, request: Message) -> Message:
        return request.reply(
            state=self.state(), pid=os.getpid(), version=voiceman.__version__,
            protocol_version=protocol.PROTOCOL_VERSION, endpoint=self.endpoint,
            load_errors=dict(self._load_errors),
        )

    def _on_stats(self, request: Message) -> Message:
        # brief=True (the dashboard, every second) leaves out the governor's event list.
        brief = bool(request.content.get("brief"))
        stages = self.runner.stats()
        for stage, depths in self.board.depths().items():
            stages.setdefault(stage, {}).update(depths)
        return request.reply(
            governor=governor_stats(self.governor, brief=brief),
            stages=stages,
            admission=self.backpressure.to_dict(),
            device_changes=self.runner.device_changes_dicts(),
            state=self.state(), pid=os.getpid(), version=voiceman.__version__,
            uptime_s=round(time.time() - self.started_unix, 3),
            models=self.registry.stats(),
            requests={k: vars(v) for k, v in self._counters.items()},
            queue_depth=self._work.qsize(), in_flight=len(self._in_flight),
            load_errors=dict(self._load_errors),
        )

    def request_stop(self) -> None:
        """Finish the current request, answer what is queued in the outbox, then exit."""
        self._stop.set()

    def _on_shutdown(self, request: Message) -> Message:
        log.info("shutdown requested")
        self.request_stop()
        return request.reply(stopping=True, pid=os.getpid())

    # ------------------------------------------------------------------ I/O pool
    def _prepare(self, job: Job) -> None:
        try:
            job.payload = job.handler.prepare(job.request.content)
        except Exception as exc:
            log.warning("%s %s: %s", job.request.msg_type, job.request.content.get("audio_path"), exc)
            self._outbox.put((job.identity, protocol.error_reply(job.request, str(exc), scope="request"),
                              job.request.msg_type, False))
            return
        job.prepared = time.monotonic()
        self.board.move(job.request.msg_id, job.request.msg_type, "queued")
        self._work.put(("work", job))

    # ------------------------------------------------------------------ inference thread
    def _inference_loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._work.get(timeout=0.2)
            except queue.Empty:
                continue
            if item[0] == "load":
                self._preload(item[1])
            elif item[0] == "unload":
                _, identity, request = item
                dropped = self.registry.unload(request.content.get("kind"))
                self._outbox.put((identity, request.reply(unloaded=dropped), None, True))
            else:
                self._run(item[1])

    def _preload(self, spec: ModelSpec) -> None:
        try:
            self.registry.get(spec)
            self._load_errors.pop(spec.kind, None)
        except ModelLoadError as exc:
            log.error("%s", exc)
            self._load_errors[spec.kind] = str(exc)
        finally:
            with self._pending_lock:
                self._pending_loads -= 1

    def _run(self, job: Job) -> None:
        request = job.request
        self.board.move(request.msg_id, request.msg_type, "running")
        try:
            # May wait (N2 halt, E2 cooldown delay) and move models between devices (E3).
            ticket = self.runner.before_batch(request.msg_type, job.specs, request.content)
            models = {kind: self.registry.get(spec) for kind, spec in ticket.specs.items()}
            for kind, model in models.items():
                self._load_errors.pop(kind, None)
                ticket.model_devices[kind] = str(model.custody().get("device"))
        except (ModelLoadError, DaemonStopping, ValueError) as exc:
            if isinstance(exc, ModelLoadError):
                self._load_errors[exc.kind] = str(exc)
            job.payload = None
            self._outbox.put((job.identity, protocol.error_reply(request, str(exc), scope="daemon"),
                              request.msg_type, False))
            return
        started = time.monotonic()
        ok = False
        items = _item_count(job.payload)
        try:
            result = self.runner.run_batch(ticket, lambda: job.handler.run(models, job.payload, ticket.content))
            work = result.pop("work", None)  # a handler may say what it really batched
            if work and work.get("batch_size"):
                items, ticket.batch_size = work["items"], work["batch_size"]
            result["timings"] = {
                "queue_s": round(started - job.prepared, 3),
                "prepare_s": round(job.prepared - job.accepted, 3),
                "inference_s": round(time.monotonic() - started, 3),
                "halted_wait_s": round(ticket.halted_wait_s, 3),
            }
            result["governor"] = ticket.to_dict()
            reply = request.reply(**result)
            ok = True
        except Exception as exc:  # one bad input must not take the batch or the daemon down
            log.exception("%s failed", request.msg_type)
            reply = protocol.error_reply(request, f"{type(exc).__name__}: {exc}", scope="request")
        finally:
            job.payload = None  # drop the decoded audio now, not when the job is collected
        self.runner.after_batch(ticket, ok, items)
        for kind in ticket.specs:
            self.registry.record_request(kind, time.monotonic() - started, ok)
        self._outbox.put((job.identity, reply, request.msg_type, ok))

    def _shutdown_workers(self) -> None:
        self._stop.set()
        if self.governor is not None:
            self.governor.stop_sampler()
        self._io_pool.shutdown(wait=False, cancel_futures=True)
        self._inference.join(timeout=30)
        self.registry.unload()


def _item_count(payload: Any) -> int | None:
    """Units of work in a prepared request where the handler says (SER: segment waveforms)."""
    if isinstance(payload, dict) and isinstance(payload.get("waveforms"), list):
        return len(payload["waveforms"])
    return None
