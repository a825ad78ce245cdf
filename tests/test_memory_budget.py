"""The governor's memory budget is enforced when a model loads (S1, N3; GPU-throughput issue):
a model whose weights would take the held models past the budget is refused with a clear
reason, loads nothing, and the models already held keep serving."""

from __future__ import annotations

import pytest

from voiceman_daemon.governor import Governor, GovernorConfig
from voiceman_daemon.governor_setup import NoSensor
from voiceman_daemon.registry import ModelLoadError, ModelRegistry, ModelSpec, ModelTrust, model_size_gb


class Weights:
    """A model whose 'weights' are the files of its directory (loading reads nothing)."""

    loads: list[str] = []

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        Weights.loads.append(spec.id)

    def custody(self) -> dict:
        return {"kind": self.spec.kind, "id": self.spec.id, "sha256": "0" * 64, "device": "cpu"}


def _model_dir(root, name: str, gb: float):
    d = root / name
    d.mkdir()
    with open(d / "model.safetensors", "wb") as fh:  # sparse: the size counts, not the disk
        fh.truncate(int(gb * 1e9))
    (d / "config.json").write_text("{}")
    return d


def test_a_load_past_the_budget_is_refused_and_the_held_model_stays(tmp_path):
    governor = Governor(GovernorConfig.from_dict({"memory": {"budget_gb": 2.0}}), NoSensor())
    asr, small, big = (
        _model_dir(tmp_path, "asr", 1.2),
        _model_dir(tmp_path, "ser-small", 0.5),
        _model_dir(tmp_path, "ser-big", 1.0),
    )
    assert model_size_gb(str(asr)) == pytest.approx(1.2)
    Weights.loads = []
    registry = ModelRegistry(
        {"asr": Weights, "ser_dimensional": Weights},
        ModelTrust([tmp_path]),
        admits=governor.admits_model,
        budget_gb=lambda: governor.memory_budget_gb,
    )
    registry.get(ModelSpec("asr", str(asr)))
    held = registry.get(ModelSpec("ser_dimensional", str(small)))  # 1.2 + 0.5 <= 2.0
    with pytest.raises(ModelLoadError) as refused:
        registry.get(ModelSpec("ser_dimensional", str(big)))  # 1.2 + 1.0 > 2.0 (replacing 0.5)
    message = str(refused.value)
    assert "memory budget of 2 GB" in message and "1.00 GB" in message and "1.20 GB" in message
    assert Weights.loads == [str(asr), str(small)]  # nothing was loaded for it
    assert registry.get(ModelSpec("ser_dimensional", str(small))) is held  # still serving
    stats = registry.stats()["ser_dimensional"]
    assert stats["loads"] == 1 and stats["load_failures"] == 1 and "budget" in stats["last_error"]
    registry.unload("asr")  # room again: now it fits
    registry.get(ModelSpec("ser_dimensional", str(big)))
    assert Weights.loads[-1] == str(big)


def test_the_daemon_core_wires_the_budget(tmp_path, monkeypatch):
    """build_core hands the governor's budget to the registry (the config path users take)."""
    from voiceman.config import load_config
    from voiceman_daemon.__main__ import build_core

    rules = tmp_path / "governor.yaml"
    rules.write_text("memory:\n  budget_gb: 1.0\n")
    config = load_config(
        None,
        {
            "governor": {"config": str(rules), "sensor": "none", "sample_log": str(tmp_path / "samples.jsonl")},
            "case_dir": str(tmp_path),
        },
    )
    core = build_core(config)
    big = _model_dir(tmp_path, "models-big", 1.5)
    with pytest.raises(ModelLoadError, match="memory budget of 1 GB"):
        core.registry.get(ModelSpec("asr", str(big)))
    assert core.registry.stats()["asr"]["loads"] == 0
