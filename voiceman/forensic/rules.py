"""Loading and validating the forensic rules file (config/forensic.yaml).

The rules are data: thresholds for the cross-check, weights for the score and the
aggregation formula. They are validated against voiceman/schemas/forensic.schema.json
so a typo in a threshold fails loudly, naming the file, instead of silently scoring
with a default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from voiceman.hashing import sha256_json
from voiceman.resources import CONFIG_DIR, load_schema, schema_path
from voiceman.yamlfile import read_mapping

DEFAULT_RULES_PATH = CONFIG_DIR / "forensic.yaml"  # the checkout's; a run names its own (forensic_rules)
RULES_SCHEMA_NAME = "forensic.schema.json"
RULES_SCHEMA_PATH = schema_path(RULES_SCHEMA_NAME)


class ForensicConfigError(ValueError):
    """The forensic rules file is missing, unreadable or does not match its schema."""


def _load_json_schema() -> dict[str, Any]:
    try:
        return load_schema(RULES_SCHEMA_NAME)
    except (OSError, json.JSONDecodeError) as exc:
        raise ForensicConfigError(f"{RULES_SCHEMA_PATH}: cannot read JSON schema: {exc}") from exc


def _error_location(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return "/".join(parts) if parts else "(top level)"


def validate_forensic_rules(rules: dict[str, Any], source: str = "<forensic rules>") -> dict[str, Any]:
    """Check `rules` against the schema and the cross-field constraints; return it unchanged."""
    schema = _load_json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(rules), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  at {_error_location(e)}: {e.message}" for e in errors[:10]]
        raise ForensicConfigError(f"{source}: does not match {RULES_SCHEMA_PATH.name}:\n" + "\n".join(lines))
    # Constraints a JSON schema cannot express between sibling values.
    check = rules["crosscheck"]
    if check["calm_arousal"] >= check["high_arousal"]:
        raise ForensicConfigError(
            f"{source}: crosscheck.calm_arousal ({check['calm_arousal']}) must be below "
            f"crosscheck.high_arousal ({check['high_arousal']})"
        )
    if check["strong_negative_valence"] > check["negative_valence"]:
        raise ForensicConfigError(
            f"{source}: crosscheck.strong_negative_valence ({check['strong_negative_valence']}) "
            f"must not exceed crosscheck.negative_valence ({check['negative_valence']})"
        )
    voice = rules["scoring"]["voice"]
    if voice["z_cap"] < voice["z_floor"]:
        raise ForensicConfigError(
            f"{source}: scoring.voice.z_cap ({voice['z_cap']}) must not be below "
            f"scoring.voice.z_floor ({voice['z_floor']})"
        )
    return rules


def load_forensic_config(path: str | Path | None = None) -> dict[str, Any]:
    """Read and validate the forensic rules YAML (default: config/forensic.yaml)."""
    rules_path = Path(path) if path is not None else DEFAULT_RULES_PATH
    rules = read_mapping(rules_path, "forensic rules", ForensicConfigError)
    return validate_forensic_rules(rules, source=str(rules_path))


def rules_sha256(rules: dict[str, Any]) -> str:
    """SHA-256 of the rules as canonical JSON, so a report names the exact rules it used."""
    return sha256_json(rules)


def resolve_rules(rules: dict[str, Any] | None) -> dict[str, Any]:
    """`rules` as given, or the default rules file when None."""
    return load_forensic_config() if rules is None else rules
