"""What every rule script shares: logging into the rule's ``log:`` file and a clear one-line
failure.  Rule scripts stay three lines long: build a request, call, write the output."""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Iterator

log = logging.getLogger("voiceman.rule")


@contextlib.contextmanager
def rule_logging(snakemake) -> Iterator[logging.Logger]:
    """Log to ``snakemake.log[0]`` (and stderr); log an exception with its cause, then re-raise
    so Snakemake marks the job failed and keeps going with other files."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w", encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    log.info("rule %s, wildcards %s", snakemake.rule, dict(snakemake.wildcards))
    try:
        yield log
    except Exception as exc:
        log.error("rule %s failed for %s: %s", snakemake.rule, dict(snakemake.wildcards), exc)
        raise
    log.info("rule %s done in %.2f s", snakemake.rule, time.monotonic() - started)
