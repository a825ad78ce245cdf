from voiceman import analysis, atomic
from voiceman.rulekit import rule_logging

with rule_logging(snakemake):
    transcript = atomic.read_json(snakemake.input.transcript)
    hits = analysis.patterns(transcript, snakemake.config["patterns"]["language"])
    atomic.write_json(snakemake.output.hits, hits)
