"""The daemon's socket: one ZeroMQ ROUTER in front of the socket-free core (core.py).

The main thread owns the socket (ZeroMQ sockets are not thread-safe): it decodes each frame,
answers control messages (ping, stats, shutdown) at once, submits work to the core, and sends
the core's outcomes and heartbeats back.  Outcomes arrive from the core's threads through a
queue, so only this thread ever touches the socket.  A bad frame gets an error reply; it
never takes the daemon or other requests down.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from concurrent.futures import Future
from dataclasses import dataclass

import zmq

import voiceman
from voiceman.daemonlink import protocol, transport
from voiceman.daemonlink.protocol import Message

from .core import DaemonCore
from .requests import CONTROL_REQUESTS, RequestInvalid, parse_control
from .work import Outcome

log = logging.getLogger(__name__)

POLL_MS = 50
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20  # daemon.max_message_bytes: larger frames are dropped by ZeroMQ


@dataclass(frozen=True)
class Waiting:
    """A client waiting for a request's outcome (heartbeats go to it until answered)."""

    identity: bytes
    request: Message


@dataclass(frozen=True)
class Answer:
    """An outcome (or an unload result) ready to be sent from the main thread."""

    identity: bytes
    message: Message


class DaemonServer:
    # daemon.idle_exit_s (set by __main__): stop after this many seconds without a message while
    # no request is in flight; None = serve until told to stop (per-node cluster daemons use it).
    idle_exit_s: float | None = None

    def __init__(
        self,
        endpoint: str,
        core: DaemonCore,
        heartbeat_interval_s: float = 2.0,
        curve: transport.CurveSettings | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ):
        # Who may connect (voiceman/daemonlink/transport.py): ipc in a private dir; tcp on loopback, or any
        # address with CURVE keys (curve=None: no keys).  Refused here, before anything loads.
        transport.check_server(endpoint, curve)
        self.endpoint = endpoint
        self.curve = curve
        self.core = core
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_message_bytes = int(max_message_bytes)
        self._answers: queue.Queue[Answer] = queue.Queue()
        self._waiting: dict[str, Waiting] = {}  # main thread only

    # ------------------------------------------------------------------ main thread
    def serve_forever(self) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        # A peer sending a larger message is disconnected by ZeroMQ before it is buffered.
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        try:
            security = transport.secure_server_socket(sock, self.endpoint, self.curve)
        except BaseException:
            sock.close(linger=0)
            raise
        try:
            sock.bind(self.endpoint)
        except BaseException:
            sock.close(linger=0)
            security.close()
            raise
        log.info(
            "voiceman daemon %s listening on %s (pid %d; %s)",
            voiceman.__version__,
            self.endpoint,
            os.getpid(),
            security.description,
        )
        self.core.start()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        next_beat = time.monotonic() + self.heartbeat_interval_s
        last_activity = time.monotonic()
        try:
            while not self.core.stopping or not self._answers.empty():
                if poller.poll(POLL_MS):
                    identity, frame = self._recv(sock)
                    last_activity = time.monotonic()
                    if identity is not None:
                        self._dispatch(sock, identity, frame)
                self._flush_answers(sock)
                if self._waiting:
                    last_activity = time.monotonic()  # a request in flight keeps the daemon busy
                elif (
                    self.idle_exit_s and not self.core.stopping and time.monotonic() - last_activity >= self.idle_exit_s
                ):
                    log.info(
                        "no message for %.0f s and nothing in flight (daemon.idle_exit_s): stopping", self.idle_exit_s
                    )
                    self.request_stop()
                if time.monotonic() >= next_beat:
                    self._heartbeat(sock)
                    next_beat = time.monotonic() + self.heartbeat_interval_s
        finally:
            self.core.close()
            self._flush_answers(sock)
            sock.close(linger=500)
            security.close()
            log.info("daemon stopped")

    @staticmethod
    def _recv(sock: zmq.Socket) -> tuple[bytes | None, bytes | None]:
        """(identity, payload); payload None when the message is not exactly one frame."""
        frames = sock.recv_multipart()
        if len(frames) != 2:
            log.warning("bad message with %d frames (expected identity + payload)", len(frames))
            return (frames[0] if len(frames) > 1 else None), None
        return frames[0], frames[1]

    def _send(self, sock: zmq.Socket, identity: bytes, msg: Message) -> None:
        try:
            sock.send_multipart([identity, protocol.pack(msg)], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone: its answer has nowhere to go
            log.warning("could not send %s to a client: %s", msg.msg_type, exc)

    def _dispatch(self, sock: zmq.Socket, identity: bytes, frame: bytes | None) -> None:
        """Answer one message.  Nothing a message holds can stop the daemon: every failure on
        its path becomes an error reply to its sender."""
        try:
            self._dispatch_checked(sock, identity, frame)
        except Exception as exc:
            log.exception("internal error while handling a message")
            try:
                self._send(
                    sock,
                    identity,
                    Message(protocol.ERROR, {"reason": f"internal error: {type(exc).__name__}", "scope": "daemon"}),
                )
            except Exception:  # not even an error reply could be sent: log it and serve the next
                log.exception("could not answer a message")

    def _dispatch_checked(self, sock: zmq.Socket, identity: bytes, frame: bytes | None) -> None:
        if frame is None:
            self._send(
                sock,
                identity,
                Message(protocol.ERROR, {"reason": "bad message: a request is exactly one frame", "scope": "protocol"}),
            )
            return
        try:
            request = protocol.unpack(frame)
        except protocol.ProtocolError as exc:
            log.warning("bad frame: %s", exc)
            self._send(sock, identity, Message(protocol.ERROR, {"reason": f"bad frame: {exc}", "scope": "protocol"}))
            return
        if request.version != protocol.PROTOCOL_VERSION:
            self._send(
                sock,
                identity,
                protocol.error_reply(
                    request,
                    f"protocol version {request.version} not supported (daemon speaks {protocol.PROTOCOL_VERSION})",
                    scope="protocol",
                ),
            )
            return
        if request.msg_type in CONTROL_REQUESTS:
            try:
                parsed = parse_control(request.msg_type, request.content)
            except RequestInvalid as exc:
                self._send(sock, identity, protocol.error_reply(request, str(exc), scope="protocol"))
                return
            if request.msg_type == protocol.UNLOAD:
                self._forward(
                    identity, request, self.core.unload(parsed.kind), lambda dropped: request.reply(unloaded=dropped)
                )
            else:
                control = {
                    protocol.PING: self._on_ping,
                    protocol.STATS: self._on_stats,
                    protocol.SHUTDOWN: self._on_shutdown,
                }
                self._send(sock, identity, control[request.msg_type](request))
        elif request.msg_type in self.core.handlers:
            if request.msg_id in self._waiting:  # answered here: its answer must not end the other's wait
                self._send(
                    sock,
                    identity,
                    protocol.error_reply(
                        request, f"a request with msg_id {request.msg_id[:40]!r} is already in flight", scope="protocol"
                    ),
                )
                return
            # The core checks the content against the request type's schema (requests.py).
            future = self.core.submit(request.msg_type, request.content, request_id=request.msg_id)
            if not future.done():
                # Acknowledge at once: the client now knows a daemon holds its request.
                self._send(sock, identity, request.reply(protocol.HEARTBEAT, state="accepted"))
                self._waiting[request.msg_id] = Waiting(identity, request)
            self._forward(identity, request, future, lambda outcome: _reply_for(request, outcome))
        else:
            self._send(
                sock,
                identity,
                protocol.error_reply(request, f"unknown request type '{request.msg_type}'", scope="protocol"),
            )

    def _forward(self, identity: bytes, request: Message, future: Future, to_message) -> None:
        """When the core resolves ``future`` (on any thread), queue its answer for this thread."""

        def done(fut: Future) -> None:
            try:
                message = to_message(fut.result())
            except Exception as exc:  # an unload that raised, a reply that cannot be built
                message = protocol.error_reply(request, f"{type(exc).__name__}: {exc}", scope="daemon")
            self._answers.put(Answer(identity, message))

        future.add_done_callback(done)

    def _flush_answers(self, sock: zmq.Socket) -> None:
        while True:
            try:
                answer = self._answers.get_nowait()
            except queue.Empty:
                return
            self._waiting.pop(answer.message.parent_id, None)
            self._send(sock, answer.identity, answer.message)

    def _heartbeat(self, sock: zmq.Socket) -> None:
        for waiting in list(self._waiting.values()):
            self._send(sock, waiting.identity, waiting.request.reply(protocol.HEARTBEAT, state="working"))

    # ------------------------------------------------------------------ control
    def _on_ping(self, request: Message) -> Message:
        return request.reply(
            state=self.core.state(),
            pid=os.getpid(),
            version=voiceman.__version__,
            protocol_version=protocol.PROTOCOL_VERSION,
            endpoint=self.endpoint,
            load_errors=self.core.load_errors(),
            # a GPU the models cannot use (device_probe); `voiceman daemon start` prints them
            device_warnings=list(self.core.device_report.warnings) if self.core.device_report is not None else [],
        )

    def _on_stats(self, request: Message) -> Message:
        # brief=True (the dashboard, every second) leaves out the governor's event list.
        stats = self.core.stats(brief=bool(request.content.get("brief")))
        return request.reply(**stats, pid=os.getpid(), version=voiceman.__version__)

    def request_stop(self) -> None:
        """Finish the current request, answer what is ready, then exit."""
        self.core.request_stop()

    def _on_shutdown(self, request: Message) -> Message:
        log.info("shutdown requested")
        self.request_stop()
        return request.reply(stopping=True, pid=os.getpid())


def _reply_for(request: Message, outcome: Outcome) -> Message:
    if outcome.ok:
        return request.reply(**outcome.content)
    return protocol.error_reply(request, outcome.content["reason"], scope=outcome.scope or "request")
