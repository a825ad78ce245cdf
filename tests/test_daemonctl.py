"""voiceman.daemonlink.daemonctl and .runtime: the private runtime dir, a prompt ``stop``, and
workflow auto-start shared safely by concurrent runs (real daemons with the tiny model)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from conftest import REPO, daemon_overrides, wait_for
from voiceman.config import load_config
from voiceman.daemonlink import daemonctl, protocol, runtime
from voiceman.daemonlink.client import DaemonClient, DaemonError


# ----------------------------------------------------------------------------- runtime dir
def test_runtime_dir_is_created_0700_whatever_the_umask(tmp_path, monkeypatch):
    path = tmp_path / "rt"
    monkeypatch.setenv("VOICEMAN_RUNTIME_DIR", str(path))
    old = os.umask(0o777)  # even a umask that would leave the owner nothing
    try:
        assert runtime.runtime_dir() == path
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert runtime.runtime_dir() == path  # and it is accepted the next time


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o770, 0o711, 0o500])
def test_pre_existing_runtime_dir_with_other_mode_is_refused_not_chmodded(tmp_path, monkeypatch, mode):
    path = tmp_path / "rt"
    path.mkdir()
    os.chmod(path, mode)
    monkeypatch.setenv("VOICEMAN_RUNTIME_DIR", str(path))
    with pytest.raises(PermissionError) as err:
        runtime.runtime_dir()
    message = str(err.value)
    assert str(path) in message and f"{mode:04o}" in message and "0700" in message
    assert f"chmod 700 {path}" in message and "VOICEMAN_RUNTIME_DIR" in message
    assert stat.S_IMODE(path.stat().st_mode) == mode, "the dir must be left as it was"
    with pytest.raises(PermissionError):
        runtime.default_endpoint()  # nothing that uses the dir gets past the check


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another uid needs root")
def test_runtime_dir_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    os.chown(path, 54321, -1)
    monkeypatch.setenv("VOICEMAN_RUNTIME_DIR", str(path))
    with pytest.raises(PermissionError) as err:
        runtime.runtime_dir()
    assert str(path) in str(err.value) and "54321" in str(err.value) and "VOICEMAN_RUNTIME_DIR" in str(err.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="a symlink owned by another uid needs root")
def test_runtime_dir_symlink_planted_by_another_user_is_refused(tmp_path, monkeypatch):
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    link = tmp_path / "rt"
    link.symlink_to(target)
    os.lchown(link, 54321, -1)
    monkeypatch.setenv("VOICEMAN_RUNTIME_DIR", str(link))
    with pytest.raises(PermissionError, match="symlink"):
        runtime.runtime_dir()


def test_runtime_dir_that_is_a_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "rt"
    path.write_text("")
    monkeypatch.setenv("VOICEMAN_RUNTIME_DIR", str(path))
    with pytest.raises(PermissionError, match="not a directory"):
        runtime.runtime_dir()


# ------------------------------------------------------------------------------------ stop
def test_stop_returns_as_soon_as_the_daemon_exits(daemon_process, runtime_dir):
    proc, _ = daemon_process
    # A long connect timeout: the old stop() probed the dying daemon's socket with pings and
    # waited this out at least once; waiting for the pid from the shutdown reply does not.
    client = DaemonClient(f"ipc://{runtime_dir / 'daemon.sock'}", connect_timeout_s=10, heartbeat_timeout_s=5)
    started = time.monotonic()
    assert daemonctl.stop(client) is True
    took = time.monotonic() - started
    assert took < 5, f"stop() took {took:.1f} s"
    assert proc.poll() is not None or not daemonctl._pid_alive(proc.pid)
    assert not (runtime_dir / "daemon.sock").exists()
    assert daemonctl.stop(client) is False  # nothing answers any more: at once, no wait
    assert time.monotonic() - started < 8


class FakeDaemon:
    """A ROUTER that answers shutdown with ``pid`` but never goes away (a stuck daemon)."""

    def __init__(self, endpoint: str, pid: int):
        self.endpoint, self.pid = endpoint, pid
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.bind(endpoint)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self.done.is_set():
            if poller.poll(50):
                identity, frame = self.sock.recv_multipart()
                request = protocol.unpack(frame)
                reply = request.reply(stopping=True, pid=self.pid)
                self.sock.send_multipart([identity, protocol.pack(reply)])

    def close(self):
        self.done.set()
        self.thread.join(5)
        self.sock.close(0)
        self.ctx.term()


def test_stop_of_a_daemon_that_does_not_exit_is_bounded_and_says_so(runtime_dir):
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    fake = FakeDaemon(f"ipc://{runtime_dir / 'daemon.sock'}", stuck.pid)
    try:
        client = DaemonClient(fake.endpoint, connect_timeout_s=5)
        started = time.monotonic()
        with pytest.raises(daemonctl.DaemonStillRunning) as err:
            daemonctl.stop(client, timeout_s=1.5)
        assert time.monotonic() - started < 4
        assert f"pid {stuck.pid}" in str(err.value) and "still running" in str(err.value)
        assert f"kill {stuck.pid}" in str(err.value)
    finally:
        fake.close()
        stuck.kill()
        stuck.wait()


def test_pid_alive_never_means_every_process():
    for pid in (0, -1, None, True):
        assert daemonctl._pid_alive(pid) is False
    assert daemonctl._pid_alive(os.getpid()) is True
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: not daemonctl._pid_alive(child.pid), 20, "the child to exit (and be reaped)")


# ------------------------------------------------------------------ workflow auto-start
RUN_SCRIPT = r"""
import json, os, sys
from pathlib import Path
from voiceman.daemonlink import daemonctl
config, results = json.loads(sys.argv[1]), Path(sys.argv[2])
try:
    print(json.dumps({"ensure": daemonctl.ensure_for_workflow(config, results), "pid": os.getpid()}), flush=True)
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "pid": os.getpid()}), flush=True)
    sys.exit(1)
