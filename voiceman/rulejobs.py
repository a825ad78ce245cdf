"""The body of every rule, found by the rule's name: read the inputs, build the request, call
the library, write the outputs.  ``workflow/rules/*.smk`` call these from their ``run:`` blocks.

Each body reads the settings its rule declares (``job.settings``, from ``params:``), so a
changed setting reruns exactly the stages it affects.  Nothing here imports torch or a model library: GPU work goes to the daemon.  The rules that
talk to the daemon take an optional client, so the in-process benchmark can hand them one that
drives the daemon core directly (same code, no socket).
"""
from __future__ import annotations

import os
from pathlib import Path

import voiceman

from . import analysis, atomic, case, stages
from .daemonlink import daemonctl
from .daemonlink.client import DaemonClient
from .rulekit import RuleJob, job_logging

# The per-file rules in DAG order (the benchmark's in-process loop runs them in this order).
FILE_RULES = ("ingest", "transcribe", "ser", "voice", "patterns", "report")
DAEMON_RULES = ("transcribe", "ser")  # the rules that take a daemon client


def _deadline_s(job: RuleJob) -> float:
    return float(job.config["daemon"]["request_deadline_s"])


def ingest(job: RuleJob) -> None:
    from .ledger import Ledger

    with job_logging(job):
        # The evidence's own name (the input may be results/custody/evidence/<key>, a link to a
        # file whose name cannot be an output path); its first-seen hash is kept in the ledger.
        name, path = case.evidence_name(job.input.audio)
        atomic.write_json(job.output.meta, stages.ingest(path, name=name, key=job.wildcards.file,
                                                         ledger=Ledger(job.config["results_dir"])))


def transcribe(job: RuleJob, client: DaemonClient | None = None) -> None:
    with job_logging(job):
        client = client or daemonctl.client_for_job(job.config)  # daemon.per_node: this node's daemon
        meta = atomic.read_json(job.input.meta)
        result = stages.transcribe(client, meta, stages.asr_request(job.settings), _deadline_s(job))
        atomic.write_json(job.output.transcript, result)
        daemonctl.job_done(job.config, client)  # daemon.per_node: keep the node daemon's stats


def ser(job: RuleJob, client: DaemonClient | None = None) -> None:
    with job_logging(job):
        client = client or daemonctl.client_for_job(job.config)
        transcript = atomic.read_json(job.input.transcript)
        atomic.write_json(job.output.emotion, analysis.emotion(client, transcript, job.settings, _deadline_s(job)))
        daemonctl.job_done(job.config, client)


def voice(job: RuleJob) -> None:
    with job_logging(job):
        transcript = atomic.read_json(job.input.transcript)
        atomic.write_json(job.output.features, analysis.voice(transcript, job.settings))


def patterns(job: RuleJob) -> None:
    with job_logging(job):
        transcript = atomic.read_json(job.input.transcript)
        database = os.path.commonpath(list(job.input.database))  # the folder the rule declares
        atomic.write_json(job.output.hits, analysis.patterns(transcript, job.settings["patterns"]["language"],
                                                             database=database))


def report(job: RuleJob) -> None:
    from .htmlreport import render_file_report

    with job_logging(job):
        parts = {name: atomic.read_json(job.input[name])
                 for name in ("meta", "transcript", "emotion", "features", "hits")}
        result = analysis.build_report(parts["meta"], parts["transcript"], parts["emotion"], parts["features"],
                                       parts["hits"], job.config)
        atomic.write_json(job.output.report, result)
        # Play controls link the evidence relative to the page; the codec says whether a browser can play it.
        atomic.write_text(job.output.html, render_file_report(result, page_dir=Path(job.output.html).parent,
                                                              audio=parts["meta"].get("audio")))


def case_summary(job: RuleJob) -> None:
    from . import review
    from .htmlreport import render_case_report

    with job_logging(job) as log:
        recordings = list(job.params.recordings)  # [{key, name, kind}], in the order of the reports
        paths = dict(zip([r["key"] for r in recordings], job.input.reports))
        reports = {key: atomic.read_json(path) for key, path in paths.items()}
        summary = case.summarize(reports, paths, list(job.params.entries), job.config["case_dir"],
                                 job.params.config_sha256, voiceman.__version__, recordings=recordings)
        # The findings queue and the reviewer verdicts (results/review/, an input once imported:
        # an import reruns this job); each verdict attaches only to the report hash it was made on.
        results = job.config["results_dir"]
        findings = review.case_findings(reports, paths, {r["key"]: r["name"] for r in recordings},
                                        {key: review.ingest_codec(results, key) for key in paths})
        try:
            state, error = review.load_state(results), None
        except review.ReviewError as exc:
            log.error("%s", exc)
            state, error = review.empty_state(), str(exc)
        findings, stale = review.attach(findings, state)
        summary["review"] = {**review.counts(findings, stale, state, results), **({"error": error} if error else {})}
        atomic.write_json(job.output.case, summary)
        page_dir = Path(job.output.html).parent
        page = case.with_links_from(summary, page_dir)
        atomic.write_text(job.output.html, render_case_report(page, findings, stale, page_dir))
