"""Starting, stopping and finding the daemon — for the CLI and for workflow auto-start.

Auto-start contract: a workflow run that finds no daemon answering starts one, records
itself as the owner (runtime dir ``daemon.owner.json``) and stops it at the end.  A daemon
that was already running (a system service, or one the user started) is used and left alone.
A daemon whose owning run died (SIGKILL) is adopted by the next run, which then stops it.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import protocol, runtime
from .atomic import write_json
from .client import DaemonClient, DaemonError

log = logging.getLogger(__name__)


def client_for(config: dict[str, Any], endpoint: str | None = None) -> DaemonClient:
    d = config["daemon"]
    return DaemonClient(
        endpoint or runtime.resolve_endpoint(d["endpoint"]),
        connect_timeout_s=float(d["connect_timeout_s"]),
        heartbeat_timeout_s=float(d["heartbeat_timeout_s"]),
        retries=int(d["retries"]),
    )


def start_detached(config: dict[str, Any], log_file: Path, config_path: str | None = None) -> subprocess.Popen:
    """Start ``python -m voiceman_daemon`` in its own session, logging to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "voiceman_daemon", "--overrides", json.dumps(config)]
    if config_path:
        cmd += ["--config", str(config_path)]
    with open(log_file, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)


def wait_until_answering(client: DaemonClient, proc: subprocess.Popen | None, timeout_s: float,
                         log_file: Path | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = _tail(log_file) if log_file else ""
            raise DaemonError(f"daemon exited with code {proc.returncode} before answering at {client.endpoint}{tail}")
        try:
            return client.once(protocol.PING, deadline_s=2.0)
        except DaemonError:
            time.sleep(0.3)
    raise DaemonError(f"daemon did not answer at {client.endpoint} within {timeout_s:.0f} s")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n--- daemon log tail ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until_ready(client: DaemonClient, timeout_s: float) -> dict[str, Any]:
    """Wait for preloaded models (state leaves 'loading'); a load failure is reported, not hidden."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.ping()
        if status["state"] != "loading" or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def stop(client: DaemonClient, timeout_s: float = 60.0) -> bool:
    """Ask the daemon to shut down and wait until it no longer answers.  False if none ran."""
    try:
        client.once(protocol.SHUTDOWN, deadline_s=client.connect_timeout_s)
    except DaemonError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and client.is_alive():
        time.sleep(0.3)
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def ensure_for_workflow(config: dict[str, Any], results_dir: Path) -> str:
    """Called from the Snakefile's ``onstart``.  Returns a one-line status for the log."""
    client = client_for(config)
    owner_file = runtime.owner_file()
    if client.is_alive():
        owner = _read_owner(owner_file)
        if owner and not _pid_alive(owner["owner_pid"]):
            write_json(owner_file, {**owner, "owner_pid": os.getpid(), "adopted_from": owner["owner_pid"]})
            return f"adopted the daemon at {client.endpoint} left by a run that died (pid {owner['owner_pid']})"
        return f"using the running daemon at {client.endpoint}"
    if not config["daemon"]["autostart"]:
        raise DaemonError(f"no voiceman daemon answering at {client.endpoint} and daemon.autostart is false")
    log_file = results_dir / "logs" / "daemon.log"
    proc = start_detached(_with_case_logs(config, results_dir), log_file)
    timeout_s = float(config["daemon"]["start_timeout_s"])
    wait_until_answering(client, proc, timeout_s, log_file)
    write_json(owner_file, {"owner_pid": os.getpid(), "daemon_pid": proc.pid, "endpoint": client.endpoint,
                            "log": str(log_file)})
    # Wait for the models too: a model that cannot load should stop the run here, once, with
    # its reason — not fail every file of the case one by one.
    status = wait_until_ready(client, timeout_s)
    if status.get("load_errors"):
        stop(client)
        owner_file.unlink(missing_ok=True)
        errors = "; ".join(status["load_errors"].values())
        raise DaemonError(f"the daemon started for this run could not load its models: {errors} (log: {log_file})")
    return f"started a daemon (pid {proc.pid}) at {client.endpoint} for this run; log: {log_file}"


def _with_case_logs(config: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    """A daemon started for one case keeps its governor samples with that case's logs
    (unless the config names a place), so the evidence trail stays in one folder."""
    governor = dict(config.get("governor") or {})
    if not governor.get("sample_log"):
        governor["sample_log"] = str((results_dir / "logs" / "governor_samples.jsonl").resolve())
    return {**config, "governor": governor}


def release_for_workflow(config: dict[str, Any], results_dir: Path) -> str:
    """Called from ``onsuccess``/``onerror``: save the daemon's stats, stop it if we own it."""
    client = client_for(config)
    try:
        stats = client.stats()
        write_json(results_dir / "daemon_stats.json", stats)
    except DaemonError as exc:
        return f"daemon not answering at the end of the run: {exc}"
    owner = _read_owner(runtime.owner_file())
    if owner and owner["owner_pid"] == os.getpid():
        stop(client)
        runtime.owner_file().unlink(missing_ok=True)
        return f"stopped the daemon this run started at {client.endpoint}"
    return f"left the daemon at {client.endpoint} running (not started by this run)"


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def kill_by_pid_file(sig: int = signal.SIGTERM) -> int | None:
    """Fallback for ``voiceman daemon stop`` when the socket does not answer."""
    try:
        pid = int(runtime.pid_file().read_text().strip())
    except (OSError, ValueError):
        return None
    if _pid_alive(pid):
        os.kill(pid, sig)
        return pid
    return None
