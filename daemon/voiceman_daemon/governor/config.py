"""Governor configuration: typed defaults, YAML loading, schema and sanity checks.

The defaults here are the seed's numbers (SPEC-PERFOPT-001) and must equal
config/governor.yaml; a test keeps the two in step.  "GB" means GiB (2^30 bytes)
everywhere in the governor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from voiceman.yamlfile import read_mapping

STAGES = ("asr", "alignment", "ser")
# N3: whatever the config says, the budget may never be set below 1 GB.
MIN_BUDGET_GB = 1.0


@dataclass(frozen=True)
class ThermalConfig:
    warn_above_c: float = 80.0
    cooldown_enter_above_c: float = 80.0
    cooldown_exit_below_c: float = 70.0
    halt_at_or_above_c: float = 85.0
    halt_resume_below_c: float = 70.0
    cooldown_batch_scale: float = 0.5
    cooldown_extra_delay_s: float = 2.0


@dataclass(frozen=True)
class MemoryConfig:
    pressure_above_frac: float = 0.90
    recover_below_frac: float = 0.80
    pressure_batch_scale: float = 0.75
    budget_gb: float | None = None
    large_machine_budget_gb: float = 30.0
    small_machine_budget_gb: float = 10.0
    large_machine_min_total_gb: float = 64.0
    leak_window_batches: int = 5
    leak_min_growth_gb: float = 0.5


@dataclass(frozen=True)
class GovernorConfig:
    sample_interval_s: float = 5.0
    sample_log_path: str | None = "logs/governor_samples.jsonl"
    thermal: ThermalConfig = field(default_factory=ThermalConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    batch_sizes: Mapping[str, int] = field(default_factory=lambda: {"asr": 16, "alignment": 8, "ser": 32})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["batch_sizes"] = dict(self.batch_sizes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str = "<dict>") -> GovernorConfig:
        """Build a config from a (partial) mapping; missing keys keep their defaults.

        Raises ValueError naming `source` when the mapping breaks the schema or the
        thresholds contradict each other.
        """
        data = dict(data or {})
        # The N3 floor is checked before the schema so the user gets the reason in words.
        _refuse_budgets_below_floor(data.get("memory") or {}, source)
        _validate_schema(data, source)
        defaults = cls()
        # YAML gives ints for "2" or "30"; the dataclasses promise floats.
        thermal = ThermalConfig(
            **{k: float(v) for k, v in {**asdict(defaults.thermal), **(data.get("thermal") or {})}.items()}
        )
        memory_values = {**asdict(defaults.memory), **(data.get("memory") or {})}
        memory = MemoryConfig(
            **{k: v if v is None or k == "leak_window_batches" else float(v) for k, v in memory_values.items()}
        )
        batch_sizes = {**dict(defaults.batch_sizes), **(data.get("batch_sizes") or {})}
        config = cls(
            sample_interval_s=float(data.get("sample_interval_s", defaults.sample_interval_s)),
            sample_log_path=data.get("sample_log_path", defaults.sample_log_path),
            thermal=thermal,
            memory=memory,
            batch_sizes=batch_sizes,
        )
        _check_consistency(config, source)
        return config


def load_governor_config(path: str | Path | None = None) -> GovernorConfig:
    """Read a governor YAML file (None -> built-in defaults)."""
    if path is None:
        return GovernorConfig()
    data = read_mapping(path, "governor config")
    return GovernorConfig.from_dict(data, source=str(path))


def load_schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _validate_schema(data: Mapping[str, Any], source: str) -> None:
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ValueError(f"governor config {source}: {where}: {first.message}")


def _refuse_budgets_below_floor(memory: Mapping[str, Any], source: str) -> None:
    for key in ("budget_gb", "large_machine_budget_gb", "small_machine_budget_gb"):
        value = memory.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < MIN_BUDGET_GB:
            raise ValueError(
                f"governor config {source}: memory.{key}={value} GB is refused: the memory "
                f"budget may never be below {MIN_BUDGET_GB:g} GB (SPEC-PERFOPT-001 N3)"
            )


def _check_consistency(config: GovernorConfig, source: str) -> None:
    t, m = config.thermal, config.memory
    problems = []
    if not t.cooldown_exit_below_c < t.cooldown_enter_above_c:
        problems.append("thermal.cooldown_exit_below_c must be below cooldown_enter_above_c (hysteresis)")
    if not t.cooldown_enter_above_c < t.halt_at_or_above_c:
        problems.append("thermal.halt_at_or_above_c must be above cooldown_enter_above_c")
    if not t.halt_resume_below_c < t.halt_at_or_above_c:
        problems.append("thermal.halt_resume_below_c must be below halt_at_or_above_c")
    if not m.recover_below_frac <= m.pressure_above_frac:
        problems.append("memory.recover_below_frac must not exceed pressure_above_frac")
    if problems:
        raise ValueError(f"governor config {source}: " + "; ".join(problems))
