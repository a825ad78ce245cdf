"""Reruns follow the configuration (forensic-validity issue, item 5): every rule declares the
settings it depends on (``params:``) and the files it reads (inputs), so changing one setting
reruns exactly the stages it affects -- and nothing else; and no report ever carries another
config hash than case.json."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import REPO, daemon_overrides

DOWNSTREAM = {"report", "case_summary", "all"}


def _snakemake(results, case, tiny_model, *extra, configfiles=()):
    base = results.parent / "base.yaml"
    base.write_text(json.dumps(daemon_overrides(tiny_model)))
    cmd = [
        str(REPO / ".venv/bin/snakemake"),
        "--profile",
        "profiles/local",
        "--configfile",
        str(base),
        *map(str, configfiles),
        "--config",
        f"case_dir={case}",
        f"results_dir={results}",
        *extra,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)


def _would_run(results, case, tiny_model, change: dict) -> set[str]:
    """The rules a dry run would execute after ``change`` (merged over the config)."""
    extra = results.parent / "change.yaml"
    extra.write_text(json.dumps(change))
    proc = _snakemake(results, case, tiny_model, "--dry-run", "--quiet", "rules", configfiles=(extra,))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return set()
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", text, flags=re.M)} - {"total"}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, speech_case, tiny_model):
    import os
    import tempfile

    root = tmp_path_factory.mktemp("rerun")
    case = root / "case"
    case.mkdir()
    shutil.copy(speech_case / "call-02.mp3", case)
    results = root / "results"
    old = os.environ.get("VOICEMAN_RUNTIME_DIR")
    os.environ["VOICEMAN_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="vm-rr-", dir="/tmp")
    try:
        proc = _snakemake(results, case, tiny_model)
        assert proc.returncode == 0, proc.stderr[-4000:]
        yield results, case
    finally:
        if old is None:
            os.environ.pop("VOICEMAN_RUNTIME_DIR", None)
        else:
            os.environ["VOICEMAN_RUNTIME_DIR"] = old


@pytest.mark.parametrize(
    "change, reruns",
    [
        ({"models": {"asr": {"beam_size": 4}}}, {"transcribe", "ser", "voice", "patterns"} | DOWNSTREAM),
        ({"models": {"asr": {"vad_onset": 0.6}}}, {"transcribe", "ser", "voice", "patterns"} | DOWNSTREAM),
        ({"models": {"ser_dimensional": {"batch_size": 2}}}, {"ser"} | DOWNSTREAM),
        ({"voice": {"pitch_floor_hz": 70}}, {"voice"} | DOWNSTREAM),
        ({"patterns": {"language": "en"}}, {"patterns"} | DOWNSTREAM),
        ({"daemon": {"heartbeat_interval_s": 1.0, "request_deadline_s": 600}}, set()),
        ({"governor": {"ser_queue_pause_at": 4}}, set()),
    ],
)
def test_one_setting_reruns_exactly_its_stages(analysed, tiny_model, change, reruns):
    results, case = analysed
    assert _would_run(results, case, tiny_model, change) == reruns


def test_forensic_rules_file_is_an_input_of_the_report(analysed, tiny_model, tmp_path):
    results, case = analysed
    rules = tmp_path / "forensic.yaml"
    rules.write_text((REPO / "config" / "forensic.yaml").read_text())
    assert _would_run(results, case, tiny_model, {"forensic_rules": str(rules)}) == DOWNSTREAM


def test_after_a_changed_setting_every_report_carries_the_case_config_hash(analysed, tiny_model):
    results, case = analysed
    extra = results.parent / "voice-change.yaml"
    extra.write_text(json.dumps({"voice": {"pitch_floor_hz": 70}}))
    proc = _snakemake(results, case, tiny_model, configfiles=(extra,))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((results / "case.json").read_text())
    reports = [json.loads(p.read_text()) for p in (results / "report").glob("*.json")]
    assert reports and {r["custody"]["config_sha256"] for r in reports} == {summary["config_sha256"]}
