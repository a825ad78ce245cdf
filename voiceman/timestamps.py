"""UTC timestamps as every voiceman record writes them: ISO 8601 with milliseconds and a
trailing "Z" (``2026-11-28T09:00:00.123Z``).  The report and review schemas accept exactly this
form (``utc_time``), so every writer takes its times from here."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_from_unix(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unix_from_utc(text: str | None) -> float | None:
    """The Unix time of a timestamp ("Z" or "+00:00"); None when there is none or it is not one."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
