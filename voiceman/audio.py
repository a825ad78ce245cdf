"""Reading evidence audio: open, hash and decode, always read-only.

Decoding uses PyAV (FFmpeg's libraries bundled in the wheel), so WAV/MP3/M4A/FLAC work on a
machine without a system ffmpeg.  Everything downstream sees 16 kHz mono float32.

FFmpeg is never given a path or URL string: voiceman opens the file itself (a regular file
only; FIFOs, directories and devices are refused before they are opened for reading), copies
it once into a private spool while hashing it, and hands PyAV a Python file object over that
copy.  So no FFmpeg protocol (``http:``, ``concat:``, ``subfile,``...) is ever interpreted, and
the SHA-256 that :func:`decode_file` returns is the digest of exactly the bytes that were
decoded, even if the evidence file changes while it is read.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from .hashing import sha256_file  # noqa: F401  (re-exported: ingest hashes what it decodes)

SAMPLE_RATE = 16_000
AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".flac")
_CHUNK = 1 << 20  # 1 MiB reads
SPOOL_IN_MEMORY_BYTES = 64 << 20  # larger files are spooled to a private (0600, unlinked) temp file


class AudioDecodeError(RuntimeError):
    """The file could not be decoded; the message names the file and the decoder's reason."""


class NotARegularFile(AudioDecodeError):
    """A FIFO, directory, device or socket: refused before it is opened for reading."""


class DecodeTimeout(AudioDecodeError):
    """Decoding took longer than its time limit."""


@dataclass
class AudioInfo:
    container: str
    codec: str
    source_sample_rate: int
    channels: int
    duration_s: float
    decoded_samples: int
    decoder: str

    def to_dict(self) -> dict:
        return asdict(self)


_FILE_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def _kind_of(mode: int) -> str:
    return next((what for test, what in _FILE_TYPES if test(mode)), "not a regular file")


def open_evidence(path: str | Path, follow_symlinks: bool = True) -> int:
    """A read-only file descriptor on the regular file at ``path``.

    Anything else is refused before it is opened for reading (a FIFO would block the reader
    forever, a device may have side effects); the open itself uses O_NONBLOCK, so a FIFO
    swapped in after the check cannot block it either, and the opened file is checked again.
    With ``follow_symlinks=False`` a symbolic link as the last component is refused (O_NOFOLLOW).
    Errors name only the file's own name, with its own reason.
    """
    name = Path(path).name
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError as exc:
        raise AudioDecodeError(f"{name}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFile(f"{name}: not a regular file ({_kind_of(st.st_mode)})")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise AudioDecodeError(f"{name}: cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(f"{name}: not a regular file ({_kind_of(st.st_mode)})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Deadline:
    def __init__(self, name: str, timeout_s: float | None):
        self.name, self.timeout_s = name, timeout_s
        self.at = time.monotonic() + timeout_s if timeout_s else None

    def check(self) -> None:
        if self.at is not None and time.monotonic() > self.at:
            raise DecodeTimeout(
                f"{self.name}: decoding took longer than {self.timeout_s:g} s (daemon.decode_timeout_s)"
            )


class _DeadlineReader(io.RawIOBase):
    """What PyAV reads: the spooled copy, with the time limit checked at every read (PyAV
    re-raises an exception from a read callback, so a slow decode stops at its next read).
    It carries no file name, so no decoder message can name a path."""

    def __init__(self, spool, deadline: _Deadline):
        self._spool, self._deadline = spool, deadline

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self._deadline.check()
        data = self._spool.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._spool.seek(offset, whence)

    def tell(self) -> int:
        return self._spool.tell()


def _spool(fd: int, deadline: _Deadline):
    """(private copy of the whole file, its sha256): each byte read once, hashed as it is read."""
    digest = hashlib.sha256()
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)
    try:
        while True:
            deadline.check()
            block = os.read(fd, _CHUNK)
            if not block:
                break
            digest.update(block)
            spool.write(block)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool, digest.hexdigest()


def decode_fd(
    fd: int, name: str, sample_rate: int = SAMPLE_RATE, timeout_s: float | None = None
) -> tuple[np.ndarray, AudioInfo, str]:
    """Decode an open regular file (from its current offset) -> (audio, info, sha256 of the
    bytes decoded).  ``name`` is the only name any error message uses."""
    deadline = _Deadline(name, timeout_s)
    try:
        spool, digest = _spool(fd, deadline)
    except OSError as exc:
        raise AudioDecodeError(f"{name}: cannot read: {exc.strerror}") from None
    with spool:
        audio, info = _decode_stream(_DeadlineReader(spool, deadline), name, sample_rate, deadline)
    return audio, info, digest


def decode_file(
    path: str | Path, sample_rate: int = SAMPLE_RATE, timeout_s: float | None = None, follow_symlinks: bool = True
) -> tuple[np.ndarray, AudioInfo, str]:
    """Decode the first audio stream of the regular file at ``path`` to mono float32 at
    ``sample_rate`` -> (audio, info, sha256 of exactly the bytes decoded)."""
    fd = open_evidence(path, follow_symlinks=follow_symlinks)
    try:
        return decode_fd(fd, Path(path).name, sample_rate, timeout_s)
    finally:
        os.close(fd)


def decode(path: str | Path, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, AudioInfo]:
    """Decode the first audio stream to mono float32 at ``sample_rate``."""
    audio, info, _ = decode_file(path, sample_rate)
    return audio, info


def _decode_stream(
    source: _DeadlineReader, name: str, sample_rate: int, deadline: _Deadline
) -> tuple[np.ndarray, AudioInfo]:
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{name}: no audio stream in container '{container.format.name}'")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
            chunks: list[np.ndarray] = []
            for frame in container.decode(stream):
                deadline.check()
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush the resampler's tail
                chunks.append(out.to_ndarray().reshape(-1))
            info = AudioInfo(
                container=container.format.name,
                codec=stream.codec_context.name,
                source_sample_rate=int(stream.codec_context.sample_rate or 0),
                channels=int(stream.codec_context.channels or 0),
                duration_s=0.0,
                decoded_samples=0,
                decoder=f"pyav {av.__version__}",
            )
    except AudioDecodeError:
        raise
    except av.FFmpegError as exc:  # its text only: the "filename" of a file object means nothing
        raise AudioDecodeError(f"{name}: cannot decode: {exc.strerror or type(exc).__name__}") from None
    except (OSError, ValueError, IndexError, EOFError, MemoryError) as exc:
        raise AudioDecodeError(f"{name}: cannot decode: {type(exc).__name__}") from None
    if not chunks:
        raise AudioDecodeError(f"{name}: decoder produced no audio samples")
    audio = np.concatenate(chunks).astype(np.float32) / 32768.0
    info.decoded_samples = int(audio.size)
    info.duration_s = round(audio.size / sample_rate, 3)
    return audio, info
