"""The run report (E5) from real run data: real ingest records of encoded (and one broken)
recordings, transcriptions done by a real daemon over a socket through the real transcribe
stage function, the daemon's real stats and the governor's real sample log -- with the
governor reading a fake NVML module whose memory query answers NotSupported (the GB10)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC

import numpy as np

from conftest import wait_for
from test_governor import FakeNvml
from test_governor_daemon import SR, governor_with, serve  # noqa: F401  (serve is a fixture)
from voiceman import atomic, pipeline
from voiceman.demo import encode
from voiceman.observe import runreport
from voiceman.pipeline.job_events import append_event
from voiceman_daemon.governor import NvmlQuery, NvmlSensor

RESULTS_STAGES = ("ingest", "transcribe")


class GB10Nvml(FakeNvml):
    """Memory: NotSupported (unified memory); temperature NotSupported while temp is None."""

    def nvmlDeviceGetTemperature(self, handle, sensor):
        if self.temp is None:
            raise self.NVMLError_NotSupported("Not Supported")
        return super().nvmlDeviceGetTemperature(handle, sensor)


def make_case(tmp_path):
    case = tmp_path / "case"
    rng = np.random.default_rng(3)
    for i in range(3):
        encode((rng.standard_normal(SR * (2 + i)) * 0.05).astype(np.float32), case / f"call-{i}.wav", "wav")
    (case / "zz-broken.wav").write_bytes(b"RIFF\x00\x00not audio")
    return case


def run_case(tmp_path, serve, sensor_nvml, temps):
    """A run as the workflow does it: run start, ingest + transcribe per file, stats saved."""
    case, results = make_case(tmp_path), tmp_path / "results"
    runreport.record_run_start(results, {"case_dir": str(case), "audio_extensions": ["wav"]})
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       125000000 kB\nMemAvailable:    75000000 kB\n")
    sensor = NvmlSensor(NvmlQuery(sensor_nvml), mem_get_info=None, meminfo_path=meminfo)
    governor, _ = governor_with(sensor, tmp_path)
    server, client = serve(governor=governor)
    request = {"options": {"language": "en"}}
    names = sorted(p.name for p in case.iterdir())
    for index, name in enumerate(names):
        sensor_nvml.temp = temps[index]
        # The governor has read this file's temperature (last_sample: None before its first read);
        # the 0.3 s after lets it act on it (several 0.05 s samples) before the file runs.
        wait_for(
            lambda t=temps[index]: (client.stats()["governor"]["last_sample"] or {}).get("temp_c", "unread") == t,
            10,
            f"{name}'s temperature to be read",
        )
        time.sleep(0.3)
        meta = pipeline.ingest.ingest(case / name)
        atomic.write_json(results / "ingest" / f"{name}.json", meta)
        if name == "call-2.wav":
            continue  # the run "dies" before this file is transcribed
        atomic.write_json(
            results / "transcribe" / f"{name}.json",
            pipeline.transcribe.transcribe(client, meta, request, deadline_s=60),
        )
    wait_for(lambda: client.stats()["governor"]["samples"] > 10, 10, "governor samples")
    atomic.write_json(results / "daemon_stats.json", client.stats())
    return results


def test_run_report_from_real_run_data_with_gb10_style_nvml(tmp_path, serve):
    nvml = GB10Nvml(temp=60, memory=None)
    results = run_case(tmp_path, serve, nvml, temps=[60, 82, None, 75])
    json_path, html_path = runreport.write_run_report(results)
    report = json.loads(json_path.read_text())

    assert report["status"] == "error"  # no case.json written in this run
    assert report["files_total"] == 4 and report["files_done"] == 0  # no report stage in this run
    by_file = {f["file"]: f for f in report["files"]}
    assert by_file["zz-broken.wav"]["status"] == "failed" and by_file["zz-broken.wav"]["failed_stage"] == "ingest"
    assert "zz-broken.wav" in by_file["zz-broken.wav"]["reason"]
    assert by_file["call-2.wav"]["status"] == "incomplete" and "ingest" in by_file["call-2.wav"]["reason"]
    assert by_file["call-0.wav"]["audio_s"] == 2.0 and by_file["call-0.wav"]["stages_s"]["transcribe"] > 0
    stage = {s["stage"]: s for s in report["stages"]}
    assert stage["ingest"]["files"] == 4 and stage["transcribe"]["files"] == 2  # broken file: no request
    assert {f["file"] for f in report["failed"]} == {"zz-broken.wav", "call-2.wav", "call-0.wav", "call-1.wav"}
    assert report["model_loads"] == {"asr": 1, "ser_dimensional": 0}
    asr = report["daemon_stages"]["asr"]
    assert asr["requests"] == 2 and asr["mean_batch_size"] == 12.0  # one normal (16), one in cooldown (8)

    gpu = report["gpu"]
    assert gpu["source"] == "sample_log" and gpu["sensor"] == "nvml" and gpu["samples"] > 10
    assert gpu["util_mean"] == 42 and gpu["util_p50"] == 42 and gpu["util_p95"] == 42
    assert gpu["temp_max_c"] == 82 and 60 < gpu["temp_mean_c"] < 82
    assert gpu["time_in_cooldown_s"] > 0.3 and gpu["time_in_halted_s"] == 0
    # NVML memory NotSupported -> /proc/meminfo-style fallback: 50 GB used of ~119 GB.
    assert abs(gpu["mem_peak_gb"] - 47.68) < 0.05 and gpu["mem_peak_frac"] == 0.4
    assert any(s["temp_c"] is None for s in report["samples"])  # temperature NotSupported too
    kinds = [e["kind"] for e in report["governor"]["events"]]
    assert "cooldown_enter" in kinds and "temp_restored" in kinds and "memory_budget" in kinds
    assert report["governor"]["memory_budget"]["reason"] == "large_machine"

    page = html_path.read_text()
    assert "<script" not in page.lower() and "Content-Security-Policy" in page
    assert page.count("<svg") == 2 and "GPU temperature" in page and "polyline" in page
    assert "Throughput: audio seconds done: no data" in page  # no file finished in this run
    assert "zz-broken.wav" in page and "incomplete" in page
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)  # nothing fetched from a network


def test_run_report_success_and_realtime_factor(tmp_path):
    """A finished run: every file has its report, case.json was written in the run window."""
    results = tmp_path / "results"
    runreport.record_run_start(results, {})
    start = json.loads((results / "logs" / "run_started.json").read_text())["unix"]
    for i, audio_s in enumerate((30.0, 90.0)):
        name = f"f{i}.wav"
        t0 = start + 1 + i * 10
        atomic.write_json(
            results / "ingest" / f"{name}.json",
            {
                "file": name,
                "status": "ok",
                "duration_s": audio_s,
                "started_utc": _utc(t0),
                "finished_utc": _utc(t0 + 0.5),
            },
        )
        atomic.write_json(results / "report" / f"{name}.json", {"file": name, "status": "done"})
        # The report record carries no times of its own: they come from its job's timing event
        # (the latest successful run of the job; a failed attempt and an earlier run do not count).
        append_event(results, _event("report", name, t0 - 30, t0 - 29, "ok"))
        append_event(results, _event("report", name, t0 + 1, t0 + 1.5, "failed"))
        append_event(results, _event("report", name, t0 + 2, t0 + 5, "ok"))
        # The human log lines are not read: a misleading one changes nothing.
        (results / "logs" / "report").mkdir(parents=True, exist_ok=True)
        (results / "logs" / "report" / f"{name}.log").write_text(
            f"{_local(t0)} INFO voiceman.rule: rule report, wildcards {{}}\n"
            f"{_local(t0 + 50)} INFO voiceman.rule: rule report done in 50.00 s\n"
        )
    atomic.write_json(results / "case.json", {"files": []})
    report = runreport.build_run_report(results, now=start + 60).to_dict()
    assert report["status"] == "success" and report["wall_s"] == 60
    assert report["files_done"] == 2 and report["audio_s"] == 120
    assert report["realtime_factor"] == 0.5 and report["speed_x_realtime"] == 2.0
    assert {s["stage"]: s["mean_s"] for s in report["stages"]} == {"ingest": 0.5, "report": 3.0}
    assert [t["audio_s_done"] for t in report["throughput"]] == [30.0, 120.0]
    assert report["gpu"]["source"] == "none" and report["failed"] == []
    assert any("daemon_stats.json" in note for note in report["notes"])


def _event(rule: str, key: str, start: float, end: float, status: str) -> dict:
    return {
        "rule": rule,
        "file": key,
        "start_utc": _utc(start),
        "end_utc": _utc(end),
        "seconds": round(end - start, 3),
        "status": status,
    }


def _utc(unix: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")


def _local(unix: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M:%S,%f")[:23]
