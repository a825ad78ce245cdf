"""Who may talk to the daemon: the endpoint policy and ZeroMQ CURVE keys.

The daemon holds case evidence and serves anything it is asked, so reaching its socket is the
permission.  The rules, checked by the daemon before it binds and by clients before they
connect:

* ``ipc://PATH`` — a Unix socket.  The operating system is the gatekeeper: the socket must sit
  in a directory that is ours and closed to every other account (the runtime dir is 0700).
  Linux "abstract" sockets (``ipc://@name``) have no file permissions and are refused.
* ``tcp://HOST:PORT`` with CURVE keys (``daemon.curve``) — the daemon is a CURVE server: every
  connection is encrypted, and only clients whose public key is a ``*.key`` file in
  ``daemon.curve.authorized_clients`` complete the handshake (ZAP, via pyzmq's
  ``ThreadAuthenticator``).  Anyone else's messages never reach the daemon: no reply, no error,
  nothing learned.
* ``tcp://HOST:PORT`` without keys — only a loopback HOST (127.0.0.0/8, ``[::1]``,
  ``localhost``).  ``*``, ``0.0.0.0``, interface names and every other address are refused at
  start, with the config keys to set.
* every other transport (inproc, pgm, epgm, ws, vmci, ...) is refused.

Key files use ZeroMQ's certificate format (what ``zmq.auth.create_certificates`` writes:
``NAME.key`` holds the public key, ``NAME.key_secret`` both keys).  Every key file must be a
regular file owned by the user that reads it, with no permissions for group or others (0600);
anything else is refused with the file named, never silently accepted or chmod-ed.
``voiceman keys generate`` writes a server and a client key pair that way (``curve_keys``).

The settings these rules read (``daemon.endpoint`` parsed and classified, ``daemon.curve``'s
paths) and ``TransportError`` are in ``transport_settings``; ``CurveSettings`` and
``TransportError`` are imported here too, so callers keep naming them from ``transport``.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from .transport_settings import (
    SECTION,
    CurveSettings,
    Endpoint,
    TransportError,
    check_private_socket_dir,
    parse_endpoint,
)

log = logging.getLogger(__name__)

_MAX_KEY_FILE_BYTES = 64 * 1024
_Z85_KEY = re.compile(rb"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


# ------------------------------------------------------------------------------ endpoints
def _ipc_path(ep: Endpoint) -> Path:
    if ep.address.startswith("@") or ep.address.startswith("\0"):
        raise TransportError(
            f"daemon.endpoint ipc://{ep.address} is an abstract Unix socket: it has no file permissions, so "
            f"every account on this machine could reach the daemon; use daemon.endpoint: auto (the private "
            f"runtime dir) or a socket path in a directory only you can enter"
        )
    return Path(ep.address)


# ------------------------------------------------------------------------------ key files
@dataclass(frozen=True)
class KeyPair:
    public: bytes  # Z85, 40 bytes
    secret: bytes | None = None


def _read_private_file(path: Path, what: str) -> bytes:
    """The bytes of a key file that is a regular file, ours, and closed to group/others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise TransportError(f"{what} {path} does not exist (make keys with `voiceman keys generate`)") from None
    except OSError as exc:
        raise TransportError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TransportError(f"{what} {path} is not a regular file")
        uid = os.getuid()
        if st.st_uid != uid:
            raise TransportError(
                f"{what} {path} belongs to uid {st.st_uid}, not to you (uid {uid}): refusing it; key files must "
                f"be yours with mode 0600"
            )
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise TransportError(
                f"{what} {path} has mode {mode:04o}: key files must be readable by you alone (0600); "
                f"if nobody else can have read or changed it, run `chmod 600 {path}`, otherwise make new keys"
            )
        if st.st_size > _MAX_KEY_FILE_BYTES:
            raise TransportError(f"{what} {path} is {st.st_size} bytes: not a ZeroMQ key file")
        return os.read(fd, _MAX_KEY_FILE_BYTES)
    finally:
        os.close(fd)


def _parse_key(value: bytes, path: Path, what: str, name: str) -> bytes:
    value = value.strip(b" \t'\"")
    if not _Z85_KEY.match(value):
        raise TransportError(f"{what} {path}: its {name} is not a 40-character Z85 CURVE key")
    return value


