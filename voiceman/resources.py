"""The files the library itself needs to run, and where the user's own files live.

Shipped with the package (package data, ``[tool.setuptools.package-data]`` in pyproject.toml)
and read only through this module, with ``importlib.resources``, so they are found in an
installed package exactly as in a source checkout:

    voiceman/schemas/   config.schema.yaml (the workflow config), forensic.schema.json (the
                        forensic rules file), report.schema.json (results/report/<file>.json),
                        review.schema.json (reviewer verdict files)
    voiceman/htmlreport/assets/
                        findings.js, findings.css (the case page's one script and its style)

What a user edits stays outside the package, in the checkout's ``config/`` (``CONFIG_DIR``):
the workflow config, the forensic rules, the pattern database (its own schema.json is part of
the database and hashed with it), the governor settings.  The workflow takes their paths from
its config; the library's defaults for the CLI point there.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

# The source checkout this package runs from: the user's config/ and the models/ folder live
# there (defaults for the CLI and the daemon's model roots; a run names its own paths).
REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "config"


def schema_path(name: str) -> Path:
    """The file system path of a shipped schema (Snakemake's ``validate`` wants a path).

    setuptools installs the package as plain files (also in editable mode), so the resource is
    a real file; a zipped install, where it would not be, is refused with the reason."""
    ref = resources.files(__package__).joinpath("schemas", name)
    if not isinstance(ref, Path):
        raise RuntimeError(f"voiceman's schema {name} is not a file on disk ({ref!r}): install the package unzipped")
    return ref


@cache
def package_text(*parts: str) -> str:
    """A shipped text file, by its path inside the package, exactly as stored (no newline
    translation: the case page's script is allowed by the hash of these very bytes)."""
    return resources.files(__package__).joinpath(*parts).read_bytes().decode("utf-8")


def _schema_text(name: str) -> str:
    return package_text("schemas", name)


def load_schema(name: str) -> dict[str, Any]:
    """A shipped schema, parsed (YAML for ``*.yaml``, else JSON); a fresh copy each call."""
    text = _schema_text(name)
    return yaml.safe_load(text) if name.endswith((".yaml", ".yml")) else json.loads(text)
