"""``voiceman keys generate``: a server and a client CURVE key pair, written the way
``transport`` accepts key files (0600 files in 0700 directories, ours alone)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import zmq

from .transport import TransportError

KEY_FILES = {
    "server_public_key": "server.key",
    "server_secret_key": "server.key_secret",
    "client_public_key": "client.key",
    "client_secret_key": "client.key_secret",
    "authorized_client": "authorized_clients/client.key",
}


def default_key_dir() -> Path:
    """``$XDG_CONFIG_HOME/voiceman/keys``, else ``~/.config/voiceman/keys``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "voiceman" / "keys"


def _private_dir(path: Path) -> None:
    """Create ``path`` 0700, or accept an existing one only when it is ours and 0700-closed."""
    try:
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # new and ours; mkdir's mode is masked by the umask
        return
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise TransportError(f"key directory {path} exists and is not a directory (or is a symlink)")
    if st.st_uid != os.getuid():
        raise TransportError(f"key directory {path} belongs to uid {st.st_uid}, not to you; choose another --dir")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise TransportError(
            f"key directory {path} has mode {mode:04o}; keys go only in a directory closed to "
            f"others (0700): choose another --dir, or `chmod 700 {path}` if it is yours alone"
        )


def _key_text(public: bytes, secret: bytes | None, role: str) -> bytes:
    lines = [
        f"#   ZeroMQ CURVE {'secret' if secret else 'public'} key: voiceman {role}",
        "#   made by `voiceman keys generate`; keep mode 0600",
        "",
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return ("\n".join(lines) + "\n").encode()


def _write_new_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_keys(directory: Path | None = None) -> dict[str, Path]:
    """Make a server and a client CURVE key pair (``zmq.curve_keypair``) in ``directory``
    (default ``default_key_dir()``), mode 0600 in 0700 directories, the client's public key also
    in ``authorized_clients/``.  Refuses to overwrite any existing key file."""
    directory = Path(directory).expanduser() if directory else default_key_dir()
    paths = {name: directory / rel for name, rel in KEY_FILES.items()}
    existing = [str(p) for p in paths.values() if os.path.lexists(p)]
    if existing:
        raise TransportError(
            f"refusing to overwrite existing key files: {', '.join(existing)} "
            f"(remove them first, or choose another --dir)"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    _private_dir(directory)
    _private_dir(directory / "authorized_clients")
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    contents = {
        "server_public_key": _key_text(server_public, None, "daemon (server)"),
        "server_secret_key": _key_text(server_public, server_secret, "daemon (server)"),
        "client_public_key": _key_text(client_public, None, "client"),
        "client_secret_key": _key_text(client_public, client_secret, "client"),
        "authorized_client": _key_text(client_public, None, "client"),
    }
    written: list[Path] = []
    try:
        for name, data in contents.items():
            _write_new_private(paths[name], data)
            written.append(paths[name])
    except FileExistsError:
        for path in written:  # someone raced us: leave no half-made set behind
            path.unlink(missing_ok=True)
        raise TransportError(f"key files appeared in {directory} while writing; nothing was kept") from None
    return paths