def load_key_file(path: Path, what: str, need_secret: bool) -> KeyPair:
    """Read a ZeroMQ certificate file (``public-key = "..."``, ``secret-key = "..."``)."""
    data = _read_private_file(Path(path), what)
    public = secret = None
    for raw in data.splitlines():
        line = raw.strip()
        if line.startswith(b"public-key") and b"=" in line:
            public = _parse_key(line.split(b"=", 1)[1], path, what, "public-key")
        elif line.startswith(b"secret-key") and b"=" in line:
            secret = _parse_key(line.split(b"=", 1)[1], path, what, "secret-key")
    if need_secret and secret is None:
        raise TransportError(f"{what} {path} holds no secret-key (did you name the .key file instead of .key_secret?)")
    if secret is not None:
        derived = zmq.curve_public(secret)
        if public is None:
            public = derived
        elif derived != public:
            raise TransportError(f"{what} {path}: its public-key does not belong to its secret-key")
    if public is None:
        raise TransportError(f"{what} {path} holds no public-key line; not a ZeroMQ key file")
    return KeyPair(public, secret if need_secret else None)


def _setting(settings: CurveSettings, key: str) -> Path:
    value = getattr(settings, key)
    if value is None:
        raise TransportError(f"{SECTION}.{key} is not set")
    return value


def load_authorized_clients(directory: Path) -> dict[bytes, Path]:
    """The client public keys (``*.key`` files, as the authenticator reads them) in a directory
    that is ours and closed to others; each file checked like every key file."""
    what = f"{SECTION}.authorized_clients"
    try:
        st = os.stat(directory)
    except OSError as exc:
        raise TransportError(f"{what} {directory} cannot be used: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise TransportError(f"{what} {directory} is not a directory")
    uid = os.getuid()
    if st.st_uid != uid:
        raise TransportError(f"{what} {directory} belongs to uid {st.st_uid}, not to you (uid {uid}): refusing it")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise TransportError(
            f"{what} {directory} has mode {mode:04o}: whoever can write there can authorize a client; it must be "
            f"yours with mode 0700 (`chmod 700 {directory}` if nobody else can have changed it)"
        )
    keys: dict[bytes, Path] = {}
    for name in sorted(glob.glob(os.path.join(glob.escape(str(directory)), "*.key"))):
        pair = load_key_file(Path(name), "authorized client key", need_secret=False)
        keys[pair.public] = Path(name)
    if not keys:
        raise TransportError(
            f"{what} {directory} holds no client public keys (*.key files): no client could connect; copy the "
            f"client.key of each authorized client there (`voiceman keys generate` makes one)"
        )
    return keys


# ------------------------------------------------------------------------------ the daemon
@dataclass(frozen=True)
class ServerPlan:
    """What a server socket will be: checked before anything is bound or loaded."""

    endpoint: Endpoint
    mode: str  # "ipc", "tcp-loopback" or "curve"
    keys: KeyPair | None = None
    authorized: dict[bytes, Path] | None = None
    authorized_dir: Path | None = None

    def describe(self) -> str:
        if self.mode == "curve":
            return f"CURVE, {len(self.authorized or {})} authorized client key(s) from {self.authorized_dir}"
        return {"ipc": "ipc, private socket directory", "tcp-loopback": "tcp on loopback only, no CURVE keys"}[
            self.mode
        ]


def check_server(endpoint: str, settings: CurveSettings | None) -> ServerPlan:
    """The endpoint policy for a daemon; raises TransportError naming the config key to set."""
    settings = settings or CurveSettings()
    ep = parse_endpoint(endpoint)
    if ep.scheme == "ipc":
        check_private_socket_dir(_ipc_path(ep))
        return ServerPlan(ep, "ipc")
    if settings.server_configured:
        missing = [k for k in ("server_secret_key", "authorized_clients") if getattr(settings, k) is None]
        if missing:
            raise TransportError(
                f"daemon.endpoint {endpoint}: a CURVE daemon needs both {SECTION}.server_secret_key and "
                f"{SECTION}.authorized_clients; {', '.join(f'{SECTION}.{k}' for k in missing)} is not set"
            )
        keys = load_key_file(_setting(settings, "server_secret_key"), f"{SECTION}.server_secret_key", need_secret=True)
        directory = _setting(settings, "authorized_clients")
        return ServerPlan(ep, "curve", keys, load_authorized_clients(directory), directory)
    if not ep.loopback:
        raise TransportError(
            f"daemon.endpoint {endpoint}: refusing to listen on {ep.host} without CURVE keys: anyone who can "
            f"reach that address could read case evidence through the daemon or stop it.  Set "
            f"{SECTION}.server_secret_key and {SECTION}.authorized_clients (make keys with "
            f"`voiceman keys generate`), or bind a loopback address (tcp://127.0.0.1:{ep.port})"
        )
    return ServerPlan(ep, "tcp-loopback")


class ServerSecurity:
    """What ``secure_server_socket`` set up; ``close()`` after the socket is closed."""

    def __init__(self, plan: ServerPlan, authenticator: Any = None):
        self.plan = plan
        self.authenticator = authenticator

    @property
    def description(self) -> str:
        return self.plan.describe()

    def close(self) -> None:
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None


def secure_server_socket(sock: zmq.Socket, endpoint: str, settings: CurveSettings | None) -> ServerSecurity:
    """Check the policy and configure ``sock`` (not yet bound) for it.  For CURVE this starts a
    ZAP authenticator on the socket's context that admits only the authorized client keys; it
    runs until ``close()``."""
    plan = check_server(endpoint, settings)
    if plan.endpoint.ipv6:
        sock.setsockopt(zmq.IPV6, 1)
    if plan.mode != "curve":
        return ServerSecurity(plan)
    from zmq.auth.thread import ThreadAuthenticator

    assert plan.keys is not None and plan.keys.secret is not None and plan.authorized_dir is not None
    auth = ThreadAuthenticator(sock.context, log=logging.getLogger("voiceman_daemon.auth"))
    auth.start()
    try:
        auth.configure_curve(domain="*", location=str(plan.authorized_dir))
        loaded = set(auth.certs.get("*", {}))
        if not loaded or not loaded <= set(plan.authorized or {}):
            raise TransportError(
                f"{SECTION}.authorized_clients {plan.authorized_dir}: its keys changed while "
                f"the daemon was starting; start it again"
            )
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, plan.keys.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, plan.keys.public)
    except BaseException:
        auth.stop()
        raise
    return ServerSecurity(plan, auth)


