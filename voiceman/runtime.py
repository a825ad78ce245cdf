"""Where a daemon lives on this machine: a private per-user runtime directory.

The directory holds the ipc socket and the pid/owner files.  It is created mode 0700 so no
other user on a shared box can talk to (or impersonate) the daemon that holds case data.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

ENV_RUNTIME_DIR = "VOICEMAN_RUNTIME_DIR"


def runtime_dir() -> Path:
    """$VOICEMAN_RUNTIME_DIR, else $XDG_RUNTIME_DIR/voiceman, else /tmp/voiceman-<uid>."""
    if os.environ.get(ENV_RUNTIME_DIR):
        path = Path(os.environ[ENV_RUNTIME_DIR])
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "voiceman"
    else:
        path = Path("/tmp") / f"voiceman-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise PermissionError(f"runtime dir {path} belongs to uid {st.st_uid}, not to us ({os.getuid()})")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def default_endpoint() -> str:
    return f"ipc://{runtime_dir() / 'daemon.sock'}"


def resolve_endpoint(configured: str | None) -> str:
    """``auto`` (or empty) means the per-user ipc socket; anything else is used as given."""
    if not configured or configured == "auto":
        return default_endpoint()
    return configured


def pid_file() -> Path:
    return runtime_dir() / "daemon.pid"


def owner_file() -> Path:
    """Written by a workflow run that auto-started the daemon: it names the owning process."""
    return runtime_dir() / "daemon.owner.json"
