"""`voiceman patterns eval [--eval-dir DIR] [--db DIR] [--json OUT] [--errors SPLIT]`

Scores the pattern database on the labelled sentences in config/patterns/eval/{en,ko}.jsonl
(see the README there). A sentence's predicted categories are those of its hits in direct
speech (reported and negated hits do not count); every (sentence, category) pair is a true
positive, false positive or false negative, micro-averaged per category, per language and
overall, separately for the `dev` part (rules are tuned on it) and the `heldout` part
(never tuned on). Prints a table, writes the figures as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .database import PatternDatabase, load_database
from .loader import DEFAULT_DATABASE_DIR
from .model import CATEGORIES, CONTEXT_DIRECT, LANGUAGES, PatternDatabaseError

DEFAULT_EVAL_DIR = DEFAULT_DATABASE_DIR / "eval"
SPLITS = ("dev", "heldout")
PROG = "voiceman patterns eval"


@dataclass(frozen=True)
class Example:
    id: str
    language: str
    text: str
    labels: frozenset[str]
    kind: str
    split: str


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    def to_dict(self) -> dict:
        p, r = self.precision, self.recall
        f1 = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": _round(p),
            "recall": _round(r),
            "f1": _round(f1),
        }


@dataclass
class Outcome:
    example: Example
    predicted: frozenset[str]
    hits: list[dict] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.predicted == self.example.labels


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def load_examples(directory: Path = DEFAULT_EVAL_DIR) -> list[Example]:
    examples = []
    for language in LANGUAGES:
        path = Path(directory) / f"{language}.jsonl"
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            unknown = set(row["labels"]) - set(CATEGORIES)
            if unknown or row["split"] not in SPLITS:
                raise ValueError(f"{path}:{number}: bad labels {sorted(unknown)} or split {row['split']!r}")
            examples.append(
                Example(row["id"], language, row["text"], frozenset(row["labels"]), row.get("kind", ""), row["split"])
            )
    return examples


def predict(database: PatternDatabase, example: Example) -> Outcome:
    hits = database.scan(example.text, lang=example.language)
    direct = [h for h in hits if h.context == CONTEXT_DIRECT]
    return Outcome(example, frozenset(h.category for h in direct), [h.to_dict() for h in hits])


def score(outcomes: list[Outcome]) -> dict:
    """{split: {"overall", "languages": {lang: {"overall", "categories": {cat: counts}}}}}."""
    result: dict = {}
    for split in SPLITS:
        chosen = [o for o in outcomes if o.example.split == split]
        overall = Counts()
        languages = {}
        for language in LANGUAGES:
            mine = [o for o in chosen if o.example.language == language]
            if not mine:
                continue
            per_category = {c: Counts() for c in CATEGORIES}
            for outcome in mine:
                for category in CATEGORIES:
                    gold = category in outcome.example.labels
                    guess = category in outcome.predicted
                    counts = per_category[category]
                    counts.tp += gold and guess
                    counts.fp += guess and not gold
                    counts.fn += gold and not guess
            language_total = Counts()
            for counts in per_category.values():
                language_total.add(counts)
            overall.add(language_total)
            languages[language] = {
                "sentences": len(mine),
                "negatives": sum(1 for o in mine if not o.example.labels),
                "exact_match": _round(sum(o.correct for o in mine) / len(mine)),
                "overall": language_total.to_dict(),
                "categories": {c: v.to_dict() for c, v in per_category.items()},
            }
        result[split] = {"sentences": len(chosen), "overall": overall.to_dict(), "languages": languages}
    return result


def evaluate(database: PatternDatabase | None = None, eval_dir: Path = DEFAULT_EVAL_DIR) -> tuple[dict, list[Outcome]]:
    database = database or load_database()
    examples = load_examples(eval_dir)
    outcomes = [predict(database, e) for e in examples]
    figures = score(outcomes)
    figures["database"] = {"version": database.version, "sha256": database.sha256}
    figures["eval_set"] = {
        "directory": str(eval_dir),
        "counts": dict(Counter(f"{e.language}/{e.split}" for e in examples)),
    }
    return figures, outcomes


def format_table(figures: dict) -> str:
    def cell(value):
        return "   -  " if value is None else f"{value:6.3f}"

    lines = []
    for split in SPLITS:
        part = figures.get(split)
        if not part or not part["sentences"]:
            continue
        lines.append(f"{split} ({part['sentences']} sentences)")
        lines.append(f"  {'lang':4} {'category':13} {'P':>6} {'R':>6} {'F1':>6} {'tp':>4} {'fp':>4} {'fn':>4}")
        for language, data in part["languages"].items():
            rows = list(data["categories"].items()) + [("all", data["overall"])]
            for name, c in rows:
                lines.append(
                    f"  {language:4} {name:13} {cell(c['precision'])} {cell(c['recall'])} "
                    f"{cell(c['f1'])} {c['tp']:4d} {c['fp']:4d} {c['fn']:4d}"
                )
        o = part["overall"]
        lines.append(
            f"  {'all':4} {'all':13} {cell(o['precision'])} {cell(o['recall'])} "
            f"{cell(o['f1'])} {o['tp']:4d} {o['fp']:4d} {o['fn']:4d}"
        )
        lines.append("")
    return "\n".join(lines)


def format_errors(outcomes: list[Outcome], split: str) -> str:
    lines = []
    for o in outcomes:
        if o.example.split != split or o.correct:
            continue
        missed = sorted(o.example.labels - o.predicted)
        extra = sorted(o.predicted - o.example.labels)
        fired = ", ".join(f"{h['rule']['id'] if h.get('rule') else h['pattern_id']}[{h['context']}]" for h in o.hits)
        lines.append(
            f"{o.example.id} missed={missed} extra={extra} :: {o.example.text}"
            + (f"\n      fired: {fired}" if fired else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[2])
    parser.add_argument(
        "--eval-dir",
        default=str(DEFAULT_EVAL_DIR),
        help="folder with en.jsonl / ko.jsonl (default: config/patterns/eval)",
    )
    parser.add_argument("--db", default=None, help="pattern database directory")
    parser.add_argument("--json", dest="json_out", default=None, help="write the figures here")
    parser.add_argument(
        "--errors",
        choices=SPLITS,
        default=None,
        help="also list the sentences of this split that were not exactly right",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        database = load_database(args.db)
    except PatternDatabaseError as exc:
        print(f"{PROG}: pattern database error: {exc}", file=sys.stderr)
        return 1
    try:
        figures, outcomes = evaluate(database, Path(args.eval_dir))
    except (OSError, ValueError, KeyError) as exc:
        print(f"{PROG}: cannot read the evaluation set: {exc}", file=sys.stderr)
        return 2
    print(format_table(figures))
    if args.errors:
        print(format_errors(outcomes, args.errors))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
