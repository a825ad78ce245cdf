"""Segments and word times for the torch Whisper backend (asr_transformers), as faster-whisper
makes them: segments split at consecutive timestamp tokens; word times by dynamic time
warping over the alignment heads' cross-attention, then faster-whisper's word grouping,
punctuation merging and long-word clipping."""

from __future__ import annotations

import numpy as np

TOKENS_PER_SECOND = 50  # encoder positions (the second conv has stride 2)
TIME_PRECISION = 0.02  # seconds per timestamp token
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


def median_filter(x, width: int):
    """Median over the last axis with reflect padding (openai-whisper's timing.median_filter)."""
    import torch.nn.functional as F

    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    shape = x.shape
    padded = F.pad(x.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect").reshape(*shape[:-1], shape[-1] + 2 * pad)
    return padded.unfold(-1, width, 1).sort(dim=-1).values[..., pad]


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic time warping over ``cost`` (tokens x frames), vectorised along anti-diagonals;
    the same recurrence and tie-breaking as openai-whisper's / CTranslate2's."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf, dtype=np.float64)
    acc[0, 0] = 0.0
    trace = np.full((n + 1, m + 1), -1, dtype=np.int8)
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
        t = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        acc[i, j] = cost[i - 1, j - 1] + np.choose(t, (c0, c1, c2))
        trace[i, j] = t
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        if t == 0:
            i, j = i - 1, j - 1
        elif t == 1:
            i -= 1
        else:
            j -= 1
    path = np.array(path[::-1])
    return path[:, 0], path[:, 1]


def words_from_alignment(tokenizer, text_tokens: list[int], text_indices, time_indices, token_probs) -> list[dict]:
    """faster-whisper's ``find_alignment`` after the DTW: token path -> words with times."""
    words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
    if len(word_tokens) <= 1:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    starts, ends = jump_times[boundaries[:-1]], jump_times[boundaries[1:]]
    probs = [float(np.mean(token_probs[i:j])) for i, j in zip(boundaries[:-1], boundaries[1:])]
    return [
        dict(word=w, tokens=t, start=float(s), end=float(e), probability=p)
        for w, t, s, e, p in zip(words, word_tokens, starts, ends, probs)
    ]


def place_words(
    chunks: list[list[dict]], alignments: list[list[dict]], offsets: list[float], last_speech: float
) -> float:
    """faster-whisper's ``add_word_timestamps`` after the alignment: clip overlong words at
    sentence and segment boundaries, merge punctuation into words, and hand each segment its
    words (times relative to the recording).  Returns the last speech time."""
    from faster_whisper.transcribe import merge_punctuations

    stats = []
    for alignment in alignments:
        durations = np.array([w["end"] - w["start"] for w in alignment])
        durations = durations[durations.nonzero()]
        median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
        longest = median * 2
        if len(durations):
            for i in range(1, len(alignment)):
                if alignment[i]["end"] - alignment[i]["start"] > longest:
                    if alignment[i]["word"] in ".。!！?？":
                        alignment[i]["end"] = alignment[i]["start"] + longest
                    elif alignment[i - 1]["word"] in ".。!！?？":
                        alignment[i]["start"] = alignment[i]["end"] - longest
        merge_punctuations(alignment, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)
        stats.append((median, longest))
    for segments, alignment, offset, (median, longest) in zip(chunks, alignments, offsets, stats):
        index = 0
        for segment in segments:
            saved, words = 0, []
            while index < len(alignment) and saved < len(segment["text_tokens"]):
                timing = alignment[index]
                if timing["word"]:
                    words.append(
                        dict(
                            word=timing["word"],
                            start=round(offset + timing["start"], 2),
                            end=round(offset + timing["end"], 2),
                            probability=timing["probability"],
                        )
                    )
                saved += len(timing["tokens"])
                index += 1
            if words:
                if words[0]["end"] - last_speech > median * 4 and (
                    words[0]["end"] - words[0]["start"] > longest
                    or (len(words) > 1 and words[1]["end"] - words[0]["start"] > longest * 2)
                ):
                    if len(words) > 1 and words[1]["end"] - words[1]["start"] > longest:
                        boundary = max(words[1]["end"] / 2, words[1]["end"] - longest)
                        words[0]["end"] = words[1]["start"] = boundary
                    words[0]["start"] = max(0, words[0]["end"] - longest)
                if segment["start"] < words[0]["end"] and segment["start"] - 0.5 > words[0]["start"]:
                    words[0]["start"] = max(0, min(words[0]["end"] - median, segment["start"]))
                else:
                    segment["start"] = words[0]["start"]
                if segment["end"] > words[-1]["start"] and segment["end"] + 0.5 < words[-1]["end"]:
                    words[-1]["end"] = max(words[-1]["start"] + median, segment["end"])
                else:
                    segment["end"] = words[-1]["end"]
                last_speech = segment["end"]
            segment["words"] = words
    return last_speech


def split_by_timestamps(tokens: list[int], timestamp_begin: int, offset: float, duration: float) -> list[dict]:
    """faster-whisper's ``_split_segments_by_timestamps`` for one chunk: a segment ends at each
    pair of consecutive timestamp tokens (an unfinished last segment is dropped, as there)."""
    single_ending = len(tokens) >= 2 and tokens[-2] < timestamp_begin <= tokens[-1]
    pairs = [i for i in range(1, len(tokens)) if tokens[i] >= timestamp_begin and tokens[i - 1] >= timestamp_begin]
    if not pairs:
        stamps = [t for t in tokens if t >= timestamp_begin]
        if stamps and stamps[-1] != timestamp_begin:
            duration = (stamps[-1] - timestamp_begin) * TIME_PRECISION
        return [dict(start=offset, end=offset + duration, tokens=tokens)]
    cuts = pairs + ([len(tokens)] if single_ending else [])
    segments, last = [], 0
    for cut in cuts:
        piece = tokens[last:cut]
        segments.append(
            dict(
                start=offset + (piece[0] - timestamp_begin) * TIME_PRECISION,
                end=offset + (piece[-1] - timestamp_begin) * TIME_PRECISION,
                tokens=piece,
            )
        )
        last = cut
    return segments
