"""Governor tests: traces through `voiceman governor simulate`, fake NVML modules, the
runtime object with an injected clock (nothing sleeps for real)."""

from __future__ import annotations

import io
import json
import logging
import types
from pathlib import Path

import pytest
import yaml

from voiceman_daemon.governor import (
    Governor,
    GovernorConfig,
    NvmlQuery,
    NvmlSensor,
    Snapshot,
    TraceSensor,
    detect_memory_budget,
    load_governor_config,
)
from voiceman_daemon.governor.config import load_schema
from voiceman_daemon.governor.simulate import main as simulate_main

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30


# -- helpers ----------------------------------------------------------------------------
def write_trace(tmp_path: Path, rows: list[tuple], name: str = "trace.csv") -> Path:
    """rows: (temp_c, mem_used_gb, mem_total_gb) with None for an empty cell; t_s = 5 s steps."""
    lines = ["t_s,temp_c,mem_used_gb,mem_total_gb"]
    for index, (temp, used, total) in enumerate(rows):
        cells = [index * 5, temp, used, total]
        lines.append(",".join("" if c is None else str(c) for c in cells))
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def simulate(tmp_path: Path, rows: list[tuple], *extra: str) -> list[dict]:
    out = io.StringIO()
    rc = simulate_main([str(write_trace(tmp_path, rows)), *extra], stdout=out)
    assert rc == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def temps(*values) -> list[tuple]:
    return [(v, 10, 100) for v in values]


def kinds(record: dict) -> list[str]:
    return [e["kind"] for e in record["events"]]


def all_kinds(records: list[dict]) -> list[str]:
    return [k for r in records for k in kinds(r)]


