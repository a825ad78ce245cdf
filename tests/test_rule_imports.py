"""Rule jobs stay light: nothing a rule job runs may pull in torch or a model library.

Rule jobs are threads of the Snakemake process (profiles set force-use-threads), so the test
imports everything the rules run -- the rule bodies and the modules they import lazily -- in
a fresh interpreter and lists what came with them."""
from __future__ import annotations

import subprocess
import sys

RULE_MODULES = ["voiceman.rulejobs", "voiceman.rulekit", "voiceman.voice", "voiceman.patterns",
                "voiceman.forensic", "voiceman.htmlreport", "voiceman.observe.runreport", "voiceman.case"]
HEAVY = {"torch", "whisperx", "transformers", "speechbrain", "ctranslate2", "pyannote", "faster_whisper"}


def test_rule_jobs_never_import_torch_or_model_libraries():
    code = ("import importlib, sys\n"
            f"for name in {RULE_MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r})\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"rule jobs import heavy model libraries: {out}"


def test_every_rule_body_is_found_by_the_rule_name():
    """Each rule's run block calls rulejobs.<rule name> (a rule's logic is found by its name)."""
    import re
    from pathlib import Path

    from voiceman import rulejobs

    rules_dir = Path(__file__).resolve().parents[1] / "workflow" / "rules"
    for smk in rules_dir.glob("*.smk"):
        text = smk.read_text()
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", text, flags=re.S | re.M):
            assert f"rulejobs.{name}(RuleJob(" in body, f"{smk.name}: rule {name} does not call rulejobs.{name}"
            assert callable(getattr(rulejobs, name)), name
