# Shared helpers: config validation, the case folder's inventory, daemon start/stop hooks.
import re
import time
from pathlib import Path

from snakemake.utils import validate

from voiceman import case as vm_case
from voiceman import pipeline
from voiceman.daemonlink import daemonctl
from voiceman.patterns import database_files
from voiceman.pipeline.jobkit import RuleJob, settings_for
from voiceman.hashing import config_sha256
from voiceman.resources import schema_path

# Every rule's run: block calls pipeline.<rule>.run; import them all now, so an import error
# stops the run before any job starts.
pipeline.import_rules()

validate(config, str(schema_path("config.schema.yaml")))

RESULTS = config["results_dir"].rstrip("/")
CASE_DIR = config["case_dir"].rstrip("/")
if "{" in RESULTS or "}" in RESULTS:
    raise ValueError(
        f"results_dir '{RESULTS}' contains '{{' or '}}', which Snakemake reads as wildcards: "
        "choose a results folder without braces"
    )
# Every entry of the case folder: the recordings (each filed under a key, the file name unless
# the name cannot be an output path -- see voiceman/case.py), and everything else with its
# status (failed / ignored) and reason, for case.json.
# A case folder that is missing (or not a folder) does not stop the parse: `snakemake --lint`
# needs no case.  It is an empty inventory here, and the case summary's input function
# (case_reports) raises the error, so a run or dry run still stops, naming the folder.
try:
    CASE = vm_case.inventory(CASE_DIR, config["audio_extensions"], results_dir=RESULTS)
    CASE_ERROR = None
except vm_case.CaseError as exc:
    CASE, CASE_ERROR = vm_case.Inventory(case_dir=Path(CASE_DIR)), exc
CASE_KEYS = CASE.keys
CASE_FILES = CASE_KEYS  # the {file} wildcard's values
CASE_RECORDINGS = CASE.recording_records()  # [{key, name, kind}]
CASE_ENTRIES = CASE.entries  # every entry that is not analysed, with status and reason
EVIDENCE = vm_case.evidence_inputs(CASE, RESULTS)  # {key: the case file, or results/custody/evidence/<key>}
# The analysis settings' hash (not output locations, transport or limits: voiceman/hashing.py).
CONFIG_SHA256 = config_sha256(config)
# The pattern database (patterns, lexicons, schema; not its evaluation set) is an input of the
# patterns rule, and the folder it scans with: editing it re-scans every file.
PATTERN_DB_FILES = database_files(Path(workflow.basedir, "config", "patterns"))
# Cross-check rules, thresholds and score weights: an input of the report rule.
FORENSIC_RULES_FILE = config.get("forensic_rules") or str(Path(workflow.basedir, "config", "forensic.yaml"))


wildcard_constraints:
    file="|".join(re.escape(key) for key in CASE_KEYS) or "(?!)",


def evidence(wildcards):
    """The original recording (read-only input) of one file."""
    return EVIDENCE[wildcards.file]


def per_file(stage, ext="json"):
    """All per-file outputs of a stage, e.g. results/report/{file}.json for every file."""
    return expand(f"{RESULTS}/{stage}/{{file}}.{ext}", file=CASE_KEYS)


def case_reports(wildcards):
    """Every recording's report (the case summary's input); the case folder's error, if any."""
    if CASE_ERROR is not None:
        raise CASE_ERROR
    return per_file("report")


def daemon_up():
    """Record the run start (the run report's window), then find the daemon or start one for
    this run (it is stopped again by daemon_down)."""
    from voiceman.observe import runreport

    runreport.record_run_start(RESULTS, config)
    logger.info(daemonctl.ensure_for_workflow(config, Path(RESULTS)))


def daemon_down(status=None):
    """Save the daemon's stats beside the results, stop the daemon only if this run started it,
    then write results/run_report.json + .html (E5) -- after the stats, on success and on error.
    status: "success" / "error"; None = success when case.json was written in this run."""
    from voiceman.observe import runreport

    try:
        logger.info(daemonctl.release_for_workflow(config, Path(RESULTS)))
    finally:
        try:
            # The run ends now, after the daemon has stopped: the report's wall time is the real one.
            json_path, html_path = runreport.write_run_report(RESULTS, status, now=time.time())
            logger.info(f"run report: {json_path}, {html_path}")
        except Exception as exc:  # a report problem must not hide the run's own outcome
            logger.error(f"run report could not be written: {type(exc).__name__}: {exc}")
