"""``bench/gpu_check.sh --dry-run``: the GPU check's own code, run on the CPU with tiny inputs
(both Whisper backends on the same synthesised file, their agreement, SER, CUDA-graph vs eager
SER, SER-stage utilisation, dynamic batching on vs off, the NVML check),
so the script a lent GPU machine runs is known to work before it gets there."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import REPO


def test_gpu_check_dry_run_measures_both_backends_and_writes_json(tmp_path, tiny_model):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out)}
    proc = subprocess.run(
        [
            str(REPO / "bench" / "gpu_check.sh"),
            "--dry-run",
            "--models-dir",
            str(tiny_model.parent),
            "--work",
            str(tmp_path / "work"),
            "--budget-s",
            "600",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
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

    # (a) CUDA-graph vs eager SER: on the CPU nothing is captured, so the "graph" column is the
    # bucketed forward the graphs record; it must equal eager, and no speed target is claimed.
    graphs = result["ser_graphs"]
    assert graphs["status"] == "ok", graphs
    for kind in ("dimensional", "categorical"):
        g = graphs[kind]
        assert g["graph_path"] == "bucketed forward, no graphs" and "runs on cpu" in g["reason"]
        assert g["graphs_captured"] == 0 and g["meets_speed_target"] is None
        assert [r["batch"] for r in g["batches"]] == [1, 3, 8]
        assert all(r["eager_ms"] > 0 and r["graph_ms"] > 0 and r["speedup"] > 0 for r in g["batches"])
        assert g["max_abs_diff"] <= 1e-3 and g["within_1e-3"] is True
        assert 0 < g["bucket_padding_fraction"] < 1  # 2.5..4 s segments in the 4 s bucket
    # (b) utilisation: the SER ran, and without NVML the entry says so instead of a number.
    util = result["ser_utilisation"]
    assert util["status"] == "ok" and util["segments"] > 0
    for mode in ("graphs", "eager"):
        assert util[mode]["passes"] >= 1
        if util["nvml"]:  # a machine with a driver: real readings (of a CPU run, so low)
            assert util[mode]["samples"] >= 1
        else:
            assert util["no_nvml_reason"] and "mean_pct" not in util[mode]
            assert util[mode]["utilisation"].startswith("no NVML")
    # (c) dynamic batching off vs on, through the in-process DaemonCore, same outputs.
    batching = result["dynamic_batching"]
    assert batching["status"] == "ok", batching
    assert batching["files"] == 3
    off, on = batching["off"], batching["on"]
    assert off["batch_max_items"] == 1 and on["batch_max_items"] > 1
    assert off["wall_s"] > 0 and on["wall_s"] > 0 and on["ser_segments"] == off["ser_segments"] > 0
    for mode in (off, on):
        for stage in ("asr", "ser"):
            assert mode["stages"][stage]["requests"] == 3
            assert set(mode["stages"][stage]) >= {"mean_batch_size", "requests_per_batch", "padding_fraction"}
    assert off["stages"]["ser"]["requests_per_batch"] == 1.0 and on["stages"]["ser"]["requests_per_batch"] > 1.0
    assert batching["agreement"]["transcripts_identical"] is True
    assert batching["agreement"]["ser_results_compared"] > 0 and batching["agreement"]["ser_within_1e-3"] is True
    for line in (
        "SER graphs dimensional",
        "target >= 1.2x",
        "SER-stage GPU utilisation (graphs): ",
        "target >= 90 %",
        "dynamic batching off",
        "dynamic batching on ",
    ):
        assert line in proc.stdout, line
