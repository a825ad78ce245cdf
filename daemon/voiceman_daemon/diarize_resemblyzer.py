"""The default, offline diarizer: the GE2E speaker encoder that ships inside the Resemblyzer
wheel, embedding sliding windows over the transcript's speech and clustering them into speakers."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from voiceman.audio import SAMPLE_RATE
from voiceman.hashing import sha256_file

from .diarize_clustering import cluster_embeddings
from .diarize_labels import label_segments, relabel, speech_regions, window_labeller
from .diarize_settings import DiarizationSettings
from .registry import ModelSpec

log = logging.getLogger(__name__)

RESEMBLYZER_ID = "resemblyzer"  # models.diarization.id for the encoder bundled in the package
MEL_FRAMES_PER_S = 100  # resemblyzer's mel hop is 10 ms
EMBED_BATCH = 64  # windows per encoder forward pass
MEL_BLOCK_FRAMES = 6000  # 60 s of mel frames per STFT block
MAX_CLUSTER_WINDOWS = 2000  # clustering is O(n^2) in memory: longer files cluster an even subset


def sliding_windows(
    regions: list[tuple[float, float]], settings: DiarizationSettings, duration_s: float
) -> list[tuple[float, float]]:
    """Windows of ``window_s`` every ``step_s`` inside each region, the last one flush with the
    region's end; a region shorter than a window is one window (widened to ``min_window_s``)."""
    w, step = settings.window_s, settings.step_s
    out: list[tuple[float, float]] = []
    for start, end in regions:
        if end - start < w:
            if end - start < settings.min_window_s:
                pad = (settings.min_window_s - (end - start)) / 2
                start, end = max(0.0, start - pad), min(duration_s, end + pad)
            out.append((start, end))
            continue
        s = start
        while s + w <= end + 1e-9:
            out.append((s, s + w))
            s += step
        if end - out[-1][1] > 0.1 * w:
            out.append((end - w, end))
    return [(round(a, 3), round(b, 3)) for a, b in out]


