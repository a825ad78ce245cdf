"""Typed schemas for every request the daemon accepts, checked before anything is dispatched.

A request's content is untrusted input: each field's type, range and length is checked here,
unknown fields are refused, and what passes becomes a frozen dataclass whose ``content()``
is the only form the rest of the daemon sees (plain dict, known keys, normalised values).
Anything malformed raises :class:`RequestInvalid` (error reply scope "protocol": the message
itself is unacceptable), never an exception of another type.

Adding a request type means adding its schema here (WORK_REQUESTS / CONTROL_REQUESTS); a
handler without a schema is refused, not run unchecked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .confinement import Refused

MAX_PATH_CHARS = 4096  # PATH_MAX
MAX_MODEL_ID_CHARS = 1024
MAX_REVISION_CHARS = 256
MAX_KIND_CHARS = 64
MAX_SEGMENTS = 20_000  # a 10-hour recording at one segment per 2 s
MAX_SECONDS = 1_000_000.0  # segment times: about 11.5 days
MAX_BATCH_SIZE = 1024
SHA256 = re.compile(r"[0-9a-f]{64}")
LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{1,8})?")  # Whisper codes: en, ko, yue, haw, ...


class RequestInvalid(Refused):
    """The content breaks its request type's schema."""

    scope = "protocol"


# ---------------------------------------------------------------------------- field checks
def _where(request: str, name: str) -> str:
    return f"{request}.{name}"


