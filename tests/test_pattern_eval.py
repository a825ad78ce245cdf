"""The pattern database scored on its labelled evaluation set (config/patterns/eval/).

The held-out fifth was fixed before any rule was written against the set and is never used
to tune rules; these figures are deterministic (no timing, no sampling)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from voiceman.patterns import CATEGORIES, load_database
from voiceman.patterns.evaluate import DEFAULT_EVAL_DIR, evaluate, load_examples, main

TARGET_PRECISION = 0.90
TARGET_RECALL = 0.80


@pytest.fixture(scope="module")
def evaluated():
    return evaluate(load_database())


def test_eval_set_is_large_labelled_and_split():
    examples = load_examples(DEFAULT_EVAL_DIR)
    for language in ("ko", "en"):
        mine = [e for e in examples if e.language == language]
        assert len(mine) >= 300
        labels = Counter(c for e in mine for c in e.labels)
        assert all(labels[c] >= 30 for c in CATEGORIES), labels
        kinds = Counter(e.kind for e in mine if not e.labels)
        assert {"idiom", "lookalike", "address", "reported", "third_party", "negated"} <= set(kinds)
        held = [e for e in mine if e.split == "heldout"]
        assert 0.18 <= len(held) / len(mine) <= 0.22
        # stratified: every category and every kind of hard negative is in the held-out part
        assert {c for e in held for c in e.labels} == set(CATEGORIES)
        assert {e.kind for e in held if not e.labels} == set(kinds)
    texts = [e.text for e in examples]
    assert len(texts) == len(set(texts))


def test_database_examples_are_not_in_the_eval_set():
    database = load_database()
    listed = {s for p in database.patterns for s in p.positive_examples + p.negative_examples}
    assert not listed & {e.text for e in load_examples(DEFAULT_EVAL_DIR)}


def test_heldout_meets_the_target(evaluated):
    figures, _ = evaluated
    overall = figures["heldout"]["overall"]
    assert overall["precision"] >= TARGET_PRECISION, figures["heldout"]
    assert overall["recall"] >= TARGET_RECALL, figures["heldout"]


def test_every_direct_hit_carries_its_rule(evaluated):
    _, outcomes = evaluated
    hits = [h for o in outcomes for h in o.hits]
    assert hits
    for hit in hits:
        rule = hit["rule"]
        assert rule["id"].startswith(hit["pattern_id"] + "#")
        assert rule["slots"]
        for slot in rule["slots"]:
            assert hit["start"] <= slot["start"] < slot["end"] <= hit["end"]
            assert slot["name"] and slot["text"]
    composed = [h for h in hits if not h["rule"]["id"].endswith("#phrase")]
    assert composed and any(len(h["rule"]["slots"]) >= 2 for h in composed)


def test_reported_speech_and_third_party_harm_are_not_direct(evaluated):
    _, outcomes = evaluated
    for outcome in outcomes:
        if outcome.example.kind in ("reported", "third_party") and outcome.example.split == "dev":
            assert not outcome.predicted, (outcome.example.text, outcome.hits)


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "heldout" in printed and "dev" in printed
    figures = json.loads(out.read_text(encoding="utf-8"))
    for split in ("dev", "heldout"):
        for language in ("ko", "en"):
            per = figures[split]["languages"][language]["categories"]
            assert set(per) == set(CATEGORIES)
            assert {"precision", "recall", "tp", "fp", "fn"} <= set(per["threat"])
