"""The case folder: every entry in it, which ones are recordings, and the key their outputs are
filed under.  (The case summary, ``case.json``, is the case_summary rule's:
``voiceman/pipeline/case_summary.py``.)

Every entry of the case folder is accounted for.  A regular file directly in the folder whose
extension is in ``audio_extensions`` is a recording and is analysed.  Anything else gets a
status and a reason in ``case.json``:

- ``failed``: it looks like a recording (a recording extension, not hidden) but cannot be
  analysed: a folder, a dangling symbolic link, a link to a folder or to outside the case
  folder, a FIFO/socket/device, an unreadable file;
- ``ignored``: another extension, a hidden entry (name starting with "."), a sub-folder and
  every entry inside it (voiceman analyses only the files directly in the case folder).

Output keys.  Outputs are filed under ``results/<stage>/<key>.json``.  For an ordinary name the
key is the name itself (``call-01.wav``).  A name that Snakemake or the file system cannot take
in an output path -- braces (Snakemake reads them as wildcards), control characters such as a
newline, bidi/format characters, a backslash, bytes that are not UTF-8, or more than
:data:`MAX_NAME_BYTES` bytes (``<name>.json`` and temp names would overflow the 255-byte limit)
-- is analysed under a derived key: the name with every other character replaced by ``_``,
shortened, plus the first 12 hex digits of the SHA-256 of the original name, plus the extension
(``brace{x}.wav`` -> ``brace_x-<12 hex>.wav``).  The original name is kept in every record
(ingest, report, case.json).  Snakemake cannot take such a name as an input path either, so the
workflow reads such a file through a symbolic link ``results/custody/evidence/<key>`` to it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_NAME_BYTES = 120  # longer names get a derived key
KEY_STEM_BYTES = 60  # how much of the name a derived key keeps
KEY_HASH_HEX = 12
MAX_LISTED_ENTRIES = 10_000  # entries inside sub-folders listed one by one; the rest are counted
ALIAS_SUBDIR = Path("custody") / "evidence"

_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_UNSAFE_CHARS = set("{}\\")
_KEY_CHAR = re.compile(r"[\w.+-]")
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")

FAILED, IGNORED, DONE = "failed", "ignored", "done"


class CaseError(ValueError):
    """The case folder cannot be used (missing, not a folder)."""


def display_name(name: str) -> str:
    """A file name as JSON/HTML text: bytes that are not UTF-8 become ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def name_is_safe(name: str) -> bool:
    """Whether ``name`` can be used as it is in output paths and as a Snakemake input."""
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        return False
    return not any(ch in _UNSAFE_CHARS or unicodedata.category(ch) in _UNSAFE_CATEGORIES for ch in name)


def output_key(name: str) -> str:
    """The key a recording's outputs are filed under: the name itself when it is safe, else a
    derived one (readable part of the name + short hash of the original name + extension)."""
    if name_is_safe(name):
        return name
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:KEY_HASH_HEX]
    stem, suffix = os.path.splitext(name)
    if not _SAFE_SUFFIX.match(suffix):
        stem, suffix = name, ""
    clean = "".join(ch if _KEY_CHAR.match(ch) and name_is_safe(ch) else "_" for ch in stem)
    clean = re.sub(r"_+", "_", clean).strip("._-")
    while len(clean.encode("utf-8")) > KEY_STEM_BYTES:
        clean = clean[:-1]
    return f"{clean or 'file'}-{digest}{suffix}"


@dataclass(frozen=True)
class Recording:
    """A file the workflow analyses."""

    name: str  # the file's name as the file system has it (may hold surrogate escapes)
    key: str  # its outputs' key
    path: str  # its path in the case folder (case_dir/name, not resolved)
    kind: str  # "file", or "symlink" for a link to a file inside the case folder

    @property
    def display(self) -> str:
        return display_name(self.name)

    @property
    def aliased(self) -> bool:
        """Read through results/custody/evidence/<key>: Snakemake cannot take the real path."""
        return self.key != self.name or "{" in self.path or "}" in self.path


@dataclass
class Inventory:
    """Every entry of a case folder: the recordings, and every other entry with its status."""

    case_dir: Path
    recordings: list[Recording] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)  # not analysed: failed / ignored

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.recordings]

    @property
    def names(self) -> dict[str, str]:
        """{key: display name}."""
        return {r.key: r.display for r in self.recordings}

    def recording_records(self) -> list[dict[str, str]]:
        """[{key, name (display), kind}] of the recordings, for case.json
        (see :func:`voiceman.pipeline.case_summary.summarize`)."""
        return [{"key": r.key, "name": r.display, "kind": r.kind} for r in self.recordings]

    @property
    def ignored(self) -> list[str]:
        return [e["name"] for e in self.entries if e["status"] == IGNORED]

    def by_key(self) -> dict[str, Recording]:
        return {r.key: r for r in self.recordings}


