# voiceman: forensic speech analysis of a case folder.
#   snakemake --profile profiles/local                   (CPU laptop / CI)
#   snakemake --profile edgexpert                        (the GB10 box; named profile linked at set-up)
# Settings: config/config.yaml (schema: voiceman/schemas/config.schema.yaml).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/transcribe.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        case=f"{RESULTS}/case.json",
        html=f"{RESULTS}/case.html",


onstart:
    daemon_up()


onsuccess:
    daemon_down("success")


onerror:
    daemon_down("error")
