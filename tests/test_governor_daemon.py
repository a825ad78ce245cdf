"""The governor wired into the daemon, over real sockets: a real DaemonServer (real request
handlers, real decoding) with light model loaders injected, a dial sensor the test turns
(temperature, memory), and a deliberately slow SER model for S5 backpressure."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import wait_for
from voiceman.daemonlink.client import DaemonClient
from voiceman.demo import encode
from voiceman_daemon.admission import SerBackpressure
from voiceman_daemon.core import DaemonCore
from voiceman_daemon.governor import Governor, GovernorConfig, Snapshot
from voiceman_daemon.governor_setup import RecordingSensor, ReplaySensor, build_governor
from voiceman_daemon.registry import ModelRegistry, ModelSpec
from voiceman_daemon.server import DaemonServer

SR = 16_000


class DialSensor:
    """GPU readings the test sets; memory grows by `leak_gb` at every read while leaking."""

    name = "dial"

    def __init__(self, temp=60.0, used=10.0, total=100.0):
        self.temp, self.used, self.total, self.leak_gb = temp, used, total, 0.0

    def read(self) -> Snapshot:
        self.used += self.leak_gb
        return Snapshot(time.monotonic(), self.temp, 40.0, self.used, self.total, "dial", "dial")


class LightASR:
    """Stands in for Whisper: one segment per second of audio, text from the real samples."""

    def __init__(self, spec: ModelSpec):
        self.spec, self.device = spec, spec.option("device", "auto")

    def custody(self):
        return {"kind": "asr", "id": self.spec.id, "device": self.device}

    def transcribe(self, audio, options):
        seconds = max(1, len(audio) // SR)
        segments = [
            {
                "start": float(i),
                "end": float(i + 1),
                "text": f"rms {float(np.sqrt(np.mean(audio[i * SR : (i + 1) * SR] ** 2))):.4f}",
                "speaker": None,
                "words": [],
            }
            for i in range(seconds)
        ]
        return {"language": "en", "segments": segments, "batch_size_seen": options.get("batch_size")}


class SlowSER:
    """Stands in for a SER model: each predict waits for a permit from the test (slow SER)."""

    permits: threading.Semaphore | None = None
    loads: list[tuple[str, str]] = []

    def __init__(self, spec: ModelSpec):
        self.spec, self.device = spec, spec.option("device", "auto")
        SlowSER.loads.append((spec.kind, self.device))

    def custody(self):
        return {"kind": self.spec.kind, "id": self.spec.id, "device": self.device}

    def predict(self, waveforms, batch_size=None):
        if SlowSER.permits is not None:
            assert SlowSER.permits.acquire(timeout=30), "test never released the SER model"
        return [
            {"arousal": float(np.abs(w).mean()), "batch_size": batch_size, "device": self.device} for w in waveforms
        ]


@pytest.fixture
def clips(tmp_path) -> list[Path]:
    rng = np.random.default_rng(7)
    return [
        encode((rng.standard_normal(SR * 2) * 0.05 * (i + 1)).astype(np.float32), tmp_path / f"clip-{i}.wav", "wav")
        for i in range(7)
    ]


@pytest.fixture
def serve(tmp_path):
    """Start a DaemonServer in this process on an ipc socket; yields a factory."""
    started: list[tuple[DaemonServer, threading.Thread]] = []

    def start(governor=None, backpressure=None):
        SlowSER.loads = []
        registry = ModelRegistry({"asr": LightASR, "ser_dimensional": SlowSER})
        specs = {
            "asr": ModelSpec.from_dict("asr", {"id": "light-asr"}),
            "ser_dimensional": ModelSpec.from_dict("ser_dimensional", {"id": "slow-ser", "device": "auto"}),
        }
        endpoint = f"ipc://{tmp_path}/d.sock"
        # One request per batch: these tests count SER predictions per file (cross-file
        # batching has its own test, tests/test_cross_file_batching.py).
        core = DaemonCore(registry, specs, governor=governor, backpressure=backpressure, batch_max_items=1)
        server = DaemonServer(endpoint, core, heartbeat_interval_s=0.2)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        client = DaemonClient(endpoint, connect_timeout_s=5, heartbeat_timeout_s=1.5, retries=0)
        wait_for(lambda: client.is_alive(), 10, "the daemon to answer")
        return server, client

    yield start
    for server, thread in started:
        if SlowSER.permits is not None:
            for _ in range(50):
                SlowSER.permits.release()
        server.request_stop()
        thread.join(15)
    SlowSER.permits = None


def governor_with(sensor, tmp_path, **config) -> tuple[Governor, list[str]]:
    cache_calls: list[str] = []
    cfg = GovernorConfig.from_dict({"sample_interval_s": 0.05, **config})
    gov = Governor(
        cfg,
        RecordingSensor(sensor),
        empty_cache=lambda: cache_calls.append("x"),
        sample_log_path=tmp_path / "logs" / "governor_samples.jsonl",
    )
    return gov, cache_calls


def in_background(fn, *args, **kwargs) -> dict:
    out: dict = {}

    def target():
        try:
            out["result"] = fn(*args, **kwargs)
        except Exception as exc:  # recorded for the assertions
            out["error"] = exc

    out["thread"] = threading.Thread(target=target, daemon=True)
    out["thread"].start()
    return out


def gov_state(client) -> dict:
    return client.call("stats", deadline_s=10, brief=True)["governor"]


def asr_running(client) -> int:
    return client.call("stats", deadline_s=10, brief=True)["stages"].get("asr", {}).get("running", 0)


def test_thermal_policy_governs_daemon_batches(serve, tmp_path, clips, caplog):
    caplog.set_level(logging.WARNING)
    sensor = DialSensor(temp=60)
    governor, cache_calls = governor_with(sensor, tmp_path)
    server, client = serve(governor=governor)

    # Normal: PR-005 base size for ASR, one empty_cache after the batch (PR-003), not per file.
    reply = client.call("transcribe", deadline_s=30, audio_path=str(clips[0]))
    assert reply["governor"] == {
        "stage": "asr",
        "batch_size": 16,
        "device": "cuda",
        "halted_wait_s": 0.0,
        "extra_delay_s": 0.0,
        "model_devices": {"asr": "auto"},
    }
    assert reply["batch_size_seen"] == 16 and len(reply["segments"]) == 2
    assert governor.empty_cache_calls["after_batch"] == 1 and cache_calls == ["x"]

    # E2 + S4: above 80 C -> half batch, +2 s before the batch; stays in cooldown at 75 C.
    sensor.temp = 82
    wait_for(lambda: gov_state(client)["state"] == "cooldown", 5, "cooldown")
    sensor.temp = 75
    time.sleep(0.2)
    started = time.monotonic()
    reply = client.call("transcribe", deadline_s=30, audio_path=str(clips[1]), options={"batch_size": 64})
    assert reply["governor"]["batch_size"] == 8 and reply["governor"]["extra_delay_s"] == 2.0
    assert time.monotonic() - started >= 2.0
    assert any("GPU at 82.0 C" in r.getMessage() for r in caplog.records)  # U2 warning

    # N2: at 85 C and above all GPU work waits -- the request is kept (heartbeats), not failed.
    sensor.temp = 90
    wait_for(lambda: gov_state(client)["state"] == "halted", 5, "halt")
    pending = in_background(client.call, "transcribe", deadline_s=60, audio_path=str(clips[2]))
    # The halt is timed from the moment the batch waits at the governor (decoding and VAD in the
    # I/O pool come first and take longer on a busy machine), so the >= 2.0 s checks below hold.
    wait_for(lambda: asr_running(client) == 1, 20, "the request to wait at the governor")
    time.sleep(2.0)  # longer than the client's 1.5 s heartbeat timeout
    stats = client.call("stats", deadline_s=10, brief=True)
    assert "result" not in pending and "error" not in pending
    assert stats["stages"]["asr"]["running"] == 1 and stats["governor"]["state"] == "halted"
    sensor.temp = 72  # below 85 but not below 70: still halted
    time.sleep(0.5)
    assert "result" not in pending
    sensor.temp = 65
    pending["thread"].join(20)
    assert "error" not in pending, pending.get("error")
    assert pending["result"]["timings"]["halted_wait_s"] >= 2.0
    assert pending["result"]["governor"]["batch_size"] == 16  # resumed straight into normal

    full = client.stats()
    g = full["governor"]
    assert g["time_in_halted_s"] >= 2.0 and g["time_in_cooldown_s"] > 0 and g["temp_max_c"] == 90
    kinds = [e["kind"] for e in g["events"]]
    assert kinds.index("cooldown_enter") < kinds.index("halt") < kinds.index("resume")
    assert full["stages"]["asr"]["requests"] == 3 and full["stages"]["asr"]["halted_wait_s"] >= 2.0
    assert g["last_sample"]["temp_c"] == 65 and g["sensor"] == "dial"

    # U2: every sample is logged as a JSON line with wall-clock time.
    lines = [json.loads(x) for x in (tmp_path / "logs" / "governor_samples.jsonl").read_text().splitlines()]
    assert len(lines) == g["samples"] or len(lines) >= g["samples"] - 1
    assert {"halted", "cooldown", "normal"} <= {x["state"] for x in lines}
    assert all(abs(x["unix"] - time.time()) < 120 for x in lines)


def test_memory_pressure_cpu_fallback_reloads_model_and_leak_is_suspected(serve, tmp_path, clips):
    sensor = DialSensor(temp=60, used=50, total=100)
    governor, cache_calls = governor_with(sensor, tmp_path)
    server, client = serve(governor=governor)
    segments = [{"start": 0.0, "end": 1.0}, {"start": 1.0, "end": 2.0}]

    reply = client.call("ser", deadline_s=30, audio_path=str(clips[0]), segments=segments)
    assert reply["governor"]["batch_size"] == 32 and reply["segments"][0]["dimensional"]["device"] == "auto"

    # E3: > 90 % -> empty_cache + batch x0.75; still > 90 % on the next sample -> CPU fallback.
    sensor.used = 95
    wait_for(lambda: gov_state(client)["memory_state"] == "cpu_fallback", 5, "CPU fallback")
    assert governor.empty_cache_calls["memory_pressure"] >= 1
    reply = client.call("ser", deadline_s=30, audio_path=str(clips[1]), segments=segments)
    assert reply["governor"]["device"] == "cpu" and reply["governor"]["batch_size"] == 24
    assert reply["segments"][0]["dimensional"]["device"] == "cpu"  # the model really runs on CPU
    assert reply["models"][0]["device"] == "cpu"
    stats = client.stats()
    change = stats["device_changes"][0]
    assert change["kind"] == "ser_dimensional" and change["device"] == "cpu" and "E3" in change["reason"]
    assert stats["models"]["ser_dimensional"]["loads"] == 2  # reloaded once on CPU, recorded
    assert SlowSER.loads == [("ser_dimensional", "auto"), ("ser_dimensional", "cpu")]
    assert stats["stages"]["ser"]["cpu_requests"] == 1
    # No empty_cache after a CPU batch: PR-003's call is for GPU batches.
    after_batch_before = governor.empty_cache_calls["after_batch"]

    # Memory recovers (< 80 %): back on the configured device, one more recorded reload.
    sensor.used = 40
    wait_for(lambda: gov_state(client)["memory_state"] == "ok", 5, "memory recovery")
    reply = client.call("ser", deadline_s=30, audio_path=str(clips[2]), segments=segments)
    assert reply["governor"]["device"] == "cuda" and reply["segments"][0]["dimensional"]["device"] == "auto"
    assert governor.empty_cache_calls["after_batch"] == after_batch_before + 1
    assert [c["device"] for c in client.stats()["device_changes"]] == ["cpu", "auto"]

    # U3: memory rising after each of 5 batches -> suspected leak, with batch start/end memory.
    sensor.leak_gb = 0.1
    for clip in clips[:6]:
        client.call("ser", deadline_s=30, audio_path=str(clip), segments=segments)
    g = client.stats()["governor"]
    assert "suspected_leak" in [e["kind"] for e in g["events"]]
    batch = g["batch_memory"][-1]
    assert batch["stage"] == "ser" and batch["end_gb"] > batch["start_gb"]
    assert client.stats()["stages"]["ser"]["mean_batch_size"] == 2.0  # 2 segments per batch


def test_s5_transcription_waits_while_five_files_wait_for_ser(serve, clips):
    SlowSER.permits = threading.Semaphore(0)
    server, client = serve(backpressure=SerBackpressure(pause_at=5, resume_below=3))
    seg = [{"start": 0.0, "end": 1.0}]
    sers = [in_background(client.call, "ser", deadline_s=60, audio_path=str(c), segments=seg) for c in clips[:4]]
    wait_for(lambda: client.call("stats", deadline_s=10)["admission"]["ser_files_waiting"] == 4, 10, "4 SER files")
    # 4 files waiting: a transcription request is admitted, not held, and runs on the ASR
    # lane while SER is still busy (the stages overlap).
    first = in_background(client.call, "transcribe", deadline_s=60, audio_path=str(clips[5]))
    wait_for(lambda: "result" in first, 10, "the admitted transcription to finish while SER waits")
    assert client.call("stats", deadline_s=10)["admission"]["ser_files_waiting"] == 4
    sers.append(in_background(client.call, "ser", deadline_s=60, audio_path=str(clips[4]), segments=seg))
    wait_for(lambda: client.call("stats", deadline_s=10)["admission"]["paused"], 10, "backpressure")
    held = in_background(client.call, "transcribe", deadline_s=60, audio_path=str(clips[6]))
    wait_for(lambda: client.call("stats", deadline_s=10)["admission"]["transcribe_held"] == 1, 10, "a held request")
    time.sleep(2.0)  # held past the client's 1.5 s heartbeat timeout: heartbeats keep it alive
    stats = client.call("stats", deadline_s=10)
    assert stats["stages"]["asr"]["held"] == 1 and "error" not in held and "result" not in held

    SlowSER.permits.release(2)  # 2 files done -> 3 still wait: not below 3, still held
    wait_for(lambda: sum("result" in s for s in sers) == 2, 10, "two SER replies")  # any two: FIFO in the daemon
    time.sleep(0.3)
    assert client.call("stats", deadline_s=10)["admission"]["transcribe_held"] == 1
    SlowSER.permits.release(1)  # 2 wait (< 3): the held request starts
    wait_for(lambda: client.call("stats", deadline_s=10)["admission"]["transcribe_held"] == 0, 10, "release")
    SlowSER.permits.release(10)
    for item in [*sers, first, held]:
        item["thread"].join(30)
        assert "error" not in item, item.get("error")
    assert held["result"]["segments"] and first["result"]["segments"]
    admission = client.stats()["admission"]
    assert admission["pauses"] == 1 and admission["transcribe_held_total"] == 1
    assert admission["held_wait_s"] >= 2.0 and admission["max_ser_files_waiting"] == 5
    assert client.stats()["requests"]["transcribe"] == {"accepted": 2, "ok": 2, "failed": 0}


def test_daemon_builds_governor_from_config_with_trace_sensor(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICEMAN_RUNTIME_DIR", str(tmp_path / "rt"))
    trace = tmp_path / "trace.csv"
    trace.write_text("t_s,temp_c,mem_used_gb,mem_total_gb,util_pct\n0,60,10,100,30\n5,86,,,95\n")
    governor = build_governor(
        {"governor": {"config": "config/governor.yaml", "sensor": "trace", "trace": str(trace), "sample_log": None}}
    )
    assert governor.config.sample_interval_s == 5 and dict(governor.config.batch_sizes)["alignment"] == 8
    assert governor.sample_log_path == tmp_path / "rt" / "governor_samples.jsonl"
    assert governor.sample().state == "normal"
    second = governor.sample()
    assert second.state == "halted" and second.mem_frac is None  # empty cells = missing reading
    assert governor.sample().state == "halted"  # the last row holds after the trace ends
    assert isinstance(governor.sensor.inner, ReplaySensor)
    with pytest.raises(ValueError, match="trace"):
        build_governor({"governor": {"sensor": "trace", "trace": None}})
    with pytest.raises(ValueError, match="sensor"):
        build_governor({"governor": {"sensor": "thermometer"}})
