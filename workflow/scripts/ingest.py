from voiceman import atomic, stages
from voiceman.rulekit import rule_logging

with rule_logging(snakemake):
    atomic.write_json(snakemake.output.meta, stages.ingest(snakemake.input.audio))
