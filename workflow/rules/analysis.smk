rule ser:
    """Speech emotion per segment (dimensional + categorical) by the daemon's resident SER models."""
    input:
        transcript=rules.transcribe.output.transcript,
    output:
        emotion=f"{RESULTS}/ser/{{file}}.json",
    params:
        settings=settings_for(config, "ser"),
    log:
        f"{RESULTS}/logs/ser/{{file}}.log",
    resources:
        daemon_slots=1,
    run:
        pipeline.ser.run(RuleJob(rule, input, output, params, log, wildcards, config))


rule voice:
    """Voice-stress features per segment (Praat definitions), speaker baselines and z-scores (CPU)."""
    input:
        transcript=rules.transcribe.output.transcript,
    output:
        features=f"{RESULTS}/voice/{{file}}.json",
    params:
        settings=settings_for(config, "voice"),
    log:
        f"{RESULTS}/logs/voice/{{file}}.log",
    run:
        pipeline.voice.run(RuleJob(rule, input, output, params, log, wildcards, config))


rule patterns:
    """Crime-language pattern hits in each segment's text (pattern database in config/patterns/)."""
    input:
        transcript=rules.transcribe.output.transcript,
        database=PATTERN_DB_FILES,
    output:
        hits=f"{RESULTS}/patterns/{{file}}.json",
    params:
        settings=settings_for(config, "patterns"),
    log:
        f"{RESULTS}/logs/patterns/{{file}}.log",
    run:
        pipeline.patterns.run(RuleJob(rule, input, output, params, log, wildcards, config))
