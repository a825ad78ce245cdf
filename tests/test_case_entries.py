"""Every entry of the case folder is accounted for in case.json, and a file whose name Snakemake
or the file system cannot take (braces, 250 bytes, a newline, bytes that are not UTF-8) is
analysed under a safe key with its original name kept -- the rest of the case completes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import run_snakemake
from voiceman import case as vm_case
from voiceman.case import MAX_NAME_BYTES, inventory, name_is_safe, output_key

pytestmark = pytest.mark.timeout(900)

LONG = "L" * 246 + ".wav"  # 250 bytes: "<name>.json" and the old temp names overflow 255
NEWLINE = "new\nline.wav"
BRACE = "brace{x}.wav"
LATIN1 = os.fsdecode(b"caf\xe9.wav")  # a name that is not UTF-8 (a Latin-1 file system's "café")
IS_ROOT = os.geteuid() == 0


def _odd_case(root: Path, clip: Path) -> dict[str, tuple[str, str]]:
    """A case folder with one of every kind of entry; returns {name: (status, reason fragment)}
    of what case.json must say ("done" for the recordings)."""
    root.mkdir()
    outside = root.parent / "outside.wav"
    shutil.copyfile(clip, outside)
    expected = {}
    for name in ("good.wav", BRACE, LONG, NEWLINE, LATIN1):
        shutil.copyfile(clip, root / name)
        expected[vm_case.display_name(name)] = ("done", "")
    (root / "x.wav").mkdir()
    expected["x.wav"] = ("failed", "a folder, not a recording file")
    os.symlink(root / "no-such-recording.wav", root / "dangling.wav")
    expected["dangling.wav"] = ("failed", "dangling symbolic link")
    os.symlink(outside, root / "elsewhere.wav")
    expected["elsewhere.wav"] = ("failed", "outside the case folder")
    shutil.copyfile(clip, root / ".x.wav")
    expected[".x.wav"] = ("ignored", "hidden")
    (root / "sub").mkdir()
    shutil.copyfile(clip, root / "sub" / "y.wav")
    expected["sub"] = ("ignored", "sub-folder")
    expected["sub/y.wav"] = ("ignored", "not analysed: in a sub-folder")
    (root / "notes.txt").write_text("investigator notes")
    expected["notes.txt"] = ("ignored", "extension '.txt' is not in audio_extensions")
    os.mkfifo(root / "pipe.wav")  # would block a reader forever
    expected["pipe.wav"] = ("failed", "not a regular file but a FIFO")
    if not IS_ROOT:  # root reads a mode-000 file anyway; test_unreadable_file_fails_at_discovery covers it
        shutil.copyfile(clip, root / "locked.wav")
        os.chmod(root / "locked.wav", 0)
        expected["locked.wav"] = ("failed", "cannot read: Permission denied")
    return expected


def test_output_keys_keep_ordinary_names_and_derive_safe_unique_ones():
    for name in ("call-01.wav", "통화 it's (1).wav", "a b+c,d.m4a"):
        assert name_is_safe(name) and output_key(name) == name
    odd = [BRACE, "brace{y}.wav", LONG, "L" * 246 + ".WAV", NEWLINE, LATIN1, "evil\u202ewav.mp3", "back\\slash.wav"]
    keys = [output_key(n) for n in odd]
    assert len(set(keys)) == len(keys)
    for name, key in zip(odd, keys):
        assert not name_is_safe(name) and name_is_safe(key) and key != name, (name, key)
        assert len(key.encode()) <= MAX_NAME_BYTES and not key.startswith(".")
        assert "{" not in key and "\n" not in key and key == output_key(name)  # stable
        assert os.path.splitext(key)[1] == os.path.splitext(name)[1]  # still a recording extension
    assert keys[0].startswith("brace_x-")


def test_inventory_accounts_for_every_entry(tmp_path, speech_case):
    case = tmp_path / "case"
    expected = _odd_case(case, speech_case / "call-01.wav")
    inv = inventory(case, ["wav", "mp3", "m4a", "flac"])
    got = {r.display: ("done", "") for r in inv.recordings}
    got.update({e["name"]: (e["status"], e["reason"]) for e in inv.entries})
    assert set(got) == set(expected)
    for name, (status, fragment) in expected.items():
        assert got[name][0] == status and fragment in got[name][1], (name, got[name])
    keys = {r.display: r.key for r in inv.recordings}
    assert keys["good.wav"] == "good.wav" and keys[BRACE] != BRACE
    assert all(r.aliased == (r.key != r.name) for r in inv.recordings)


def test_unreadable_file_fails_at_discovery(tmp_path, monkeypatch):
    case = tmp_path / "case"
    case.mkdir()
    (case / "ok.wav").write_bytes(b"RIFF")
    locked = case / "locked.wav"
    locked.write_bytes(b"RIFF")
    if IS_ROOT:
        # Tests run as root here, and root opens a mode-000 file; the open itself is made to
        # fail as it does for any other user, so the code path under test is the real one.
        real_open = os.open

        def deny(path, flags, *args, **kwargs):
            if os.fspath(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", deny)
    else:
        os.chmod(locked, 0)
    inv = inventory(case, ["wav"])
    assert [r.name for r in inv.recordings] == ["ok.wav"]
    assert inv.entries == [
        {"name": "locked.wav", "kind": "file", "status": "failed", "reason": "cannot read: Permission denied"}
    ]


def test_case_with_every_kind_of_entry_completes(speech_case, tiny_model, runtime_dir, tmp_path):
    case = tmp_path / "case"
    expected = _odd_case(case, speech_case / "call-01.wav")
    results = tmp_path / "results"
    run_snakemake(results, case, tiny_model)

    summary = json.loads((results / "case.json").read_text())
    entries = {e["name"]: e for e in summary["entries"]}
    assert len(entries) == len(summary["entries"]) == summary["n_entries"]  # each entry exactly once
    assert set(entries) == set(expected), set(entries) ^ set(expected)
    for name, (status, fragment) in expected.items():
        assert entries[name]["status"] == status and fragment in (entries[name]["reason"] or ""), entries[name]
    files = {f["name"]: f for f in summary["files"]}
    assert {n for n, f in files.items() if f["status"] == "done"} == {
        n for n, (s, _) in expected.items() if s == "done"
    }
    assert {n for n, f in files.items() if f["status"] == "failed"} == {
        n for n, (s, _) in expected.items() if s == "failed"
    }
    assert set(summary["ignored"]) == {n for n, (s, _) in expected.items() if s == "ignored"}

    # Every recording, odd names included, is analysed under its key with its own name kept.
    for name in ("good.wav", BRACE, LONG, NEWLINE, vm_case.display_name(LATIN1)):
        entry = files[name]
        key = entry["key"]
        assert key == output_key(name if name != vm_case.display_name(LATIN1) else LATIN1)
        report = json.loads(Path(entry["report"]).read_text())
        assert report["file"] == name and report["status"] == "done"
        text = " ".join(s["text"] for s in report["segments"]).lower()
        assert "tomorrow" in text and "money" in text, (name, text)
        assert report["custody"]["input_sha256_before"] == report["custody"]["input_sha256_first_seen"]
        meta = json.loads((results / "ingest" / f"{key}.json").read_text())
        assert meta["file"] == name and (meta.get("key") or name) == key
    assert files["good.wav"]["key"] == "good.wav" and (results / "report" / "good.wav.json").is_file()
    # The case page is written and shows the odd names as they are (a newline as \n).
    page = (results / "case.html").read_text()
    assert "new\\nline.wav" in page and "brace{x}.wav" in page and "sub/y.wav" in page
    # The evidence was only read: the case folder holds exactly what was put there.
    assert sorted(os.listdir(case), key=os.fsencode) == sorted(
        [n for n in expected if "/" not in n and n != vm_case.display_name(LATIN1)] + [LATIN1], key=os.fsencode
    )
