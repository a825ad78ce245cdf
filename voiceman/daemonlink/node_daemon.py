"""One daemon per cluster node (``daemon.per_node: true``, set by profiles/slurm).

The rule jobs that need the daemon (transcribe, ser) call ``client_for_job``, which on a
cluster finds the daemon on the node's own ipc socket or starts it (``ensure_on_this_node``),
under the same kind of flock as on one box, in a private node-local directory.  Jobs do not
stop it: it exits after ``daemon.idle_exit_s`` without messages (or with its job's cgroup, or
as the node's service).  The workflow's own ``onstart``/``onsuccess`` start nothing on the
submit host (``per_node_start``); at the end they gather the node daemons' stats, saved by
every job (``job_done``), into results/daemon_stats.json (``per_node_end``).
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..atomic import write_json
from . import runtime
from .client import DaemonClient, DaemonError
from .daemonctl import (
    _autostart_lock,
    _lock_timeout,
    _pid_alive,
    _probe,
    _read_owner,
    client_for,
    start_answering,
    wait_until_ready,
)

log = logging.getLogger(__name__)

NODE_STATS_DIR = Path("logs") / "daemon-nodes"  # under results_dir: one stats file per node daemon
_SOCKET_PATH_MAX = 100  # an ipc socket path must fit sun_path (108 bytes with its NUL)


def per_node(config: dict[str, Any]) -> bool:
    """Whether rule jobs use their own node's daemon (``daemon.per_node``: cluster profiles)."""
    return bool((config.get("daemon") or {}).get("per_node"))


def node_name() -> str:
    """This node's short host name, as SLURM names it (usable in a file name)."""
    name = socket.gethostname().split(".")[0] or "localhost"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def node_runtime_dir(config: dict[str, Any]) -> Path:
    """The private directory of this node's daemon: ``daemon.node_dir`` (default
    ``/tmp/voiceman-<uid>``) / ``node-<host>``, created 0700; an existing one must be ours and
    0700 (it is never chmod-ed).  Deliberately not $XDG_RUNTIME_DIR or $VOICEMAN_RUNTIME_DIR: a
    SLURM job inherits the submit host's environment (sbatch --export=ALL), and those name
    directories of the submit host.  The host name is part of the path so that a node_dir on
    a shared file system still gives every node its own socket and lock."""
    base = Path((config.get("daemon") or {}).get("node_dir") or f"/tmp/voiceman-{os.getuid()}").expanduser()
    host = node_name()
    if len(str(base / f"node-{host}" / "daemon.sock")) > _SOCKET_PATH_MAX:
        host = hashlib.sha256(host.encode()).hexdigest()[:12]
    path = base / f"node-{host}"
    for directory in (base, path):
        try:
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # new and ours: mkdir's mode was masked by the umask
        except FileExistsError:
            pass
        runtime.check_private_dir(directory)
    if len(str(path / "daemon.sock")) > _SOCKET_PATH_MAX:
        raise DaemonError(
            f"daemon.node_dir {base} is too long for an ipc socket path "
            f"({_SOCKET_PATH_MAX} bytes at most): choose a shorter one"
        )
    return path


def node_endpoint(config: dict[str, Any]) -> str:
    """Where this node's daemon listens: the node dir's socket for ``daemon.endpoint: auto``;
    an explicit endpoint (the node's service socket, or tcp with CURVE) is used as given."""
    configured = (config.get("daemon") or {}).get("endpoint")
    if configured and configured != "auto":
        return configured
    return f"ipc://{node_runtime_dir(config) / 'daemon.sock'}"


def gpu_devices() -> list[str]:
    """NVIDIA device nodes on this machine (``/dev/nvidia0``, ...): what a CUDA daemon needs."""
    return sorted(glob.glob("/dev/nvidia[0-9]*"))


def check_gpu_here(config: dict[str, Any]) -> None:
    """``daemon.require_gpu``: a job that needs a GPU fails at once on a node without one,
    naming the node, instead of having a daemon quietly run the models on its CPU."""
    if not (config.get("daemon") or {}).get("require_gpu"):
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = gpu_devices()
    if not devices or visible in ("", "-1", "NoDevFiles"):
        slurm = os.environ.get("SLURM_JOB_ID")
        raise DaemonError(
            f"this job needs a GPU (daemon.require_gpu: true) but node {node_name()} has none usable: "
            f"{'no /dev/nvidia* device' if not devices else f'CUDA_VISIBLE_DEVICES={visible!r}'}"
            f"{f' (SLURM job {slurm})' if slurm else ''}.  Send the GPU rules to a GPU partition "
            f"(profiles/slurm: set-resources slurm_partition / gpu), or set daemon.require_gpu: false "
            f"to let a node's daemon run the models on its CPU"
        )


