"""Every requirement tag in the code and configuration (``E3``, ``N2``, ``PR-005`` ...) has its
line in docs/requirements.md, the English index of the user's spec SPEC-PERFOPT-001."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO

DOC = REPO / "docs" / "requirements.md"
# The spec's ids are one letter and one digit (U1-U4, E1-E5, S1-S5, N1-N4, O1-O3) or PR-001..PR-009;
# one digit only, so lint codes such as E402 / N802 in noqa comments are not taken for tags.
TAG = re.compile(r"\b[UENSO][0-9]\b|\bPR-[0-9]{3}\b")
SCANNED = ["Snakefile", "voiceman", "daemon", "workflow", "config", "profiles", "scripts", "bench", "tests"]
SUFFIXES = {".py", ".smk", ".yaml", ".yml", ".json"}
SELF = Path(__file__).resolve()


def _documented() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\| ([A-Z]+-?[0-9]+) \|", DOC.read_text(encoding="utf-8"), re.M)}


def _tags_in_sources() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for top in SCANNED:
        root = REPO / top
        files = [root] if root.is_file() else [p for p in sorted(root.rglob("*")) if p.suffix in SUFFIXES]
        for path in files:
            if path.resolve() == SELF:
                continue  # this file names the id ranges
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                for tag in TAG.findall(line):
                    found.setdefault(tag, []).append(f"{path.relative_to(REPO)}:{n}")
    return found


def test_every_spec_id_has_one_line():
    documented = _documented()
    expected = (
        {f"U{i}" for i in range(1, 5)}
        | {f"E{i}" for i in range(1, 6)}
        | {f"S{i}" for i in range(1, 6)}
        | {f"N{i}" for i in range(1, 5)}
        | {f"O{i}" for i in range(1, 4)}
        | {f"PR-00{i}" for i in range(1, 10)}
    )
    assert expected <= documented, sorted(expected - documented)
    rows = re.findall(r"^\| ([A-Z]+-?[0-9]+) \|", DOC.read_text(encoding="utf-8"), re.M)
    assert len(rows) == len(set(rows)), "an id has more than one line"


def test_every_tag_in_the_code_resolves_to_a_documented_requirement():
    documented = _documented()
    found = _tags_in_sources()
    assert found, "no requirement tags found: the scan is broken"
    unknown = {tag: where[:3] for tag, where in found.items() if tag not in documented}
    assert not unknown, f"tags without a line in docs/requirements.md: {unknown}"
