rule ingest:
    """Hash the original recording, decode it (proves it is readable), record its format."""
    input:
        audio=evidence,
    output:
        meta=f"{RESULTS}/ingest/{{file}}.json",
    log:
        f"{RESULTS}/logs/ingest/{{file}}.log",
    run:
        pipeline.ingest.run(RuleJob(rule, input, output, params, log, wildcards, config))
