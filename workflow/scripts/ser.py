from voiceman import analysis, atomic, daemonctl
from voiceman.rulekit import rule_logging

with rule_logging(snakemake):
    client = daemonctl.client_for(snakemake.config)
    transcript = atomic.read_json(snakemake.input.transcript)
    deadline = float(snakemake.config["daemon"]["request_deadline_s"])
    atomic.write_json(snakemake.output.emotion, analysis.emotion(client, transcript, snakemake.config, deadline))
