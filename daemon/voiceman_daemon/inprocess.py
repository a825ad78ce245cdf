"""Drive the daemon core from the same process, with the client's ``call`` interface.

The library's rule modules (voiceman.pipeline.<rule>) take a client; given this
one instead of a socket client they run the very same requests through the very same core,
so the in-process benchmark differs from the pipeline only in orchestration.
"""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from voiceman.daemonlink.client import DaemonLost, RequestFailed

from .core import DaemonCore

ENDPOINT = "in-process"


class InProcessClient:
    endpoint = ENDPOINT

    def __init__(self, core: DaemonCore):
        self.core = core

    def call(self, msg_type: str, deadline_s: float = 3600.0, **content: Any) -> dict[str, Any]:
        future = self.core.submit(msg_type, content)
        try:
            outcome = future.result(timeout=deadline_s)
        except FutureTimeout:
            raise DaemonLost(f"{ENDPOINT} core: no result for {msg_type} within {deadline_s:.0f} s") from None
        if not outcome.ok:
            raise RequestFailed(outcome.content["reason"], outcome.scope or "request", ENDPOINT)
        return outcome.content
