"""GPU governor of the voiceman daemon: sensors (NVML, trace), a pure thermal/memory
policy and the runtime object the daemon calls (SPEC-PERFOPT-001 U2, U3, E2, E3, S1,
S4, N2, N3, PR-003, PR-005)."""

from .config import MIN_BUDGET_GB, STAGES, GovernorConfig, load_governor_config
from .nvml_query import NvmlQuery
from .policy import BatchPlan, Decision, Event, GovernorPolicy, MemoryBudget, detect_memory_budget
from .runtime import Governor, torch_empty_cache
from .sensors import NvmlSensor, Snapshot, TraceExhausted, TraceSensor, read_meminfo_gb, torch_mem_get_info

__all__ = [
    "BatchPlan",
    "Decision",
    "Event",
    "Governor",
    "GovernorConfig",
    "GovernorPolicy",
    "MIN_BUDGET_GB",
    "MemoryBudget",
    "NvmlQuery",
    "NvmlSensor",
    "STAGES",
    "Snapshot",
    "TraceExhausted",
    "TraceSensor",
    "detect_memory_budget",
    "load_governor_config",
    "read_meminfo_gb",
    "torch_empty_cache",
    "torch_mem_get_info",
]
