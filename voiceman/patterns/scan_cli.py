"""`voiceman patterns scan [--lang ko|en|auto] [--all] [--db DIR] FILE|-`

Prints one JSON object per hit per line. `argv` is what follows "patterns scan".
Exit status: 0 on success (hits or not), 2 when the input cannot be read or the
arguments are wrong, 1 when the pattern database is malformed.
"""

from __future__ import annotations

import argparse
import json
import sys

from .database import load_database
from .model import PatternDatabaseError

PROG = "voiceman patterns scan"


class _UsageError(Exception):
    """Bad command-line arguments (reported on stderr, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    # argparse exits the process on bad arguments; a CLI entry called as a function
    # must return its status instead.
    def error(self, message: str):
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Find crime-language patterns in a transcript text.")
    parser.add_argument("file", metavar="FILE", help="UTF-8 text file, or - for stdin")
    parser.add_argument(
        "--lang",
        choices=("ko", "en", "auto"),
        default="auto",
        help="language of the text (auto: Hangul present -> Korean)",
    )
    parser.add_argument(
        "--all", action="store_true", dest="include_negated", help="also print negated hits ('I would never hurt you')"
    )
    parser.add_argument(
        "--db", default=None, help="pattern database directory (default: the repository's config/patterns)"
    )
    return parser


def _read_text(name: str) -> str:
    if name == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    else:
        with open(name, "rb") as handle:
            data = handle.read()
    return data.decode("utf-8-sig") if isinstance(data, bytes) else data


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except _UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    source = "<stdin>" if args.file == "-" else args.file
    try:
        text = _read_text(args.file)
    except OSError as exc:
        print(f"{PROG}: cannot read {source}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"{PROG}: cannot read {source}: not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        return 2
    try:
        database = load_database(args.db)
    except PatternDatabaseError as exc:
        print(f"{PROG}: pattern database error: {exc}", file=sys.stderr)
        return 1
    for hit in database.scan(text, lang=args.lang, include_negated=args.include_negated):
        print(json.dumps(hit.to_dict(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
