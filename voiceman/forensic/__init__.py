"""Forensic layer: text–voice cross-validation, explained scores and the per-file report.

Pure functions over plain dicts; rules, thresholds and weights come from
config/forensic.yaml (validated against voiceman/schemas/forensic.schema.json).
"""

from voiceman.forensic.cross_validation import CrossCheck, StressedFeature, crosscheck, directed_stress_z
from voiceman.forensic.report import (
    REPORT_SCHEMA_PATH,
    ReportValidationError,
    analyse_segment,
    assemble_file_report,
    validate_report,
)
from voiceman.forensic.rules import (
    DEFAULT_RULES_PATH,
    RULES_SCHEMA_PATH,
    ForensicConfigError,
    load_forensic_config,
    rules_sha256,
    validate_forensic_rules,
)
from voiceman.forensic.scoring import Evidence, Score, score_file, score_segment, score_speakers

__all__ = [
    "CrossCheck",
    "StressedFeature",
    "crosscheck",
    "directed_stress_z",
    "REPORT_SCHEMA_PATH",
    "ReportValidationError",
    "analyse_segment",
    "assemble_file_report",
    "validate_report",
    "DEFAULT_RULES_PATH",
    "RULES_SCHEMA_PATH",
    "ForensicConfigError",
    "load_forensic_config",
    "rules_sha256",
    "validate_forensic_rules",
    "Evidence",
    "Score",
    "score_file",
    "score_segment",
    "score_speakers",
]
