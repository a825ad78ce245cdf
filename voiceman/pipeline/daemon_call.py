"""One request to the daemon from a rule, and what its failure means for the file.

The daemon says whose fault a failure is (``RequestFailed.scope``): ``request`` means this
input failed (a file it cannot decode, a model error on it), so the file gets a failure record
and the run goes on; any other scope means the daemon cannot serve anyone now, which is raised,
so the job fails and ``--rerun-incomplete`` completes the file once the daemon is back.
"""

from __future__ import annotations

from typing import Any

from ..daemonlink.client import DaemonClient, RequestFailed
from .failures import failed


def call_daemon(
    client: DaemonClient, stage: str, deadline_s: float, **content: Any
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Send the ``stage`` request (the rule's name is the daemon's request type).

    Returns ``(reply, None)``, or ``(None, failure record)`` when the daemon refused this
    input; raises when the daemon itself failed."""
    try:
        return client.call(stage, deadline_s=deadline_s, **content), None
    except RequestFailed as exc:
        if exc.scope != "request":
            raise  # the daemon cannot serve anyone: not this file's fault
        return None, failed(stage, exc.reason)
