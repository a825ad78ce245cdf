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
    """$VOICEMAN_RUNTIME_DIR, else $XDG_RUNTIME_DIR/voiceman, else /tmp/voiceman-<uid>.

    Created mode 0700 when missing.  A directory that already exists is used only when it is
    ours and 0700: it is never "repaired" with chmod, because a directory someone else prepared
    (or one left group-readable) may already hold a socket or pid file that is not ours."""
    if os.environ.get(ENV_RUNTIME_DIR):
        path = Path(os.environ[ENV_RUNTIME_DIR])
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "voiceman"
    else:
        path = Path("/tmp") / f"voiceman-{os.getuid()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask; this dir is new and ours
    except FileExistsError:
        pass
    check_private_dir(path)
    return path


def check_private_dir(path: Path) -> None:
    """Raise PermissionError unless ``path`` is a directory owned by us with mode 0700."""
    uid = os.getuid()
    link = path.lstat()
    if stat.S_ISLNK(link.st_mode) and link.st_uid != uid:
        raise PermissionError(
            f"voiceman runtime dir {path} is a symlink owned by uid {link.st_uid}, not by you (uid {uid}): "
            f"refusing it; remove it, or set {ENV_RUNTIME_DIR} to a directory of your own"
        )
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(
            f"voiceman runtime dir {path} exists but is not a directory; "
            f"remove it, or set {ENV_RUNTIME_DIR} to another path"
        )
    if st.st_uid != uid:
        raise PermissionError(
            f"voiceman runtime dir {path} belongs to uid {st.st_uid}, not to you (uid {uid}): another "
            f"account could serve or read the daemon socket there.  Set {ENV_RUNTIME_DIR} to a directory "
            f"of your own (a missing one is created 0700), or have its owner remove it"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o700:
        raise PermissionError(
            f"voiceman runtime dir {path} has mode {mode:04o}, but must be 0700 (only its owner may reach "
            f"the daemon socket).  If it is yours and no other account has used it, run "
            f"`chmod 700 {path}`; otherwise remove it or set {ENV_RUNTIME_DIR} to a new directory "
            f"(a missing one is created 0700)"
        )


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
    """Written by workflow runs that auto-started (or share) a daemon: the daemon's pid and the
    pids of the runs using it (see ``daemonctl.ensure_for_workflow``)."""
    return runtime_dir() / "daemon.owner.json"


def autostart_lock_file() -> Path:
    """flock()ed by a workflow run around "probe, start if none, record" and "release, stop if
    last", so two runs starting together end up with one daemon, stopped by the last to finish."""
    return runtime_dir() / "autostart.lock"
