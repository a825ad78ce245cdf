"""The governor object the daemon holds: samples the sensor, applies the policy's
decisions (empty_cache, sample log, warnings), answers batch plans, makes callers wait
during a thermal halt, and runs the background sampler thread.

Clock, sleep and empty_cache are injected so tests run without real time or torch.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import GovernorConfig
from .policy import BatchPlan, Decision, GovernorPolicy
from .sensors import Sensor, Snapshot

log = logging.getLogger(__name__)

# Default for Governor(sample_log_path=...): take the path from the config; None disables.
FROM_CONFIG: Any = "<from config>"


def torch_empty_cache() -> None:
    """Production empty_cache: torch.cuda.empty_cache() when CUDA is there, else nothing to free."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Governor:
    def __init__(
        self,
        config: GovernorConfig,
        sensor: Sensor,
        *,
        empty_cache: Callable[[], None] | None = torch_empty_cache,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        sample_log_path: str | Path | None = FROM_CONFIG,
        machine_total_gb: float | None = None,
    ) -> None:
        self.config = config
        self.sensor = sensor
        self._empty_cache = empty_cache
        self._clock = clock
        self._sleep = sleep
        log_path = config.sample_log_path if sample_log_path is FROM_CONFIG else sample_log_path
        self.sample_log_path = Path(log_path) if log_path else None
        self.policy = GovernorPolicy(config, machine_total_gb=machine_total_gb)
        self.empty_cache_calls = {"after_batch": 0, "memory_pressure": 0}
        self.last_decision: Decision | None = None
        self._active: dict[str, int] = {}
        self._batch_start_gb: dict[str, list[float | None]] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_failed = False

    # -- sampling -----------------------------------------------------------------------
    def sample(self) -> Decision:
        """Read the sensor once, update the state, act on it, log the sample (U2)."""
        snap = self.sensor.read()
        with self._lock:
            decision = self.policy.observe(snap, active_stages=list(self._active))
            self.last_decision = decision
            if decision.empty_cache:
                self._call_empty_cache("memory_pressure")
            self._changed.notify_all()
        if decision.temp_warning:
            log.warning("governor: GPU at %.1f C (above %g C)", snap.temp_c, self.config.thermal.warn_above_c)
        self._append_sample_log(snap, decision)
        return decision

    def _call_empty_cache(self, why: str) -> None:
        if self._empty_cache is None:
            return
        self._empty_cache()
        self.empty_cache_calls[why] += 1

    def _append_sample_log(self, snap: Snapshot, decision: Decision) -> None:
        if self.sample_log_path is None:
            return
        # "unix" (wall clock) lets a run report pick out the samples of its own run window;
        # t_s is the sensor's clock (monotonic or trace time).
        record = {
            **snap.to_dict(),
            "unix": round(time.time(), 3),
            "state": decision.state,
            "memory_state": decision.memory_state,
            "batch_scale": decision.batch_scale,
            "device": decision.device,
            "events": [e.kind for e in decision.events],
        }
        try:
            self.sample_log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.sample_log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as exc:
            # A full disk must not stop inference; say so once.
            if not self._log_failed:
                self._log_failed = True
                log.error("governor: cannot append to sample log %s: %s", self.sample_log_path, exc)

    # -- batches ------------------------------------------------------------------------
    def plan_batch(self, stage: str) -> BatchPlan:
        with self._lock:
            return self.policy.plan(stage)

    def wait_if_halted(self, timeout: float | None = None) -> bool:
        """Block while GPU work is halted (N2). True when work may go on, False on timeout.

        With the background sampler running this waits for its samples; without it this
        samples by itself every interval, using the injected sleep.
        """
        deadline = None if timeout is None else self._clock() + timeout
        interval = self.config.sample_interval_s
        while True:
            with self._lock:
                if self.policy.state != "halted":
                    return True
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return False
                step = interval if remaining is None else min(interval, remaining)
                if self.sampler_running:
                    self._changed.wait(step)
                    continue
            self._sleep(step)
            self.sample()

    def batch_started(self, stage: str) -> None:
        """U3: memory at batch start; marks the stage as having a GPU batch in flight."""
        self.policy.plan(stage)  # validates the stage name
        used = self._read_memory_gb()
        with self._lock:
            self._active[stage] = self._active.get(stage, 0) + 1
            self._batch_start_gb.setdefault(stage, []).append(used)

    def batch_finished(self, stage: str) -> None:
        """U3: memory at batch end, leak check; PR-003: one empty_cache() per finished batch."""
        with self._lock:
            if self._active.get(stage, 0) <= 0:
                raise ValueError(f"batch_finished({stage!r}) without a matching batch_started")
            on_gpu = self.policy.device_for(stage) == "cuda"
        if on_gpu:
            self._call_empty_cache("after_batch")
        used = self._read_memory_gb()
        with self._lock:
            self._active[stage] -= 1
            if not self._active[stage]:
                del self._active[stage]
            start = self._batch_start_gb[stage].pop(0)
            self.policy.record_batch(stage, self._clock(), start, used)

    def _read_memory_gb(self) -> float | None:
        try:
            return self.sensor.read().mem_used_gb
        except Exception as exc:  # a sensor hiccup must not fail the batch (U4)
            log.warning("governor: memory reading failed at batch boundary: %s", exc)
            return None

    # -- budget ---------------------------------------------------------------------------
    @property
    def memory_budget_gb(self) -> float:
        return self.policy.budget.budget_gb

    def admits_model(self, model_gb: float, loaded_gb: float) -> bool:
        """S1: may a model of `model_gb` be kept loaded next to `loaded_gb` already kept?"""
        return loaded_gb + model_gb <= self.memory_budget_gb

    # -- background sampler -------------------------------------------------------------
    @property
    def sampler_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_sampler(self) -> None:
        if self.sampler_running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._sampler_loop, name="governor-sampler", daemon=True)
        self._thread.start()

    def stop_sampler(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.error("governor: sampler thread did not stop within %.1f s", timeout)
        self._thread = None
        with self._lock:
            self._changed.notify_all()

    def _sampler_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # keep sampling: one bad reading must not end U2's record
                log.exception("governor: sample failed")
            self._stop.wait(self.config.sample_interval_s)

    # -- reporting ------------------------------------------------------------------------
    def state_summary(self) -> dict[str, Any]:
        with self._lock:
            summary = self.policy.summary()
            summary["empty_cache_calls"] = dict(self.empty_cache_calls)
            summary["sensor"] = getattr(self.sensor, "name", type(self.sensor).__name__)
            summary["active_batches"] = dict(self._active)
            return summary