class FakeNvml:
    """Stands in for the pynvml module: same names, same error classes."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    class NVMLError_LibraryNotFound(NVMLError):
        pass

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, temp=65, memory=None, init_error=None):
        self.temp = temp
        self.memory = memory  # None -> NotSupported, like the GB10
        self.init_error = init_error
        self.calls: list[str] = []

    def nvmlInit(self):
        self.calls.append("init")
        if self.init_error:
            raise self.init_error("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("gpu", index)

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA GB10"

    def nvmlDeviceGetTemperature(self, handle, sensor):
        self.calls.append("temp")
        return self.temp

    def nvmlDeviceGetMemoryInfo(self, handle):
        self.calls.append("mem")
        if self.memory is None:
            raise self.NVMLError_NotSupported("Not Supported")
        used, total = self.memory
        return types.SimpleNamespace(used=used, total=total, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, handle):
        return types.SimpleNamespace(gpu=42, memory=7)


class ScriptedSensor:
    """Returns snapshots from a list (memory only), repeating the last one."""

    name = "scripted"

    def __init__(self, mem_used: list[float], total: float = 100.0, temp: float | list = 60.0):
        self.mem_used, self.total, self.reads = list(mem_used), total, 0
        self.temps = list(temp) if isinstance(temp, list) else [temp]

    def read(self) -> Snapshot:
        used = self.mem_used[min(self.reads, len(self.mem_used) - 1)]
        temp = self.temps[min(self.reads, len(self.temps) - 1)]
        self.reads += 1
        return Snapshot(float(self.reads), temp, None, used, self.total, "trace", "trace")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


# -- thermal (E2, S4, N2, U2) ----------------------------------------------------------------
def test_cooldown_above_80_and_back_to_normal_only_below_70(tmp_path):
    records = simulate(tmp_path, temps(79, 81, 75, 69))
    assert [r["state"] for r in records] == ["normal", "cooldown", "cooldown", "normal"]
    assert [r["batch_scale"] for r in records] == [1.0, 0.5, 0.5, 1.0]
    assert [r["extra_delay_s"] for r in records] == [0.0, 2.0, 2.0, 0.0]
    assert kinds(records[1]) == ["cooldown_enter"]
    assert kinds(records[2]) == []
    assert kinds(records[3]) == ["cooldown_exit"]
    assert set(records[0]) == {"t_s", "temp_c", "mem_frac", "state", "batch_scale", "extra_delay_s", "device", "events"}


def test_flapping_around_80_and_70_changes_state_once_each(tmp_path):
    records = simulate(tmp_path, temps(79, 81, 79, 81, 80, 79, 71, 69, 71, 70, 71, 80))
    states = [r["state"] for r in records]
    assert states == ["normal"] + ["cooldown"] * 6 + ["normal"] * 5
    assert all_kinds(records).count("cooldown_enter") == 1
    assert all_kinds(records).count("cooldown_exit") == 1
    # exactly 80 is not "above 80": no re-entry at the end
    assert records[-1]["state"] == "normal"


def test_halt_at_85_until_below_70(tmp_path):
    records = simulate(tmp_path, temps(84, 85, 82, 75, 70, 69, 72))
    assert [r["state"] for r in records] == ["cooldown", "halted", "halted", "halted", "halted", "normal", "normal"]
    assert kinds(records[1]) == ["halt"]
    assert kinds(records[5]) == ["resume"]


def test_missing_temperature_keeps_state_and_is_recorded_once_per_stretch(tmp_path):
    records = simulate(tmp_path, temps(None, 81, None, None, 75, None, 69, 69))
    assert [r["state"] for r in records] == [
        "normal",
        "cooldown",
        "cooldown",
        "cooldown",
        "cooldown",
        "cooldown",
        "normal",
        "normal",
    ]
    assert all_kinds(records).count("temp_missing") == 3
    assert all_kinds(records).count("temp_restored") == 3
    assert kinds(records[3]) == []  # second missing reading in a row: no new event
    assert records[2]["temp_c"] is None


def test_warning_logged_for_every_sample_above_80(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="voiceman_daemon.governor")
    simulate(tmp_path, temps(79, 81, 83, 80))
    warnings = [r for r in caplog.records if "GPU at" in r.getMessage()]
    assert len(warnings) == 2


# -- memory (E3) ----------------------------------------------------------------------------
def test_memory_pressure_that_recovers_after_empty_cache_stays_on_gpu(tmp_path):
    rows = [(60, 50, 100), (60, 95, 100), (60, 85, 100), (60, 85, 100), (60, 70, 100)]
    records = simulate(tmp_path, rows)
    assert [r["mem_frac"] for r in records] == [0.5, 0.95, 0.85, 0.85, 0.7]
    assert kinds(records[1]) == ["memory_pressure"]
    assert [r["batch_scale"] for r in records] == [1.0, 0.75, 0.75, 0.75, 1.0]
    assert {r["device"] for r in records} == {"cuda"}
    assert kinds(records[4]) == ["memory_recovered"]


def test_memory_that_does_not_come_back_falls_back_to_cpu(tmp_path):
    rows = [(60, 95, 100), (60, 96, 100), (60, 97, 100), (60, 60, 100)]
    records = simulate(tmp_path, rows)
    assert [r["device"] for r in records] == ["cuda", "cpu", "cpu", "cuda"]
    fallback = [e for e in records[1]["events"] if e["kind"] == "cpu_fallback"]
    assert fallback and fallback[0]["detail"]["stages"] == ["asr", "alignment", "ser"]
    assert all_kinds(records).count("cpu_fallback") == 1


def test_memory_pressure_combines_with_cooldown_and_unknown_memory_is_null(tmp_path):
    records = simulate(tmp_path, [(81, 95, 100), (81, None, None)])
    assert records[0]["batch_scale"] == pytest.approx(0.375)
    assert records[1]["mem_frac"] is None
    assert "memory_missing" in kinds(records[1])


def test_runtime_calls_empty_cache_under_pressure_and_moves_only_the_active_stage(tmp_path):
    calls = []
    sensor = ScriptedSensor([95, 95, 95, 95])
    governor = Governor(GovernorConfig(), sensor, empty_cache=lambda: calls.append(1), sample_log_path=None)
    assert governor.sample().empty_cache is True
    assert len(calls) == 1
    governor.batch_started("ser")  # reads memory too
    decision = governor.sample()
    assert decision.cpu_stages == ("ser",)
    assert governor.plan_batch("ser").device == "cpu"
    assert governor.plan_batch("asr").device == "cuda"
    assert governor.state_summary()["cpu_fallback_stages"] == ["ser"]
    # a stage on CPU frees no GPU cache after its batch
    before = governor.empty_cache_calls["after_batch"]
    governor.batch_finished("ser")
    assert governor.empty_cache_calls["after_batch"] == before


# -- budget (S1, N3) ------------------------------------------------------------------------
def test_budget_detected_from_machine_size():
    memory = GovernorConfig().memory
    assert detect_memory_budget(memory, 119.7).budget_gb == 30  # GB10 as the OS reports it
    assert detect_memory_budget(memory, 119.7).reason == "large_machine"
    assert detect_memory_budget(memory, 32).budget_gb == 10
    assert detect_memory_budget(memory, 6).budget_gb == 6  # capped at what exists
    assert detect_memory_budget(memory, None).budget_gb == 10


def test_budget_event_in_simulation_uses_trace_total(tmp_path):
    records = simulate(tmp_path, [(60, 10, 119.7)])
    event = [e for e in records[0]["events"] if e["kind"] == "memory_budget"][0]
    assert event["detail"]["budget_gb"] == 30


def test_configured_budget_below_1_gb_is_refused(tmp_path, capsys):
    config_path = tmp_path / "gov.yaml"
    config_path.write_text("memory:\n  budget_gb: 0.1\n")
    with pytest.raises(ValueError, match=r"gov\.yaml.*budget_gb=0\.1.*never be below 1 GB"):
        load_governor_config(config_path)
    trace = write_trace(tmp_path, temps(60))
    assert simulate_main([str(trace), "--config", str(config_path)], stdout=io.StringIO()) == 2
    assert "never be below 1 GB" in capsys.readouterr().err
    config_path.write_text("memory:\n  budget_gb: 4\n")
    assert load_governor_config(config_path).memory.budget_gb == 4.0


def test_config_errors_name_file_and_cause(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("thermal:\n  cooldown_enter_above_c: 90\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*halt_at_or_above_c must be above"):
        load_governor_config(bad)
    bad.write_text("batch_sizes:\n  ser: 0\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: batch_sizes\.ser"):
        load_governor_config(bad)
    bad.write_text("thermal:\n  typo_c: 1\n")
    with pytest.raises(ValueError, match=r"typo_c"):
        load_governor_config(bad)


# -- batches (U3, PR-003, PR-005) -----------------------------------------------------------
def test_steady_memory_growth_across_batches_is_a_suspected_leak():
    # two reads per batch (start, end); end memory grows 0.2 GB per batch
    growing = [v for i in range(6) for v in (10 + 0.2 * i, 10 + 0.2 * (i + 1))]
    calls = []
    governor = Governor(
        GovernorConfig(), ScriptedSensor(growing), empty_cache=lambda: calls.append(1), sample_log_path=None
    )
    for _ in range(6):  # the 6th batch starts a fresh window: no second report yet
        governor.batch_started("asr")
        governor.batch_finished("asr")
    events = governor.state_summary()["events"]
    leaks = [e for e in events if e["kind"] == "suspected_leak"]
    assert len(leaks) == 1 and leaks[0]["detail"]["stage"] == "asr"
    assert leaks[0]["detail"]["growth_gb"] == pytest.approx(0.8)
    assert len(calls) == 6  # PR-003: exactly one empty_cache per finished batch
    records = list(governor.policy.batch_memory)
    assert records[0]["start_gb"] == pytest.approx(10.0) and records[0]["end_gb"] == pytest.approx(10.2)


def test_flat_or_noisy_memory_is_not_a_leak():
    noisy = [10, 10.5, 10, 10.3, 10, 10.6, 10, 10.2, 10, 10.9, 10, 10.1]
    governor = Governor(GovernorConfig(), ScriptedSensor(noisy), empty_cache=None, sample_log_path=None)
    for _ in range(6):
        governor.batch_started("ser")
        governor.batch_finished("ser")
    assert not [e for e in governor.state_summary()["events"] if e["kind"] == "suspected_leak"]
    with pytest.raises(ValueError, match="without a matching batch_started"):
        governor.batch_finished("ser")


def test_batch_plan_per_stage_scales_and_never_drops_below_1():
    config = GovernorConfig.from_dict({"batch_sizes": {"asr": 16, "alignment": 1, "ser": 32}})
    sensor = ScriptedSensor([95], temp=82)
    governor = Governor(config, sensor, empty_cache=None, sample_log_path=None)
    assert governor.plan_batch("asr").batch_size == 16
    governor.sample()  # cooldown + memory pressure: x0.5 x0.75
    plans = {s: governor.plan_batch(s) for s in ("asr", "alignment", "ser")}
    assert plans["asr"].batch_size == 6 and plans["ser"].batch_size == 12
    assert plans["alignment"].batch_size == 1
    assert plans["asr"].extra_delay_s == 2.0 and plans["asr"].device == "cuda"
    with pytest.raises(ValueError, match="unknown stage 'diarize'"):
        governor.plan_batch("diarize")


# -- halt waiting, sampler thread, summary ---------------------------------------------------
def test_wait_if_halted_waits_without_failing_and_times_out(tmp_path):
    trace = TraceSensor(write_trace(tmp_path, temps(86, 80, 72, 69, 60)))
    clock = FakeClock()
    governor = Governor(GovernorConfig(), trace, empty_cache=None, clock=clock, sleep=clock.sleep, sample_log_path=None)
    assert governor.sample().halted
    assert governor.plan_batch("ser").halted
    assert governor.wait_if_halted(timeout=7) is False  # 80 C, 72 C: still halted
    assert clock.now == pytest.approx(7)
    assert governor.wait_if_halted(timeout=None) is True  # 69 C lifts the halt
    assert governor.plan_batch("ser").halted is False
    summary = governor.state_summary()
    assert summary["state"] == "normal" and summary["temp_max_c"] == 86
    assert summary["time_in_halted_s"] > 0


def test_wait_if_halted_follows_the_background_sampler():
    config = GovernorConfig.from_dict({"sample_interval_s": 0.002})
    governor = Governor(config, ScriptedSensor([10], temp=[86, 86, 84, 60]), empty_cache=None, sample_log_path=None)
    governor.sample()
    assert governor.policy.state == "halted"
    governor.start_sampler()
    try:
        assert governor.wait_if_halted(timeout=5.0) is True
    finally:
        governor.stop_sampler()
    assert governor.policy.state == "normal"
    assert [e["kind"] for e in governor.state_summary()["events"]] == ["memory_budget", "halt", "resume"]


def test_background_sampler_logs_json_lines_and_stops(tmp_path):
    log_path = tmp_path / "logs" / "samples.jsonl"
    config = GovernorConfig.from_dict({"sample_interval_s": 0.005})
    governor = Governor(config, ScriptedSensor([20]), empty_cache=None, sample_log_path=log_path)
    governor.start_sampler()
    deadline = 200
    while governor.policy.samples < 3 and deadline:
        governor._stop.wait(0.005)
        deadline -= 1
    governor.stop_sampler()
    assert not governor.sampler_running
    count = governor.policy.samples
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len(lines) == count >= 3
    assert lines[0]["state"] == "normal" and lines[0]["mem_frac"] == 0.2
    governor._stop.wait(0.02)
    assert governor.policy.samples == count  # really stopped


def test_simulate_summary_and_bad_trace(tmp_path, capsys):
    summary_path = tmp_path / "summary.json"
    simulate(tmp_path, temps(81, 85, 69), "--summary", str(summary_path))
    summary = json.loads(summary_path.read_text())
    assert summary["time_in_cooldown_s"] == 5 and summary["time_in_halted_s"] == 5
    assert summary["temp_mean_c"] == pytest.approx(235 / 3)
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,temp_c,mem_used_gb,mem_total_gb\n0,hot,1,2\n")
    assert simulate_main([str(bad)], stdout=io.StringIO()) == 2
    assert "bad.csv line 2: temp_c='hot'" in capsys.readouterr().err
    assert simulate_main([str(tmp_path / "none.csv")], stdout=io.StringIO()) == 2


# -- sensors: fake NVML, fallbacks, no library -----------------------------------------------
def test_gb10_not_supported_memory_falls_back_to_torch_mem_get_info():
    nvml = FakeNvml(temp=66, memory=None)
    sensor = NvmlSensor(
        NvmlQuery(nvml), mem_get_info=lambda: (20 * GIB, 120 * GIB), meminfo_path=None, clock=lambda: 3.0
    )
    snap = sensor.read()
    assert snap.sensor == "nvml" and snap.temp_c == 66.0 and snap.util_pct == 42.0
    assert snap.mem_source == "torch"
    assert snap.mem_used_gb == pytest.approx(100.0) and snap.mem_total_gb == pytest.approx(120.0)
    assert NvmlQuery(nvml).memory_gb() == (None, None)


def test_gb10_without_cuda_falls_back_to_proc_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       125829120 kB\nMemFree:  1000 kB\nMemAvailable:    94371840 kB\n")
    sensor = NvmlSensor(NvmlQuery(FakeNvml(memory=None)), mem_get_info=lambda: None, meminfo_path=meminfo)
    snap = sensor.read()
    assert snap.mem_source == "meminfo"
    assert snap.mem_total_gb == pytest.approx(120.0) and snap.mem_used_gb == pytest.approx(30.0)
    assert snap.mem_frac == pytest.approx(0.25)


def test_nvml_memory_used_when_supported():
    sensor = NvmlSensor(
        NvmlQuery(FakeNvml(memory=(8 * GIB, 80 * GIB))), mem_get_info=lambda: pytest.fail("fallback must not be used")
    )
    snap = sensor.read()
    assert snap.mem_source == "nvml" and snap.mem_frac == pytest.approx(0.1)


def test_missing_nvml_library_is_no_sensor_mode_logged_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="voiceman_daemon.governor")
    nvml = FakeNvml(init_error=FakeNvml.NVMLError_LibraryNotFound)
    sensor = NvmlSensor(NvmlQuery(nvml), mem_get_info=lambda: None, meminfo_path=tmp_path / "absent")
    governor = Governor(GovernorConfig(), sensor, empty_cache=None, sample_log_path=None)
    decisions = [governor.sample() for _ in range(3)]
    assert sensor.name == "none"
    assert all(d.temp_c is None and d.state == "normal" for d in decisions)
    assert nvml.calls == ["init"]  # no query reaches a library that is not there
    no_sensor = [r for r in caplog.records if "no GPU sensor" in r.getMessage()]
    assert len(no_sensor) == 1 and "LibraryNotFound" in no_sensor[0].getMessage()
    assert [e.kind for e in decisions[0].events] == ["temp_missing", "memory_missing"]
    assert decisions[1].events == ()
    assert governor.state_summary()["sensor"] == "none"


def test_real_pynvml_on_this_machine_does_not_crash():
    query = NvmlQuery()  # the real nvidia-ml-py binding
    available = query.init()
    assert available or query.unavailable_reason
    snap = NvmlSensor(query, mem_get_info=lambda: None).read()
    assert snap.sensor == ("nvml" if available else "none")
    query.close()


# -- config file and schema -------------------------------------------------------------------
def test_config_file_equals_code_defaults():
    assert load_governor_config(REPO / "config" / "governor.yaml") == GovernorConfig()
    raw = yaml.safe_load((REPO / "config" / "governor.yaml").read_text())
    assert raw["thermal"]["cooldown_enter_above_c"] == 80 and raw["memory"]["pressure_above_frac"] == 0.9


def test_every_schema_key_has_a_description():
    def walk(node, where):
        for key, child in node.get("properties", {}).items():
            assert child.get("description"), f"{where}.{key} lacks a description"
            walk(child, f"{where}.{key}")

    schema = load_schema()
    walk(schema, "governor")
    defaults = GovernorConfig().to_dict()
    assert set(schema["properties"]) == set(defaults)
    for section in ("thermal", "memory", "batch_sizes"):
        assert set(schema["properties"][section]["properties"]) == set(defaults[section])