# ------------------------------------------------------------------------------ clients
@dataclass(frozen=True)
class ClientPlan:
    endpoint: Endpoint
    server_key: bytes | None = None
    keys: KeyPair | None = None


def check_client(endpoint: str, settings: CurveSettings | None) -> ClientPlan:
    """The endpoint policy for a client: the keys it will use, or a TransportError."""
    settings = settings or CurveSettings()
    ep = parse_endpoint(endpoint)
    if ep.scheme == "ipc":
        return ClientPlan(ep)
    if settings.client_configured:
        missing = [k for k in ("server_public_key", "client_secret_key") if getattr(settings, k) is None]
        if missing:
            raise TransportError(
                f"daemon.endpoint {endpoint}: a CURVE client needs both {SECTION}.server_public_key and "
                f"{SECTION}.client_secret_key; {', '.join(f'{SECTION}.{k}' for k in missing)} is not set"
            )
        server = load_key_file(
            _setting(settings, "server_public_key"), f"{SECTION}.server_public_key", need_secret=False
        )
        keys = load_key_file(_setting(settings, "client_secret_key"), f"{SECTION}.client_secret_key", need_secret=True)
        return ClientPlan(ep, server.public, keys)
    if not ep.loopback:
        raise TransportError(
            f"daemon.endpoint {endpoint}: {ep.host} is not a loopback address, and a daemon there answers only "
            f"CURVE clients: set {SECTION}.server_public_key (the daemon's server.key) and "
            f"{SECTION}.client_secret_key (a client.key_secret whose client.key the daemon authorizes)"
        )
    return ClientPlan(ep)


def secure_client_socket(sock: zmq.Socket, endpoint: str, settings: CurveSettings | None) -> ClientPlan:
    """Configure ``sock`` (not yet connected) for ``endpoint``: CURVE keys on tcp when set."""
    plan = check_client(endpoint, settings)
    if plan.endpoint.ipv6:
        sock.setsockopt(zmq.IPV6, 1)
    if plan.keys is not None:
        assert plan.server_key is not None and plan.keys.secret is not None
        sock.setsockopt(zmq.CURVE_SERVERKEY, plan.server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, plan.keys.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, plan.keys.secret)
    return plan
