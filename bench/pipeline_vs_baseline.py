"""Benchmark: the pipeline (Snakemake + resident daemon) against a baseline that reloads the
models for every file and runs the stages one after another — the situation the user's spec
starts from (SER reloaded per file, STT and forensic stages sequential).

Workload: N synthesised speech recordings (espeak-ng, WAV), ASR = Whisper tiny.en (real
weights), SER = a dimensional model of the audeering architecture with random weights (same
compute shape as a real one, scaled down), Praat voice features, pattern scan, report.
Both sides run the same library code; only model residency and scheduling differ.

    .venv/bin/python bench/pipeline_vs_baseline.py [--files 6] [--sentences 3] [--out bench/results.json]

Absolute seconds on a shared 2-core machine are noise; the ratio and the model-load counts
measured in one run, side by side, are the result.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

SENTENCES = [
    "Please meet me at the harbour tomorrow morning and bring the money with you.",
    "I know where you live. Do not call the police again or you will regret it.",
    "The meeting is on Friday at the old train station near the river.",
    "We talked about the contract for a long time and then we went home.",
]


def make_case(case: Path, n_files: int, sentences: int = 3) -> float:
    from voiceman.demo import encode, speak

    pause = np.zeros(8000, dtype=np.float32)
    total = 0.0
    for i in range(n_files):
        parts = [speak(SENTENCES[(i + k) % len(SENTENCES)]) for k in range(sentences)]
        audio = np.concatenate([x for p in parts for x in (p, pause)])
        encode(audio, case / f"rec-{i:02d}.wav", "wav")
        total += audio.size / 16000
    return total


def baseline(case: Path, tiny: Path, ser_dir: Path) -> dict:
    """Per file: load ASR, transcribe, load SER, predict, features, patterns — sequentially."""
    from voiceman import analysis
    from voiceman.audio import decode
    from voiceman_daemon.asr import load_asr
    from voiceman_daemon.registry import ModelSpec
    from voiceman_daemon.ser_backend import load_ser_dimensional

    loads, load_s = 0, 0.0
    started = time.perf_counter()
    for path in sorted(case.iterdir()):
        audio, _ = decode(path)
        t0 = time.perf_counter()
        asr = load_asr(ModelSpec.from_dict("asr", {"id": str(tiny), "language": "en"}))
        load_s += time.perf_counter() - t0
        loads += 1
        transcript = {"file": path.name, "audio_path": str(path), "status": "ok",
                      **asr.transcribe(audio, {"language": "en"})}
        t0 = time.perf_counter()
        ser = load_ser_dimensional(ModelSpec.from_dict("ser_dimensional", {"id": str(ser_dir)}))
        load_s += time.perf_counter() - t0
        loads += 1
        waves = [audio[int(s["start"] * 16000):int(s["end"] * 16000)] for s in transcript["segments"]]
        ser.predict(waves)
        analysis.voice(transcript, {"voice": None})
        analysis.patterns(transcript)
        del asr, ser
    return {"wall_s": round(time.perf_counter() - started, 2), "model_loads": loads,
            "model_load_s": round(load_s, 2)}


def pipeline(case: Path, tiny: Path, ser_dir: Path, work: Path) -> dict:
    results = work / "results"
    extra = work / "bench.yaml"
    extra.write_text(json.dumps({"models": {"asr": {"id": str(tiny), "language": "en"},
                                            "ser_dimensional": {"id": str(ser_dir)}}}))
    env = {**os.environ, "VOICEMAN_RUNTIME_DIR": tempfile.mkdtemp(prefix="vm-bench-", dir="/tmp")}
    started = time.perf_counter()
    subprocess.run([str(REPO / ".venv/bin/snakemake"), "--profile", "profiles/local", "--configfile", str(extra),
                    "--config", f"case_dir={case}", f"results_dir={results}"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    stats = json.loads((results / "daemon_stats.json").read_text())
    return {"wall_s": round(wall, 2), "model_loads": sum(m["loads"] for m in stats["models"].values()),
            "model_load_s": round(sum(m["load_s"] for m in stats["models"].values()), 2),
            "loads_per_model": {k: m["loads"] for k, m in stats["models"].items()},
            "requests_per_model": {k: m["requests"] for k, m in stats["models"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--sentences", type=int, default=3, help="sentences per recording (~5 s each)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results.json"))
    args = parser.parse_args()
    from ser_fixtures import build_dimensional_model
    from voiceman.models import prepare

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = Path(prepare(work / "models", ["whisper-tiny.en"])["whisper-tiny.en"])
        ser_dir = build_dimensional_model(work / "ser-dim")
        case = work / "case"
        case.mkdir()
        audio_s = make_case(case, args.files, args.sentences)
        base = baseline(case, tiny, ser_dir)
        pipe = pipeline(case, tiny, ser_dir, work)
    result = {
        "workload": {"files": args.files, "audio_s": round(audio_s, 1), "asr": "whisper tiny.en (CTranslate2, int8, cpu)",
                     "ser": "audeering-architecture dimensional model, random weights (small)",
                     "stages": "ingest, transcribe, ser, voice, patterns, report"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "baseline_reload_per_file_sequential": base,
        "pipeline_snakemake_daemon": pipe,
        "speedup_wall": round(base["wall_s"] / pipe["wall_s"], 2),
        "model_loads_ratio": f"{base['model_loads']}:{pipe['model_loads']}",
        "note": "pipeline wall time includes Snakemake start-up, one Python process per job (6 stages x files), "
                "daemon start and report writing; the baseline is one process and writes no reports. "
                "With tiny models a load costs ~1 s, so residency saves little here; the spec's SER load is 45 s/file.",
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
