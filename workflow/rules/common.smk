# Shared helpers: config validation, the case's file list, daemon start/stop hooks.
import re
from pathlib import Path

from snakemake.utils import validate

from voiceman import case as vm_case
from voiceman import daemonctl
from voiceman.hashing import sha256_json


validate(config, "../schemas/config.schema.yaml")

RESULTS = config["results_dir"].rstrip("/")
CASE_DIR = config["case_dir"].rstrip("/")
CASE_FILES, IGNORED_FILES = vm_case.discover(CASE_DIR, config["audio_extensions"])
CONFIG_SHA256 = sha256_json(config)
# The pattern database is an input of the patterns rule: editing it re-scans every file.
PATTERN_DB_FILES = sorted(str(p) for p in Path(workflow.basedir, "config", "patterns").glob("*.*"))


wildcard_constraints:
    file="|".join(re.escape(name) for name in CASE_FILES) or "(?!)",


def evidence(wildcards):
    """The original recording (read-only input) of one file."""
    return f"{CASE_DIR}/{wildcards.file}"


def per_file(stage, ext="json"):
    """All per-file outputs of a stage, e.g. results/report/{file}.json for every file."""
    return expand(f"{RESULTS}/{stage}/{{file}}.{ext}", file=CASE_FILES)


def daemon_up():
    """Find the daemon, or start one for this run (it is stopped again by daemon_down)."""
    logger.info(daemonctl.ensure_for_workflow(config, Path(RESULTS)))


def daemon_down():
    """Save the daemon's stats beside the results; stop the daemon only if this run started it."""
    logger.info(daemonctl.release_for_workflow(config, Path(RESULTS)))
