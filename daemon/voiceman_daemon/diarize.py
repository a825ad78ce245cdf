"""Speaker diarization in the daemon: who spoke each word of a transcript.

It runs inside the ``transcribe`` request, after ASR, on the same decoded audio (nothing is
decoded twice), when a ``diarization`` model is configured (``models.diarization``):

- ``resemblyzer`` (default, offline): the GE2E speaker encoder whose weights ship inside the
  Resemblyzer wheel (``resemblyzer/pretrained.pt``, Apache-2.0).  The speech that ASR found
  (its word times) is cut into sliding windows (``window_s`` long, every ``step_s``); each
  window gets a 256-d embedding; the windows are clustered agglomeratively (average linkage on
  cosine distance, cut at ``threshold``), refined by reassigning every window to the nearest
  cluster centroid, and clusters of fewer than ``min_cluster_windows`` windows join the nearest
  other one.  The number of clusters is the estimated speaker count, bounded by
  ``min_speakers``/``max_speakers``.  Nothing is random: the same audio and settings give the
  same labels.
- ``pyannote``: a local pyannote.audio diarization pipeline directory the user points
  ``id`` at (``config.yaml`` plus the models it names), loaded with
  ``Pipeline.from_pretrained(<dir>)``; its speaker turns label the words.

Either way each word gets the speaker whose evidence covers it best (resemblyzer: the windows
overlapping the word, weighted by overlap and by their similarity to each speaker's centroid;
pyannote: the turn that overlaps it most), a segment whose words change speaker is split there,
and segments and words carry ``speaker`` ("SPEAKER_00", ... in order of first appearance).  The
transcript's ``diarization`` block records the method, the model (package version, sha256 of
the weights), the settings and the estimated count.  A diarization that fails leaves the
speakers null with the reason in that block; the transcript itself stands.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voiceman.audio import SAMPLE_RATE
from voiceman.hashing import sha256_file, sha256_weights

from .registry import ModelSpec

log = logging.getLogger(__name__)

METHODS = ("resemblyzer", "pyannote")
RESEMBLYZER_ID = "resemblyzer"  # models.diarization.id for the encoder bundled in the package
MEL_FRAMES_PER_S = 100  # resemblyzer's mel hop is 10 ms
EMBED_BATCH = 64  # windows per encoder forward pass
MEL_BLOCK_FRAMES = 6000  # 60 s of mel frames per STFT block
MAX_CLUSTER_WINDOWS = 2000  # clustering is O(n^2) in memory: longer files cluster an even subset


def speaker_label(index: int) -> str:
    return f"SPEAKER_{index:02d}"


@dataclass(frozen=True)
class DiarizationSettings:
    """Every setting that changes who is said to speak when (recorded in custody)."""

    method: str = "resemblyzer"
    min_speakers: int = 1
    max_speakers: int = 8
    window_s: float = 1.5  # embedding window
    step_s: float = 0.75  # hop between windows
    threshold: float = 0.3  # one speaker unless two groups of windows are this far apart (cosine)
    min_cluster_windows: int = 2  # a smaller cluster joins the nearest other one
    merge_gap_s: float = 0.3  # words closer than this form one stretch of speech
    min_window_s: float = 0.5  # shortest window embedded (a shorter stretch is widened)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> DiarizationSettings:
        defaults = cls()
        values = {
            name: type(getattr(defaults, name))(spec.option(name, getattr(defaults, name)))
            for name in cls.__dataclass_fields__
        }
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"models.diarization.method must be one of {', '.join(METHODS)}, not '{self.method}'")
        if not 1 <= self.min_speakers <= self.max_speakers:
            raise ValueError(
                f"models.diarization: need 1 <= min_speakers ({self.min_speakers}) "
                f"<= max_speakers ({self.max_speakers})"
            )
        if not 0 < self.step_s <= self.window_s:
            raise ValueError(f"models.diarization: need 0 < step_s ({self.step_s:g}) <= window_s ({self.window_s:g})")
        if not 0 < self.min_window_s <= self.window_s:
            raise ValueError(
                f"models.diarization: need 0 < min_window_s ({self.min_window_s:g}) <= window_s ({self.window_s:g})"
            )
        if not 0 < self.threshold < 2:
            raise ValueError(
                f"models.diarization.threshold is a cosine distance: 0 < threshold < 2, not {self.threshold:g}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.method == "pyannote":  # only the speaker bounds reach a pyannote pipeline
            d = {k: d[k] for k in ("method", "min_speakers", "max_speakers")}
        return d


# ---------------------------------------------------------------------------- speech and windows
def speech_regions(segments: list[dict[str, Any]], merge_gap_s: float) -> list[tuple[float, float]]:
    """Stretches of speech from the transcript: its word times (segment times for segments
    without words), joined where the gap between them is below ``merge_gap_s``."""
    spans = []
    for seg in segments:
        words = [w for w in seg.get("words") or [] if _timed(w)]
        if words:
            spans += [(float(w["start"]), float(w["end"])) for w in words]
        elif _timed(seg):
            spans.append((float(seg["start"]), float(seg["end"])))
    regions: list[tuple[float, float]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if regions and start - regions[-1][1] < merge_gap_s:
            regions[-1] = (regions[-1][0], max(regions[-1][1], end))
        else:
            regions.append((start, end))
    return regions


def _timed(item: dict[str, Any]) -> bool:
    return item.get("start") is not None and item.get("end") is not None


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


# ---------------------------------------------------------------------------- clustering
def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _centroids(emb: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return _normalise(np.stack([emb[labels == c].mean(axis=0) for c in range(k)]))


def _compact(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 0..k-1 in order of first appearance (time order of the windows)."""
    order: dict[int, int] = {}
    for lab in labels.tolist():
        order.setdefault(lab, len(order))
    return np.array([order[lab] for lab in labels.tolist()], dtype=int), len(order)


