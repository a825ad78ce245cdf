rule transcribe:
    """Speech to text with word times, done by the daemon's resident ASR model."""
    input:
        meta=rules.ingest.output.meta,
    output:
        transcript=f"{RESULTS}/transcribe/{{file}}.json",
    params:
        settings=settings_for(config, "transcribe"),
    log:
        f"{RESULTS}/logs/transcribe/{{file}}.log",
    resources:
        daemon_slots=1,
    run:
        pipeline.transcribe.run(RuleJob(rule, input, output, params, log, wildcards, config))
