"""Starting, stopping and finding the daemon — for the CLI and for workflow auto-start.

Auto-start contract: a workflow run that finds no daemon answering starts one and records it
(runtime dir ``daemon.owner.json``: the daemon's pid and the pids of the runs using it).  Runs
that find a daemon a run auto-started add themselves to its users; each run removes itself at
the end (with any users that died), and the run that leaves no live user behind stops the
daemon.  "Probe, start if none, record" and "release, stop if last" happen under an exclusive
``flock`` (runtime dir ``autostart.lock``), so two runs starting together share one daemon and
the first to finish does not stop the other's.  A daemon that was not auto-started by a run
(a system service, ``voiceman daemon start``) is used and never stopped by a run.  A daemon
whose runs all died (SIGKILL) is adopted by the next run, which then stops it.

On a cluster (``daemon.per_node: true``, set by profiles/slurm) there is one daemon per node
instead: see ``node_daemon``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..atomic import write_json
from . import protocol, runtime, transport
from .client import DaemonClient, DaemonError

log = logging.getLogger(__name__)


def client_for(config: dict[str, Any], endpoint: str | None = None) -> DaemonClient:
    d = config["daemon"]
    return DaemonClient(
        endpoint or runtime.resolve_endpoint(d["endpoint"]),
        connect_timeout_s=float(d["connect_timeout_s"]),
        heartbeat_timeout_s=float(d["heartbeat_timeout_s"]),
        retries=int(d["retries"]),
        curve=transport.CurveSettings.from_config(config),  # daemon.curve: keys for a tcp daemon
    )


def start_detached(
    config: dict[str, Any], log_file: Path, config_path: str | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``python -m voiceman_daemon`` in its own session, logging to ``log_file``
    (``env``: extra environment variables for it)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "voiceman_daemon", "--overrides", json.dumps(config)]
    if config_path:
        cmd += ["--config", str(config_path)]
    with open(log_file, "ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, **env} if env else None,
        )


def wait_until_answering(
    client: DaemonClient, proc: subprocess.Popen | None, timeout_s: float, log_file: Path | None = None
) -> dict[str, Any]:
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


def start_answering(
    client: DaemonClient, config: dict[str, Any], log_file: Path, timeout_s: float, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a daemon for a run (``start_detached``) and wait until it answers at ``client``'s
    endpoint; one that hangs before answering is killed, so no unrecorded daemon is left behind."""
    started = start_detached(config, log_file, env=env)
    try:
        wait_until_answering(client, started, timeout_s, log_file)
    except BaseException:
        if started.poll() is None:
            started.kill()
            started.wait(10)
        raise
    return started