def cluster_embeddings(embeddings: np.ndarray, settings: DiarizationSettings) -> tuple[np.ndarray, np.ndarray]:
    """(label per window, centroid per speaker), labels 0..k-1 in order of first appearance.

    Average-linkage agglomerative clustering on cosine distance.  One speaker when even the
    last merge of the tree (the two most different groups of windows) is closer than
    ``threshold``; otherwise the tree is cut into k = 2..max_speakers clusters, each cut
    cleaned (see ``_cut``: tiny clusters and clusters closer than ``threshold`` merge, windows
    move to their nearest centroid), and the k whose clusters are best separated (mean
    silhouette, cosine) is the estimated speaker count, never below ``min_speakers``.
    Deterministic: no random start, ties go to fewer speakers."""
    from scipy.cluster.hierarchy import linkage

    emb = _normalise(np.asarray(embeddings, dtype=np.float64))
    n = len(emb)
    lo, hi = settings.min_speakers, min(settings.max_speakers, n)
    if n < 2 or hi < 2 or (lo <= 1 and n < 2 * settings.min_cluster_windows):
        return np.zeros(n, dtype=int), _normalise(emb.mean(axis=0, keepdims=True)) if n else emb[:0]
    tree = linkage(emb, method="average", metric="cosine")
    if lo <= 1 and tree[-1, 2] < settings.threshold:
        return np.zeros(n, dtype=int), _normalise(emb.mean(axis=0, keepdims=True))
    best: tuple[float, np.ndarray] | None = None
    for k in range(max(2, lo), hi + 1):
        labels = _cut(tree, emb, k, settings)
        if len(set(labels.tolist())) < max(2, lo):
            continue
        score = silhouette(emb, labels)
        if best is None or score > best[0] + 1e-9:
            best = (score, labels)
    if best is None:  # every cut collapsed (too few windows per cluster)
        if lo <= 1:
            return np.zeros(n, dtype=int), _normalise(emb.mean(axis=0, keepdims=True))
        best = (0.0, _cut(tree, emb, lo, settings))
    labels, k = _compact(best[1])
    return labels, _centroids(emb, labels, k)


