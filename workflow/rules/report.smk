from voiceman.review import verdict_inputs


rule report:
    """Per-file forensic report: cross-check, explained scores, chain of custody; JSON + HTML."""
    input:
        meta=rules.ingest.output.meta,
        transcript=rules.transcribe.output.transcript,
        emotion=rules.ser.output.emotion,
        features=rules.voice.output.features,
        hits=rules.patterns.output.hits,
        forensic_rules=FORENSIC_RULES_FILE,
    output:
        report=f"{RESULTS}/report/{{file}}.json",
        html=f"{RESULTS}/report/{{file}}.html",
    log:
        f"{RESULTS}/logs/report/{{file}}.log",
    params:
        # The report records the analysis config's hash: any analysis setting change rewrites it,
        # so no report ever carries another config hash than case.json.
        config_sha256=CONFIG_SHA256,
    run:
        pipeline.report.run(RuleJob(rule, input, output, params, log, wildcards, config))


rule case_summary:
    """case.json + case.html: every recording with its status (done / failed and why) and score."""
    input:
        reports=case_reports,
        # Reviewer verdicts (voiceman review import), once there are any: an import reruns this rule.
        verdicts=lambda wildcards: verdict_inputs(RESULTS),
    output:
        case=f"{RESULTS}/case.json",
        html=f"{RESULTS}/case.html",
    log:
        f"{RESULTS}/logs/case_summary.log",
    params:
        recordings=CASE_RECORDINGS,
        entries=CASE_ENTRIES,
        config_sha256=CONFIG_SHA256,
    run:
        pipeline.case_summary.run(RuleJob(rule, input, output, params, log, wildcards, config))
