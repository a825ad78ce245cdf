"""The pipeline's stages, defined once: their names, their order, what each waits for, and
which of them the daemon runs.  The workflow (``workflow/rules/*.smk``) declares the same DAG
through its inputs; the dashboard, the run report, the benchmark and the daemon's scheduler
read it from here.  Imports nothing, so the daemon can read it without pulling in the rules.
"""

from __future__ import annotations

# The per-file rules in DAG order (results/<stage>/<file key>.json each).
FILE_STAGES = ("ingest", "transcribe", "ser", "voice", "patterns", "report")
# The rule that joins every file's report into case.json / case.html.
CASE_RULE = "case_summary"
RULES = FILE_STAGES + (CASE_RULE,)

# What each per-file stage reads (its inputs' stages); ingest reads the evidence itself.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "ingest": (),
    "transcribe": ("ingest",),
    "ser": ("transcribe",),
    "voice": ("transcribe",),
    "patterns": ("transcribe",),
    "report": ("ingest", "transcribe", "ser", "voice", "patterns"),
}

# The stages the daemon runs: rule name (= the daemon request type) -> the daemon's own
# stage name (its governor's batch-size and stats keys).
DAEMON_STAGES: dict[str, str] = {"transcribe": "asr", "ser": "ser"}
