"""The job harness records every rule job's timing as one JSON line in the results' events
file (what the run report reads instead of the human log lines), from threads and processes
at once without a torn or interleaved line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import pytest

from voiceman.pipeline.job_events import append_event, events_path, read_events
from voiceman.pipeline.jobkit import RuleJob, job_logging

UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def _job(tmp_path, rule="voice", key="call 1.wav"):
    log = tmp_path / "logs" / rule / f"{key}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return RuleJob(rule, {}, {}, {}, [str(log)], {"file": key} if key else {}, {"results_dir": str(tmp_path)})


def test_every_job_writes_one_timing_event_done_or_failed(tmp_path):
    with job_logging(_job(tmp_path)):
        pass
    with pytest.raises(RuntimeError, match="bad input"):
        with job_logging(_job(tmp_path, "report", "other.wav")):
            raise RuntimeError("bad input")
    with job_logging(_job(tmp_path, "case_summary", None)):
        pass
    events = read_events(tmp_path)
    assert [(e["rule"], e["file"], e["status"]) for e in events] == [
        ("voice", "call 1.wav", "ok"),
        ("report", "other.wav", "failed"),
        ("case_summary", None, "ok"),
    ]
    for event in events:
        assert set(event) == {"rule", "file", "start_utc", "end_utc", "seconds", "status"}
        assert UTC.match(event["start_utc"]) and UTC.match(event["end_utc"])
        assert event["start_utc"] <= event["end_utc"] and event["seconds"] >= 0
    assert events_path(tmp_path) == tmp_path / "logs" / "job_events.jsonl"


APPEND_SCRIPT = """
import sys
from voiceman.pipeline.job_events import append_event
for i in range(int(sys.argv[2])):
    append_event(sys.argv[1], {"rule": "proc", "file": sys.argv[3] + str(i), "pad": "y" * 3000})
"""


def test_appends_from_threads_and_processes_never_interleave(tmp_path):
    per_writer, pad = 300, "x" * 3000  # lines of about 3 KB each
    procs = [
        subprocess.Popen([sys.executable, "-c", APPEND_SCRIPT, str(tmp_path), str(per_writer), f"p{n}-"])
        for n in range(2)
    ]

    def writer(n: int) -> None:
        for i in range(per_writer):
            append_event(tmp_path, {"rule": "thread", "file": f"t{n}-{i}", "pad": pad})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for proc in procs:
        assert proc.wait(120) == 0
    lines = events_path(tmp_path).read_text().splitlines()
    assert len(lines) == 8 * per_writer
    files = [json.loads(line)["file"] for line in lines]  # every line is one whole event
    assert len(set(files)) == len(files)
