"""Speakers onto the transcript: the stretches of speech its word times give, labellers that
name the speaker of a time span (from embedding windows or from speaker turns), segments split
where their words change speaker, speakers renamed in order of first appearance, and the
per-speaker totals the ``diarization`` block reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .diarize_clustering import normalise


def speaker_label(index: int) -> str:
    return f"SPEAKER_{index:02d}"


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


Labeller = Callable[[float, float], "int | None"]


def window_labeller(windows: list[tuple[float, float]], embeddings: np.ndarray, centroids: np.ndarray) -> Labeller:
    """Speaker of a time span: the windows overlapping it vote with their overlap times their
    cosine similarity to each speaker's centroid; a span no window touches takes the nearest
    window's speaker."""
    win = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    sims = normalise(np.asarray(embeddings, dtype=np.float64)) @ centroids.T  # (windows, speakers)
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


def relabel(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
