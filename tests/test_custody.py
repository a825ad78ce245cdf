"""Custody without gaps: the write-once evidence ledger (first-seen SHA-256 per evidence file),
the voice stage's hash of the bytes it decodes, and a config hash over the analysis settings.

The two holes this closes: a file replaced between ingest and a resumed run used to get its
new hash recorded as "before" (the original hash was nowhere); a file swapped after ingest and
restored before the report got ``input_unchanged: true`` with a transcript of another
recording."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import threading
from pathlib import Path

import pytest

from conftest import run_snakemake
from voiceman import pipeline
from voiceman.audio import decode
from voiceman.config import load_config
from voiceman.demo import encode
from voiceman.hashing import CONFIG_KEYS_NOT_HASHED, config_sha256, sha256_file
from voiceman.ledger import EvidenceChanged, Ledger, LedgerError

pytestmark = pytest.mark.timeout(900)

A, B = "a" * 64, "b" * 64


# ------------------------------------------------------------------ the ledger


def test_ledger_keeps_the_first_seen_hash_and_never_rewrites_it(tmp_path):
    ledger = Ledger(tmp_path / "results")
    first = ledger.check("call-01.wav", A, size_bytes=10)
    assert first["sha256"] == A and first["first_seen_utc"] and first["size_bytes"] == 10
    path = ledger.path_for("call-01.wav")
    assert path.parent == tmp_path / "results" / "custody" / "ledger" and oct(path.stat().st_mode & 0o777) == "0o400"
    content, mtime = path.read_bytes(), path.stat().st_mtime_ns
    assert ledger.check("call-01.wav", A) == first  # the same bytes again: fine
    with pytest.raises(EvidenceChanged) as err:
        ledger.check("call-01.wav", B)
    message = str(err.value)
    assert f"first seen sha256 {A} at {first['first_seen_utc']}, now {B}" in message
    assert message.startswith("call-01.wav: bytes differ from the first-seen evidence")
    assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime  # untouched
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind
    # Other names are other evidence; odd names get their own entry too.
    assert ledger.check("brace{x}\n.wav", B)["sha256"] == B


def test_unreadable_ledger_entry_fails_and_is_not_rewritten(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.check("x.wav", A)
    path = ledger.path_for("x.wav")
    os.chmod(path, 0o600)
    path.write_text("{truncated")
    with pytest.raises(LedgerError, match="cannot be read"):
        ledger.check("x.wav", A)
    assert path.read_text() == "{truncated"


def _race_in_process(results: str, digest: str, barrier, out) -> None:
    barrier.wait()
    try:
        out.put(Ledger(results).check("race.wav", digest)["sha256"])
    except EvidenceChanged as exc:
        out.put(exc.first_seen["sha256"])


def test_ledger_is_write_once_under_concurrent_threads_and_processes(tmp_path):
    """Ingest jobs are threads of one Snakemake process, or processes on cluster nodes: every
    racer must end up agreeing on one first-seen hash, whichever wrote it."""
    results = str(tmp_path / "results")
    digests = [f"{i:064x}" for i in range(24)]
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(len(digests)), ctx.Queue()
    procs = [ctx.Process(target=_race_in_process, args=(results, d, barrier, out)) for d in digests[:8]]
    threads = [threading.Thread(target=_race_in_process, args=(results, d, barrier, out)) for d in digests[8:]]
    for w in procs + threads:
        w.start()
    for w in procs + threads:
        w.join(60)
    seen = {out.get(timeout=10) for _ in digests}
    assert len(seen) == 1 and seen <= set(digests)
    assert Ledger(results).get("race.wav")["sha256"] in seen
    assert os.listdir(Path(results) / "custody" / "ledger") == [Ledger(results).path_for("race.wav").name]


# ------------------------------------------------------------------ config hash


def test_config_hash_covers_analysis_settings_not_locations_or_transport():
    base = load_config(overrides={"case_dir": "/cases/a", "results_dir": "/results/a"})
    moved = load_config(
        overrides={
            "case_dir": "/mnt/other/a",
            "results_dir": "/elsewhere/results-b",
            "daemon": {
                "endpoint": "tcp://127.0.0.1:5599",
                "heartbeat_timeout_s": 99,
                "request_deadline_s": 60,
                "connect_timeout_s": 3,
                "case_roots": ["/mnt/other"],
            },
            "governor": {"sensor": "none"},
            "audio_extensions": ["wav"],
            "models": {"asr": {"cpu_threads": 3}},
        }
    )
    assert config_sha256(base) == config_sha256(moved)
    for change in (
        {"models": {"asr": {"beam_size": 1}}},
        {"models": {"asr": {"language": "ko"}}},
        {"models": {"asr": {"id": "models/whisper-base"}}},
        {"voice": {"pitch_floor_hz": 60}},
        {"patterns": {"language": "ko"}},
        {"models": {"ser_dimensional": {"id": "/m/dim"}}},
    ):
        assert config_sha256(
            load_config(overrides={"case_dir": "/cases/a", "results_dir": "/results/a", **change})
        ) != config_sha256(base), change
    assert {"case_dir", "results_dir", "daemon"} <= set(CONFIG_KEYS_NOT_HASHED)
    assert all(CONFIG_KEYS_NOT_HASHED.values())  # every exclusion says why


# ------------------------------------------------------------------ hole 2, at library level


def _swap(path: Path, other: Path) -> None:
    """Replace ``path``'s bytes in place (same inode and name), as a careless or hostile user would."""
    path.write_bytes(other.read_bytes())


