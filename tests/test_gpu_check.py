"""``bench/gpu_check.sh --dry-run``: the GPU check's own code, run on the CPU with tiny inputs
(both Whisper backends on the same synthesised file, their agreement, SER, the NVML check),
so the script a lent GPU machine runs is known to work before it gets there."""
from __future__ import annotations

import json
import os
import subprocess

from conftest import REPO


def test_gpu_check_dry_run_measures_both_backends_and_writes_json(tmp_path, tiny_model):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out)}
    proc = subprocess.run([str(REPO / "bench" / "gpu_check.sh"), "--dry-run", "--models-dir", str(tiny_model.parent),
                           "--work", str(tmp_path / "work"), "--budget-s", "600"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert (out / "nvidia-smi.txt").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "nvidia-smi.txt"]  # scratch stays out
    assert result["mode"] == "dry-run (CPU)" and result["environment"]["status"] == "ok"
    assert result["device_probe"]["status"] in ("ok", "skipped")
    assert result["workload"]["status"] == "ok" and result["workload"]["audio_s"] > 5
    runs = result["asr"]["whisper-tiny.en"]
    assert runs["weights:whisper-tiny.en"]["weights"].startswith("real")
    for backend in ("ctranslate2", "transformers"):
        run = runs[backend]
        assert run["status"] == "ok", run
        assert run["backend"] == backend and run["device"] == "cpu" and run["realtime_factor"] > 0
        assert run["repeat_identical"] is True and "police" in " ".join(run["texts"].values()).lower()
    agreement = result["agreement"]["whisper-tiny.en"]
    assert agreement["status"] == "ok" and agreement["wer"] <= 0.05 and agreement["mean_word_start_diff_s"] <= 0.2
    assert result["ser"]["status"] == "ok" and result["ser"]["dimensional"]["realtime_factor"] > 0
    assert result["nvml"]["status"] == "ok" and "sensor" in result["nvml"]
    assert "x realtime" in proc.stdout and "agreement whisper-tiny.en" in proc.stdout
