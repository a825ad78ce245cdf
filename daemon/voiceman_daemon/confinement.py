"""What the daemon may read and load, decided by its own configuration, never by a request.

- Evidence: only regular files whose real path lies under the case roots
  (``daemon.case_roots``, default the config's ``case_dir``).  :class:`CaseRoots` resolves a
  request's ``audio_path`` (absolute paths only), opens the file itself (O_NOFOLLOW on the
  resolved path, regular files only, see voiceman.audio.open_evidence) and checks the opened
  descriptor's real path again, so a symlink swapped in between cannot lead outside.  A
  refusal names only the request's own file (its base name) and says the same thing whether
  or not the path exists, so a client cannot probe the file system through the daemon.
- Models: a request may name a model kind's configured id (any revision: S3's reload still
  works) or a directory whose real path lies inside ``daemon.model_roots``.  Anything else --
  another path, a hub id -- is refused before anything is loaded (registry.ModelTrust).
  Model directories are trusted code (SpeechBrain's hyperparams.yaml and custom_interface.py
  run at load), so the roots must hold only directories an administrator put there; a
  configured model may pin ``sha256`` (:func:`sha256_tree`), checked by the registry before
  every load.

``python -m voiceman_daemon.confinement DIR`` prints the pin for a model directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from voiceman.audio import open_evidence
from voiceman.hashing import combine_digests, sha256_file


class Refused(ValueError):
    """A request the daemon will not serve; ``scope`` goes into the error reply."""

    scope = "request"


class PathRefused(Refused):
    """The request's audio file is not a regular file under the case roots (the file fails)."""

    scope = "request"


class ModelRefused(Refused):
    """The request names a model the daemon's configuration does not trust.  Scope "daemon":
    nothing is wrong with the evidence file, this daemon will not serve that model to anyone."""

    scope = "daemon"


def real_roots(roots: Iterable[str | Path], base: str | Path | None = None) -> tuple[Path, ...]:
    """Real paths of ``roots`` (relative ones taken from ``base``, default the working dir)."""
    out = []
    for root in roots:
        path = Path(root).expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        out.append(Path(os.path.realpath(path)))
    return tuple(dict.fromkeys(out))


def within(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or root in path.parents for root in roots)


class CaseRoots:
    """The folders whose regular files the daemon may read."""

    def __init__(self, roots: Iterable[str | Path], base: str | Path | None = None):
        self.roots = real_roots(roots, base)

    def __repr__(self) -> str:
        return f"CaseRoots({[str(r) for r in self.roots]})"

    def _refused(self, name: str) -> PathRefused:
        return PathRefused(
            f"{name}: not inside the daemon's case roots; the daemon reads only files under "
            f"daemon.case_roots (default: the case_dir of its configuration)"
        )

    def resolve(self, path: str) -> Path:
        name = os.path.basename(str(path).rstrip("/")) or "audio_path"
        if not os.path.isabs(path):
            raise PathRefused(f"{name}: audio_path must be an absolute path")
        real = Path(os.path.realpath(path))
        if not within(real, self.roots):
            raise self._refused(name)
        return real

    def open(self, path: str) -> int:
        """A read-only descriptor on the request's file, or PathRefused / AudioDecodeError
        (the file's own reason: missing, a FIFO, ...) naming only its base name."""
        name = os.path.basename(str(path).rstrip("/")) or "audio_path"
        real = self.resolve(path)
        fd = open_evidence(real, follow_symlinks=False)
        try:
            opened = Path(os.readlink(f"/proc/self/fd/{fd}")) if os.path.isdir("/proc/self/fd") else real
        except OSError:
            opened = real
        if not within(opened, self.roots):  # swapped between resolve and open
            os.close(fd)
            raise self._refused(name)
        return fd


def case_roots_from_config(config: dict) -> CaseRoots:
    """``daemon.case_roots``, default the config's ``case_dir`` (a workflow hands its config to
    the daemon it starts, so its case folder is a root); relative paths from the working dir."""
    roots = (config.get("daemon") or {}).get("case_roots")
    if not roots:
        roots = [config["case_dir"]] if config.get("case_dir") else []
    return CaseRoots(roots)


def model_roots_from_config(config: dict) -> tuple[Path, ...]:
    """``daemon.model_roots`` (default ``models``); relative paths from the repository root,
    where ``voiceman models prepare`` puts the models."""
    from voiceman.resources import REPO_ROOT

    roots = (config.get("daemon") or {}).get("model_roots")
    return real_roots(["models"] if roots is None else roots, base=REPO_ROOT)


def tree_digests(root: str | Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root``: hidden ones and byte-code caches
    included (the registry loads with sys.dont_write_bytecode, so a load adds nothing), files
    behind symlinks hashed as the loader would read them."""
    root = Path(root)
    digests = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file():
                digests[path.relative_to(root).as_posix()] = sha256_file(path)
    return digests


def sha256_tree(root: str | Path) -> str:
    """The pin of a model directory: SHA-256 of the ``sha256sum`` listing of all its files, i.e.
    ``cd DIR && find -L . -type f -printf '%P\\0' | LC_ALL=C sort -z |
    xargs -0 sha256sum | sha256sum``."""
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    return combine_digests(tree_digests(root))


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["."]:
        print(f"{sha256_tree(arg)}  {arg}")
