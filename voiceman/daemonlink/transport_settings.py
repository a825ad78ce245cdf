"""The transport's settings, parsed and checked before anything is bound, connected or
loaded: ``daemon.endpoint`` (the scheme allowed, the host and port split out, whether the host
is loopback; an ipc socket's directory must be ours and 0700) and ``daemon.curve`` (the key
file paths), and ``TransportError``, the refusal every check here and in ``transport`` raises.
What each endpoint may do with or without keys is decided in ``transport`` (``check_server``,
``check_client``), whose docstring writes the rules out."""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECTION = "daemon.curve"
LOOPBACK_NAMES = ("localhost",)
ALLOWED_SCHEMES = ("ipc", "tcp")


class TransportError(ValueError):
    """An endpoint or key setting the security model does not allow; the message says which
    config key to set or which file to fix."""


# ------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class CurveSettings:
    """Paths from ``daemon.curve``.  The daemon uses ``server_secret_key`` and
    ``authorized_clients``; a client uses ``server_public_key`` and ``client_secret_key``.
    All None = no CURVE (ipc, or tcp on loopback only)."""

    server_secret_key: Path | None = None
    server_public_key: Path | None = None
    client_secret_key: Path | None = None
    authorized_clients: Path | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CurveSettings:
        """From a whole config (``config["daemon"]["curve"]``); missing or null = not set."""
        section = ((config or {}).get("daemon") or {}).get("curve") or {}
        if not isinstance(section, dict):
            raise TransportError(f"{SECTION} must be a mapping of key file paths, not {type(section).__name__}")

        def path(key: str) -> Path | None:
            value = section.get(key)
            if value in (None, ""):
                return None
            if not isinstance(value, (str, os.PathLike)):
                raise TransportError(f"{SECTION}.{key} must be a path, not {value!r}")
            return Path(value).expanduser()

        return cls(
            **{
                key: path(key)
                for key in ("server_secret_key", "server_public_key", "client_secret_key", "authorized_clients")
            }
        )

    @property
    def server_configured(self) -> bool:
        return self.server_secret_key is not None or self.authorized_clients is not None

    @property
    def client_configured(self) -> bool:
        return self.server_public_key is not None or self.client_secret_key is not None


# ------------------------------------------------------------------------------ endpoints
@dataclass(frozen=True)
class Endpoint:
    scheme: str  # "ipc" or "tcp"
    address: str  # what follows "scheme://"
    host: str | None = None
    port: int | None = None
    ipv6: bool = False  # a bracketed IPv6 literal (the socket needs ZMQ_IPV6)

    @property
    def loopback(self) -> bool:
        if self.scheme != "tcp" or self.host is None:
            return False
        if self.host.lower() in LOOPBACK_NAMES:
            return True
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            return False  # a host or interface name: it could resolve to anything
        # 127.0.0.0/8 and ::1 only (an IPv4-mapped ::ffff:127.x counts as loopback only on some Pythons)
        return ip.is_loopback if ip.version == 4 else ip == ipaddress.IPv6Address("::1")


def parse_endpoint(endpoint: str) -> Endpoint:
    """Split an endpoint the policy allows (``ipc://PATH``, ``tcp://HOST:PORT``, IPv6 as
    ``tcp://[ADDR]:PORT``); anything else raises TransportError."""
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise TransportError(
            f"daemon.endpoint {endpoint!r} is not a ZeroMQ endpoint (use 'auto', ipc://PATH or tcp://HOST:PORT)"
        )
    scheme, address = endpoint.split("://", 1)
    scheme = scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise TransportError(
            f"daemon.endpoint {endpoint}: the {scheme}:// transport is not allowed; the daemon listens "
            f"only on ipc:// (its private runtime dir; daemon.endpoint: auto) or tcp:// (loopback, or any "
            f"address with CURVE keys in {SECTION})"
        )
    if scheme == "ipc":
        if not address:
            raise TransportError(f"daemon.endpoint {endpoint}: no socket path")
        return Endpoint("ipc", address)
    if ";" in address:
        raise TransportError(f"daemon.endpoint {endpoint}: a tcp source address (';') is not supported")
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise TransportError(f"daemon.endpoint {endpoint}: expected tcp://HOST:PORT")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TransportError(
            f"daemon.endpoint {endpoint}: the port must be a number from 1 to 65535 "
            f"(wildcard or ephemeral ports are not supported)"
        )
    ipv6 = False
    if host.startswith("[") and host.endswith("]"):
        host, ipv6 = host[1:-1], True
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TransportError(f"daemon.endpoint {endpoint}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise TransportError(
            f"daemon.endpoint {endpoint}: write an IPv6 address in brackets, tcp://[{host}]:{port_text}"
        )
    return Endpoint("tcp", address, host, int(port_text), ipv6)


def check_private_socket_dir(socket_path: Path) -> None:
    """The directory of an ipc socket must be ours and closed to group and others (0700)."""
    directory = socket_path.parent if str(socket_path.parent) else Path(".")
    try:
        st = directory.stat()
    except OSError as exc:
        raise TransportError(
            f"daemon.endpoint ipc://{socket_path}: its directory {directory} cannot be used ({exc.strerror})"
        ) from None
    uid = os.getuid()
    if st.st_uid != uid:
        raise TransportError(
            f"daemon.endpoint ipc://{socket_path}: its directory {directory} belongs to uid {st.st_uid}, not to "
            f"you (uid {uid}); use daemon.endpoint: auto (the private runtime dir) or a directory of your own "
            f"with mode 0700"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise TransportError(
            f"daemon.endpoint ipc://{socket_path}: its directory {directory} has mode {mode:04o}, so other "
            f"accounts could reach the daemon socket; use daemon.endpoint: auto (the private runtime dir) or "
            f"a directory with mode 0700"
        )