class ResemblyzerDiarizer:
    """The GE2E encoder shipped in the Resemblyzer wheel, loaded once, in eval mode, frozen."""

    def __init__(self, spec: ModelSpec, settings: DiarizationSettings):
        import importlib.metadata

        import torch

        with warnings.catch_warnings():  # the package's imports, not ours: webrtcvad, scipy.ndimage
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*scipy.ndimage.morphology", category=DeprecationWarning)
            from resemblyzer import VoiceEncoder, hparams
            from resemblyzer import audio as rz_audio

        from .asr import pick_device

        if spec.id != RESEMBLYZER_ID:
            raise ValueError(
                f"with method resemblyzer, models.diarization.id must be '{RESEMBLYZER_ID}' "
                f"(the encoder bundled in the package), not '{spec.id}'"
            )
        self.spec, self.settings = spec, settings
        self.device = pick_device(spec.option("device", "auto"))
        self.weights = Path(rz_audio.__file__).resolve().parent / "pretrained.pt"
        if not self.weights.is_file():
            raise FileNotFoundError(f"the Resemblyzer package has no encoder weights at {self.weights}")
        self.weights_sha256 = sha256_file(self.weights)
        self.version = importlib.metadata.version("resemblyzer")
        self._audio, self._hparams, self._torch = rz_audio, hparams, torch
        self.encoder = VoiceEncoder(device=self.device, verbose=False, weights_fpath=self.weights)
        self.encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self._warm_up()

    def _warm_up(self) -> None:
        started = time.perf_counter()
        noise = (np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE) * 0.01).astype(np.float32)
        self.embed(noise, [(0.0, self.settings.window_s)])
        log.info("diarization (resemblyzer) warm-up done in %.2f s", time.perf_counter() - started)

    def custody(self) -> dict[str, Any]:
        return {
            "kind": "diarization",
            "id": self.spec.id,
            "revision": self.spec.revision,
            "method": "resemblyzer",
            "package": {"name": "resemblyzer", "version": self.version, "licence": "Apache-2.0"},
            "path": str(self.weights),
            "sha256": self.weights_sha256,
            "device": self.device,
            "settings": self.settings.to_dict(),
        }

    def mel_spectrogram(self, audio: np.ndarray) -> np.ndarray:
        """(frames, 40) power mel spectrogram: resemblyzer.audio.wav_to_mel_spectrogram's
        (librosa: 25 ms Hann window, 10 ms hop, centred with zero padding, Slaney mel scale and
        norm), computed with torch on the model's device instead -- equal to librosa's within
        float32 rounding (tests/test_diarization.py), without librosa's numba start-up cost.
        Done in blocks of MEL_BLOCK_FRAMES frames, so a long recording never holds its whole
        complex spectrogram (the blocks are exact: the padding is the whole signal's)."""
        import torchaudio

        torch, hp = self._torch, self._hparams
        n_fft = int(SAMPLE_RATE * hp.mel_window_length / 1000)
        hop = int(SAMPLE_RATE * hp.mel_window_step / 1000)
        device = self.encoder.device
        x = np.ascontiguousarray(audio, dtype=np.float32)
        padded = np.pad(x, (n_fft // 2, n_fft // 2))  # center=True, pad_mode="constant"
        frames = 1 + len(x) // hop
        window = torch.hann_window(n_fft, periodic=True, device=device)
        banks = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, 0.0, SAMPLE_RATE / 2, hp.mel_n_channels, SAMPLE_RATE, norm="slaney", mel_scale="slaney"
        ).to(device)
        out = np.zeros((frames, hp.mel_n_channels), dtype=np.float32)
        with torch.inference_mode():
            for f0 in range(0, frames, MEL_BLOCK_FRAMES):
                f1 = min(frames, f0 + MEL_BLOCK_FRAMES)
                block = torch.from_numpy(padded[f0 * hop : (f1 - 1) * hop + n_fft]).to(device)
                spec = torch.stft(
                    block,
                    n_fft=n_fft,
                    hop_length=hop,
                    win_length=n_fft,
                    window=window,
                    center=False,
                    return_complex=True,
                )
                out[f0:f1] = (spec.abs().pow(2).T @ banks).cpu().numpy()
        return out

    def embed(self, audio: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
        """One L2-normalised 256-d embedding per window (seconds)."""
        if not windows:
            return np.zeros((0, self._hparams.model_embedding_size), dtype=np.float32)
        if float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) > 0:  # as preprocess_wav does
            audio = self._audio.normalize_volume(audio, self._hparams.audio_norm_target_dBFS, increase_only=True)
        # One mel spectrogram for the file, sliced per window (what embed_utterance does per file).
        mel = self.mel_spectrogram(audio)
        spans = []
        for start, end in windows:
            a = min(int(round(start * MEL_FRAMES_PER_S)), max(len(mel) - 1, 0))
            spans.append((a, max(a + 1, min(int(round(end * MEL_FRAMES_PER_S)), len(mel)))))
        out = np.zeros((len(windows), self._hparams.model_embedding_size), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, (a, b) in enumerate(spans):
            by_length.setdefault(b - a, []).append(i)
        torch = self._torch
        with torch.inference_mode():
            for idx in by_length.values():
                for k in range(0, len(idx), EMBED_BATCH):
                    chunk = idx[k : k + EMBED_BATCH]
                    batch = np.stack([mel[spans[i][0] : spans[i][1]] for i in chunk])
                    out[chunk] = self.encoder(torch.from_numpy(batch).to(self.encoder.device)).cpu().numpy()
        return out

    def diarize(self, audio: np.ndarray, segments: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        duration = len(audio) / SAMPLE_RATE
        regions = speech_regions(segments, self.settings.merge_gap_s)
        windows = sliding_windows(regions, self.settings, duration)
        embeddings = self.embed(audio, windows)
        # Full-length windows decide the speakers; shorter ones (short stretches of speech,
        # noisier embeddings) are only labelled by them.
        full = np.array([b - a >= self.settings.window_s - 1e-6 for a, b in windows], dtype=bool)
        basis = full if full.sum() >= 2 else np.ones(len(windows), dtype=bool)
        chosen = np.flatnonzero(basis)
        if len(chosen) > MAX_CLUSTER_WINDOWS:  # every window is still labelled against the centroids
            basis = np.zeros(len(windows), dtype=bool)
            basis[chosen[np.linspace(0, len(chosen) - 1, MAX_CLUSTER_WINDOWS).round().astype(int)]] = True
        _, centroids = cluster_embeddings(embeddings[basis], self.settings)
        labelled = label_segments(segments, window_labeller(windows, embeddings, centroids))
        return relabel(labelled), {
            "speech_regions": len(regions),
            "windows": len(windows),
            "clustered_windows": int(basis.sum()),
        }