def _cut(tree: np.ndarray, emb: np.ndarray, k: int, settings: DiarizationSettings) -> np.ndarray:
    """The tree cut into k clusters, then cleaned until nothing changes: a cluster of fewer
    than ``min_cluster_windows`` windows joins the nearest one; two clusters whose windows are
    on average closer than ``threshold`` merge; windows move to their nearest centroid (k-means
    steps from the tree's partition).  Never below ``min_speakers`` clusters."""
    from scipy.cluster.hierarchy import fcluster

    lo = max(settings.min_speakers, 1)
    dist = 1.0 - emb @ emb.T
    labels, k = _compact(fcluster(tree, t=k, criterion="maxclust"))
    for _ in range(50):
        before = labels.copy()
        while k > lo:
            sizes = np.bincount(labels, minlength=k)
            pair = None
            small = int(np.argmin(sizes))
            if sizes[small] < settings.min_cluster_windows:  # a cough, a window across a turn change
                sims = _centroids(emb, labels, k)[small] @ _centroids(emb, labels, k).T
                sims[small] = -np.inf
                pair = (small, int(np.argmax(sims)))
            else:
                between = np.array(
                    [
                        [dist[np.ix_(labels == a, labels == b)].mean() if a != b else np.inf for b in range(k)]
                        for a in range(k)
                    ]
                )
                a, b = np.unravel_index(int(np.argmin(between)), between.shape)
                if between[a, b] < settings.threshold:
                    pair = (int(a), int(b))
            if pair is None:
                break
            labels[labels == pair[0]] = pair[1]
            labels, k = _compact(labels)
        moved = np.argmax(emb @ _centroids(emb, labels, k).T, axis=1)
        if len(set(moved.tolist())) >= min(k, lo):
            labels, k = _compact(moved)
        if np.array_equal(labels, before):
            break
    return labels


