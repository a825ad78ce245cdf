"""Smoke test of ``voiceman bench`` (its own code, not a timing): one tiny file through the
three modes, the JSON shape the README promises, one load per model in the pipeline, and the
modes agreeing -- identical transcripts, SER within 1e-3 (the same core and rule bodies in all
three, with deterministic decoding)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_smoke_three_modes_agree(tmp_path, runtime_dir):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voiceman.cli",
            "bench",
            "--files",
            "1",
            "--seconds",
            "5",
            "--model-size",
            "tiny",
            "--asr",
            "whisper-tiny.en",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["workload"]["files"] == 1 and result["workload"]["audio_s"] >= 5
    assert set(result["modes"]) == {"naive", "inprocess", "pipeline"}
    for mode in result["modes"].values():
        assert mode["wall_s"] > 0 and mode["failures"] == {}
    assert result["modes"]["pipeline"]["model_loads"] == {
        "asr": 1,
        "diarization": 1,
        "ser_dimensional": 1,
        "ser_categorical": 1,
    }
    assert set(result["ratios"]) == {"naive/pipeline", "inprocess/pipeline", "naive/inprocess"}
    agreement = result["agreement"]
    assert agreement["transcripts_identical"] is True
    assert agreement["ser_values"] > 0 and agreement["ser_within_tolerance"] is True
    assert "inprocess/pipeline" in proc.stdout and "pipeline" in proc.stdout  # the printed table
