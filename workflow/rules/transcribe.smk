rule transcribe:
    """Speech to text with word times, done by the daemon's resident ASR model."""
    input:
        meta=rules.ingest.output.meta,
    output:
        transcript=f"{RESULTS}/transcribe/{{file}}.json",
    log:
        f"{RESULTS}/logs/transcribe/{{file}}.log",
    # The job only waits on the daemon: it takes no local core, so every recording's request
    # can be in flight at once and the daemon batches them across files (daemon_slots bounds it).
    threads: 0
    resources:
        daemon_slots=1,
    params:
        settings=settings_for(config, "transcribe"),
    run:
        pipeline.transcribe.run(RuleJob(rule, input, output, params, log, wildcards, config))
