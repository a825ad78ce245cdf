from voiceman import analysis, atomic
from voiceman.htmlreport import render_file_report
from voiceman.rulekit import rule_logging

with rule_logging(snakemake):
    parts = {name: atomic.read_json(path) for name, path in snakemake.input.items()}
    report = analysis.build_report(parts["meta"], parts["transcript"], parts["emotion"], parts["features"],
                                   parts["hits"], snakemake.config)
    atomic.write_json(snakemake.output.report, report)
    atomic.write_text(snakemake.output.html, render_file_report(report))
