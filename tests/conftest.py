"""Shared fixtures: the real tiny.en Whisper model, a synthesised speech case, an isolated
daemon runtime directory, and a running daemon process."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    from voiceman.models import prepare

    root = tmp_path_factory.mktemp("models")
    prepare(root, ["whisper-tiny.en"])
    return root


@pytest.fixture(scope="session")
def tiny_model(models_dir) -> Path:
    return models_dir / "whisper-tiny.en"


@pytest.fixture(scope="session")
def speech_case(tmp_path_factory) -> Path:
    """Three espeak-ng clips in three formats (WAV, MP3, M4A) — the demo case."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (scripts/setup.sh installs it)")
    from voiceman.demo import make_case

    root = tmp_path_factory.mktemp("case")
    make_case(root)
    return root


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch) -> Path:
    """A private runtime dir per test, so tests never meet each other's (or a user's) daemon.
    Kept short: ipc socket paths are limited to ~107 bytes."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="vm-rt-", dir="/tmp"))
    monkeypatch.setenv("VOICEMAN_RUNTIME_DIR", str(path))
    yield path
    pid_file = path / "daemon.pid"
    if pid_file.exists():  # never leave a daemon behind
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    shutil.rmtree(path, ignore_errors=True)


def daemon_overrides(tiny_model: Path, **daemon) -> dict:
    # The daemon reads only files under its case roots: the tests' cases and clips are all in
    # pytest's temporary folders.
    tmp = os.path.realpath(tempfile.gettempdir())
    return {
        "models": {"asr": {"id": str(tiny_model), "language": "en"}},
        "daemon": {
            "heartbeat_interval_s": 0.5,
            "heartbeat_timeout_s": 5,
            "connect_timeout_s": 5,
            "case_roots": [tmp],
            **daemon,
        },
    }


@contextlib.contextmanager
def running_daemon(
    runtime_dir: Path,
    overrides: dict,
    ready_timeout_s: float = 180,
    heartbeat_timeout_s: float = 10,
    expect_state: str = "ready",
    retries: int = 2,
):
    """``python -m voiceman_daemon`` with ``overrides`` and its runtime dir in ``runtime_dir``,
    answering and done loading (``expect_state``); yields (process, client) and stops it
    afterwards (SIGTERM, then SIGKILL).  Its log is ``runtime_dir / "daemon.log"``."""
    from voiceman.daemonlink.client import DaemonClient
    from voiceman.daemonlink.daemonctl import wait_until_answering, wait_until_ready

    log = runtime_dir / "daemon.log"
    env = {**os.environ, "VOICEMAN_RUNTIME_DIR": str(runtime_dir)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voiceman_daemon", "--overrides", json.dumps(overrides)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
    client = DaemonClient(
        f"ipc://{runtime_dir / 'daemon.sock'}",
        connect_timeout_s=5,
        heartbeat_timeout_s=heartbeat_timeout_s,
        retries=retries,
    )
    try:
        wait_until_answering(client, proc, 60, log)
        assert wait_until_ready(client, ready_timeout_s)["state"] == expect_state, log.read_text()[-3000:]
        yield proc, client
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def daemon_process(runtime_dir, tiny_model):
    """A real daemon process with the real tiny.en model, ready to serve."""
    with running_daemon(runtime_dir, daemon_overrides(tiny_model), ready_timeout_s=120, heartbeat_timeout_s=5) as (
        proc,
        client,
    ):
        yield proc, client


def run_snakemake(
    results: Path, case: Path, tiny_model: Path, *extra: str, check: bool = True, popen: bool = False, **daemon
):
    """``snakemake --profile profiles/local`` over ``case``, exactly as a user runs it."""
    # Nested settings go in an extra --configfile (merged over config/config.yaml): Snakemake's
    # --config key=value only types flat values.
    overrides = results.parent / f"{results.name}-overrides.yaml"
    overrides.write_text(json.dumps(daemon_overrides(tiny_model, **daemon)))
    cmd = [
        str(REPO / ".venv" / "bin" / "snakemake") if (REPO / ".venv/bin/snakemake").exists() else "snakemake",
        "--profile",
        "profiles/local",
        "--configfile",
        str(overrides),
        "--config",
        f"case_dir={case}",
        f"results_dir={results}",
        *extra,
    ]
    if popen:
        return subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True
        )
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
