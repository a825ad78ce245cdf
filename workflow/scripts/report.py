from voiceman import atomic, stages
from voiceman.rulekit import rule_logging

with rule_logging(snakemake):
    meta = atomic.read_json(snakemake.input.meta)
    transcript = atomic.read_json(snakemake.input.transcript)
    atomic.write_json(snakemake.output.report, stages.build_report(meta, transcript, snakemake.config))
