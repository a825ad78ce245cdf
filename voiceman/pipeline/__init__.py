"""The workflow's rules, one module per Snakemake rule, named exactly like the rule
(``workflow/rules/*.smk``): ``voiceman.pipeline.<rule>`` holds that rule's logic and its job
body ``run(job)``, which the rule's ``run:`` block calls.

Shared by the rules: ``jobkit`` (the job harness: RuleJob, the settings a rule declares, the
job's log and timing events), ``job_events`` (the events file the run report reads),
``failures`` (the failure records passed downstream), ``daemon_call`` (one daemon request
and what its failure means) and ``stage_names`` (the stages, their order and the DAG).

The rule modules are imported on first use (``pipeline.ingest``), not here, so that reading
``stage_names`` (the daemon does) does not import every rule.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .stage_names import RULES


def __getattr__(name: str) -> ModuleType:
    if name in RULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def import_rules() -> None:
    """Import every rule's module now (the workflow does, when it reads the Snakefile), so an
    import error stops the run before any job starts."""
    for name in RULES:
        importlib.import_module(f"{__name__}.{name}")
