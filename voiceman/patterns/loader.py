"""Read the pattern database directory: YAML files checked against schema.json.

Layout of the directory:
  manifest.yaml   version of the database and the rule macros, per language
  schema.json     JSON Schema of the manifest ($defs.manifest), pattern files and lexicons
  *.yaml          pattern files, each {"patterns": [...]}
  lexicons/*.yaml word lists (pejoratives, harm verbs, body parts, ...), each usable in the
                  rules of its language as the macro {{<name>}}

Every problem is reported as a PatternDatabaseError naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
from jsonschema.exceptions import best_match

from ..resources import CONFIG_DIR
from . import english, korean
from .compose import PHRASE_RULE, Rule, Slot
from .model import Pattern, PatternDatabaseError
from .yaml_lines import LocatedDocument, load_located_yaml

DEFAULT_DATABASE_DIR = CONFIG_DIR / "patterns"  # the checkout's; the workflow declares its own folder
MANIFEST_NAME = "manifest.yaml"
SCHEMA_NAME = "schema.json"
LEXICON_DIR = "lexicons"
_MACRO = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_MAX_MACRO_DEPTH = 8
_RULE_KEY = {"en": "regex", "ko": "morphs"}


@dataclass(frozen=True)
class Lexicon:
    name: str
    language: str
    description: str
    entries: tuple[str, ...]
    source: str  # "lexicons/<file>:<line>"

    def fragment(self) -> str:
        """The entries as one regex alternation, longest first."""
        return "|".join(sorted(self.entries, key=lambda e: (-len(e), e)))


_COMPILERS = {"en": english.compile_rule, "ko": korean.compile_rule}


class LoadedFiles:
    """What load_database read: the manifest, the pattern files, and their hash."""

    def __init__(self, version: str, patterns: list[Pattern], sha256: str, files: list[Path]):
        self.version = version
        self.patterns = patterns
        self.sha256 = sha256
        self.files = files


def read_database(directory: Path) -> LoadedFiles:
    if not directory.is_dir():
        raise PatternDatabaseError(directory, None, "pattern database directory not found")
    schema_file = directory / SCHEMA_NAME
    if not schema_file.is_file():
        schema_file = DEFAULT_DATABASE_DIR / SCHEMA_NAME
    manifest_file = directory / MANIFEST_NAME
    if not manifest_file.is_file():
        raise PatternDatabaseError(manifest_file, None, "manifest.yaml is missing")
    pattern_files = sorted(p for p in directory.glob("*.yaml") if p.name != MANIFEST_NAME)
    if not pattern_files:
        raise PatternDatabaseError(directory, None, "no pattern files (*.yaml) found")
    lexicon_files = sorted((directory / LEXICON_DIR).glob("*.yaml"))

    all_files = sorted(
        [schema_file, manifest_file, *pattern_files, *lexicon_files], key=lambda p: _relative_name(p, directory)
    )
    raw = {path: _read_bytes(path) for path in all_files}
    digest = hashlib.sha256()
    for path in all_files:  # chain of custody: bytes of every file, sorted by relative name
        digest.update(raw[path])

    schema = _load_schema(schema_file, raw[schema_file])
    manifest = load_located_yaml(manifest_file, raw[manifest_file])
    _validate(manifest, schema, "manifest")
    macros = {language: dict(table) for language, table in (manifest.data.get("macros") or {}).items()}
    for lexicon_file in lexicon_files:
        _add_lexicon(load_located_yaml(lexicon_file, raw[lexicon_file]), schema, macros)

    patterns: list[Pattern] = []
    first_seen: dict[str, str] = {}
    for path in pattern_files:
        document = load_located_yaml(path, raw[path])
        _validate(document, schema, "pattern_file")
        for index, entry in enumerate(document.data["patterns"]):
            pattern = _build_pattern(document, index, entry, macros)
            if pattern.id in first_seen:
                raise document.error(
                    ("patterns", index, "id"),
                    f"duplicate pattern id {pattern.id!r} (first defined at {first_seen[pattern.id]})",
                )
            first_seen[pattern.id] = f"{path}:{pattern.line}"
            patterns.append(pattern)
    return LoadedFiles(str(manifest.data["version"]), patterns, digest.hexdigest(), all_files)


def _relative_name(path: Path, directory: Path) -> str:
    try:
        return path.relative_to(directory).as_posix()
    except ValueError:  # the schema fallback outside the directory
        return path.name


def _add_lexicon(document: LocatedDocument, schema: dict, macros: dict) -> None:
    """A lexicon becomes the macro {{<name>}} of its language."""
    _validate(document, schema, "lexicon_file")
    data = document.data
    language, name = data["language"], data["name"]
    expected = f"{language}.{name}.yaml"
    if document.file.name != expected:
        raise document.error(("name",), f"lexicon {name!r} ({language}) must be in a file named {expected!r}")
    table = macros.setdefault(language, {})
    if name in table:
        raise document.error(("name",), f"lexicon name {name!r} is already a macro of language {language!r}")
    lexicon = Lexicon(
        name,
        language,
        data["description"],
        tuple(data["entries"]),
        f"{LEXICON_DIR}/{document.file.name}:{document.line_of(())}",
    )
    for index, entry in enumerate(lexicon.entries):
        try:
            re.compile(_MACRO.sub("x", entry))
        except re.error as exc:
            raise document.error(("entries", index), f"invalid lexicon entry regex ({exc})") from exc
    table[name] = lexicon.fragment()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PatternDatabaseError(path, None, f"cannot read file ({exc.strerror})") from exc


def _load_schema(path: Path, raw: bytes) -> dict:
    try:
        schema = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise PatternDatabaseError(path, line, f"invalid JSON schema file: {exc}") from exc
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise PatternDatabaseError(path, None, f"not a valid JSON Schema: {exc.message}") from exc
    return schema


def _validate(document: LocatedDocument, schema: dict, definition: str) -> None:
    subschema = {"$ref": f"#/$defs/{definition}", "$defs": schema.get("$defs", {})}
    validator = jsonschema.Draft202012Validator(subschema)
    errors = list(validator.iter_errors(document.data))
    if not errors:
        return
    # Report the first problem in file order; among errors on that line, the most
    # specific one (best_match prefers deep, non-combinator errors).
    first_line = min(document.line_of(e.absolute_path) for e in errors)
    error = best_match(e for e in errors if document.line_of(e.absolute_path) == first_line)
    where = _json_path(error.absolute_path)
    raise document.error(error.absolute_path, f"schema violation at {where}: {error.message}")


def _json_path(path) -> str:
    text = "$"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _build_pattern(document: LocatedDocument, index: int, entry: dict, macros: dict) -> Pattern:
    language, category, pattern_id = entry["language"], entry["category"], entry["id"]
    prefix = f"{language}.{category}."
    if not pattern_id.startswith(prefix):
        raise document.error(
            ("patterns", index, "id"),
            f"pattern id {pattern_id!r} must start with {prefix!r} (its language and category)",
        )
    rule_key = _RULE_KEY[language]
    table = macros.get(language, {})
    if "rules" in entry["match"]:
        compiled = None
        rule = json.dumps(entry["match"]["rules"], ensure_ascii=False)
        rules = tuple(
            _build_rule(document, ("patterns", index, "match", "rules", r), spec, pattern_id, language, table)
            for r, spec in enumerate(entry["match"]["rules"])
        )
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise document.error(
                ("patterns", index, "match", "rules"), f"pattern {pattern_id!r}: rule names must be unique ({names})"
            )
    else:
        rule_path = ("patterns", index, "match", rule_key)
        rule = entry["match"][rule_key]
        compiled = _compile(document, rule_path, rule, pattern_id, language, table)
        unless_source = tuple(entry.get("unless", ()))
        unless = tuple(
            _compile(document, ("patterns", index, "unless", i), veto, pattern_id, language, table)
            for i, veto in enumerate(unless_source)
        )
        rules = (
            Rule(
                f"{pattern_id}#{PHRASE_RULE}",
                PHRASE_RULE,
                (Slot(PHRASE_RULE, rule, compiled),),
                "sentence",
                unless,
                unless_source,
            ),
        )
    return Pattern(
        id=pattern_id,
        category=category,
        severity=entry["severity"],
        description=entry["description"],
        language=language,
        rule=rule,
        compiled=compiled,
        rules=rules,
        positive_examples=tuple(entry["examples"]["positive"]),
        negative_examples=tuple(entry["examples"]["negative"]),
        source_file=document.file,
        line=document.line_of(("patterns", index)),
    )


def _compile(document: LocatedDocument, path, rule: str, pattern_id: str, language: str, macros: dict) -> re.Pattern:
    expanded = _expand_macros(document, path, rule, macros)
    try:
        return _COMPILERS[language](expanded)
    except re.error as exc:
        raise document.error(path, f"pattern {pattern_id!r}: invalid rule regex ({exc})") from exc


def _build_rule(document: LocatedDocument, path, spec: dict, pattern_id: str, language: str, macros: dict) -> Rule:
    """A compositional rule: slots (in order) that must meet within one scope."""
    key = _RULE_KEY[language]
    slots = []
    for index, slot in enumerate(spec["slots"]):
        if key not in slot:
            raise document.error(
                (*path, "slots", index), f"pattern {pattern_id!r}: a {language} slot is written with {key!r}"
            )
        compiled = _compile(document, (*path, "slots", index, key), slot[key], pattern_id, language, macros)
        slots.append(Slot(slot["name"], slot[key], compiled, slot.get("max_gap")))
    names = [s.name for s in slots]
    if len(set(names)) != len(names):
        raise document.error(
            (*path, "slots"), f"pattern {pattern_id!r}: slot names must be unique within a rule ({names})"
        )
    unless_source = tuple(spec.get("unless", ()))
    unless = tuple(
        _compile(document, (*path, "unless", i), veto, pattern_id, language, macros)
        for i, veto in enumerate(unless_source)
    )
    return Rule(
        f"{pattern_id}#{spec['name']}", spec["name"], tuple(slots), spec.get("scope", "sentence"), unless, unless_source
    )


def _expand_macros(document: LocatedDocument, path, rule: str, macros: dict) -> str:
    expanded = rule
    for _ in range(_MAX_MACRO_DEPTH):
        names = _MACRO.findall(expanded)
        if not names:
            return expanded
        unknown = sorted(set(n for n in names if n not in macros))
        if unknown:
            raise document.error(
                path, f"unknown macro {{{{{unknown[0]}}}}} (defined in manifest.yaml: {sorted(macros)})"
            )
        expanded = _MACRO.sub(lambda m: "(?:" + macros[m.group(1)] + ")", expanded)
    raise document.error(path, "macros nest too deeply (a macro refers to itself?)")