def silhouette(emb: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette with cosine distance (a window alone in its cluster scores 0)."""
    dist = 1.0 - emb @ emb.T
    clusters = sorted(set(labels.tolist()))
    if len(clusters) < 2:
        return 0.0
    means = np.stack([dist[:, labels == c].mean(axis=1) for c in clusters], axis=1)  # (n, k)
    sizes = np.array([(labels == c).sum() for c in clusters])
    scores = []
    for i, lab in enumerate(labels.tolist()):
        own = clusters.index(lab)
        if sizes[own] < 2:
            scores.append(0.0)
            continue
        a = means[i, own] * sizes[own] / (sizes[own] - 1)  # without the window itself
        b = min(means[i, j] for j in range(len(clusters)) if j != own)
        scores.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return float(np.mean(scores))


# ---------------------------------------------------------------------------- labelling words
Labeller = Callable[[float, float], "int | None"]


def window_labeller(windows: list[tuple[float, float]], embeddings: np.ndarray, centroids: np.ndarray) -> Labeller:
    """Speaker of a time span: the windows overlapping it vote with their overlap times their
    cosine similarity to each speaker's centroid; a span no window touches takes the nearest
    window's speaker."""
    win = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    sims = _normalise(np.asarray(embeddings, dtype=np.float64)) @ centroids.T  # (windows, speakers)
    centres = win.mean(axis=1)

    def label(start: float, end: float) -> int | None:
        if not len(win):
            return None
        overlap = np.clip(np.minimum(win[:, 1], end) - np.maximum(win[:, 0], start), 0.0, None)
        if end <= start:  # a zero-length word: the windows containing its instant
            overlap = ((win[:, 0] <= start) & (start <= win[:, 1])).astype(np.float64)
        if overlap.sum() <= 0:
            nearest = int(np.argmin(np.abs(centres - (start + end) / 2)))
            return int(np.argmax(sims[nearest]))
        return int(np.argmax(overlap @ sims))

    return label


def turn_labeller(turns: list[tuple[float, float, int]]) -> Labeller:
    """Speaker of a time span from speaker turns (start, end, speaker): the one overlapping it
    most; without overlap, the nearest turn's."""
    arr = np.asarray([(a, b) for a, b, _ in turns], dtype=np.float64).reshape(-1, 2)
    who = [s for _, _, s in turns]

    def label(start: float, end: float) -> int | None:
        if not who:
            return None
        overlap = np.clip(np.minimum(arr[:, 1], end) - np.maximum(arr[:, 0], start), 0.0, None)
        totals: dict[int, float] = {}
        for speaker, o in zip(who, overlap.tolist()):
            totals[speaker] = totals.get(speaker, 0.0) + o
        best = max(totals.items(), key=lambda kv: (kv[1], -kv[0]))
        if best[1] > 0:
            return best[0]
        mid = (start + end) / 2
        gaps = np.maximum(arr[:, 0] - mid, mid - arr[:, 1])
        return who[int(np.argmin(gaps))]

    return label


def label_segments(segments: list[dict[str, Any]], label: Labeller) -> list[dict[str, Any]]:
    """Segments with ``speaker`` on every word and segment; a segment whose words change
    speaker is split at each change (text cut where the next speaker's first word begins)."""
    out = []
    for seg in segments:
        words = [dict(w) for w in seg.get("words") or []]
        for w in words:
            who = label(float(w["start"]), float(w["end"])) if _timed(w) else None
            w["speaker"] = speaker_label(who) if who is not None else None
        _fill_untimed(words)
        if not words:
            who = label(float(seg["start"]), float(seg["end"])) if _timed(seg) else None
            out.append({**seg, "speaker": speaker_label(who) if who is not None else None})
            continue
        runs: list[list[dict[str, Any]]] = []
        for w in words:
            if runs and runs[-1][0]["speaker"] == w["speaker"]:
                runs[-1].append(w)
            else:
                runs.append([w])
        if len(runs) == 1:
            out.append({**seg, "speaker": runs[0][0]["speaker"], "words": words})
            continue
        texts = _split_text(seg.get("text") or "", runs)
        for i, (run, text) in enumerate(zip(runs, texts)):
            first, last = i == 0, i == len(runs) - 1
            start = seg["start"] if first else _first_time(run, "start", seg["start"])
            end = seg["end"] if last else _last_time(run, "end", seg["end"])
            out.append(
                {
                    **seg,
                    "start": start,
                    "end": max(end, start),
                    "text": text,
                    "speaker": run[0]["speaker"],
                    "words": run,
                }
            )
    return out


def _fill_untimed(words: list[dict[str, Any]]) -> None:
    """A word without times takes its timed neighbour's speaker (the previous, else the next)."""
    last = None
    for w in words:
        if w["speaker"] is None:
            w["speaker"] = last
        last = w["speaker"]
    following = None
    for w in reversed(words):
        if w["speaker"] is None:
            w["speaker"] = following
        following = w["speaker"]


def _first_time(run: list[dict[str, Any]], key: str, default: float) -> float:
    return next((float(w[key]) for w in run if w.get(key) is not None), default)


def _last_time(run: list[dict[str, Any]], key: str, default: float) -> float:
    return next((float(w[key]) for w in reversed(run) if w.get(key) is not None), default)


def _split_text(text: str, runs: list[list[dict[str, Any]]]) -> list[str]:
    """The segment's text cut before each run's first word, keeping its own spacing and
    punctuation; when the words cannot be found in order, each run's words joined by spaces."""

    def joined() -> list[str]:
        return [" ".join(t for t in (str(w.get("word") or "").strip() for w in r) if t) for r in runs]

    cuts, cursor = [0], 0
    for i, run in enumerate(runs):
        tokens = [t for t in (str(w.get("word") or "").strip() for w in run) if t]
        if not tokens:
            return joined()
        for j, token in enumerate(tokens):
            at = text.find(token, cursor)
            if at < 0:
                return joined()
            if j == 0 and i > 0:
                cuts.append(at)
            cursor = at + len(token)
    cuts.append(len(text))
    return [text[a:b].strip() for a, b in zip(cuts, cuts[1:])]


def summarise(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per speaker: segments, words and seconds of speech attributed."""
    stats: dict[str, dict[str, Any]] = {}
    for seg in segments:
        who = seg.get("speaker")
        if who is None:
            continue
        s = stats.setdefault(who, {"speaker": who, "segments": 0, "words": 0, "speech_s": 0.0})
        s["segments"] += 1
        s["words"] += len(seg.get("words") or [])
        s["speech_s"] += max(0.0, float(seg["end"]) - float(seg["start"]))
    return [{**s, "speech_s": round(s["speech_s"], 3)} for s in sorted(stats.values(), key=lambda s: s["speaker"])]


# ---------------------------------------------------------------------------- backends
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
        return _relabel(labelled), {
            "speech_regions": len(regions),
            "windows": len(windows),
            "clustered_windows": int(basis.sum()),
        }


class PyannoteDiarizer:
    """A local pyannote.audio speaker-diarization pipeline directory (no hub access)."""

    def __init__(self, spec: ModelSpec, settings: DiarizationSettings):
        path = Path(spec.id)
        if not path.is_dir():
            raise FileNotFoundError(
                f"models.diarization.id: no pyannote pipeline directory at '{spec.id}' (method pyannote needs a "
                f"local folder with the pipeline's config.yaml and the models it names; with no such folder use "
                f"method resemblyzer, id resemblyzer)"
            )
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(f"models.diarization.id: '{spec.id}' has no config.yaml: not a pyannote pipeline")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # evidence machines are offline
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")  # and send no telemetry
        import importlib.metadata

        import torch
        from pyannote.audio import Pipeline

        from .asr import pick_device

        self.spec, self.settings = spec, settings
        self.device = pick_device(spec.option("device", "auto"))
        self.path = path.resolve()
        self.pipeline = Pipeline.from_pretrained(self.path)
        if self.pipeline is None:
            raise RuntimeError(f"pyannote could not build a pipeline from {self.path}")
        self.pipeline.to(torch.device(self.device))
        self.version = importlib.metadata.version("pyannote.audio")
        self.weights_sha256 = sha256_weights(self.path)
        self._torch = torch

    def custody(self) -> dict[str, Any]:
        return {
            "kind": "diarization",
            "id": self.spec.id,
            "revision": self.spec.revision,
            "method": "pyannote",
            "package": {"name": "pyannote.audio", "version": self.version},
            "path": str(self.path),
            "sha256": self.weights_sha256,
            "device": self.device,
            "settings": self.settings.to_dict(),
        }

    def diarize(self, audio: np.ndarray, segments: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        waveform = self._torch.from_numpy(np.asarray(audio, dtype=np.float32)).unsqueeze(0)
        output = self.pipeline(
            {"waveform": waveform, "sample_rate": SAMPLE_RATE},
            min_speakers=self.settings.min_speakers,
            max_speakers=self.settings.max_speakers,
        )
        # pyannote 4: DiarizeOutput (the exclusive annotation has no overlapping turns); 3.x: Annotation.
        annotation = getattr(output, "exclusive_speaker_diarization", None) or getattr(
            output, "speaker_diarization", output
        )
        names: dict[str, int] = {}
        turns = []
        for turn, _, name in annotation.itertracks(yield_label=True):
            turns.append((float(turn.start), float(turn.end), names.setdefault(str(name), len(names))))
        labelled = label_segments(segments, turn_labeller(turns))
        return _relabel(labelled), {"turns": len(turns)}


def _relabel(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SPEAKER_00, SPEAKER_01, ... in order of first appearance in the transcript."""
    order: dict[str, str] = {}
    for seg in segments:
        for who in [w.get("speaker") for w in seg.get("words") or []] + [seg.get("speaker")]:
            if who is not None and who not in order:
                order[who] = speaker_label(len(order))
    for seg in segments:
        seg["speaker"] = order.get(seg.get("speaker"), seg.get("speaker"))
        for w in seg.get("words") or []:
            w["speaker"] = order.get(w.get("speaker"), w.get("speaker"))
    return segments


def load_diarization(spec: ModelSpec) -> ResemblyzerDiarizer | PyannoteDiarizer:
    """Registry loader for model kind ``diarization``."""
    settings = DiarizationSettings.from_spec(spec)
    if settings.method == "pyannote":
        return PyannoteDiarizer(spec, settings)
    return ResemblyzerDiarizer(spec, settings)


def diarize_transcript(
    model, audio: np.ndarray, segments: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(segments with speakers, the transcript's ``diarization`` block).  A failure leaves the
    ASR segments as they were (speakers null) and says why in the block."""
    block: dict[str, Any] = {
        "method": model.settings.method,
        "model": model.custody(),
        "settings": model.settings.to_dict(),
    }
    try:
        labelled, detail = model.diarize(audio, segments)
    except Exception as exc:  # speakers are lost, the transcript is not
        log.exception("diarization failed")
        return segments, {
            **block,
            "status": "failed",
            "reason": f"{type(exc).__name__}: {exc}",
            "speaker_count": None,
            "speakers": [],
        }
    speakers = summarise(labelled)
    return labelled, {
        **block,
        "status": "ok",
        "speaker_count": len(speakers),
        "speakers": speakers,
        "segments_in": len(segments),
        "segments_out": len(labelled),
        **detail,
    }
