from voiceman import analysis, atomic
from voiceman.rulekit import rule_logging

with rule_logging(snakemake):
    transcript = atomic.read_json(snakemake.input.transcript)
    atomic.write_json(snakemake.output.features, analysis.voice(transcript, snakemake.config))