def test_file_swapped_after_ingest_and_restored_is_not_unchanged(speech_case, tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    original, other = case / "call-01.wav", tmp_path / "other.wav"
    shutil.copyfile(speech_case / "call-01.wav", original)
    encode(decode(speech_case / "call-02.mp3")[0], other, "wav")
    config = load_config(overrides={"case_dir": str(case), "results_dir": str(tmp_path / "results")})
    ledger = Ledger(config["results_dir"])
    saved = original.read_bytes()

    meta = pipeline.ingest.ingest(original, ledger=ledger)
    assert meta["status"] == "ok" and meta["sha256"] == meta["input_sha256_first_seen"] == sha256_file(original)
    # What the transcribe stage hands on: the ingest hash, one segment over the recording.
    transcript = {
        "file": meta["file"],
        "audio_path": meta["path"],
        "sha256": meta["sha256"],
        "status": "ok",
        "language": "en",
        "segments": [
            {
                "start": 0.0,
                "end": meta["duration_s"],
                "speaker": None,
                "text": "please meet me at the harbour",
                "words": [],
            }
        ],
    }
    _swap(original, other)  # swapped after ingest ...
    voice = pipeline.voice.voice(transcript, config)
    assert voice["status"] == "failed" and voice["failed_stage"] == "voice"
    assert meta["sha256"] in voice["reason"] and sha256_file(other) in voice["reason"]
    assert voice["decoded_sha256"] == sha256_file(other)
    original.write_bytes(saved)  # ... and restored before the report
    ser = pipeline.ser.emotion(None, transcript, config, 60)  # no SER models configured: no daemon call
    report = pipeline.report.build_report(meta, transcript, ser, voice, pipeline.patterns.patterns(transcript), config)
    custody = report["custody"]
    assert custody["input_sha256_before"] == custody["input_sha256_after"]  # the after-hash alone is fooled
    assert report["status"] == "failed" and "voice:" in report["reason"]
    assert custody["input_unchanged"] is False
    assert custody["input_sha256_decoded"] == {"voice": sha256_file(other)}

    # The daemon's decoded-bytes hash (transcribe) counts the same way, even if no later stage
    # re-read the file: a transcript of other bytes never makes a "done, unchanged" report.
    voice_ok = pipeline.voice.voice(transcript, config)
    assert voice_ok["status"] == "ok" and voice_ok["decoded_sha256"] == meta["sha256"]
    heard_other = {**transcript, "decoded_sha256": sha256_file(other)}
    report = pipeline.report.build_report(
        meta, heard_other, ser, voice_ok, pipeline.patterns.patterns(transcript), config
    )
    assert report["status"] == "failed" and "bytes differ from the ingested evidence" in report["reason"]
    assert report["custody"]["input_unchanged"] is False
    # Control: with every stage on the ingested bytes the report is done and unchanged.
    report = pipeline.report.build_report(
        meta,
        {**transcript, "decoded_sha256": meta["sha256"]},
        ser,
        voice_ok,
        pipeline.patterns.patterns(transcript),
        config,
    )
    assert report["status"] == "done" and report["custody"]["input_unchanged"] is True
    assert report["custody"]["input_sha256_first_seen"] == meta["sha256"]
    assert report["custody"]["config_sha256"] == config_sha256(config)


# ------------------------------------------------------------------ hole 1, a real resumed run


def test_file_replaced_between_runs_fails_naming_the_first_seen_hash(speech_case, tiny_model, runtime_dir, tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    for name in ("call-01.wav", "call-02.mp3", "call-03.m4a"):
        shutil.copyfile(speech_case / name, case / name)
    results = tmp_path / "results"
    run_snakemake(results, case, tiny_model)
    first = json.loads((results / "case.json").read_text())
    assert all(f["status"] == "done" for f in first["files"])
    original = {f["name"]: f["input_sha256"] for f in first["files"]}
    assert all(f["input_sha256_first_seen"] == f["input_sha256"] for f in first["files"])
    ledger_before = {p.name: p.read_bytes() for p in (results / "custody" / "ledger").iterdir()}
    report1 = json.loads((results / "report" / "call-01.wav.json").read_text())
    assert report1["custody"]["config_sha256"] == first["config_sha256"]

    other = decode(speech_case / "call-03.m4a")[0]
    # call-01.wav: a downstream output deleted and the evidence replaced (new mtime): ingest reruns.
    (results / "report" / "call-01.wav.json").unlink()
    encode(other, case / "call-01.wav", "wav")
    # call-02.mp3: replaced with its old mtime kept, so only what was deleted (voice, report) reruns:
    # the voice stage decodes the new bytes and compares their hash with the ingest hash.
    stat = os.stat(case / "call-02.mp3")
    (results / "voice" / "call-02.mp3.json").unlink()
    (results / "report" / "call-02.mp3.json").unlink()
    encode(other, case / "call-02.mp3", "mp3")
    os.utime(case / "call-02.mp3", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    run_snakemake(results, case, tiny_model)

    files = {f["name"]: f for f in json.loads((results / "case.json").read_text())["files"]}
    replaced = files["call-01.wav"]
    now = sha256_file(case / "call-01.wav")
    assert replaced["status"] == "failed" and replaced["report"] is None
    assert "call-01.wav: bytes differ from the first-seen evidence" in replaced["reason"]
    assert original["call-01.wav"] in replaced["reason"] and now in replaced["reason"]
    assert replaced["input_sha256_first_seen"] == original["call-01.wav"]
    report = json.loads((results / "report" / "call-01.wav.json").read_text())
    custody = report["custody"]
    assert custody["input_sha256_first_seen"] == original["call-01.wav"] and custody["input_sha256_before"] == now
    assert custody["input_unchanged"] is False

    swapped = files["call-02.mp3"]
    assert swapped["status"] == "failed" and "voice:" in swapped["reason"]
    assert original["call-02.mp3"] in swapped["reason"] and sha256_file(case / "call-02.mp3") in swapped["reason"]
    assert json.loads((results / "report" / "call-02.mp3.json").read_text())["custody"]["input_unchanged"] is False

    assert files["call-03.m4a"]["status"] == "done"
    # The ledger still holds the first-seen hashes, byte for byte.
    assert {p.name: p.read_bytes() for p in (results / "custody" / "ledger").iterdir()} == ledger_before

    # Another results folder, other transport settings: the analysis settings' hash is the same.
    results_b = tmp_path / "results-b"
    run_snakemake(results_b, case, tiny_model, heartbeat_timeout_s=7)
    summary_b = json.loads((results_b / "case.json").read_text())
    assert summary_b["config_sha256"] == first["config_sha256"]
    assert (
        json.loads((results_b / "report" / "call-03.m4a.json").read_text())["custody"]["config_sha256"]
        == first["config_sha256"]
    )
