"""Reading evidence audio: hash, probe and decode, always read-only.

Decoding uses PyAV (FFmpeg's libraries bundled in the wheel), so WAV/MP3/M4A/FLAC work on a
machine without a system ffmpeg.  Everything downstream sees 16 kHz mono float32.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from .hashing import sha256_file  # noqa: F401  (re-exported: ingest hashes what it decodes)

SAMPLE_RATE = 16_000
AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".flac")


class AudioDecodeError(RuntimeError):
    """The file could not be decoded; the message names the file and the decoder's reason."""


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


def decode(path: str | Path, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, AudioInfo]:
    """Decode the first audio stream to mono float32 at ``sample_rate``."""
    path = Path(path)
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{path.name}: no audio stream in container '{container.format.name}'")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
            chunks: list[np.ndarray] = []
            for frame in container.decode(stream):
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
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise AudioDecodeError(f"{path.name}: cannot decode: {exc}") from exc
    if not chunks:
        raise AudioDecodeError(f"{path.name}: decoder produced no audio samples")
    audio = np.concatenate(chunks).astype(np.float32) / 32768.0
    info.decoded_samples = int(audio.size)
    info.duration_s = round(audio.size / sample_rate, 3)
    return audio, info
