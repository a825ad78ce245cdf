"""Tests of the crime-language pattern database (config/patterns/) and scanner."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from voiceman.patterns import (
    DEFAULT_DATABASE_DIR,
    PatternDatabaseError,
    PatternHit,
    korean,
    load_database,
    scan_cli,
)

DB = load_database()

HIT_KEYS = {"pattern_id", "category", "severity", "start", "end", "text", "context", "rule", "language"}


def _examples(kind: str):
    for pattern in DB.patterns:
        sentences = pattern.positive_examples if kind == "positive" else pattern.negative_examples
        for index, sentence in enumerate(sentences):
            yield pytest.param(pattern, sentence, id=f"{pattern.id}-{kind}-{index}")


@pytest.mark.parametrize("pattern,sentence", list(_examples("positive")))
def test_positive_example_hits_its_pattern(pattern, sentence):
    hits = [h for h in DB.scan(sentence, lang=pattern.language) if h.pattern_id == pattern.id]
    assert hits, f"{pattern.id} ({pattern.source_file.name}:{pattern.line}) missed: {sentence!r}"
    for hit in hits:
        assert hit.text == sentence[hit.start : hit.end]
        assert hit.category == pattern.category and hit.severity == pattern.severity


@pytest.mark.parametrize("pattern,sentence", list(_examples("negative")))
def test_negative_example_does_not_hit_its_pattern(pattern, sentence):
    hits = [h for h in DB.scan(sentence, lang=pattern.language) if h.pattern_id == pattern.id]
    assert not hits, f"{pattern.id} wrongly hit {sentence!r}: {[h.to_dict() for h in hits]}"


# --- the database as a whole -------------------------------------------------------


def test_database_covers_every_category_in_both_languages():
    counts: dict[tuple[str, str], int] = {}
    for pattern in DB.patterns:
        counts[(pattern.language, pattern.category)] = counts.get((pattern.language, pattern.category), 0) + 1
        assert len(pattern.positive_examples) >= 2 and len(pattern.negative_examples) >= 2
        assert 1 <= pattern.severity <= 5
        assert pattern.id.startswith(f"{pattern.language}.{pattern.category}.")
    for language in ("ko", "en"):
        for category in ("threat", "intimidation", "coercion", "gaslighting", "insult"):
            assert counts.get((language, category), 0) >= 8, (language, category)


def test_version_and_sha256_cover_the_files_bytes():
    files = (
        list(DEFAULT_DATABASE_DIR.glob("*.yaml"))
        + [DEFAULT_DATABASE_DIR / "schema.json"]
        + list(DEFAULT_DATABASE_DIR.glob("lexicons/*.yaml"))
    )
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(DEFAULT_DATABASE_DIR).as_posix()):
        digest.update(path.read_bytes())
    assert DB.sha256 == digest.hexdigest()
    assert DB.to_dict()["pattern_count"] == len(DB.patterns)


def test_sha256_changes_when_a_pattern_file_changes(tmp_path):
    copy = _copy_db(tmp_path)
    (copy / "en.insult.yaml").write_text(
        (copy / "en.insult.yaml").read_text(encoding="utf-8") + "\n# reviewed\n", encoding="utf-8"
    )
    assert load_database(copy).sha256 != DB.sha256


def test_every_schema_property_has_a_description():
    schema = json.loads((DEFAULT_DATABASE_DIR / "schema.json").read_text(encoding="utf-8"))
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    missing.append(f"{where}.{name}")
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(schema, "$")
    assert not missing


# --- hits, offsets, contexts ----------------------------------------------------------


def test_hit_to_dict_has_exactly_the_documented_keys():
    hit = DB.scan("I'll kill you.")[0]
    assert isinstance(hit, PatternHit)
    assert set(hit.to_dict()) == HIT_KEYS
    assert json.loads(json.dumps(hit.to_dict())) == hit.to_dict()


def test_english_offsets_point_into_the_original_text():
    text = "Okay.   Listen to me:  I’m  gonna   KILL you, understand?"
    hits = DB.scan(text, lang="en")
    kill = [h for h in hits if h.pattern_id == "en.threat.kill"]
    assert len(kill) == 1
    start = text.index("I’m")
    end = text.index("you,") + 3
    assert (kill[0].start, kill[0].end) == (start, end)
    assert kill[0].text == text[start:end]
    assert kill[0].context == "direct"


def test_korean_offsets_point_into_the_original_text():
    text = "😀 그래서 말인데,  너 진짜 죽여버릴 거야!! 알겠어?"
    hits = [h for h in DB.scan(text) if h.pattern_id == "ko.threat.kill"]
    assert len(hits) == 1
    hit = hits[0]
    assert text[hit.start : hit.end] == hit.text
    assert hit.start == text.index("너 진짜")
    assert hit.text.startswith("너 진짜 죽여버릴")


@pytest.mark.parametrize(
    "sentence,pattern_id",
    [
        ("I would never hurt you.", "en.threat.physical_harm"),
        ("I won't kill you.", "en.threat.kill"),
        ("I'm not going to kill you, relax.", "en.threat.kill"),
        ("I don't want to hurt you.", "en.threat.physical_harm"),
    ],
)
def test_english_negation_is_suppressed_by_default_and_marked(sentence, pattern_id):
    assert not [h for h in DB.scan(sentence) if h.pattern_id == pattern_id]
    negated = [h for h in DB.scan(sentence, include_negated=True) if h.pattern_id == pattern_id]
    assert negated and all(h.context == "negated" for h in negated)
    assert negated[0].text == sentence[negated[0].start : negated[0].end]


@pytest.mark.parametrize(
    "sentence,pattern_id",
    [
        ("He said he'd kill me.", "en.threat.kill"),
        ("She told me he would hurt me.", "en.threat.physical_harm"),
        ("My ex texted that he is going to burn your house down.", "en.threat.arson"),
    ],
)
def test_english_reported_speech_is_kept_and_marked(sentence, pattern_id):
    hits = [h for h in DB.scan(sentence) if h.pattern_id == pattern_id]
    assert hits and hits[0].context == "reported"


def test_english_first_person_restatement_stays_direct():
    hits = DB.scan("I told you I'll kill you.")
    assert [h.context for h in hits if h.pattern_id == "en.threat.kill"] == ["direct"]
    # "not kidding" denies the joke, not the threat.
    hits = DB.scan("I'm not kidding, I will kill you.")
    assert [h.context for h in hits if h.pattern_id == "en.threat.kill"] == ["direct"]


@pytest.mark.parametrize(
    "sentence,pattern_id",
    [
        ("너 안 죽여.", "ko.threat.kill"),
        ("너 죽이지 않아.", "ko.threat.kill"),
        ("죽이지 않을 거야.", "ko.threat.kill"),
        ("너 때리지 않을 거야.", "ko.threat.beat"),
        ("너 절대 안 때려.", "ko.threat.beat"),
    ],
)
def test_korean_negation_is_suppressed_by_default_and_marked(sentence, pattern_id):
    assert not [h for h in DB.scan(sentence) if h.pattern_id == pattern_id]
    negated = [h for h in DB.scan(sentence, include_negated=True) if h.pattern_id == pattern_id]
    assert negated and all(h.context == "negated" for h in negated)


@pytest.mark.parametrize(
    "sentence,pattern_id",
    [
        ("그가 나를 죽인다고 했어.", "ko.threat.kill"),
        ("걔가 너 죽여버릴 거라고 했어.", "ko.threat.kill"),
        ("걔가 너 때린대.", "ko.threat.beat"),
        ('그 사람이 "죽여버린다"라고 했어요.', "ko.threat.kill"),
    ],
)
def test_korean_reported_speech_is_kept_and_marked(sentence, pattern_id):
    hits = [h for h in DB.scan(sentence) if h.pattern_id == pattern_id]
    assert hits and hits[0].context == "reported"
    assert hits[0].text == sentence[hits[0].start : hits[0].end]


def test_korean_direct_threat_is_direct():
    hits = [h for h in DB.scan("너 죽여버릴 거야. 진심이야.") if h.pattern_id == "ko.threat.kill"]
    assert [h.context for h in hits] == ["direct"]


def test_korean_matches_survive_particles_and_endings():
    # Same lemma 죽이다 under different particles/endings; none is a substring of another.
    for sentence in ("널 죽일 거야", "너를 죽여 버리겠다", "너 죽여줄게", "당신을 죽일 테니까"):
        assert any(h.pattern_id == "ko.threat.kill" for h in DB.scan(sentence)), sentence


def test_language_selection():
    mixed = "너 죽여버릴 거야 and I will kill you"
    ids = {h.pattern_id for h in DB.scan(mixed)}
    assert {"ko.threat.kill", "en.threat.kill"} <= ids
    assert {h.pattern_id for h in DB.scan(mixed, lang="en")} == {"en.threat.kill"}
    assert {h.pattern_id for h in DB.scan(mixed, lang="ko")} == {"ko.threat.kill"}
    assert DB.scan("") == []
    with pytest.raises(ValueError):
        DB.scan("text", lang="fr")


def test_analyser_is_built_once():
    assert korean.kiwi() is korean.kiwi()


# --- malformed databases ---------------------------------------------------------------


def _copy_db(tmp_path: Path) -> Path:
    target = tmp_path / "patterns"
    shutil.copytree(DEFAULT_DATABASE_DIR, target)
    return target


GOOD_ENTRY = """\
patterns:
  - id: en.insult.test_entry
    category: insult
    severity: 2
    description: A test entry.
    language: en
    match:
      regex: "you dolt"
    examples:
      positive: ["you dolt", "Hey you dolt!"]
      negative: ["a dolt", "you do"]
