rule ser:
    """Speech emotion per segment (dimensional + categorical) by the daemon's resident SER models."""
    input:
        transcript=rules.transcribe.output.transcript,
    output:
        emotion=f"{RESULTS}/ser/{{file}}.json",
    log:
        f"{RESULTS}/logs/ser/{{file}}.log",
    # The job only waits on the daemon: it takes no local core, so every recording's request
    # can be in flight at once and the daemon batches them across files (daemon_slots bounds it).
    threads: 0
    resources:
        daemon_slots=1,
    params:
        settings=settings_for(config, "ser"),
    run:
        pipeline.ser.run(RuleJob(rule, input, output, params, log, wildcards, config))


rule voice:
    """Voice-stress features per segment (Praat definitions), speaker baselines and z-scores (CPU)."""
    input:
        transcript=rules.transcribe.output.transcript,
    output:
        features=f"{RESULTS}/voice/{{file}}.json",
    log:
        f"{RESULTS}/logs/voice/{{file}}.log",
    params:
        settings=settings_for(config, "voice"),
    run:
        pipeline.voice.run(RuleJob(rule, input, output, params, log, wildcards, config))


rule patterns:
    """Crime-language pattern hits in each segment's text (pattern database in config/patterns/)."""
    input:
        transcript=rules.transcribe.output.transcript,
        database=PATTERN_DB_FILES,
    output:
        hits=f"{RESULTS}/patterns/{{file}}.json",
    log:
        f"{RESULTS}/logs/patterns/{{file}}.log",
    params:
        settings=settings_for(config, "patterns"),
    run:
        pipeline.patterns.run(RuleJob(rule, input, output, params, log, wildcards, config))
