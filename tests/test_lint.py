"""The workflow parses without a case folder (``snakemake --lint`` on a fresh clone), the committed
``.test`` case dry-runs, and a missing case folder still stops a run, naming the folder.
A few seconds each: Snakemake only parses the workflow and builds the DAG."""

from __future__ import annotations

import subprocess
import wave

from conftest import REPO

TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
TEST_CASE = REPO / ".test" / "case"


def _snakemake(*args: str) -> subprocess.CompletedProcess:
    exe = REPO / ".venv" / "bin" / "snakemake"
    cmd = [str(exe) if exe.exists() else "snakemake", "--profile", "profiles/local", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_lint_needs_no_case_folder(tmp_path):
    missing = tmp_path / "no-such-case"
    proc = _snakemake("--lint", "--config", f"case_dir={missing}", f"results_dir={tmp_path / 'results'}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Congratulations" in out


def test_lint_on_the_test_case_is_clean():
    proc = _snakemake("--lint", "--configfile", str(TEST_CONFIG))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Congratulations" in out


def test_run_with_a_missing_case_folder_stops_naming_it(tmp_path):
    missing = tmp_path / "no-such-case"
    proc = _snakemake("--dry-run", "--config", f"case_dir={missing}", f"results_dir={tmp_path / 'results'}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert f"case_dir '{missing}' is not a folder" in out
    assert not (tmp_path / "results").exists()


def test_run_with_a_file_as_case_folder_stops_naming_it(tmp_path):
    not_a_folder = tmp_path / "case.wav"
    not_a_folder.write_bytes(b"")
    proc = _snakemake("--dry-run", "--config", f"case_dir={not_a_folder}", f"results_dir={tmp_path / 'results'}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert f"case_dir '{not_a_folder}' is not a folder" in out


def test_committed_test_case_is_tiny_16k_mono_and_dry_runs():
    recordings = sorted(p.name for p in TEST_CASE.iterdir())
    assert recordings == ["call-01.wav", "call-02.flac"]
    assert sum(p.stat().st_size for p in TEST_CASE.iterdir()) < 150_000
    with wave.open(str(TEST_CASE / "call-01.wav")) as w:
        assert (w.getframerate(), w.getnchannels()) == (16_000, 1)
    proc = _snakemake("--dry-run", "--quiet", "rules", "--configfile", str(TEST_CONFIG))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in out.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert counts.get("ingest") == 2 and counts.get("report") == 2 and counts.get("case_summary") == 1, out