"""


def _error_for(tmp_path: Path, name: str, content: str) -> PatternDatabaseError:
    directory = _copy_db(tmp_path)
    (directory / name).write_text(content, encoding="utf-8")
    with pytest.raises(PatternDatabaseError) as caught:
        load_database(directory)
    return caught.value


def test_valid_extra_file_loads(tmp_path):
    directory = _copy_db(tmp_path)
    (directory / "zz.extra.yaml").write_text(GOOD_ENTRY, encoding="utf-8")
    database = load_database(directory)
    assert [h.pattern_id for h in database.scan("shut it, you dolt")] == ["en.insult.test_entry"]


def test_bad_yaml_names_file_and_line(tmp_path):
    broken = GOOD_ENTRY.replace("    severity: 2\n", "    severity: [2\n")
    error = _error_for(tmp_path, "zz.extra.yaml", broken)
    assert error.file.name == "zz.extra.yaml"
    assert error.line in (5, 6)
    assert "zz.extra.yaml:" in str(error) and "invalid YAML" in str(error)


def test_schema_violation_names_file_and_line_of_the_node(tmp_path):
    error = _error_for(tmp_path, "zz.extra.yaml", GOOD_ENTRY.replace("severity: 2", "severity: 7"))
    assert (error.file.name, error.line) == ("zz.extra.yaml", 4)
    assert "severity" in str(error) and "zz.extra.yaml:4" in str(error)


def test_missing_required_property_names_the_pattern_line(tmp_path):
    error = _error_for(tmp_path, "zz.extra.yaml", GOOD_ENTRY.replace("    description: A test entry.\n", ""))
    assert (error.file.name, error.line) == ("zz.extra.yaml", 2)
    assert "description" in str(error)


def test_rule_key_must_match_language(tmp_path):
    error = _error_for(tmp_path, "zz.extra.yaml", GOOD_ENTRY.replace("regex:", "morphs:"))
    assert error.file.name == "zz.extra.yaml" and error.line == 7
    assert "regex" in str(error)


def test_duplicate_id_names_second_file_and_line(tmp_path):
    entry = GOOD_ENTRY.replace("en.insult.test_entry", "en.threat.kill").replace("category: insult", "category: threat")
    error = _error_for(tmp_path, "zz.extra.yaml", entry)
    assert (error.file.name, error.line) == ("zz.extra.yaml", 2)
    assert "duplicate pattern id 'en.threat.kill'" in str(error)
    assert "en.threat.yaml" in str(error)  # where it was first defined


def test_duplicate_key_names_file_and_line(tmp_path):
    entry = GOOD_ENTRY.replace("    severity: 2\n", "    severity: 2\n    severity: 3\n")
    error = _error_for(tmp_path, "zz.extra.yaml", entry)
    assert (error.file.name, error.line) == ("zz.extra.yaml", 5)
    assert "duplicate key 'severity'" in str(error)


def test_bad_regex_and_unknown_macro_name_file_and_line(tmp_path):
    error = _error_for(tmp_path, "zz.extra.yaml", GOOD_ENTRY.replace("you dolt", "you (dolt"))
    assert (error.file.name, error.line) == ("zz.extra.yaml", 8)
    assert "invalid rule regex" in str(error)
    error = _error_for(tmp_path / "b", "zz.extra.yaml", GOOD_ENTRY.replace('"you dolt"', '"{{nosuch}} dolt"'))
    assert (error.file.name, error.line) == ("zz.extra.yaml", 8)
    assert "unknown macro {{nosuch}}" in str(error)


def test_id_must_carry_language_and_category(tmp_path):
    error = _error_for(tmp_path, "zz.extra.yaml", GOOD_ENTRY.replace("en.insult.test_entry", "en.threat.test_entry"))
    assert (error.file.name, error.line) == ("zz.extra.yaml", 2)


def test_bad_manifest_version_names_manifest(tmp_path):
    directory = _copy_db(tmp_path)
    manifest = directory / "manifest.yaml"
    manifest.write_text(
        manifest.read_text(encoding="utf-8").replace(f'version: "{DB.version}"', 'version: "one"'), encoding="utf-8"
    )
    with pytest.raises(PatternDatabaseError) as caught:
        load_database(directory)
    assert caught.value.file.name == "manifest.yaml" and caught.value.line == 3


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(PatternDatabaseError, match="not found"):
        load_database(tmp_path / "nope")


# --- command line -------------------------------------------------------------------------


def test_cli_scans_a_file(tmp_path, capsys):
    text = "I'll kill you.\n나는 절대 너 안 때려.\n걔가 너 죽인다고 했어.\n"
    source = tmp_path / "transcript.txt"
    source.write_text(text, encoding="utf-8")
    assert scan_cli.main([str(source)]) == 0
    lines = capsys.readouterr().out.splitlines()
    hits = [json.loads(line) for line in lines]
    assert all(set(h) == HIT_KEYS for h in hits)
    assert all(text[h["start"] : h["end"]] == h["text"] for h in hits)
    assert [(h["pattern_id"], h["context"]) for h in hits] == [
        ("en.threat.kill", "direct"),
        ("ko.threat.kill", "reported"),
    ]
    assert "죽인다" in lines[1]  # ensure_ascii=False keeps Hangul readable

    assert scan_cli.main(["--all", "--lang", "ko", str(source)]) == 0
    contexts = [json.loads(line)["context"] for line in capsys.readouterr().out.splitlines()]
    assert contexts == ["negated", "reported"]


def test_cli_reads_stdin(monkeypatch, capsys):
    stdin = io.TextIOWrapper(io.BytesIO(b"You're worthless."), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert scan_cli.main(["--lang", "en", "-"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["pattern_id"] for h in hits] == ["en.insult.worthless"]


def test_cli_missing_file_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "no-such-file.txt"
    assert scan_cli.main([str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(missing) in captured.err and len(captured.err.strip().splitlines()) == 1


def test_cli_bad_arguments_exit_2(capsys):
    assert scan_cli.main(["--lang", "fr", "x.txt"]) == 2
    assert "voiceman patterns scan" in capsys.readouterr().err
