"""Synthesise a small demo case: English speech from espeak-ng, written as WAV, MP3, M4A
and FLAC (encoded with PyAV, no system ffmpeg).  Used by the README's demo command and by the
end-to-end tests, so both run on real speech through the real model.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

from .audio import SAMPLE_RATE, decode

# (file stem, container format, sentence).  The sentences use plain words Whisper tiny.en
# transcribes reliably from espeak's voice, so tests can check content words.
DEMO_CLIPS = [
    ("call-01", "wav", "Please meet me at the harbour tomorrow morning. Bring the money."),
    ("call-02", "mp3", "I know where you live. Do not call the police again."),
    ("call-03", "m4a", "The meeting is on Friday at the old train station."),
]

_ENCODERS = {"wav": ("wav", "pcm_s16le"), "mp3": ("mp3", "libmp3lame"), "m4a": ("mp4", "aac"), "flac": ("flac", "flac")}


class DemoError(RuntimeError):
    """The demo case cannot be synthesised (espeak-ng missing or failing)."""


def speak(text: str, voice: str = "en-us", words_per_minute: int = 150) -> np.ndarray:
    """espeak-ng -> 16 kHz mono float32."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DemoError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(
            [exe, "-v", voice, "-s", str(words_per_minute), "-w", str(wav), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        audio, _ = decode(wav)
    return audio


def encode(audio: np.ndarray, path: Path, fmt: str, sample_rate: int = SAMPLE_RATE) -> Path:
    container_fmt, codec = _ENCODERS[fmt]
    rate = 44_100 if fmt == "mp3" else sample_rate  # LAME needs a standard MP3 rate
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format=container_fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = sample_rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def make_case(case_dir: str | Path, clips=DEMO_CLIPS, silence_s: float = 0.5) -> list[Path]:
    case_dir = Path(case_dir)
    pad = np.zeros(int(silence_s * SAMPLE_RATE), dtype=np.float32)
    written = []
    for stem, fmt, text in clips:
        audio = np.concatenate([pad, speak(text), pad])
        written.append(encode(audio, case_dir / f"{stem}.{fmt}", fmt))
    return written
