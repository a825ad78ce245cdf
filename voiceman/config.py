"""Loading and validating the workflow configuration outside Snakemake (CLI, daemon).

Inside the workflow, ``common.smk`` validates with Snakemake's ``validate`` against the
same schema; both fill in the schema's defaults, so every consumer sees the same values.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema

from .resources import CONFIG_DIR, load_schema
from .yamlfile import read_mapping

SCHEMA_NAME = "config.schema.yaml"  # shipped in voiceman/schemas/ (voiceman.resources)
DEFAULT_CONFIG = CONFIG_DIR / "config.yaml"


class ConfigError(ValueError):
    """The configuration is unreadable or breaks the schema; the message names file and key."""


def _with_defaults(validator_cls):
    """A validator that fills schema defaults into the instance (Snakemake does the same)."""
    validate_properties = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


def validate(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    schema = load_schema(SCHEMA_NAME)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors]
        raise ConfigError(f"{source} is invalid (schema {SCHEMA_NAME}):\n" + "\n".join(lines))
    return config


def deep_update(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    path = Path(path) if path else DEFAULT_CONFIG
    config = read_mapping(path, "config", ConfigError)
    deep_update(config, overrides or {})
    return validate(config, source=str(path))


MODEL_KINDS = ("asr", "ser_dimensional", "ser_categorical")


def model_options(config: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """A model section with a relative local path made absolute (the daemon may run from
    another working directory than the rule jobs); None when the model is not configured."""
    section = dict(config["models"].get(kind) or {})
    if not section.get("id"):
        return None
    if Path(section["id"]).is_dir():
        section["id"] = str(Path(section["id"]).resolve())
    return section


def model_request(config: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """What a rule names in its request: the model id/revision it expects the daemon to hold."""
    section = model_options(config, kind)
    return {"id": section["id"], "revision": section.get("revision")} if section else None
