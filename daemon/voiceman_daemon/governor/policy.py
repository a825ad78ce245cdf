"""The governor's decisions, as a pure state machine fed with `Snapshot`s.

Thermal states (E2, S4, N2):  normal --(>80)--> cooldown --(<70)--> normal
                              any    --(>=85)-> halted   --(<70)--> normal
Memory states (E3):           ok --(>90 %: empty_cache, x0.75)--> pressure
                              pressure --(still >90 % next sample)--> cpu_fallback
                              pressure | cpu_fallback --(<80 %)--> ok
A missing reading never changes a state; it is recorded once per stretch of missing
readings. Nothing here sleeps, reads a sensor or touches torch: the runtime does that.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import MIN_BUDGET_GB, STAGES, GovernorConfig, MemoryConfig
from .sensors import Snapshot

log = logging.getLogger(__name__)

NORMAL, COOLDOWN, HALTED = "normal", "cooldown", "halted"
MEM_OK, MEM_PRESSURE, MEM_CPU_FALLBACK = "ok", "pressure", "cpu_fallback"
MAX_KEPT_EVENTS = 1000  # a daemon runs for days; keep the newest events, count them all


@dataclass(frozen=True)
class Event:
    t_s: float
    kind: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    t_s: float
    temp_c: float | None
    mem_frac: float | None
    state: str
    memory_state: str
    batch_scale: float
    extra_delay_s: float
    device: str  # "cpu" once every stage fell back, else "cuda"
    cpu_stages: tuple[str, ...]
    halted: bool
    empty_cache: bool  # E3: the runtime must call empty_cache() now
    temp_warning: bool  # U2: above the warning temperature
    events: tuple[Event, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cpu_stages"] = list(self.cpu_stages)
        out["events"] = [e.to_dict() for e in self.events]
        return out


@dataclass(frozen=True)
class BatchPlan:
    stage: str
    batch_size: int
    extra_delay_s: float
    device: str
    halted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MemoryBudget:
    budget_gb: float
    total_gb: float | None
    reason: str  # "config" | "large_machine" | "small_machine" | "total_unknown"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_memory_budget(memory: MemoryConfig, total_gb: float | None) -> MemoryBudget:
    """S1 + N3: the configured budget, else 30 GB on large machines and 10 GB on small ones.

    A detected budget is capped at the machine's total (10 GB cannot be kept on an 8 GB
    card) but never below the 1 GB floor; a configured one below 1 GB was already refused.
    """
    if memory.budget_gb is not None:
        if memory.budget_gb < MIN_BUDGET_GB:
            raise ValueError(
                f"memory budget {memory.budget_gb} GB is refused: it may never be "
                f"below {MIN_BUDGET_GB:g} GB (SPEC-PERFOPT-001 N3)"
            )
        return MemoryBudget(float(memory.budget_gb), total_gb, "config")
    if total_gb is None:
        return MemoryBudget(float(memory.small_machine_budget_gb), None, "total_unknown")
    if total_gb >= memory.large_machine_min_total_gb:
        budget, reason = memory.large_machine_budget_gb, "large_machine"
    else:
        budget, reason = memory.small_machine_budget_gb, "small_machine"
    return MemoryBudget(max(MIN_BUDGET_GB, min(float(budget), total_gb)), total_gb, reason)


class GovernorPolicy:
    def __init__(self, config: GovernorConfig, machine_total_gb: float | None = None) -> None:
        self.config = config
        self.stages = tuple(config.batch_sizes)
        self.state = NORMAL
        self.memory_state = MEM_OK
        self.cpu_stages: set[str] = set()
        self.budget = detect_memory_budget(config.memory, machine_total_gb)
        self._budget_final = machine_total_gb is not None or config.memory.budget_gb is not None
        self.events: deque[Event] = deque(maxlen=MAX_KEPT_EVENTS)
        self.event_count = 0
        self._pending: list[Event] = []
        self._temp_missing = False
        self._mem_missing = False
        self._last_t: float | None = None
        self.time_in_state_s = {NORMAL: 0.0, COOLDOWN: 0.0, HALTED: 0.0}
        self.samples = 0
        self.samples_without_temp = 0
        self._temp_sum = 0.0
        self._temp_count = 0
        self.temp_max_c: float | None = None
        self._batch_ends: dict[str, deque[float]] = {
            s: deque(maxlen=config.memory.leak_window_batches) for s in self.stages
        }
        self.batch_memory: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT_EVENTS)

    # -- events -----------------------------------------------------------------------
    def _emit(self, t_s: float, kind: str, message: str, level: int = logging.INFO, **detail: Any) -> Event:
        event = Event(t_s, kind, message, detail)
        self.events.append(event)
        self.event_count += 1
        self._pending.append(event)
        log.log(level, "governor event %s at t=%.1fs: %s", kind, t_s, message)
        return event

    def _take_pending(self) -> tuple[Event, ...]:
        taken, self._pending = tuple(self._pending), []
        return taken

    # -- sampling -----------------------------------------------------------------------
    def observe(self, snap: Snapshot, active_stages: Iterable[str] = ()) -> Decision:
        """Advance the state machine by one snapshot; `active_stages` are stages with a
        GPU batch in flight (they are the ones a CPU fallback moves)."""
        self._account_time(snap.t_s)
        self.samples += 1
        self._maybe_detect_budget(snap)
        self._observe_temperature(snap)
        empty_cache = self._observe_memory(snap, [s for s in active_stages if s in self.stages])
        thermal = self.config.thermal
        warn = snap.temp_c is not None and snap.temp_c > thermal.warn_above_c
        return Decision(
            t_s=snap.t_s,
            temp_c=snap.temp_c,
            mem_frac=snap.mem_frac,
            state=self.state,
            memory_state=self.memory_state,
            batch_scale=self.batch_scale(),
            extra_delay_s=self.extra_delay_s(),
            device=self.overall_device(),
            cpu_stages=tuple(s for s in self.stages if s in self.cpu_stages),
            halted=self.state == HALTED,
            empty_cache=empty_cache,
            temp_warning=warn,
            events=self._take_pending(),
        )

    def _account_time(self, t_s: float) -> None:
        if self._last_t is not None and t_s > self._last_t:
            self.time_in_state_s[self.state] += t_s - self._last_t
        self._last_t = t_s

    def _maybe_detect_budget(self, snap: Snapshot) -> None:
        if self._budget_final or snap.mem_total_gb is None:
            return
        self.budget = detect_memory_budget(self.config.memory, snap.mem_total_gb)
        self._budget_final = True
        self._emit(
            snap.t_s,
            "memory_budget",
            f"memory budget {self.budget.budget_gb:g} GB ({self.budget.reason}, total {snap.mem_total_gb:.1f} GB)",
            **self.budget.to_dict(),
        )

    def _observe_temperature(self, snap: Snapshot) -> None:
        temp, t = snap.temp_c, snap.t_s
        if temp is None:
            self.samples_without_temp += 1
            if not self._temp_missing:
                self._temp_missing = True
                self._emit(
                    t,
                    "temp_missing",
                    f"no temperature reading; staying {self.state}",
                    logging.WARNING,
                    state=self.state,
                )
            return
        if self._temp_missing:
            self._temp_missing = False
            self._emit(t, "temp_restored", f"temperature reading back ({temp:g} C)", temp_c=temp)
        self._temp_sum += temp
        self._temp_count += 1
        self.temp_max_c = temp if self.temp_max_c is None else max(self.temp_max_c, temp)
        thermal = self.config.thermal
        before = self.state
        if temp >= thermal.halt_at_or_above_c:
            if before != HALTED:
                self.state = HALTED
                self._emit(
                    t,
                    "halt",
                    f"{temp:g} C >= {thermal.halt_at_or_above_c:g} C: GPU work "
                    f"halted until below {thermal.halt_resume_below_c:g} C",
                    logging.WARNING,
                    temp_c=temp,
                    from_state=before,
                )
        elif before == HALTED:
            if temp < thermal.halt_resume_below_c:
                # Resume into cooldown if the cooldown exit is configured lower than resume.
                self.state = NORMAL if temp < thermal.cooldown_exit_below_c else COOLDOWN
                self._emit(
                    t,
                    "resume",
                    f"{temp:g} C < {thermal.halt_resume_below_c:g} C: GPU work resumes in {self.state}",
                    temp_c=temp,
                    to_state=self.state,
                )
        elif before == COOLDOWN:
            if temp < thermal.cooldown_exit_below_c:
                self.state = NORMAL
                self._emit(
                    t,
                    "cooldown_exit",
                    f"{temp:g} C < {thermal.cooldown_exit_below_c:g} C: back to normal batch sizes",
                    temp_c=temp,
                )
        elif temp > thermal.cooldown_enter_above_c:
            self.state = COOLDOWN
            self._emit(
                t,
                "cooldown_enter",
                f"{temp:g} C > {thermal.cooldown_enter_above_c:g} C: "
                f"batch x{thermal.cooldown_batch_scale:g}, +{thermal.cooldown_extra_delay_s:g} s "
                "between batches",
                logging.WARNING,
                temp_c=temp,
            )

    def _observe_memory(self, snap: Snapshot, active: list[str]) -> bool:
        """Returns True when empty_cache() must be called now (E3)."""
        frac, t = snap.mem_frac, snap.t_s
        memory = self.config.memory
        if frac is None:
            if not self._mem_missing:
                self._mem_missing = True
                self._emit(
                    t,
                    "memory_missing",
                    f"no memory reading; memory state kept ({self.memory_state})",
                    logging.WARNING,
                    memory_state=self.memory_state,
                )
            return False
        if self._mem_missing:
            self._mem_missing = False
            self._emit(t, "memory_restored", f"memory reading back ({frac:.0%})", mem_frac=frac)
        over = frac > memory.pressure_above_frac
        if self.memory_state == MEM_OK:
            if over:
                self.memory_state = MEM_PRESSURE
                self._emit(
                    t,
                    "memory_pressure",
                    f"memory {frac:.0%} > {memory.pressure_above_frac:.0%}: "
                    f"empty_cache() and batch x{memory.pressure_batch_scale:g}",
                    logging.WARNING,
                    mem_frac=frac,
                )
                return True
            return False
        if frac < memory.recover_below_frac:
            moved_back = sorted(self.cpu_stages)
            self.memory_state, self.cpu_stages = MEM_OK, set()
            self._emit(
                t,
                "memory_recovered",
                f"memory {frac:.0%} < {memory.recover_below_frac:.0%}: "
                "normal batch sizes" + (f", {', '.join(moved_back)} back on GPU" if moved_back else ""),
                mem_frac=frac,
                stages_back_on_gpu=moved_back,
            )
            return False
        if not over:
            return False
        # Still above the threshold after empty_cache(): the stage(s) move to CPU.
        newly = [s for s in (active or self.stages) if s not in self.cpu_stages]
        self.memory_state = MEM_CPU_FALLBACK
        if newly:
            self.cpu_stages.update(newly)
            self._emit(
                t,
                "cpu_fallback",
                f"memory still {frac:.0%} after empty_cache(): {', '.join(newly)} fall back to CPU",
                logging.WARNING,
                mem_frac=frac,
                stages=newly,
            )
        return True  # pressure persists: E3 allows another empty_cache() beyond PR-003's one

    # -- planning -----------------------------------------------------------------------
    def batch_scale(self) -> float:
        scale = 1.0
        if self.state in (COOLDOWN, HALTED):
            scale *= self.config.thermal.cooldown_batch_scale
        if self.memory_state != MEM_OK:
            scale *= self.config.memory.pressure_batch_scale
        return scale

    def extra_delay_s(self) -> float:
        return self.config.thermal.cooldown_extra_delay_s if self.state in (COOLDOWN, HALTED) else 0.0

    def overall_device(self) -> str:
        return "cpu" if self.stages and self.cpu_stages >= set(self.stages) else "cuda"

    def device_for(self, stage: str) -> str:
        return "cpu" if stage in self.cpu_stages else "cuda"

    def plan(self, stage: str) -> BatchPlan:
        """PR-005: the stage's base batch size under the current scales, never below 1.
        A stage moved to CPU is not bound by GPU temperature (no halt, no delay)."""
        if stage not in self.config.batch_sizes:
            raise ValueError(f"unknown stage {stage!r}; known stages: {', '.join(self.stages)}")
        base = self.config.batch_sizes[stage]
        if stage in self.cpu_stages:
            scale = self.config.memory.pressure_batch_scale
            return BatchPlan(stage, max(1, int(base * scale)), 0.0, "cpu", False)
        return BatchPlan(
            stage, max(1, int(base * self.batch_scale())), self.extra_delay_s(), "cuda", self.state == HALTED
        )

    # -- batches (U3) ---------------------------------------------------------------------
    def record_batch(self, stage: str, t_s: float, start_gb: float | None, end_gb: float | None) -> tuple[Event, ...]:
        """Record memory at batch start/end; steady growth over the window -> suspected leak."""
        self.batch_memory.append({"stage": stage, "t_s": t_s, "start_gb": start_gb, "end_gb": end_gb})
        if end_gb is None or stage not in self._batch_ends:
            return self._take_pending()
        ends = self._batch_ends[stage]
        ends.append(end_gb)
        window = self.config.memory.leak_window_batches
        rising = all(b > a for a, b in zip(ends, list(ends)[1:]))
        growth = ends[-1] - ends[0]
        if len(ends) == window and rising and growth >= self.config.memory.leak_min_growth_gb:
            self._emit(
                t_s,
                "suspected_leak",
                f"{stage}: memory after each of the last {window} batches rose, +{growth:.2f} GB in all",
                logging.WARNING,
                stage=stage,
                growth_gb=growth,
                batch_end_gb=list(ends),
            )
            ends.clear()  # report again only after a fresh window of growth
        return self._take_pending()

    # -- reporting ----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "memory_state": self.memory_state,
            "batch_scale": self.batch_scale(),
            "extra_delay_s": self.extra_delay_s(),
            "batch_sizes": {s: self.plan(s).batch_size for s in self.stages},
            "devices": {s: self.device_for(s) for s in self.stages},
            "cpu_fallback_stages": sorted(self.cpu_stages),
            "time_in_cooldown_s": self.time_in_state_s[COOLDOWN],
            "time_in_halted_s": self.time_in_state_s[HALTED],
            "samples": self.samples,
            "samples_without_temp": self.samples_without_temp,
            "temp_max_c": self.temp_max_c,
            "temp_mean_c": self._temp_sum / self._temp_count if self._temp_count else None,
            "memory_budget": self.budget.to_dict(),
            "event_count": self.event_count,
            "events": [e.to_dict() for e in self.events],
        }


__all__ = [
    "BatchPlan",
    "Decision",
    "Event",
    "GovernorPolicy",
    "MemoryBudget",
    "detect_memory_budget",
    "NORMAL",
    "COOLDOWN",
    "HALTED",
    "STAGES",
]