def wait_until_ready(client: DaemonClient, timeout_s: float) -> dict[str, Any]:
    """Wait for preloaded models (state leaves 'loading'); a load failure is reported, not hidden."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.ping()
        if status["state"] != "loading" or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


SOCKET_GONE_GRACE_S = 10.0


class DaemonStillRunning(DaemonError):
    """A daemon acknowledged shutdown but did not exit within the timeout."""


def stop(client: DaemonClient, timeout_s: float = 60.0) -> bool:
    """Ask the daemon to shut down and wait (at most ``timeout_s``) until its process has
    exited.  False if no daemon answered.  Raises ``DaemonStillRunning`` when it outlives the
    timeout (it finishes the request in flight first, so a long one can hold it up).

    The shutdown reply carries the daemon's pid: waiting for that pid (and for its ipc socket
    file to go) takes milliseconds, where probing the socket with pings would wait out the
    connect timeout on every probe while the daemon exits."""
    if client.endpoint.startswith("ipc://") and not os.path.exists(client.endpoint[len("ipc://") :]):
        return False  # no socket file, no daemon: no need to wait out the connect timeout
    try:
        reply = client.once(protocol.SHUTDOWN, deadline_s=client.connect_timeout_s)
    except DaemonError:
        return False
    pid = reply.get("pid")
    pid = pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
    if not client.endpoint.startswith("ipc://"):
        pid = None  # a tcp daemon may live on another host: its pid means nothing here
    sock_path = client.endpoint[len("ipc://") :] if client.endpoint.startswith("ipc://") else None
    deadline = time.monotonic() + timeout_s
    socket_gone_at: float | None = None
    while time.monotonic() < deadline:
        if sock_path is not None:
            if pid is not None and not _pid_alive(pid):
                return True
            if not os.path.exists(sock_path):
                # The daemon removes its socket file as it exits; its pid goes a moment later
                # (a pid from another pid namespace never would: give it a short grace).
                socket_gone_at = socket_gone_at or time.monotonic()
                if pid is None or time.monotonic() - socket_gone_at > SOCKET_GONE_GRACE_S:
                    return True
        elif not client.is_alive():  # tcp: probe (each probe may wait out the connect timeout)
            return True
        time.sleep(0.05)
    what = f"pid {pid}" if pid is not None else f"the daemon at {client.endpoint}"
    raise DaemonStillRunning(
        f"{what} was told to shut down but is still running after {timeout_s:.0f} s (it finishes the "
        f"request in flight first); check its log, or end it with `kill {pid if pid else '<pid>'}`"
    )


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process.  A zombie counts as gone: our own child is reaped
    here (so it does not linger), anyone else's is read from /proc."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # never waitpid(-1)/kill(-1): that would mean "any child"/"every process"
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        return stat_line[stat_line.rindex(")") + 2] not in "ZX"
    except (OSError, ValueError, IndexError):
        return True


# ------------------------------------------------------------------------ workflow auto-start
LOCK_TIMEOUT_PAD_S = 90.0  # on top of start_timeout_s: a holder may be starting or stopping a daemon


@contextmanager
def _autostart_lock(timeout_s: float, path: Path | None = None) -> Iterator[None]:
    """Exclusive flock on the runtime dir's lock file (or ``path``), waiting at most ``timeout_s``."""
    path = path or runtime.autostart_lock_file()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise DaemonError(
                        f"another voiceman run held the daemon auto-start lock {path} for more than "
                        f"{timeout_s:.0f} s (it may be starting or stopping a daemon); try again, or "
                        f"start a daemon yourself with `voiceman daemon start`"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _lock_timeout(config: dict[str, Any]) -> float:
    return float(config["daemon"]["start_timeout_s"]) + LOCK_TIMEOUT_PAD_S


def _probe(client: DaemonClient) -> dict[str, Any] | None:
    """The daemon's ping reply (state, pid, ...), or None when nothing answers.  Like
    ``is_alive``, a missing ipc socket file means no daemon, without waiting."""
    if client.endpoint.startswith("ipc://") and not os.path.exists(client.endpoint[len("ipc://") :]):
        return None
    try:
        return client.once(protocol.PING, deadline_s=client.connect_timeout_s + 1)
    except DaemonError:
        return None


def _record_users(record: dict[str, Any]) -> list[int]:
    users = record.get("users")
    if users is None and "owner_pid" in record:  # a record written before runs shared daemons
        users = [record["owner_pid"]]
    return [int(p) for p in users or [] if isinstance(p, int) and not isinstance(p, bool)]


def _record_matches(record: dict[str, Any] | None, daemon_pid: Any) -> bool:
    """Whether the auto-start record describes the daemon that answers (pid from its reply).
    A record whose daemon died is stale: a daemon answering now was started some other way."""
    return bool(record) and daemon_pid is not None and record.get("daemon_pid") == daemon_pid


def ensure_for_workflow(config: dict[str, Any], results_dir: Path) -> str:
    """Called from the Snakefile's ``onstart``.  Returns a one-line status for the log."""
    from . import node_daemon  # imports this module: imported here, not at the top

    if node_daemon.per_node(config):
        return node_daemon.per_node_start(results_dir)
    client = client_for(config)
    me = os.getpid()
    owner_file = runtime.owner_file()
    timeout_s = float(config["daemon"]["start_timeout_s"])
    with _autostart_lock(_lock_timeout(config)):
        record = _read_owner(owner_file)
        status = _probe(client)
        if status is not None:
            if not _record_matches(record, status.get("pid")):
                if record:
                    owner_file.unlink(missing_ok=True)  # about a daemon that is gone
                return f"using the running daemon at {client.endpoint} (not auto-started by a run; left running)"
            users = _record_users(record)
            live = [p for p in users if p != me and _pid_alive(p)]
            dead = [p for p in users if p != me and p not in live]
            write_json(owner_file, {**record, "users": live + [me]})
            if live:
                message = (
                    f"sharing the daemon at {client.endpoint} auto-started by another run "
                    f"(still used by pid {', '.join(map(str, live))}); the last run to finish stops it"
                )
            else:
                message = (
                    f"adopted the daemon at {client.endpoint} left by a run that died "
                    f"(pid {', '.join(map(str, dead)) or '?'}); this run stops it"
                )
            started = None
        else:
            if record:
                owner_file.unlink(missing_ok=True)
            if not config["daemon"]["autostart"]:
                raise DaemonError(f"no voiceman daemon answering at {client.endpoint} and daemon.autostart is false")
            log_file = results_dir / "logs" / "daemon.log"
            started = start_answering(client, _with_case_logs(config, results_dir), log_file, timeout_s)
            write_json(
                owner_file,
                {
                    "daemon_pid": started.pid,
                    "endpoint": client.endpoint,
                    "log": str(log_file),
                    "autostarted_by": me,
                    "users": [me],
                },
            )
            message = f"started a daemon (pid {started.pid}) at {client.endpoint} for this run; log: {log_file}"
    # Do not wait for the models: jobs that need none (ingest, ...) run while they load, and
    # the daemon's lanes take requests once their preloads are done.  A model that already
    # failed to load stops the run here, once, with its reason; one that fails later fails
    # the requests needing it, each with the load error (case.json lists them).
    try:
        status = client.ping()
    except DaemonError:
        _leave(config, client)
        raise
    if status.get("state") == "loading":
        message += "; its models are loading (jobs that need none start now)"
    if status.get("load_errors"):
        errors = "; ".join(status["load_errors"].values())
        _leave(config, client, force_stop=started is not None)
        log_file = results_dir / "logs" / "daemon.log" if started else (record or {}).get("log")
        log_hint = f" (log: {log_file})" if log_file else ""
        raise DaemonError(
            f"the daemon {'started for' if started else 'used by'} this run could not load its "
            f"models: {errors}{log_hint}"
        )
    return message


def _with_case_logs(config: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    """A daemon started for one case keeps its governor samples with that case's logs
    (unless the config names a place), so the evidence trail stays in one folder."""
    governor = dict(config.get("governor") or {})
    if not governor.get("sample_log"):
        governor["sample_log"] = str((results_dir / "logs" / "governor_samples.jsonl").resolve())
    return {**config, "governor": governor}


def release_for_workflow(config: dict[str, Any], results_dir: Path) -> str:
    """Called from ``onsuccess``/``onerror``: save the daemon's stats, then leave the daemon's
    users; the last live user of an auto-started daemon stops it."""
    from . import node_daemon  # imports this module: imported here, not at the top

    if node_daemon.per_node(config):
        return node_daemon.per_node_end(results_dir)
    client = client_for(config)
    try:
        stats = client.stats()
        write_json(results_dir / "daemon_stats.json", stats)
    except DaemonError as exc:
        _leave(config, client, answering=False)
        return f"daemon not answering at the end of the run: {exc}"
    return _leave(config, client, daemon_pid=stats.get("pid"))


def _leave(
    config: dict[str, Any],
    client: DaemonClient,
    daemon_pid: Any = None,
    answering: bool = True,
    force_stop: bool = False,
) -> str:
    """Remove this run (and dead runs) from the auto-start record; stop the daemon when it was
    auto-started and no live user remains (or ``force_stop``: it could not load its models)."""
    me = os.getpid()
    owner_file = runtime.owner_file()
    with _autostart_lock(_lock_timeout(config)):
        record = _read_owner(owner_file)
        if not record:
            return f"left the daemon at {client.endpoint} running (not auto-started by a run)"
        if not answering:
            if not _pid_alive(record.get("daemon_pid")):
                owner_file.unlink(missing_ok=True)
            else:
                others = [p for p in _record_users(record) if p != me and _pid_alive(p)]
                write_json(owner_file, {**record, "users": others})
            return "daemon not answering"
        if daemon_pid is None:
            probe = _probe(client)
            daemon_pid = probe.get("pid") if probe else None
        if not _record_matches(record, daemon_pid):
            owner_file.unlink(missing_ok=True)  # the auto-started daemon is gone; this one is not ours
            return f"left the daemon at {client.endpoint} running (not auto-started by a run)"
        others = [p for p in _record_users(record) if p != me and _pid_alive(p)]
        if others and not force_stop:
            write_json(owner_file, {**record, "users": others})
            return (
                f"left the daemon at {client.endpoint} running for {len(others)} other run(s) still "
                f"using it (pid {', '.join(map(str, others))})"
            )
        try:
            stopped = stop(client)
        except DaemonStillRunning as exc:
            return f"told the daemon auto-started for this run to stop, but {exc}"
        finally:
            owner_file.unlink(missing_ok=True)
        if not stopped:
            return f"the daemon at {client.endpoint} auto-started for this run had already gone"
        return f"stopped the daemon auto-started for this run at {client.endpoint}"


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


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
