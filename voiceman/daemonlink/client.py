"""Client side of the daemon protocol: every call has a deadline, bounded retries, and a
one-line error that names the endpoint.

Long work (a 30-minute recording) can take minutes, so the client does not rely on one big
timeout: the daemon sends heartbeats while it works, and the client gives up as soon as the
heartbeats stop — that is how a killed daemon is noticed in seconds, not after an hour.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import zmq

from . import protocol, transport
from .protocol import Message

log = logging.getLogger(__name__)


class DaemonError(RuntimeError):
    """Base class: the daemon could not give an answer."""


class DaemonUnavailable(DaemonError):
    """Nothing answered at the endpoint (not running, crashed, or wrong endpoint)."""


class DaemonLost(DaemonError):
    """The daemon accepted the request, then stopped answering (heartbeats stopped)."""


class RequestFailed(DaemonError):
    """The daemon answered with an error reply."""

    def __init__(self, reason: str, scope: str, endpoint: str):
        super().__init__(f"daemon at {endpoint} refused the request ({scope}): {reason}")
        self.reason, self.scope = reason, scope


class DaemonClient:
    def __init__(
        self,
        endpoint: str,
        connect_timeout_s: float = 5.0,
        heartbeat_timeout_s: float = 15.0,
        retries: int = 2,
        context: zmq.Context | None = None,
        curve: transport.CurveSettings | None = None,
    ):
        # Endpoint policy and CURVE keys (voiceman/transport.py): a bad setting or key file is
        # reported here, at once, not as a daemon that never answers.
        transport.check_client(endpoint, curve)
        self.endpoint = endpoint
        self.curve = curve
        self.connect_timeout_s = connect_timeout_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.retries = retries
        self._ctx = context or zmq.Context.instance()

    def _socket(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, int(self.connect_timeout_s * 1000))
        try:
            transport.secure_client_socket(sock, self.endpoint, self.curve)
            sock.connect(self.endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        return sock

    def call(self, msg_type: str, deadline_s: float = 3600.0, **content: Any) -> dict[str, Any]:
        """Send one request and wait for its reply.  Retries only when nothing answered at all
        (the request never started); once the daemon has acknowledged work, a lost daemon is
        reported rather than silently resubmitted."""
        last: DaemonError | None = None
        for attempt in range(self.retries + 1):
            try:
                return self._call_once(Message(msg_type, content), deadline_s)
            except DaemonUnavailable as exc:
                last = exc
                if attempt < self.retries:
                    log.info("no answer from %s (attempt %d), retrying", self.endpoint, attempt + 1)
                    time.sleep(min(0.5 * 2**attempt, 5.0))
        assert last is not None
        raise last

    def _call_once(self, request: Message, deadline_s: float) -> dict[str, Any]:
        sock = self._socket()
        try:
            sock.send(protocol.pack(request))
            started = time.monotonic()
            last_heard: float | None = None
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            while True:
                now = time.monotonic()
                if now - started > deadline_s:
                    raise DaemonLost(
                        f"daemon at {self.endpoint}: no reply to {request.msg_type} within {deadline_s:.0f} s"
                    )
                if last_heard is None and now - started > self.connect_timeout_s:
                    raise DaemonUnavailable(
                        f"no voiceman daemon answering at {self.endpoint} "
                        f"(waited {self.connect_timeout_s:.0f} s; start one with `voiceman daemon start`)"
                    )
                if last_heard is not None and now - last_heard > self.heartbeat_timeout_s:
                    raise DaemonLost(
                        f"daemon at {self.endpoint} stopped answering during {request.msg_type} "
                        f"(no heartbeat for {self.heartbeat_timeout_s:.0f} s): it probably crashed or was killed"
                    )
                if not poller.poll(200):
                    continue
                reply = protocol.unpack(sock.recv())
                if reply.parent_id != request.msg_id:
                    continue  # a stale heartbeat for an earlier request on a reused id space
                last_heard = time.monotonic()
                if reply.msg_type == protocol.HEARTBEAT:
                    continue
                if reply.msg_type == protocol.ERROR:
                    raise RequestFailed(
                        str(reply.content.get("reason")), str(reply.content.get("scope")), self.endpoint
                    )
                return reply.content
        finally:
            sock.close(linger=0)

    def once(self, msg_type: str, deadline_s: float, **content: Any) -> dict[str, Any]:
        """One attempt, no retry: for probes (is a daemon there?) and shutdown."""
        return self._call_once(Message(msg_type, content), deadline_s)

    # Convenience wrappers -------------------------------------------------------------
    def ping(self, deadline_s: float = 10.0) -> dict[str, Any]:
        return self.call(protocol.PING, deadline_s=deadline_s)

    def stats(self) -> dict[str, Any]:
        return self.call(protocol.STATS, deadline_s=30.0)

    def is_alive(self) -> bool:
        """One quick probe.  An ipc endpoint whose socket file does not exist has no daemon:
        answer at once instead of waiting out the connect timeout."""
        if self.endpoint.startswith("ipc://") and not os.path.exists(self.endpoint[len("ipc://") :]):
            return False
        try:
            self.once(protocol.PING, deadline_s=self.connect_timeout_s + 1)
            return True
        except DaemonError:
            return False
