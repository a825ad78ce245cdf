"""Who may talk to the daemon (voiceman/daemonlink/transport.py): ipc in a private directory; tcp on
loopback, or anywhere with ZeroMQ CURVE keys, answering only authorized clients; keys made by
``voiceman keys generate`` and refused when anyone else could read or change them.  Real
sockets on 127.0.0.1, a real daemon process for the end-to-end check."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from conftest import REPO, daemon_overrides
from voiceman.cli import main as cli_main
from voiceman.daemonlink import curve_keys, protocol, transport
from voiceman.daemonlink.client import DaemonClient, DaemonUnavailable
from voiceman.daemonlink.transport import CurveSettings, TransportError
from voiceman_daemon.core import DaemonCore
from voiceman_daemon.registry import ModelRegistry
from voiceman_daemon.server import DaemonServer

VOICEMAN = Path(sys.executable).with_name("voiceman")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, within_s: float = 5.0) -> bool:
    """Nothing listens on the port (connections left in TIME_WAIT do not count).

    ZeroMQ closes a listener in its I/O thread after `close()` returns, so a port the daemon
    has just let go of may stay bound for a moment: wait for it, bounded, rather than race it."""
    deadline = time.monotonic() + within_s
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
        time.sleep(0.05)


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    return curve_keys.generate_keys(tmp_path / "keys")


def server_settings(keys) -> CurveSettings:
    return CurveSettings(
        server_secret_key=keys["server_secret_key"], authorized_clients=keys["authorized_client"].parent
    )


def client_settings(keys, client_secret: Path | None = None) -> CurveSettings:
    return CurveSettings(
        server_public_key=keys["server_public_key"], client_secret_key=client_secret or keys["client_secret_key"]
    )


def serve(endpoint: str, curve: CurveSettings | None):
    srv = DaemonServer(endpoint, DaemonCore(ModelRegistry({}), default_specs={}), heartbeat_interval_s=0.2, curve=curve)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    return srv, thread


def stop(srv, thread):
    srv.request_stop()
    thread.join(10)
    assert not thread.is_alive()


# --------------------------------------------------------------------------- endpoint policy
@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://127.0.0.1:5555",
        "tcp://127.4.5.6:5555",
        "tcp://[::1]:5555",
        "tcp://localhost:5555",
        "tcp://LOCALHOST:5555",
    ],
)
def test_loopback_tcp_needs_no_keys(endpoint):
    assert transport.check_server(endpoint, None).mode == "tcp-loopback"
    assert transport.check_client(endpoint, None).keys is None


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://*:5555",
        "tcp://0.0.0.0:5555",
        "tcp://[::]:5555",
        "tcp://192.168.1.20:5555",
        "tcp://10.0.0.1:5555",
        "tcp://eth0:5555",
        "tcp://lo:5555",
        "tcp://gpu-node-1:5555",
        "tcp://[::ffff:127.0.0.1]:5555",
    ],
)
def test_other_tcp_binds_without_keys_are_refused_naming_the_config_keys(endpoint):
    with pytest.raises(TransportError) as err:
        transport.check_server(endpoint, None)
    message = str(err.value)
    assert endpoint in message and "daemon.curve.server_secret_key" in message
    assert "daemon.curve.authorized_clients" in message and "voiceman keys generate" in message
    with pytest.raises(TransportError, match="daemon.curve.client_secret_key"):
        transport.check_client(endpoint, None)


@pytest.mark.parametrize(
    "endpoint",
    [
        "inproc://voiceman",
        "pgm://eth0;239.192.1.1:5555",
        "epgm://eth0;239.192.1.1:5555",
        "ws://127.0.0.1:5555",
        "wss://127.0.0.1:5555",
        "vmci://1:5555",
        "udp://127.0.0.1:5555",
        "tipc://{1,2}",
        "/tmp/x.sock",
    ],
)
def test_other_transports_are_refused(endpoint, keys):
    for settings in (None, server_settings(keys)):
        with pytest.raises(TransportError):
            transport.check_server(endpoint, settings)
    with pytest.raises(TransportError):
        transport.check_client(endpoint, client_settings(keys))


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://127.0.0.1:*",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:99999",
        "tcp://::1:5555",
        "tcp://127.0.0.1:5555;10.0.0.1:5555",
    ],
)
def test_malformed_tcp_endpoints_are_refused(endpoint):
    with pytest.raises(TransportError):
        transport.check_server(endpoint, None)


def test_ipc_needs_a_private_directory(tmp_path):
    private = tmp_path / "rt"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    assert transport.check_server(f"ipc://{private / 'd.sock'}", None).mode == "ipc"
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    with pytest.raises(TransportError, match="mode 0755.*0700"):
        DaemonServer(f"ipc://{shared / 'd.sock'}", DaemonCore(ModelRegistry({}), default_specs={}))
    os.chown(private, 65534, 65534)
    with pytest.raises(TransportError, match="belongs to uid 65534"):
        transport.check_server(f"ipc://{private / 'd.sock'}", None)
    with pytest.raises(TransportError, match="abstract"):
        transport.check_server("ipc://@voiceman", None)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # refused, never chmod-ed


# --------------------------------------------------------------------------- keys
def test_generate_writes_0600_keys_in_0700_dirs_and_never_overwrites(tmp_path):
    target = tmp_path / "conf" / "keys"
    paths = curve_keys.generate_keys(target)
    assert set(paths) == {
        "server_public_key",
        "server_secret_key",
        "client_public_key",
        "client_secret_key",
        "authorized_client",
    }
    for directory in (target, target / "authorized_clients"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in paths.values():
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
    server = transport.load_key_file(paths["server_secret_key"], "k", need_secret=True)
    client = transport.load_key_file(paths["client_secret_key"], "k", need_secret=True)
    assert server.public != client.public and server.secret != client.secret
    assert transport.load_key_file(paths["server_public_key"], "k", need_secret=False).public == server.public
    assert transport.load_authorized_clients(target / "authorized_clients") == {
        client.public: paths["authorized_client"]
    }
    # pyzmq reads the same files (its authenticator loads the authorized_clients directory)
    import zmq.auth

    assert zmq.auth.load_certificate(paths["server_secret_key"]) == (server.public, server.secret)
    before = {p: p.read_bytes() for p in paths.values()}
    with pytest.raises(TransportError, match="refusing to overwrite"):
        curve_keys.generate_keys(target)
    assert {p: p.read_bytes() for p in paths.values()} == before


def test_generate_refuses_an_existing_directory_open_to_others(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o755)
    with pytest.raises(TransportError, match="mode 0755"):
        curve_keys.generate_keys(open_dir)
    assert list(open_dir.iterdir()) == [] and stat.S_IMODE(open_dir.stat().st_mode) == 0o755


def test_keys_generate_command_prints_paths_and_refuses_to_overwrite(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert cli_main(["keys", "generate"]) == 0
    out = capsys.readouterr().out
    default = tmp_path / "xdg" / "voiceman" / "keys"
    assert f"server_secret_key: {default / 'server.key_secret'}" in out
    assert f"authorized_clients: {default / 'authorized_clients'}" in out
    assert stat.S_IMODE((default / "client.key_secret").stat().st_mode) == 0o600
    assert cli_main(["keys", "generate"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    done = subprocess.run(
        [str(VOICEMAN), "keys", "generate", "--dir", str(tmp_path / "other")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "other" / "client.key_secret") in done.stdout


def test_key_files_open_to_others_or_not_ours_are_refused(keys):
    secret = keys["server_secret_key"]
    os.chmod(secret, 0o644)
    with pytest.raises(TransportError, match=r"mode 0644.*0600.*chmod 600"):
        transport.check_server("tcp://0.0.0.0:5555", server_settings(keys))
    os.chmod(secret, 0o600)
    os.chown(secret, 65534, 65534)
    with pytest.raises(TransportError, match="belongs to uid 65534"):
        transport.check_server("tcp://0.0.0.0:5555", server_settings(keys))
    os.chown(secret, os.getuid(), os.getgid())
    authorized = keys["authorized_client"]
    os.chmod(authorized, 0o664)
    with pytest.raises(TransportError, match="authorized client key .*mode 0664"):
        transport.check_server("tcp://0.0.0.0:5555", server_settings(keys))
    os.chmod(authorized, 0o600)
    os.chmod(authorized.parent, 0o770)
    with pytest.raises(TransportError, match="authorized_clients .*mode 0770"):
        transport.check_server("tcp://0.0.0.0:5555", server_settings(keys))
    os.chmod(authorized.parent, 0o700)
    os.chmod(keys["client_secret_key"], 0o640)
    with pytest.raises(TransportError, match="client_secret_key .*mode 0640"):
        DaemonClient("tcp://10.1.2.3:5555", curve=client_settings(keys))
    os.chmod(keys["client_secret_key"], 0o600)
    assert transport.check_server("tcp://0.0.0.0:5555", server_settings(keys)).mode == "curve"
    assert transport.check_client("tcp://10.1.2.3:5555", client_settings(keys)).keys is not None


def test_incomplete_or_wrong_key_settings_are_refused(keys, tmp_path):
    with pytest.raises(TransportError, match="daemon.curve.authorized_clients is not set"):
        transport.check_server("tcp://0.0.0.0:5555", CurveSettings(server_secret_key=keys["server_secret_key"]))
    with pytest.raises(TransportError, match="daemon.curve.client_secret_key is not set"):
        transport.check_client("tcp://10.0.0.1:5555", CurveSettings(server_public_key=keys["server_public_key"]))
    with pytest.raises(TransportError, match="holds no secret-key"):  # the public file named as the secret
        transport.check_server(
            "tcp://0.0.0.0:5555",
            CurveSettings(
                server_secret_key=keys["server_public_key"], authorized_clients=keys["authorized_client"].parent
            ),
        )
    with pytest.raises(TransportError, match="does not exist.*voiceman keys generate"):
        transport.check_client(
            "tcp://10.0.0.1:5555",
            CurveSettings(server_public_key=tmp_path / "missing.key", client_secret_key=keys["client_secret_key"]),
        )
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    os.chmod(empty, 0o700)
    with pytest.raises(TransportError, match="no client public keys"):
        transport.check_server(
            "tcp://0.0.0.0:5555", CurveSettings(server_secret_key=keys["server_secret_key"], authorized_clients=empty)
        )
    mixed = (
        keys["server_secret_key"]
        .read_text()
        .replace(
            transport.load_key_file(keys["server_secret_key"], "k", True).public.decode(),
            transport.load_key_file(keys["client_public_key"], "k", False).public.decode(),
        )
    )
    forged = tmp_path / "forged.key_secret"
    forged.write_text(mixed)
    os.chmod(forged, 0o600)
    with pytest.raises(TransportError, match="does not belong to its secret-key"):
        transport.load_key_file(forged, "k", need_secret=True)


def test_curve_settings_come_from_the_validated_config(keys):
    from voiceman.config import ConfigError, load_config
    from voiceman.daemonlink.daemonctl import client_for

    config = load_config(
        None,
        {
            "daemon": {
                "endpoint": "tcp://10.9.8.7:5555",
                "curve": {
                    "server_public_key": str(keys["server_public_key"]),
                    "client_secret_key": str(keys["client_secret_key"]),
                },
            }
        },
    )
    settings = CurveSettings.from_config(config)
    assert settings.client_configured and not settings.server_configured
    assert client_for(config).curve == settings
    assert CurveSettings.from_config(load_config(None)) == CurveSettings()
    with pytest.raises(ConfigError, match="daemon.curve"):
        load_config(None, {"daemon": {"curve": {"client_public_key": "x"}}})
    with pytest.raises(TransportError, match="daemon.curve.client_secret_key"):  # no keys: refused at once
        client_for(load_config(None, {"daemon": {"endpoint": "tcp://10.9.8.7:5555"}}))


# --------------------------------------------------------------------------- real sockets
def test_loopback_tcp_daemon_without_keys_serves_as_before(runtime_dir):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    srv, thread = serve(endpoint, None)
    try:
        assert DaemonClient(endpoint, connect_timeout_s=5).ping()["protocol_version"] == protocol.PROTOCOL_VERSION
    finally:
        stop(srv, thread)


def test_refused_bind_binds_nothing(runtime_dir):
    port = free_port()
    with pytest.raises(TransportError, match="daemon.curve.server_secret_key"):
        serve(f"tcp://0.0.0.0:{port}", None)
    assert port_is_free(port, within_s=0)


def test_curve_daemon_answers_only_authorized_clients(runtime_dir, keys, tmp_path):
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    srv, thread = serve(endpoint, server_settings(keys))
    try:
        authorized = DaemonClient(endpoint, connect_timeout_s=5, curve=client_settings(keys))
        assert authorized.ping()["state"] == "ready"

        intruder_keys = curve_keys.generate_keys(tmp_path / "intruder")  # a valid key pair, not authorized
        strangers = {
            "anonymous": DaemonClient(endpoint, connect_timeout_s=1, retries=0),
            "unauthorized key": DaemonClient(
                endpoint,
                connect_timeout_s=1,
                retries=0,
                curve=client_settings(keys, intruder_keys["client_secret_key"]),
            ),
            "wrong server key": DaemonClient(
                endpoint,
                connect_timeout_s=1,
                retries=0,
                curve=CurveSettings(
                    server_public_key=intruder_keys["server_public_key"], client_secret_key=keys["client_secret_key"]
                ),
            ),
        }
        for who, client in strangers.items():
            started = time.monotonic()
            with pytest.raises(DaemonUnavailable, match="no voiceman daemon answering") as err:
                client.ping()
            assert time.monotonic() - started < 3, who
            assert endpoint in str(err.value)
            # control messages go nowhere either: the daemon is not stopped, nothing is revealed
            for msg_type in (protocol.SHUTDOWN, protocol.STATS):
                with pytest.raises(DaemonUnavailable):
                    client.once(msg_type, deadline_s=2)
            assert thread.is_alive(), who
        # the same raw frame an anonymous DEALER sends gets no reply at all
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(endpoint)
        raw.send(protocol.pack(protocol.Message(protocol.SHUTDOWN)))
        assert not raw.poll(1000)
        raw.close()

        assert thread.is_alive() and not srv.core.stopping
        stats = authorized.stats()
        assert stats["state"] == "ready"
        assert authorized.call(protocol.SHUTDOWN, deadline_s=5)["stopping"] is True
        thread.join(10)
        assert not thread.is_alive()
    finally:
        if thread.is_alive():
            stop(srv, thread)
    assert port_is_free(port)
    # the authenticator stopped with the server: another CURVE daemon can start in this process
    srv2, thread2 = serve(endpoint, server_settings(keys))
    try:
        assert DaemonClient(endpoint, connect_timeout_s=5, curve=client_settings(keys)).ping()["state"] == "ready"
    finally:
        stop(srv2, thread2)


def test_real_daemon_process_on_tcp_with_curve_transcribes_for_an_authorized_client(
    runtime_dir, keys, tiny_model, speech_case, tmp_path
):
    from voiceman.daemonlink.daemonctl import wait_until_answering, wait_until_ready

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    overrides = daemon_overrides(tiny_model)
    overrides["case_dir"] = str(speech_case)
    overrides["daemon"]["curve"] = {
        "server_secret_key": str(keys["server_secret_key"]),
        "authorized_clients": str(keys["authorized_client"].parent),
    }
    log = runtime_dir / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voiceman_daemon", "--overrides", json.dumps(overrides), "--endpoint", endpoint],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        client = DaemonClient(endpoint, connect_timeout_s=5, heartbeat_timeout_s=10, curve=client_settings(keys))
        wait_until_answering(client, proc, 60, log)
        assert wait_until_ready(client, 120)["state"] == "ready", log.read_text()[-2000:]
        clip = speech_case / "call-01.wav"
        result = client.call("transcribe", deadline_s=120, audio_path=str(clip), options={"language": "en"})
        text = " ".join(s["text"] for s in result["segments"]).lower()
        assert "tomorrow" in text and "money" in text, text
        anonymous = DaemonClient(endpoint, connect_timeout_s=1, retries=0)
        with pytest.raises(DaemonUnavailable, match="no voiceman daemon answering"):
            anonymous.once(protocol.SHUTDOWN, deadline_s=2)
        assert proc.poll() is None
        assert client.stats()["requests"]["transcribe"]["ok"] == 1
        assert "CURVE, 1 authorized client key(s)" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    assert proc.returncode == 0, log.read_text()[-2000:]


def test_real_daemon_process_refuses_a_public_bind_without_keys(runtime_dir, tiny_model):
    port = free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "voiceman_daemon",
            "--overrides",
            json.dumps(daemon_overrides(tiny_model)),
            "--endpoint",
            f"tcp://0.0.0.0:{port}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "daemon.curve.server_secret_key" in done.stderr and "Traceback" not in done.stderr
    assert port_is_free(port, within_s=0)
