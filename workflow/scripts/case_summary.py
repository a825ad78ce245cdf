from pathlib import Path

import voiceman
from voiceman import atomic, case
from voiceman.htmlreport import render_case_report
from voiceman.rulekit import rule_logging

with rule_logging(snakemake):
    paths = dict(zip(snakemake.params.names, snakemake.input.reports))
    reports = {name: atomic.read_json(path) for name, path in paths.items()}
    summary = case.summarize(reports, paths, snakemake.params.ignored, snakemake.config["case_dir"],
                             snakemake.params.config_sha256, voiceman.__version__)
    atomic.write_json(snakemake.output.case, summary)
    page = case.with_links_from(summary, Path(snakemake.output.html).parent)
    atomic.write_text(snakemake.output.html, render_case_report(page))