if sys.stdin.readline().strip() == "release":
    print(json.dumps({"release": daemonctl.release_for_workflow(config, results)}), flush=True)
"""


def _config(tiny_model: Path, **daemon) -> dict:
    return load_config(None, daemon_overrides(tiny_model, start_timeout_s=180, **daemon))


class Run:
    """A stand-in for one workflow run: its own process, calling ensure, then (on cue) release."""

    def __init__(self, config: dict, results: Path):
        self.results = results
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUN_SCRIPT, json.dumps(config), str(results)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # this checkout's library and daemon, whatever the venv has installed
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "daemon")])},
        )

    def ensured(self, timeout_s: float = 240) -> dict:
        line = _readline(self.proc, timeout_s)
        assert "ensure" in line, line
        return line

    def release(self, timeout_s: float = 120) -> str:
        self.proc.stdin.write("release\n")
        self.proc.stdin.flush()
        line = _readline(self.proc, timeout_s)
        self.proc.wait(30)
        return line["release"]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


def _readline(proc: subprocess.Popen, timeout_s: float) -> dict:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    assert box and box[0], f"no answer from run pid {proc.pid} within {timeout_s} s (rc {proc.poll()})"
    return json.loads(box[0])


def _record(runtime_dir: Path) -> dict | None:
    path = runtime_dir / "daemon.owner.json"
    return json.loads(path.read_text()) if path.exists() else None


def _client(runtime_dir: Path) -> DaemonClient:
    return DaemonClient(f"ipc://{runtime_dir / 'daemon.sock'}", connect_timeout_s=2, heartbeat_timeout_s=5)


@pytest.fixture
def runs():
    started: list[Run] = []
    yield started
    for run in started:
        run.kill()


def test_two_runs_starting_together_share_one_daemon_stopped_by_the_last(runtime_dir, tiny_model, tmp_path, runs):
    config = _config(tiny_model)
    a, b = Run(config, tmp_path / "results-a"), Run(config, tmp_path / "results-b")
    runs += [a, b]
    first, second = a.ensured(), b.ensured()
    messages = [first["ensure"], second["ensure"]]
    assert sum(m.startswith("started a daemon") for m in messages) == 1, messages
    assert sum(m.startswith("sharing the daemon") for m in messages) == 1, messages
    logs = [r / "logs" / "daemon.log" for r in (a.results, b.results)]
    assert sum(log.exists() for log in logs) == 1, "exactly one daemon was started"
    record = _record(runtime_dir)
    client = _client(runtime_dir)
    daemon_pid = client.ping()["pid"]
    assert record["daemon_pid"] == daemon_pid
    assert sorted(record["users"]) == sorted([a.proc.pid, b.proc.pid])

    # The run that started it finishes first: the other run's daemon keeps serving.
    starter, other = (a, b) if messages[0].startswith("started") else (b, a)
    assert "running for 1 other run(s)" in starter.release()
    assert client.ping()["pid"] == daemon_pid
    assert _record(runtime_dir)["users"] == [other.proc.pid]
    # The last one stops it, promptly.
    began = time.monotonic()
    assert other.release().startswith("stopped the daemon auto-started")
    assert time.monotonic() - began < 15
    assert not client.is_alive() and not daemonctl._pid_alive(daemon_pid)
    assert _record(runtime_dir) is None


def test_daemon_of_a_killed_run_is_adopted_and_stopped_by_the_next(runtime_dir, tiny_model, tmp_path, runs):
    config = _config(tiny_model)
    dead = Run(config, tmp_path / "results-dead")
    runs.append(dead)
    assert dead.ensured()["ensure"].startswith("started a daemon")
    daemon_pid = _client(runtime_dir).ping()["pid"]
    dead.proc.send_signal(signal.SIGKILL)
    dead.proc.wait(30)

    message = daemonctl.ensure_for_workflow(config, tmp_path / "results-next")
    assert message.startswith("adopted the daemon") and str(dead.proc.pid) in message
    assert _record(runtime_dir)["users"] == [os.getpid()]
    assert daemonctl.release_for_workflow(config, tmp_path / "results-next").startswith("stopped the daemon")
    wait_for(lambda: not daemonctl._pid_alive(daemon_pid), 10, "the adopted daemon to exit")
    assert json.loads((tmp_path / "results-next" / "daemon_stats.json").read_text())["pid"] == daemon_pid


def test_a_daemon_not_started_by_a_run_is_never_stopped_by_one(daemon_process, runtime_dir, tiny_model, tmp_path):
    proc, client = daemon_process
    config = _config(tiny_model)
    # A stale record (its auto-started daemon and its run are long gone) must not make this
    # daemon look auto-started: it would then be "adopted" and stopped.
    (runtime_dir / "daemon.owner.json").write_text(json.dumps({"daemon_pid": 2**22 + 7, "users": [2**22 + 9]}))
    assert "not auto-started by a run" in daemonctl.ensure_for_workflow(config, tmp_path / "r1")
    assert _record(runtime_dir) is None
    assert "left the daemon" in daemonctl.release_for_workflow(config, tmp_path / "r1")
    assert client.is_alive() and proc.poll() is None


def test_auto_start_lock_wait_is_bounded(runtime_dir, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(daemonctl, "LOCK_TIMEOUT_PAD_S", 0.0)
    config = _config(tiny_model)
    config["daemon"]["start_timeout_s"] = 1
    with daemonctl._autostart_lock(1):
        pass
    assert stat.S_IMODE(runtime.autostart_lock_file().stat().st_mode) & 0o077 == 0, "lock file is private"
    with open(runtime.autostart_lock_file(), "r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another run is starting a daemon and hangs
        started = time.monotonic()
        with pytest.raises(DaemonError, match="auto-start lock"):
            daemonctl.ensure_for_workflow(config, tmp_path / "results")
        assert time.monotonic() - started < 5
    assert not (runtime_dir / "daemon.sock").exists(), "no daemon was started without the lock"
