"""S5 backpressure: while too many files wait for SER in the daemon, new transcription
requests wait (they are kept, never rejected) until the SER backlog drains.

Counts are per file (audio path), not per request: two SER requests for one recording are
one file waiting.  "Waiting for SER" means accepted by the daemon and not yet answered
(decoding, queued or running).  Hysteresis: pause at >= pause_at files, resume at
< resume_below files, so the gate does not flap at the threshold.

Only the main thread (the socket owner) calls this object, so it needs no lock.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class HeldRequest:
    """A transcription request parked by the gate; the caller decides what it holds."""

    item: Any
    held_since: float = field(default_factory=time.monotonic)


class SerBackpressure:
    def __init__(self, pause_at: int = 5, resume_below: int = 3) -> None:
        if not 0 < resume_below <= pause_at:
            raise ValueError(
                f"backpressure thresholds: need 0 < resume_below ({resume_below}) <= pause_at ({pause_at})"
            )
        self.pause_at = pause_at
        self.resume_below = resume_below
        self.paused = False
        self.pauses = 0  # how often the gate closed
        self.held_total = 0  # transcription requests that had to wait
        self.held_wait_s = 0.0  # summed waiting time of released requests
        self.max_ser_files = 0
        self._ser_files: Counter[str] = Counter()
        self._held: list[HeldRequest] = []

    # -- SER side -------------------------------------------------------------------
    def ser_entered(self, audio_path: str) -> None:
        self._ser_files[audio_path] += 1
        self.max_ser_files = max(self.max_ser_files, self.ser_files_waiting)
        self._update()

    def ser_left(self, audio_path: str) -> None:
        if self._ser_files[audio_path] <= 1:
            self._ser_files.pop(audio_path, None)
        else:
            self._ser_files[audio_path] -= 1
        self._update()

    @property
    def ser_files_waiting(self) -> int:
        return len(self._ser_files)

    def _update(self) -> None:
        waiting = self.ser_files_waiting
        if not self.paused and waiting >= self.pause_at:
            self.paused = True
            self.pauses += 1
            log.warning(
                "backpressure: %d files wait for SER (>= %d): new transcription requests wait", waiting, self.pause_at
            )
        elif self.paused and waiting < self.resume_below:
            self.paused = False
            log.info(
                "backpressure: %d files wait for SER (< %d): transcription resumes (%d held)",
                waiting,
                self.resume_below,
                len(self._held),
            )

    # -- transcription side -----------------------------------------------------------
    def admit_or_hold(self, item: Any) -> bool:
        """True: go ahead now.  False: the item is held until `release()` hands it back.
        Requests already held keep their order: a new one never overtakes them."""
        if not self.paused and not self._held:
            return True
        self._held.append(HeldRequest(item))
        self.held_total += 1
        return False

    def release(self) -> list[Any]:
        """The held items that may go now (all of them, oldest first) once the gate is open."""
        if self.paused or not self._held:
            return []
        now = time.monotonic()
        released, self._held = self._held, []
        self.held_wait_s += sum(now - h.held_since for h in released)
        return [h.item for h in released]

    @property
    def held(self) -> int:
        return len(self._held)

    def to_dict(self) -> dict[str, Any]:
        return {
            "paused": self.paused,
            "pause_at_files": self.pause_at,
            "resume_below_files": self.resume_below,
            "ser_files_waiting": self.ser_files_waiting,
            "max_ser_files_waiting": self.max_ser_files,
            "transcribe_held": self.held,
            "transcribe_held_total": self.held_total,
            "held_wait_s": round(self.held_wait_s, 3),
            "pauses": self.pauses,
        }
