"""How the inference thread runs one request under the GPU governor, and where every request
stands per stage (for ``stats``, the dashboard and the run report).

Per request (= one batch of the stage's work) the inference thread:
1. waits while the governor halts GPU work (N2; the request waits, it never fails);
2. asks the governor for a BatchPlan (PR-005 batch size, E2/S4 extra delay, E3 device);
3. places the stage's models on the planned device: a stage moved to CPU by memory
   pressure gets its models reloaded on CPU (and back on the GPU once memory recovers),
   and every move is recorded;
4. runs the batch between ``batch_started`` and ``batch_finished`` (U3 memory at batch
   start/end; PR-003 one empty_cache() after the batch -- the governor does that).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from voiceman.pipeline.stage_names import DAEMON_STAGES

from .governor import Governor
from .registry import ModelRegistry, ModelSpec

log = logging.getLogger(__name__)

# Which governor stage a request type belongs to (the governor's batch_sizes keys).
REQUEST_STAGES = DAEMON_STAGES
PHASES = ("held", "preparing", "queued", "running")


class DaemonStopping(RuntimeError):
    """The daemon was asked to stop while this request waited for the GPU."""


@dataclass
class StageStats:
    requests: int = 0
    ok: int = 0
    failed: int = 0
    batches: int = 0  # governed batches; > requests means nothing, < means cross-file batching
    samples: int = 0  # audio samples of the batched items (SER segments)
    padded_samples: int = 0  # what the length-sorted forward batches padded them to
    batch_size_sum: int = 0  # planned batch size, summed over requests
    items: int = 0  # units of work where the request says (SER: segments)
    forward_batches: int = 0  # ceil(items / batch size), summed
    busy_s: float = 0.0
    halted_wait_s: float = 0.0
    cooldown_delay_s: float = 0.0
    cpu_requests: int = 0  # requests the governor moved to CPU (E3 fallback)
    last_batch_size: int | None = None
    last_device: str | None = None  # where the models really ran (cpu, cuda, or "cpu,cuda")
    last_planned_device: str | None = None  # governor plan: cuda (GPU allowed) | cpu (E3 fallback)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mean_planned_batch_size"] = (
            round(self.batch_size_sum / self.requests, 3) if self.requests and self.batch_size_sum else None
        )
        # Real mean batch where the items are known, else what the governor planned.
        out["mean_batch_size"] = (
            round(self.items / self.forward_batches, 3) if self.forward_batches else out["mean_planned_batch_size"]
        )
        out["requests_per_batch"] = round(self.requests / self.batches, 3) if self.batches else None
        out["padding_fraction"] = round(1 - self.samples / self.padded_samples, 4) if self.padded_samples else None
        for key in ("busy_s", "halted_wait_s", "cooldown_delay_s"):
            out[key] = round(out[key], 3)
        return out


@dataclass
class DeviceChange:
    utc: str
    stage: str
    kind: str
    device: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ticket:
    """What the inference thread runs with, decided before the batch starts."""

    stage: str | None
    specs: dict[str, ModelSpec]
    content: dict[str, Any]
    batch_size: int | None = None
    device: str | None = None
    halted_wait_s: float = 0.0
    extra_delay_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    # Where the loaded models really run (their custody's device): "cuda" in the plan only
    # means "not moved to CPU by the governor"; on a machine without a GPU it runs on CPU.
    model_devices: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "batch_size": self.batch_size,
            "device": self.device,
            "halted_wait_s": round(self.halted_wait_s, 3),
            "extra_delay_s": self.extra_delay_s,
            "model_devices": dict(self.model_devices),
        }


def _with_device(spec: ModelSpec, device: str) -> ModelSpec:
    options = {**dict(spec.options), "device": device}
    return ModelSpec(spec.kind, spec.id, spec.revision, tuple(sorted(options.items())))


def padded_size(lengths: list[int], batch_size: int) -> int:
    """Samples after padding: items sorted longest first, cut into batches of ``batch_size``,
    each padded to its longest item (what the SER backends do, ser/batching.run_batched)."""
    ordered = sorted(lengths, reverse=True)
    return sum(
        max(ordered[i : i + batch_size]) * len(ordered[i : i + batch_size]) for i in range(0, len(ordered), batch_size)
    )


class GovernedRunner:
    """Used by the inference thread only (except `stats`, which any thread may call)."""

    def __init__(
        self,
        governor: Governor | None,
        registry: ModelRegistry,
        stop: threading.Event,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.governor = governor
        self.registry = registry
        self._stop = stop
        self._sleep = sleep
        self._stats: dict[str, StageStats] = {}
        self._on_cpu: set[str] = set()  # model kinds this runner reloaded on CPU
        self.device_changes: list[DeviceChange] = []
        self._lock = threading.Lock()

    @staticmethod
    def stage_of(msg_type: str) -> str | None:
        return REQUEST_STAGES.get(msg_type)

    def before_batch(self, msg_type: str, specs: dict[str, ModelSpec], content: dict[str, Any]) -> Ticket:
        stage = self.stage_of(msg_type)
        if self.governor is None or stage is None or stage not in self.governor.config.batch_sizes:
            return Ticket(stage, specs, content)
        halted_wait = self._wait_while_halted(stage)
        plan = self.governor.plan_batch(stage)
        if plan.extra_delay_s > 0:  # E2: a pause between batches while cooling down
            self._sleep(plan.extra_delay_s)
        options = dict(content.get("options") or {})
        asked = options.get("batch_size")
        # The governor's per-stage size is the ceiling; a request may ask for less.
        batch_size = min(int(asked), plan.batch_size) if asked else plan.batch_size
        options["batch_size"] = batch_size
        return Ticket(
            stage,
            self._place(stage, specs, plan.device),
            {**content, "options": options},
            batch_size=batch_size,
            device=plan.device,
            halted_wait_s=halted_wait,
            extra_delay_s=plan.extra_delay_s,
        )

    def _wait_while_halted(self, stage: str) -> float:
        started = time.monotonic()
        while not self.governor.wait_if_halted(timeout=0.5):
            if self._stop.is_set():
                raise DaemonStopping(f"daemon stopping while GPU work is halted (N2); {stage} request not run")
        return time.monotonic() - started

    def _place(self, stage: str, specs: dict[str, ModelSpec], device: str) -> dict[str, ModelSpec]:
        """E3: honour the governor's device for the stage's models, reloading them if needed."""
        placed = {}
        for kind, spec in specs.items():
            want_cpu = device == "cpu"
            if want_cpu != (kind in self._on_cpu):
                # The registry keys models by id/revision only, so a device change needs an
                # explicit unload first; the next get() loads on the new device (counted).
                self.registry.unload(kind)
                (self._on_cpu.add if want_cpu else self._on_cpu.discard)(kind)
                reason = (
                    "memory still above the limit after empty_cache() (E3 CPU fallback)"
                    if want_cpu
                    else "memory recovered: back to the configured device"
                )
                change = DeviceChange(
                    datetime.now(UTC).isoformat(timespec="seconds"),
                    stage,
                    kind,
                    "cpu" if want_cpu else str(spec.option("device", "auto")),
                    reason,
                )
                with self._lock:
                    self.device_changes.append(change)
                log.warning("%s (%s): model moves to %s: %s", kind, stage, change.device, reason)
            placed[kind] = _with_device(spec, "cpu") if want_cpu else spec
        return placed

    def run_batch(self, ticket: Ticket, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.governor is None or ticket.batch_size is None:
            return work()
        self.governor.batch_started(ticket.stage)
        try:
            return work()
        finally:
            self.governor.batch_finished(ticket.stage)

    def after_batch(
        self,
        ticket: Ticket,
        ok: bool,
        items: int | None,
        requests: int = 1,
        lengths: list[int] | None = None,
        forward_batches: int | None = None,
        padding: tuple[int, int] | None = None,
    ) -> None:
        """Count one governed batch of ``requests`` requests; ``lengths`` (samples per item)
        give the padding the models' length-sorted forward batches add; ``forward_batches``
        is how many model passes the items took where the handler knows (else items / size)."""
        if ticket.stage is None:
            return
        # The forward batch size: the governor's, else the request's (None: all at once).
        size = ticket.batch_size or (ticket.content.get("options") or {}).get("batch_size")
        with self._lock:
            stats = self._stats.setdefault(ticket.stage, StageStats())
            stats.requests += requests
            stats.batches += 1
            stats.ok += requests * int(ok)
            stats.failed += requests * int(not ok)
            if padding:  # (samples, padded samples) as the handler counted them
                stats.samples += padding[0]
                stats.padded_samples += padding[1]
            elif lengths:
                stats.samples += sum(lengths)
                stats.padded_samples += padded_size(lengths, int(size or len(lengths)))
            stats.busy_s += time.monotonic() - ticket.started
            stats.halted_wait_s += ticket.halted_wait_s
            stats.cooldown_delay_s += ticket.extra_delay_s
            if ticket.batch_size is not None:
                stats.batch_size_sum += ticket.batch_size * requests
                stats.last_batch_size = ticket.batch_size
                stats.last_planned_device = ticket.device
                stats.cpu_requests += int(ticket.device == "cpu")
            # Where the models really ran (their custody's device), governed or not: the plan's
            # "cuda" only means "not moved to the CPU".
            stats.last_device = ",".join(sorted(set(ticket.model_devices.values()))) or ticket.device
            if items and (forward_batches or size):
                stats.items += items
                stats.forward_batches += forward_batches or math.ceil(items / int(size))

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {stage: s.to_dict() for stage, s in self._stats.items()}

    def device_changes_dicts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c.to_dict() for c in self.device_changes]


class StageBoard:
    """Where each accepted request is (held / preparing / queued / running), per stage.
    Written by the main, I/O and inference threads, hence the lock."""

    def __init__(self) -> None:
        self._where: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def move(self, msg_id: str, msg_type: str, phase: str) -> None:
        stage = REQUEST_STAGES.get(msg_type, msg_type)
        with self._lock:
            self._where[msg_id] = (stage, phase)

    def drop(self, msg_id: str | None) -> None:
        with self._lock:
            self._where.pop(msg_id, None)

    def depths(self) -> dict[str, dict[str, int]]:
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for stage, phase in self._where.values():
                out.setdefault(stage, dict.fromkeys(PHASES, 0))[phase] += 1
            return out
