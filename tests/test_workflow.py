"""Real ``snakemake --profile profiles/local`` runs over synthesised speech with the real
tiny.en model: auto-started daemon, one undecodable file, SIGKILL + --rerun-incomplete, and
a daemon killed mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from conftest import run_snakemake, wait_for
from voiceman.audio import decode
from voiceman.daemonlink.client import DaemonClient
from voiceman.demo import encode

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def case_with_broken_file(speech_case, tmp_path) -> Path:
    case = tmp_path / "case"
    shutil.copytree(speech_case, case)
    (case / "zz-broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 20)
    (case / "notes.txt").write_text("investigator notes, not a recording")
    return case


def _load(path: Path):
    return json.loads(path.read_text())


def _check_complete(results: Path, names: list[str]) -> dict:
    case = _load(results / "case.json")
    assert [f["name"] for f in case["files"]] == sorted(names)
    for name in names:
        for stage in ("ingest", "transcribe", "report"):
            _load(results / stage / f"{name}.json")  # present and valid JSON
    return case


def test_end_to_end_case_with_one_broken_file(case_with_broken_file, tiny_model, runtime_dir, tmp_path):
    results = tmp_path / "results"
    run_snakemake(results, case_with_broken_file, tiny_model)
    case = _check_complete(results, ["call-01.wav", "call-02.mp3", "call-03.m4a", "zz-broken.wav"])
    by_name = {f["name"]: f for f in case["files"]}
    broken = by_name["zz-broken.wav"]
    assert broken["status"] == "failed" and broken["report"] is None
    assert "zz-broken.wav" in broken["reason"] and "decode" in broken["reason"]
    assert case["ignored"] == ["notes.txt"]
    # case.html links to the per-file pages relative to where it lies, so they open from there.
    page = (results / "case.html").read_text()
    assert 'href="report/call-01.wav.html"' in page and (results / "report" / "call-01.wav.html").is_file()
    expected_words = {
        "call-01.wav": ["tomorrow", "money"],
        "call-02.mp3": ["police", "live"],
        "call-03.m4a": ["friday", "station"],
    }
    for name, words in expected_words.items():
        entry = by_name[name]
        assert entry["status"] == "done" and entry["reason"] is None
        report = _load(Path(entry["report"]))
        text = " ".join(s["text"] for s in report["segments"]).lower()
        assert all(w in text for w in words), (name, text)
        custody = report["custody"]
        assert custody["input_sha256_before"] == custody["input_sha256_after"]
        assert custody["models"][0]["sha256"] and custody["config_sha256"] and custody["software_version"]
        assert report["segments"][0]["words"], "word times expected"
    stats = _load(results / "daemon_stats.json")
    assert stats["models"]["asr"]["loads"] == 1, "ASR model must be loaded exactly once for the run"
    assert stats["models"]["asr"]["requests"] == 3  # the broken file never reached the model
    # The run started the daemon itself, so it stopped it again.
    assert not DaemonClient(f"ipc://{runtime_dir / 'daemon.sock'}", connect_timeout_s=1).is_alive()


def test_sigkill_mid_run_then_rerun_incomplete_finishes(speech_case, tiny_model, runtime_dir, tmp_path):
    results = tmp_path / "results"
    proc = run_snakemake(results, speech_case, tiny_model, popen=True)
    wait_for(
        lambda: list((results / "transcribe").glob("*.json")) if (results / "transcribe").exists() else None,
        300,
        "the first transcript",
    )
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its jobs, mid-run
    proc.wait(30)
    assert not (results / "case.json").exists()
    # What the README tells a user after a crash: release the dead run's lock, then rerun.
    run_snakemake(results, speech_case, tiny_model, "--unlock")
    rerun = run_snakemake(results, speech_case, tiny_model, "--rerun-incomplete")
    case = _check_complete(results, ["call-01.wav", "call-02.mp3", "call-03.m4a"])
    assert all(f["status"] == "done" for f in case["files"])
    # The daemon the killed run had started was adopted and stopped by the rerun.
    assert "adopted the daemon" in rerun.stdout + rerun.stderr
    assert not DaemonClient(f"ipc://{runtime_dir / 'daemon.sock'}", connect_timeout_s=1).is_alive()


def test_daemon_killed_mid_run_is_reported_and_restarted_run_completes(speech_case, tiny_model, runtime_dir, tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    # Long recordings so a transcription is surely in flight when the daemon is killed.
    long_audio = np.concatenate([decode(p)[0] for p in sorted(speech_case.iterdir())] * 5)
    for i in range(2):
        encode(long_audio, case / f"long-{i}.wav", "wav")
    results = tmp_path / "results"
    proc = run_snakemake(results, case, tiny_model, popen=True)
    client = DaemonClient(f"ipc://{runtime_dir / 'daemon.sock'}", connect_timeout_s=2)
    wait_for(
        lambda: (runtime_dir / "daemon.pid").exists() and client.is_alive() and client.stats()["in_flight"] > 0,
        300,
        "a transcription in flight",
    )
    os.kill(int((runtime_dir / "daemon.pid").read_text()), signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    logs = "".join(p.read_text() for p in (results / "logs" / "transcribe").glob("*.log"))
    assert "stopped answering" in logs and str(runtime_dir / "daemon.sock") in logs
    run_snakemake(results, case, tiny_model)
    final = _check_complete(results, ["long-0.wav", "long-1.wav"])
    assert all(f["status"] == "done" for f in final["files"])