def _map(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestInvalid(f"{where} must be a map, not {_type(value)}")
    if not all(isinstance(k, str) for k in value):
        raise RequestInvalid(f"{where} has keys that are not strings")
    return value


def _keys(value: dict[str, Any], where: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise RequestInvalid(f"{where}: unknown field(s) {shown} (allowed: {', '.join(allowed) or 'none'})")
    missing = [k for k in required if value.get(k) is None]
    if missing:
        raise RequestInvalid(f"{where}: missing {', '.join(missing)}")


def _str(
    value: Any, where: str, max_chars: int, optional: bool = False, pattern: re.Pattern | None = None
) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise RequestInvalid(f"{where} must be a string, not {_type(value)}")
    if not value or len(value) > max_chars:
        raise RequestInvalid(f"{where} must be 1 to {max_chars} characters long")
    if "\x00" in value:
        raise RequestInvalid(f"{where} contains a NUL character")
    if pattern is not None and not pattern.fullmatch(value):
        raise RequestInvalid(f"{where} is not of the expected form")
    return value


def _int(value: Any, where: str, lo: int, hi: int, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestInvalid(f"{where} must be an integer, not {_type(value)}")
    if not lo <= value <= hi:
        raise RequestInvalid(f"{where} must be between {lo} and {hi}")
    return value


def _float(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestInvalid(f"{where} must be a number, not {_type(value)}")
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise RequestInvalid(f"{where} must be a finite number between {lo:g} and {hi:g}")
    return value


def _bool(value: Any, where: str, optional: bool = False) -> bool | None:
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise RequestInvalid(f"{where} must be true or false, not {_type(value)}")
    return value


def _type(value: Any) -> str:
    return {
        dict: "a map",
        list: "a list",
        str: "a string",
        bytes: "bytes",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------- shared parts
@dataclass(frozen=True)
class ModelRef:
    """A model a request names: a configured kind's id, or a directory inside the model roots
    (whether it may be used is registry.ModelTrust's decision, not the schema's)."""

    id: str
    revision: str | None = None

    @classmethod
    def parse(cls, value: Any, where: str) -> ModelRef:
        value = _map(value, where)
        _keys(value, where, ("id", "revision"), required=("id",))
        return cls(
            _str(value["id"], f"{where}.id", MAX_MODEL_ID_CHARS),
            _str(value.get("revision"), f"{where}.revision", MAX_REVISION_CHARS, optional=True),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "revision": self.revision}


def _models(value: Any, where: str, kinds: tuple[str, ...]) -> dict[str, ModelRef]:
    if value is None:
        return {}
    value = _map(value, where)
    unknown = sorted(set(value) - set(kinds))
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise RequestInvalid(
            f"{where}: this request type cannot use model kind(s) {shown} (allowed: {', '.join(kinds)})"
        )
    return {kind: ModelRef.parse(ref, f"{where}.{kind}") for kind, ref in value.items()}


def _options(value: Any, where: str) -> dict[str, Any]:
    return {} if value is None else _map(value, where)


@dataclass(frozen=True)
class WorkRequest:
    """Fields every work request shares: the evidence file and the ingest hash of it."""

    name: ClassVar[str] = ""
    audio_path: str
    sha256: str | None
    models: dict[str, ModelRef]

    def content(self) -> dict[str, Any]:
        return {
            "audio_path": self.audio_path,
            "sha256": self.sha256,
            "models": {kind: ref.to_dict() for kind, ref in self.models.items()},
        }

    @classmethod
    def _common(cls, content: dict[str, Any], kinds: tuple[str, ...]) -> dict[str, Any]:
        return {
            "audio_path": _str(content.get("audio_path"), _where(cls.name, "audio_path"), MAX_PATH_CHARS),
            "sha256": _str(content.get("sha256"), _where(cls.name, "sha256"), 64, optional=True, pattern=SHA256),
            "models": _models(content.get("models"), _where(cls.name, "models"), kinds),
        }


# ---------------------------------------------------------------------------- work requests
@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None
    word_timestamps: bool | None = None
    batch_size: int | None = None

    @classmethod
    def parse(cls, value: Any, where: str) -> TranscribeOptions:
        value = _options(value, where)
        _keys(value, where, ("language", "word_timestamps", "batch_size"))
        return cls(
            _str(value.get("language"), f"{where}.language", 16, optional=True, pattern=LANGUAGE),
            _bool(value.get("word_timestamps"), f"{where}.word_timestamps", optional=True),
            _int(value.get("batch_size"), f"{where}.batch_size", 1, MAX_BATCH_SIZE, optional=True),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class TranscribeRequest(WorkRequest):
    name: ClassVar[str] = "transcribe"
    options: TranscribeOptions = field(default_factory=TranscribeOptions)

    @classmethod
    def parse(cls, content: Any, kinds: tuple[str, ...] = ("asr",)) -> TranscribeRequest:
        content = _map(content, cls.name)
        _keys(content, cls.name, ("audio_path", "sha256", "models", "options"), required=("audio_path",))
        return cls(
            **cls._common(content, kinds),
            options=TranscribeOptions.parse(content.get("options"), _where(cls.name, "options")),
        )

    def content(self) -> dict[str, Any]:
        return {**super().content(), "options": self.options.to_dict()}


@dataclass(frozen=True)
class Segment:
    start: float
    end: float

    @classmethod
    def parse(cls, value: Any, where: str) -> Segment:
        value = _map(value, where)
        _keys(value, where, ("start", "end"), required=("start", "end"))
        start = _float(value["start"], f"{where}.start", 0.0, MAX_SECONDS)
        end = _float(value["end"], f"{where}.end", 0.0, MAX_SECONDS)
        if end < start:
            raise RequestInvalid(f"{where}: end {end:g} is before start {start:g}")
        return cls(start, end)


@dataclass(frozen=True)
class SerOptions:
    batch_size: int | None = None

    @classmethod
    def parse(cls, value: Any, where: str) -> SerOptions:
        value = _options(value, where)
        _keys(value, where, ("batch_size",))
        return cls(_int(value.get("batch_size"), f"{where}.batch_size", 1, MAX_BATCH_SIZE, optional=True))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class SerRequest(WorkRequest):
    name: ClassVar[str] = "ser"
    segments: tuple[Segment, ...] = ()
    options: SerOptions = field(default_factory=SerOptions)

    @classmethod
    def parse(cls, content: Any, kinds: tuple[str, ...] = ("ser_dimensional", "ser_categorical")) -> SerRequest:
        content = _map(content, cls.name)
        _keys(content, cls.name, ("audio_path", "sha256", "models", "options", "segments"), required=("audio_path",))
        segments = content.get("segments")
        if segments is None:
            segments = []
        if not isinstance(segments, list):
            raise RequestInvalid(f"ser.segments must be a list, not {_type(segments)}")
        if len(segments) > MAX_SEGMENTS:
            raise RequestInvalid(f"ser.segments has {len(segments)} entries (at most {MAX_SEGMENTS})")
        return cls(
            **cls._common(content, kinds),
            segments=tuple(Segment.parse(s, f"ser.segments[{i}]") for i, s in enumerate(segments)),
            options=SerOptions.parse(content.get("options"), _where(cls.name, "options")),
        )

    def content(self) -> dict[str, Any]:
        return {
            **super().content(),
            "options": self.options.to_dict(),
            "segments": [{"start": s.start, "end": s.end} for s in self.segments],
        }


# ---------------------------------------------------------------------------- control requests
@dataclass(frozen=True)
class PingRequest:
    @classmethod
    def parse(cls, content: Any) -> PingRequest:
        _keys(_map(content, "ping"), "ping", ())
        return cls()


@dataclass(frozen=True)
class ShutdownRequest:
    @classmethod
    def parse(cls, content: Any) -> ShutdownRequest:
        _keys(_map(content, "shutdown"), "shutdown", ())
        return cls()


@dataclass(frozen=True)
class StatsRequest:
    brief: bool = False

    @classmethod
    def parse(cls, content: Any) -> StatsRequest:
        content = _map(content, "stats")
        _keys(content, "stats", ("brief",))
        return cls(bool(_bool(content.get("brief"), "stats.brief", optional=True)))


@dataclass(frozen=True)
class UnloadRequest:
    kind: str | None = None  # None: every model

    @classmethod
    def parse(cls, content: Any) -> UnloadRequest:
        content = _map(content, "unload")
        _keys(content, "unload", ("kind",))
        return cls(_str(content.get("kind"), "unload.kind", MAX_KIND_CHARS, optional=True))


WORK_REQUESTS: dict[str, type[WorkRequest]] = {"transcribe": TranscribeRequest, "ser": SerRequest}
CONTROL_REQUESTS = {"ping": PingRequest, "stats": StatsRequest, "shutdown": ShutdownRequest, "unload": UnloadRequest}


def parse_work(msg_type: str, content: Any, model_kinds: tuple[str, ...]) -> WorkRequest:
    schema = WORK_REQUESTS.get(msg_type)
    if schema is None:
        raise RequestInvalid(f"no schema for request type '{msg_type[:40]}': refused unchecked")
    return schema.parse(content, model_kinds)


def parse_control(msg_type: str, content: Any):
    schema = CONTROL_REQUESTS.get(msg_type)
    if schema is None:
        raise RequestInvalid(f"unknown control request '{msg_type[:40]}'")
    return schema.parse(content)