def _check_daemon_on_gpu(config: dict[str, Any], client: DaemonClient) -> None:
    """``daemon.require_gpu``: the node's daemon must hold its ASR model on CUDA."""
    if not (config.get("daemon") or {}).get("require_gpu"):
        return
    asr = (client.stats().get("models") or {}).get("asr") or {}
    device = str((asr.get("custody") or {}).get("device") or "unknown")
    if not device.startswith("cuda"):
        raise DaemonError(
            f"this job needs a GPU (daemon.require_gpu: true) but the daemon on node {node_name()} "
            f"({client.endpoint}) holds its ASR model on {device}: is CUDA usable in its environment "
            f"(driver, CUDA build of torch/CTranslate2)?  Its log: {_node_log(config)}"
        )


def _node_log(config: dict[str, Any]) -> Path:
    return Path(config["results_dir"]) / "logs" / f"daemon-{node_name()}.log"


def _node_daemon_config(config: dict[str, Any], endpoint: str) -> dict[str, Any]:
    """The config a node daemon is started with: the run's, bound to the node's endpoint,
    governor samples in the case's logs under the node's name."""
    governor = dict(config.get("governor") or {})
    if not governor.get("sample_log"):
        governor["sample_log"] = str(
            (Path(config["results_dir"]) / "logs" / f"governor_samples-{node_name()}.jsonl").resolve()
        )
    return {**config, "daemon": {**config["daemon"], "endpoint": endpoint}, "governor": governor}


def ensure_on_this_node(config: dict[str, Any]) -> DaemonClient:
    """For a rule job on a cluster node (``daemon.per_node``): a client of this node's daemon.

    The first job on a node starts it (``daemon.autostart``), every later job finds it on the
    node's ipc socket, so the models are loaded once per node.  "Probe, start if none, record"
    runs under an exclusive flock in the node's private dir, as on one box.  No job stops it:
    it exits by itself after ``daemon.idle_exit_s`` without messages.  With
    ``daemon.require_gpu`` a node without a GPU fails the job before anything starts."""
    check_gpu_here(config)
    endpoint = node_endpoint(config)
    client = client_for(config, endpoint)
    timeout_s = float(config["daemon"]["start_timeout_s"])
    auto = endpoint.startswith("ipc://") and (config["daemon"].get("endpoint") in (None, "", "auto"))
    if auto:
        node_dir = node_runtime_dir(config)
        lock, owner_file = node_dir / "autostart.lock", node_dir / "daemon.owner.json"
        with _autostart_lock(_lock_timeout(config), lock):
            record = _read_owner(owner_file)
            sock = Path(endpoint[len("ipc://") :])
            if record and not _pid_alive(record.get("daemon_pid")):
                # Its daemon is gone (idle exit, or killed with its job's cgroup): a socket file it
                # left would only make the probe wait out the connect timeout.
                sock.unlink(missing_ok=True)
                owner_file.unlink(missing_ok=True)
            if _probe(client) is None:
                if not config["daemon"]["autostart"]:
                    raise DaemonError(
                        f"no voiceman daemon answering on node {node_name()} at {endpoint} "
                        f"and daemon.autostart is false"
                    )
                log_file = _node_log(config)
                started = start_answering(
                    client,
                    _node_daemon_config(config, endpoint),
                    log_file,
                    timeout_s,
                    env={runtime.ENV_RUNTIME_DIR: str(node_dir)},
                )
                write_json(
                    owner_file,
                    {
                        "daemon_pid": started.pid,
                        "endpoint": endpoint,
                        "log": str(log_file),
                        "node": node_name(),
                        "autostarted_by": os.getpid(),
                        "slurm_job": os.environ.get("SLURM_JOB_ID"),
                    },
                )
                log.info(
                    "started the daemon of node %s (pid %d) at %s; log: %s",
                    node_name(),
                    started.pid,
                    endpoint,
                    log_file,
                )
    status = wait_until_ready(client, timeout_s)
    if status.get("load_errors"):
        raise DaemonError(
            f"the daemon of node {node_name()} ({endpoint}) could not load its models: "
            f"{'; '.join(status['load_errors'].values())} (log: {_node_log(config)})"
        )
    _check_daemon_on_gpu(config, client)
    return client


