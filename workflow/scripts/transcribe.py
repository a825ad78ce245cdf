from voiceman import atomic, daemonctl, stages
from voiceman.rulekit import rule_logging

with rule_logging(snakemake):
    client = daemonctl.client_for(snakemake.config)
    request = stages.asr_request(snakemake.config)
    meta = atomic.read_json(snakemake.input.meta)
    deadline = float(snakemake.config["daemon"]["request_deadline_s"])
    atomic.write_json(snakemake.output.transcript, stages.transcribe(client, meta, request, deadline))
