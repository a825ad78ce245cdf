rule report:
    """Per-file report with the chain of custody (input hashed again, models, config hash)."""
    input:
        meta=rules.ingest.output.meta,
        transcript=rules.transcribe.output.transcript,
    output:
        report=f"{RESULTS}/report/{{file}}.json",
    log:
        f"{RESULTS}/logs/report/{{file}}.log",
    script:
        "../scripts/report.py"


rule case_summary:
    """case.json: every recording with its status (done / failed and why)."""
    input:
        reports=per_file("report"),
    output:
        case=f"{RESULTS}/case.json",
    params:
        names=CASE_FILES,
        ignored=IGNORED_FILES,
        config_sha256=CONFIG_SHA256,
    log:
        f"{RESULTS}/logs/case_summary.log",
    script:
        "../scripts/case_summary.py"
