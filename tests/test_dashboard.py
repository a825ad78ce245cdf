"""`voiceman dashboard` (O3): what it computes from a results folder + the daemon's stats, and
the live view itself in a real terminal (tmux) following a running daemon."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from rich.console import Console

from conftest import REPO, wait_for
from test_governor_daemon import DialSensor, governor_with, serve  # noqa: F401  (serve is a fixture)
from voiceman import atomic
from voiceman.daemonlink.client import DaemonClient
from voiceman.observe import runreport
from voiceman.observe.dashboard import collect, render


def make_results(tmp_path, started_ago_s: float):
    case, results = tmp_path / "case", tmp_path / "results"
    case.mkdir()
    for name in ("a.wav", "b.wav", "c.wav", "d.wav"):
        (case / name).write_bytes(b"x")
    runreport.record_run_start(results, {"case_dir": str(case), "audio_extensions": ["wav"]})
    run = json.loads((results / "logs" / "run_started.json").read_text())
    run["unix"] -= started_ago_s
    atomic.write_json(results / "logs" / "run_started.json", run)
    for name in ("a.wav", "b.wav", "c.wav"):
        atomic.write_json(results / "ingest" / f"{name}.json", {"file": name, "status": "ok", "duration_s": 60.0})
    for name in ("a.wav", "b.wav"):
        atomic.write_json(results / "transcribe" / f"{name}.json", {"file": name, "status": "ok"})
    atomic.write_json(results / "report" / "a.wav.json", {"file": "a.wav", "status": "done"})
    return case, results


def test_collect_counts_queues_throughput_eta_and_daemon_state(tmp_path, serve):
    case, results = make_results(tmp_path, started_ago_s=120)
    sensor = DialSensor(temp=82)
    governor, _ = governor_with(sensor, tmp_path)
    server, client = serve(governor=governor)
    wait_for(lambda: client.stats()["governor"]["state"] == "cooldown", 5, "cooldown")
    state = collect(results, case, ["wav"], client)
    assert (state.files_total, state.files_done, state.files_failed) == (4, 1, 0)
    assert state.stage_done == {"ingest": 3, "transcribe": 2, "report": 1}
    # transcribe waits for ingested files, report for transcribed ones
    assert state.stage_waiting == {"ingest": 1, "transcribe": 1, "report": 1}
    assert state.audio_s_done == 60.0
    assert 0.45 < state.files_per_min < 0.55 and 330 < state.eta_s < 390  # 1 file / 2 min, 3 left
    assert state.daemon["governor"]["state"] == "cooldown" and "events" not in state.daemon["governor"]
    console = Console(record=True, width=130)
    console.print(render(state))
    text = console.export_text()
    assert "files 1/4 finished" in text and "cooldown" in text and "temp 82.0 °C" in text
    assert "ETA 5:" in text or "ETA 6:" in text

    server.request_stop()
    wait_for(lambda: not client.is_alive(), 10, "the daemon to stop")
    quiet = DaemonClient(client.endpoint, connect_timeout_s=0.5, retries=0)
    state = collect(results, case, ["wav"], quiet)
    assert state.daemon is None and "no voiceman daemon answering" in state.daemon_error


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed for the real-terminal test")
def test_live_dashboard_in_tmux_follows_the_daemon(tmp_path, serve):
    case, results = make_results(tmp_path, started_ago_s=60)
    sensor = DialSensor(temp=60)
    governor, _ = governor_with(sensor, tmp_path)
    server, client = serve(governor=governor)
    socket_name = f"vm-dash-{tmp_path.name}"
    settings = json.dumps({"daemon": {"endpoint": client.endpoint}})
    command = (
        f"{sys.executable} -m voiceman.cli dashboard --set '{settings}' --results {results} "
        f"--case {case} --interval 0.3"
    )
    tmux = ["tmux", "-L", socket_name]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "dash", "-x", "130", "-y", "40", "-c", str(REPO), command], check=True
    )

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "dash"], capture_output=True, text=True).stdout

    try:
        wait_for(lambda: "files 1/4 finished" in screen() and "temp 60.0" in screen(), 30, "the first frame")
        # The run moves on: a file finishes, the GPU heats up -> the live view follows.
        atomic.write_json(results / "report" / "b.wav.json", {"file": "b.wav", "status": "failed", "reason": "x"})
        sensor.temp = 88
        wait_for(lambda: "files 2/4 finished" in screen() and "halted" in screen(), 15, "the view to update")
        assert "(1 failed)" in screen() and "temp 88.0" in screen()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    time.sleep(0.1)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed for the real-terminal test")
def test_dashboard_in_tmux_against_a_running_demo_case(speech_case, tiny_model, runtime_dir, tmp_path):
    """The real thing: `snakemake --profile profiles/local` on the demo clips, the dashboard in
    a tmux terminal beside it, following the run to its end; then the run report exists."""
    from conftest import run_snakemake

    results = tmp_path / "results"
    run = run_snakemake(results, speech_case, tiny_model, popen=True)
    socket_name = f"vm-demo-{tmp_path.name}"
    tmux = ["tmux", "-L", socket_name]
    command = f"{sys.executable} -m voiceman.cli dashboard --results {results} --case {speech_case} --interval 0.5"
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "dash", "-x", "130", "-y", "40", "-c", str(REPO), command], check=True
    )

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "dash"], capture_output=True, text=True).stdout

    seen_running = False
    try:
        deadline = time.monotonic() + 300
        while run.poll() is None and time.monotonic() < deadline:
            seen_running |= "files 0/3" in screen() or "files 1/3" in screen() or "files 2/3" in screen()
            time.sleep(0.3)
        out, _ = run.communicate(timeout=60)
        assert run.returncode == 0, out[-3000:]
        wait_for(lambda: "files 3/3 finished" in screen(), 20, "the dashboard to show the finished case")
        assert seen_running, "the dashboard never showed the case in progress"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    report = json.loads((results / "run_report.json").read_text())
    assert report["status"] == "success"
    assert (results / "run_report.html").read_text().count("<svg") >= 1
