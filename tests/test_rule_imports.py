"""Rule jobs stay light: nothing a rule script imports may pull in torch or a model library."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


def test_rule_scripts_never_import_torch_or_model_libraries():
    modules = set()
    for script in SCRIPTS.glob("*.py"):
        for line in script.read_text().splitlines():
            m = re.match(r"\s*(?:from\s+(\S+)\s+import\s+(.+)|import\s+(\S+))", line)
            if m and m.group(1):
                modules.add(m.group(1))
                modules.update(f"{m.group(1)}.{n.strip()}" for n in m.group(2).split(",") if m.group(1) == "voiceman")
            elif m:
                modules.add(m.group(3))
    # What the scripts call at run time is imported lazily: import those modules too.
    modules |= {"voiceman.voice", "voiceman.patterns", "voiceman.forensic", "voiceman.htmlreport"}
    code = ("import importlib, sys\n"
            f"for name in {sorted(modules)!r}:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except ModuleNotFoundError:\n        pass  # a name imported from a module, not a module\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'torch', 'whisperx', 'transformers', 'speechbrain', 'ctranslate2', 'pyannote', 'faster_whisper'})\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"rule scripts import heavy model libraries: {out}"
