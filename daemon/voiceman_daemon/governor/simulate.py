"""`voiceman governor simulate TRACE.csv [--config governor.yaml]`

Replays a temperature/memory trace through the real `Governor` and policy (no GPU, no
sleeping) and prints one JSON object per sample:
  {"t_s", "temp_c", "mem_frac", "state", "batch_scale", "extra_delay_s", "device", "events"}
The trace's own memory column stands for what empty_cache() achieved: a row after a
pressure sample shows whether memory came back.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from .config import load_governor_config
from .runtime import Governor
from .sensors import TraceSensor


class _TraceClock:
    """Simulated time: the t_s of the trace row being replayed."""

    def __init__(self, sensor: TraceSensor) -> None:
        self._sensor = sensor
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance_to_next_row(self) -> None:
        t_next = self._sensor.peek_time()
        if t_next is not None:
            self.now = t_next


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voiceman governor simulate",
        description="Replay a GPU trace CSV (t_s,temp_c,mem_used_gb,mem_total_gb; empty cell = "
        "no reading) through the governor policy and print one JSON line per sample.",
    )
    parser.add_argument("trace", help="CSV trace file")
    parser.add_argument(
        "--config", default=None, help="governor YAML (default: built-in defaults = config/governor.yaml)"
    )
    parser.add_argument("--summary", default=None, help="also write the final state_summary() as JSON to this file")
    parser.add_argument(
        "--log-level", default="WARNING", help="level of the governor's log lines on stderr (default WARNING)"
    )
    return parser


def sample_record(decision: Any) -> dict[str, Any]:
    """The simulate output shape for one sample."""
    return {
        "t_s": decision.t_s,
        "temp_c": decision.temp_c,
        "mem_frac": decision.mem_frac,
        "state": decision.state,
        "batch_scale": decision.batch_scale,
        "extra_delay_s": decision.extra_delay_s,
        "device": decision.device,
        "events": [event.to_dict() for event in decision.events],
    }


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    args = _build_parser().parse_args(argv)
    out = stdout if stdout is not None else sys.stdout
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        print(f"voiceman governor simulate: unknown --log-level {args.log_level!r}", file=sys.stderr)
        return 2
    logging.getLogger("voiceman_daemon.governor").setLevel(level)
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        config = load_governor_config(args.config)
        sensor = TraceSensor(args.trace)
    except ValueError as exc:
        print(f"voiceman governor simulate: {exc}", file=sys.stderr)
        return 2
    clock = _TraceClock(sensor)
    # A simulation writes no sample log and has nothing to free; the trace says what happened.
    governor = Governor(
        config, sensor, empty_cache=lambda: None, clock=clock, sleep=lambda _s: None, sample_log_path=None
    )
    while sensor.remaining:
        clock.advance_to_next_row()
        decision = governor.sample()
        out.write(json.dumps(sample_record(decision)) + "\n")
    out.flush()
    if args.summary:
        try:
            with open(args.summary, "w", encoding="utf-8") as handle:
                json.dump(governor.state_summary(), handle, indent=2)
        except OSError as exc:
            print(f"voiceman governor simulate: cannot write summary {args.summary}: {exc.strerror}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
