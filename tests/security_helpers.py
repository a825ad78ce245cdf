"""Helpers for the security tests: a real daemon process with its own case and model roots,
a raw DEALER socket that sends any bytes, RSS of a process, and a SpeechBrain model
directory that runs attacker code when it is loaded."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zmq

from conftest import daemon_overrides
from conftest import running_daemon as daemon_process_in
from voiceman.daemonlink import protocol
from voiceman.daemonlink.protocol import Message


@contextmanager
def running_daemon(
    tiny_model: Path,
    case_roots: list[Path],
    model_roots: list[Path] | None = None,
    expect_state: str = "ready",
    models: dict | None = None,
    **daemon,
) -> Iterator[tuple[subprocess.Popen, object, Path]]:
    """``python -m voiceman_daemon`` with the real tiny.en model (plus ``models``), confined to
    ``case_roots`` (and ``model_roots``), in a runtime dir of its own; yields (process, client,
    log file) once its models are loaded (``expect_state``)."""
    runtime = Path(tempfile.mkdtemp(prefix="vm-sec-", dir="/tmp"))
    overrides = daemon_overrides(
        tiny_model, case_roots=[str(p) for p in case_roots], model_roots=[str(p) for p in (model_roots or [])], **daemon
    )
    overrides["models"].update(models or {})
    try:
        with daemon_process_in(runtime, overrides, ready_timeout_s=120, expect_state=expect_state, retries=0) as (
            proc,
            client,
        ):
            yield proc, client, runtime / "daemon.log"
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def dealer(endpoint: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def exchange(endpoint: str, frame: bytes | list[bytes], timeout_ms: int = 5000) -> Message:
    """Send raw bytes (or several frames); the first non-heartbeat answer."""
    sock = dealer(endpoint)
    try:
        if isinstance(frame, list):
            sock.send_multipart(frame)
        else:
            sock.send(frame)
        while True:
            assert sock.poll(timeout_ms), "daemon did not answer"
            reply = protocol.unpack(sock.recv())
            if reply.msg_type != protocol.HEARTBEAT:
                return reply
    finally:
        sock.close()


def request(endpoint: str, msg_type: str, content: dict, timeout_ms: int = 30000) -> Message:
    return exchange(endpoint, protocol.pack(Message(msg_type, content)), timeout_ms)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def evil_speechbrain_dir(directory: Path, markers: Path) -> Path:
    """A complete SpeechBrain IEMOCAP-layout model directory (loads with the real loader) whose
    hyperparams.yaml runs ``touch markers/yaml-ran`` and whose custom_interface.py writes
    ``markers/interface-ran`` -- what an attacker's model directory does when loaded."""
    from ser_fixtures import build_speechbrain_iemocap_model

    build_speechbrain_iemocap_model(directory)
    markers.mkdir(parents=True, exist_ok=True)
    yaml = directory / "hyperparams.yaml"
    yaml.write_text(yaml.read_text() + f'\nattacker_was_here: !apply:os.system ["touch {markers / "yaml-ran"}"]\n')
    interface = directory / "custom_interface.py"
    interface.write_text(f'open({str(markers / "interface-ran")!r}, "w").write("ran")\n' + interface.read_text())
    return directory
