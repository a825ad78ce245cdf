"""The library's own data (the schemas) ships in the package and is read through
voiceman.resources only; the source tree is located in exactly one place."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from voiceman import resources

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "voiceman"


def test_every_schema_is_declared_package_data_and_loads():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["voiceman"]
    schemas = sorted(p for p in (PACKAGE / "schemas").iterdir() if p.is_file())
    assert {p.name for p in schemas} >= {
        "config.schema.yaml",
        "forensic.schema.json",
        "report.schema.json",
        "review.schema.json",
    }
    for path in schemas:
        rel = path.relative_to(PACKAGE).as_posix()
        assert any(fnmatch.fnmatch(rel, pattern) for pattern in patterns), f"{rel} is not package data"
        schema = resources.load_schema(path.name)
        assert isinstance(schema, dict) and schema
        assert resources.schema_path(path.name) == path
    assert not (REPO / "workflow" / "schemas").exists()


def test_library_reads_no_schema_by_path_and_finds_the_checkout_once():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "resources.py" and re.search(
            r"__file__\)?\.resolve\(\)\.parents|workflow[\"'/ ,]+schemas", text
        ):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_every_data_file_in_the_package_is_declared_package_data():
    """A file the library reads but the wheel leaves out works from a checkout and fails installed."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["voiceman"]
    data = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]
    assert "htmlreport/assets/findings.js" in data
    undeclared = [rel for rel in data if not any(fnmatch.fnmatch(rel, pattern) for pattern in patterns)]
    assert undeclared == []


def test_the_case_page_script_is_read_byte_for_byte():
    """The CSP allows the script by the hash of its bytes: no newline translation on the way in."""
    stored = (PACKAGE / "htmlreport" / "assets" / "findings.js").read_bytes()
    assert resources.package_text("htmlreport", "assets", "findings.js").encode("utf-8") == stored
    from voiceman.htmlreport.findings import SCRIPT

    assert SCRIPT.encode("utf-8") == stored and "(function ()" in SCRIPT
