"""The daemon wire protocol: one msgpack map per ZeroMQ frame, never pickle.

A message is ``{"header": {...}, "content": {...}}``.  The header carries the protocol
version, the message type, a message id and (on replies) the id of the request it answers.
Request types are open-ended strings: the daemon registers handlers by name, so new kinds of
work (SER, alignment, ...) need no change here.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgpack

PROTOCOL_VERSION = 1

# Control messages every daemon answers; work requests ("transcribe", ...) are registered by
# the daemon's handler registry and are not listed here on purpose.
PING = "ping"
STATS = "stats"
UNLOAD = "unload"
SHUTDOWN = "shutdown"
# Daemon -> client
REPLY = "reply"
ERROR = "error"
HEARTBEAT = "heartbeat"  # "still working on your request" while long work runs


# Header fields are checked for type and length here; the content is checked by the
# receiver against its request type's schema (voiceman_daemon/requests.py).
MAX_MSG_TYPE_CHARS = 64
MAX_MSG_ID_CHARS = 128


class ProtocolError(ValueError):
    """A frame that is not a valid voiceman message."""


@dataclass
class Message:
    msg_type: str
    content: dict[str, Any] = field(default_factory=dict)
    msg_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent_id: str | None = None
    version: int = PROTOCOL_VERSION
    sent_unix: float = field(default_factory=time.time)

    def header(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "msg_type": self.msg_type,
            "msg_id": self.msg_id,
            "parent_id": self.parent_id,
            "sent_unix": self.sent_unix,
        }

    def reply(self, msg_type: str = REPLY, **content: Any) -> Message:
        """A message answering this one (same protocol version as ours, not the peer's)."""
        return Message(msg_type, content, parent_id=self.msg_id)


def pack(msg: Message) -> bytes:
    return msgpack.packb({"header": msg.header(), "content": msg.content}, use_bin_type=True)


def unpack(frame: bytes) -> Message:
    """Inverse of :func:`pack`.  Raises ProtocolError on anything malformed: not msgpack, not
    a map, a header field of the wrong type or length, content that is not a map.

    A version mismatch is *not* raised here: the receiver decides how to answer it, so a
    client speaking another version gets an error reply instead of silence.
    """
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise ProtocolError(f"not a msgpack frame: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("header"), dict):
        raise ProtocolError("frame has no header map")
    header, content = obj["header"], obj.get("content", {})
    if not isinstance(content, dict):
        raise ProtocolError("content is not a map")
    for key in ("msg_type", "msg_id", "version"):
        if key not in header:
            raise ProtocolError(f"bad header field: {key!r} missing")
    version, sent = header["version"], header.get("sent_unix", 0.0)
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**31:
        raise ProtocolError("bad header field: 'version' must be a non-negative integer")
    if isinstance(sent, bool) or not isinstance(sent, (int, float)):
        raise ProtocolError("bad header field: 'sent_unix' must be a number")
    return Message(
        msg_type=_header_str(header, "msg_type", MAX_MSG_TYPE_CHARS),
        content=content,
        msg_id=_header_str(header, "msg_id", MAX_MSG_ID_CHARS),
        parent_id=_header_str(header, "parent_id", MAX_MSG_ID_CHARS, optional=True),
        version=version,
        sent_unix=float(sent),
    )


def _header_str(header: dict[str, Any], key: str, max_chars: int, optional: bool = False) -> str | None:
    value = header.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= max_chars:
        raise ProtocolError(f"bad header field: {key!r} must be a string of 1 to {max_chars} characters")
    return value


def error_reply(request: Message, reason: str, scope: str = "request", **extra: Any) -> Message:
    """An error answer.  ``scope`` tells the client whose fault it is:

    - ``request``: this input failed (bad file, model error on it); other requests are fine;
    - ``daemon``: the daemon cannot serve this kind of request now (model failed to load, ...);
    - ``protocol``: the message itself was unacceptable (wrong version, unknown type).
    """
    return request.reply(ERROR, reason=reason, scope=scope, **extra)