def client_for_job(config: dict[str, Any]) -> DaemonClient:
    """The daemon client of a rule job: this node's daemon with ``daemon.per_node``, else the
    run's daemon (``daemon.endpoint``)."""
    return ensure_on_this_node(config) if per_node(config) else client_for(config)


def job_done(config: dict[str, Any], client: DaemonClient) -> None:
    """After a rule job's requests (``daemon.per_node`` only): save the node daemon's stats to
    results/logs/daemon-nodes/<node>-<pid>.json, under the node's lock so that a later
    snapshot is never overwritten by an earlier one.  The run's end gathers them."""
    if not per_node(config):
        return
    target_dir = Path(config["results_dir"]) / NODE_STATS_DIR
    try:
        lock = node_runtime_dir(config) / "stats.lock"
        with _autostart_lock(30.0, lock):
            stats = client.stats()
            stats["node"] = node_name()
            stats["saved_unix"] = time.time()
            write_json(target_dir / f"{node_name()}-{stats.get('pid')}.json", stats)
    except (DaemonError, OSError) as exc:  # the job's own results are written: only say so
        log.warning("could not save the stats of node %s's daemon: %s", node_name(), exc)


def per_node_start(results_dir: Path) -> str:
    """``onstart`` with per-node daemons: nothing to start here (the submit host may have no
    GPU); drop the previous run's node stats so that this run's daemon_stats.json is its own."""
    for old in (results_dir / NODE_STATS_DIR).glob("*.json"):
        old.unlink(missing_ok=True)
    return (
        "daemon.per_node: each node's first GPU job starts that node's daemon "
        "(no daemon on this host); it stops after daemon.idle_exit_s idle"
    )


_SUMMED = ("loads", "load_failures", "unloads", "requests", "failed_requests", "busy_s", "load_s")


def merge_node_stats(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """results/daemon_stats.json from the node daemons' stats.  One daemon: its stats as they
    are (the run report reads them exactly as after a local run).  Several: model and request
    counts summed (``loads`` = model loads on all nodes), each daemon's stats under ``daemons``."""
    daemons = [
        {
            "node": s.get("node"),
            "pid": s.get("pid"),
            "loads": {k: m.get("loads") for k, m in (s.get("models") or {}).items()},
        }
        for s in snapshots
    ]
    if len(snapshots) == 1:
        return {**snapshots[0], "per_node": True, "daemons": daemons}
    models: dict[str, dict[str, Any]] = {}
    requests: dict[str, dict[str, Any]] = {}
    for snap in snapshots:
        for kind, m in (snap.get("models") or {}).items():
            acc = models.setdefault(kind, {"kind": kind})
            for key in _SUMMED:
                acc[key] = round(acc.get(key, 0) + (m.get(key) or 0), 3)
        for kind, r in (snap.get("requests") or {}).items():
            acc = requests.setdefault(kind, {})
            for key, value in r.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    acc[key] = round(acc.get(key, 0) + value, 3)
    return {
        "per_node": True,
        "daemons": daemons,
        "models": models,
        "requests": requests,
        "nodes": {f"{s.get('node')}-{s.get('pid')}": s for s in snapshots},
    }


def per_node_end(results_dir: Path) -> str:
    snapshots = []
    for path in sorted((results_dir / NODE_STATS_DIR).glob("*.json")):
        record = _read_owner(path)
        if record:
            snapshots.append(record)
    if not snapshots:
        return "daemon.per_node: no node daemon saved stats in this run (no GPU job ran?)"
    write_json(results_dir / "daemon_stats.json", merge_node_stats(snapshots))
    nodes = sorted({str(s.get("node")) for s in snapshots})
    return (
        f"daemon.per_node: stats of {len(snapshots)} node daemon(s) on {', '.join(nodes)} saved; "
        f"they stop by themselves after daemon.idle_exit_s idle"
    )