def _entry(name: str, kind: str, status: str, reason: str) -> dict[str, Any]:
    return {"name": display_name(name), "kind": kind, "status": status, "reason": reason}


_KINDS = (
    (stat.S_ISREG, "file"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def _kind(mode: int) -> str:
    return next((k for test, k in _KINDS if test(mode)), "other")


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _readable(path: str) -> str | None:
    """None when the file opens read-only, else the reason (O_NONBLOCK: never waits)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return f"cannot read: {exc.strerror or errno.errorcode.get(exc.errno, 'error')}"
    os.close(fd)
    return None


def inventory(case_dir: str | Path, extensions: Iterable[str], results_dir: str | Path | None = None) -> Inventory:
    """Every entry of ``case_dir``: recordings (sorted by name) and all else with a status.

    ``results_dir``: when it lies inside the case folder it is listed as ignored, not walked.
    """
    root = Path(case_dir)
    if not root.is_dir():
        raise CaseError(f"case_dir '{case_dir}' is not a folder (set it with --config case_dir=...)")
    real_root = os.path.realpath(root)
    real_results = os.path.realpath(results_dir) if results_dir is not None else None
    wanted = {"." + e.lower().lstrip(".") for e in extensions}
    inv = Inventory(case_dir=Path(os.path.abspath(root)))
    candidates: list[tuple[str, str]] = []  # (name, kind) of readable regular files with a recording extension
    budget = [MAX_LISTED_ENTRIES]
    for name in sorted(os.listdir(root), key=os.fsencode):
        path = os.path.join(root, name)
        try:
            st = os.lstat(path)
        except OSError as exc:  # vanished while listed
            inv.entries.append(_entry(name, "other", IGNORED, f"cannot be examined: {exc.strerror}"))
            continue
        kind = _kind(st.st_mode)
        hidden = name.startswith(".")
        recording_like = not hidden and os.path.splitext(name)[1].lower() in wanted
        bad = FAILED if recording_like else IGNORED
        if real_results is not None and kind == "directory" and os.path.realpath(path) == real_results:
            inv.entries.append(_entry(name, kind, IGNORED, "the results folder of this workflow: not evidence"))
            continue
        if kind == "directory":
            if hidden:
                why = "a hidden folder (its name starts with '.'): not analysed"
            elif recording_like:
                why = "a folder, not a recording file: not analysed"
            else:
                why = "a sub-folder: not analysed (only files directly in the case folder are); its entries are listed"
            inv.entries.append(_entry(name, kind, bad, why))
            _list_subfolder(root, name, inv, budget, real_results)
            continue
        if hidden:
            inv.entries.append(
                _entry(
                    name,
                    kind,
                    IGNORED,
                    f"a hidden {'file' if kind == 'file' else kind} (its name starts with '.'): not analysed",
                )
            )
            continue
        if kind == "symlink":
            why = _symlink_problem(path, real_root)
            if why:
                inv.entries.append(_entry(name, kind, bad, why))
                continue
        elif kind != "file":
            what = "FIFO (named pipe)" if kind == "fifo" else kind
            inv.entries.append(_entry(name, kind, bad, f"not a regular file but a {what}: not analysed"))
            continue
        if not recording_like:
            ext = os.path.splitext(name)[1]
            inv.entries.append(
                _entry(
                    name,
                    kind,
                    IGNORED,
                    f"not a recording: extension '{display_name(ext)}' is not in audio_extensions"
                    if ext
                    else "not a recording: no file extension",
                )
            )
            continue
        unreadable = _readable(path)
        if unreadable:
            inv.entries.append(_entry(name, kind, FAILED, unreadable))
            continue
        candidates.append((name, kind))
    taken = {name for name, _ in candidates if name_is_safe(name)}
    for name, kind in candidates:
        key = output_key(name)
        if key != name and key in taken:
            inv.entries.append(
                _entry(
                    name,
                    kind,
                    FAILED,
                    f"its derived output key '{key}' is already another file's name: rename one of them",
                )
            )
            continue
        taken.add(key)
        inv.recordings.append(Recording(name=name, key=key, path=os.path.join(str(root), name), kind=kind))
    inv.entries.sort(key=lambda e: e["name"])
    return inv


def _symlink_problem(path: str, real_root: str) -> str | None:
    """Why a symbolic link in the case folder cannot be analysed, or None (a link to a regular
    file inside the case folder is analysed like the file)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "a dangling symbolic link (its target does not exist): not analysed"
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop: not analysed"
        return f"a symbolic link whose target cannot be examined ({exc.strerror}): not analysed"
    if not _within(os.path.realpath(path), real_root):
        return (
            "a symbolic link to outside the case folder: not analysed (only files inside the case folder "
            "are evidence; copy the file in if it belongs to the case)"
        )
    kind = _kind(st.st_mode)
    if kind != "file":
        return f"a symbolic link to a {'folder' if kind == 'directory' else kind}: not analysed"
    return None


def _list_subfolder(root: Path, top: str, inv: Inventory, budget: list[int], real_results: str | None) -> None:
    """Every entry under ``root/top`` as ignored "in a sub-folder" (symlinks are not followed)."""
    base = os.path.join(root, top)
    listed = skipped = 0

    def unlistable(exc: OSError) -> None:
        rel = os.path.relpath(exc.filename, root) if exc.filename else top
        inv.entries.append(
            _entry(
                rel, "directory", IGNORED, f"a folder that cannot be listed ({exc.strerror}): its entries are not known"
            )
        )

    for dirpath, dirnames, filenames in os.walk(base, onerror=unlistable, followlinks=False):
        keep = []
        for name in sorted(dirnames, key=os.fsencode):
            full = os.path.join(dirpath, name)
            if real_results is not None and os.path.realpath(full) == real_results:
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(dirnames + filenames, key=os.fsencode):
            full = os.path.join(dirpath, name)
            if budget[0] <= 0:
                skipped += 1
                continue
            budget[0] -= 1
            listed += 1
            try:
                kind = _kind(os.lstat(full).st_mode)
            except OSError:
                kind = "other"
            inv.entries.append(
                _entry(
                    os.path.relpath(full, root),
                    kind,
                    IGNORED,
                    "not analysed: in a sub-folder (only files directly in the case folder are)",
                )
            )
    if skipped:
        inv.entries.append(
            _entry(
                os.path.join(top, "…"),
                "other",
                IGNORED,
                f"{skipped} more entries in this sub-folder, not listed one by one: not analysed",
            )
        )


def discover(case_dir: str | Path, extensions: list[str]) -> tuple[list[str], list[str]]:
    """(recording keys, names of the other entries), sorted -- the keys are the file names
    except for names that need a derived key (see :func:`output_key`)."""
    inv = inventory(case_dir, extensions)
    return inv.keys, [e["name"] for e in inv.entries]


def evidence_inputs(inv: Inventory, results_dir: str | Path) -> dict[str, str]:
    """{key: the path Snakemake takes as the recording's input}: the file in the case folder,
    or for a name Snakemake cannot take, a symbolic link ``results/custody/evidence/<key>``
    to it (created or corrected here; Snakemake follows it for the file's mtime)."""
    alias_dir = Path(results_dir) / ALIAS_SUBDIR
    out = {}
    for rec in inv.recordings:
        if rec.aliased:
            out[rec.key] = str(ensure_alias(alias_dir / rec.key, rec.path))
        else:
            out[rec.key] = rec.path
    return out


def ensure_alias(link: Path, target: str) -> Path:
    """``link`` -> ``target`` (absolute), replaced atomically when it points elsewhere."""
    target = os.path.abspath(target)
    try:
        if os.readlink(link) == target:
            return link
    except OSError:
        pass
    link.parent.mkdir(parents=True, exist_ok=True)
    # A unique temp name: on a cluster every job's Snakemake process parses the workflow and may
    # get here at the same time as another, on another host.
    tmp = link.parent / f".{uuid.uuid4().hex}.link"
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return link


def evidence_name(input_path: str | Path) -> tuple[str, str]:
    """(the evidence file's name, the path to open it by) for a recording's input path: the
    case file itself, or an alias made by :func:`evidence_inputs` (then the name is the alias
    target's; the path stays the alias when the real path is not valid UTF-8 text)."""
    path = str(input_path)
    parent = Path(path).parent
    if parent.name == ALIAS_SUBDIR.name and parent.parent.name == ALIAS_SUBDIR.parent.name and os.path.islink(path):
        target = os.readlink(path)
        name = os.path.basename(target)
        return name, (target if display_name(target) == target else os.path.abspath(path))
    return os.path.basename(path), path
