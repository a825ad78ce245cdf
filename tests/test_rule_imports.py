"""Rule jobs stay light: nothing a rule job runs may pull in torch or a model library.

Rule jobs are threads of the Snakemake process (profiles set force-use-threads), so the test
imports everything the rules run -- every module of voiceman.pipeline (the rule bodies and the
harness, found by listing the package, so a new rule module is covered too) and the modules
they import lazily -- in a fresh interpreter and lists what came with them."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import voiceman.pipeline
from voiceman.pipeline.stage_names import RULES

PIPELINE_MODULES = sorted(f"voiceman.pipeline.{m.name}" for m in pkgutil.iter_modules(voiceman.pipeline.__path__))
# What the rule bodies import lazily, and what the workflow's own hooks run in the same process.
LAZY_MODULES = [
    "voiceman.voice",
    "voiceman.patterns",
    "voiceman.patterns.language",
    "voiceman.forensic",
    "voiceman.htmlreport",
    "voiceman.review",
    "voiceman.observe.runreport",
    "voiceman.case",
    "voiceman.daemonlink.daemonctl",
]
HEAVY = {"torch", "whisperx", "transformers", "speechbrain", "ctranslate2", "pyannote", "faster_whisper"}
RULES_DIR = Path(__file__).resolve().parents[1] / "workflow" / "rules"


def test_rule_jobs_never_import_torch_or_model_libraries():
    assert {f"voiceman.pipeline.{rule}" for rule in RULES} <= set(PIPELINE_MODULES)
    code = (
        "import importlib, sys\n"
        f"for name in {PIPELINE_MODULES + LAZY_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r})\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"rule jobs import heavy model libraries: {out}"


def test_every_rule_body_is_found_by_the_rule_name():
    """Each rule's run block calls pipeline.<rule name>.run: a rule's logic lives in the module
    named like the rule, and every rule the workflow has is one of the pipeline's RULES."""
    import importlib

    found = set()
    for smk in RULES_DIR.glob("*.smk"):
        text = smk.read_text()
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", text, flags=re.S | re.M):
            assert f"pipeline.{name}.run(RuleJob(" in body, f"{smk.name}: rule {name} does not call pipeline.{name}.run"
            assert callable(importlib.import_module(f"voiceman.pipeline.{name}").run), name
            found.add(name)
    assert found == set(RULES), f"workflow rules {sorted(found)} differ from stage_names.RULES {sorted(RULES)}"
