"""The installed ``voiceman`` command, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from voiceman.hashing import sha256_file
from voiceman.models import WHISPER_BASE_MODEL_BIN_SHA256, ModelPrepareError, prepare

VOICEMAN = Path(sys.executable).with_name("voiceman")


def _run(*args, stdin: str | None = None):
    return subprocess.run([str(VOICEMAN), *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_patterns_scan_reads_stdin_and_prints_json_lines():
    out = _run("patterns", "scan", "--lang", "en", "-", stdin="He said he would kill me. I know where you live.")
    assert out.returncode == 0, out.stderr
    hits = [json.loads(line) for line in out.stdout.splitlines()]
    assert [h["context"] for h in hits] == ["reported", "direct"]
    assert {"pattern_id", "category", "severity", "start", "end", "text"} <= set(hits[0])


def test_governor_simulate_prints_one_object_per_sample(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("t_s,temp_c,mem_used_gb,mem_total_gb\n0,70,10,100\n5,81,10,100\n10,69,10,100\n")
    out = _run("governor", "simulate", str(trace))
    assert out.returncode == 0, out.stderr
    states = [json.loads(line)["state"] for line in out.stdout.splitlines()]
    assert states == ["normal", "cooldown", "normal"]


def test_daemon_status_without_daemon_says_so_in_one_line(runtime_dir):
    out = _run("daemon", "status")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(runtime_dir / "daemon.sock") in lines[0]


def test_invalid_config_is_refused_with_the_key_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("case_dir: x\nresults_dir: y\ndaemon: {connect_timeout_s: soon}\n")
    out = _run("daemon", "status", "--config", str(bad))
    assert out.returncode == 2 and "daemon.connect_timeout_s" in out.stderr and str(bad) in out.stderr


def test_whisper_base_is_joined_from_two_packages_and_checked(tmp_path):
    path = Path(prepare(tmp_path, ["whisper-base"])["whisper-base"])
    assert sha256_file(path / "model.bin") == WHISPER_BASE_MODEL_BIN_SHA256
    assert {p.name for p in path.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}


def test_whisper_base_with_wrong_digest_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("voiceman.models.WHISPER_BASE_MODEL_BIN_SHA256", "0" * 64)
    with pytest.raises(ModelPrepareError, match="expected 0000"):
        prepare(tmp_path, ["whisper-base"])
    assert not (tmp_path / "whisper-base" / "model.bin").exists()
