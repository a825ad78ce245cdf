"""What the GPU check's parts share: the ``Skip`` outcome, the workload (the audio every part
after it runs on), the metrics of the two Whisper backends' agreement, and the helpers that free
GPU memory, wait for the GPU and time a call.

Imported as a top-level module by ``bench/gpu_check.py`` and its part modules
(``gpu_check_asr``, ``gpu_check_ser``, ``gpu_check_batching``): bench/ is on sys.path there, as
the script's own folder or put there by the tests.  ``gpu_check.py`` puts the repository,
daemon/ and tests/ on sys.path for the imports made inside the functions."""

from __future__ import annotations

import difflib
import gc
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16000


class Skip(Exception):
    """A part that cannot run here (a library or a model missing): recorded, not an error."""


# -- agreement metrics ---------------------------------------------------------------------------
def _norm(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    d = np.arange(len(hypothesis) + 1)
    for i, ref in enumerate(reference, 1):
        prev, d[0] = d.copy(), i
        for j, hyp in enumerate(hypothesis, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (ref != hyp))
    return float(d[-1]) / max(1, len(reference))


def agreement(a: dict, b: dict) -> dict[str, Any]:
    """How ``b`` (a transcribe result) agrees with ``a``: word error rate over the texts, and
    the mean |start difference| over the words both heard (matched in order)."""
    ref = _norm(" ".join(s["text"] for s in a["segments"]))
    hyp = _norm(" ".join(s["text"] for s in b["segments"]))
    words_a = [w for s in a["segments"] for w in s["words"]]
    words_b = [w for s in b["segments"] for w in s["words"]]
    key = lambda w: (_norm(w["word"]) or [""])[0]  # noqa: E731
    diffs = []
    matcher = difflib.SequenceMatcher(a=[key(w) for w in words_a], b=[key(w) for w in words_b], autojunk=False)
    for block in matcher.get_matching_blocks():
        diffs += [abs(words_a[block.a + k]["start"] - words_b[block.b + k]["start"]) for k in range(block.size)]
    return {
        "wer": round(word_error_rate(ref, hyp), 4),
        "reference_words": len(ref),
        "mean_word_start_diff_s": round(float(np.mean(diffs)), 4) if diffs else None,
        "max_word_start_diff_s": round(float(np.max(diffs)), 4) if diffs else None,
        "words_compared": len(diffs),
    }


# -- the workload (part 3) -------------------------------------------------------------------------
def workload(work: Path, dry_run: bool, audio_dir: Path | None) -> dict[str, Any]:
    from voiceman.audio import decode

    if audio_dir is not None:
        files = sorted(audio_dir.glob("*.wav"))
        if not files:
            raise RuntimeError(f"--audio {audio_dir}: no *.wav files")
        source = f"{audio_dir} (*.wav)"
    else:
        if shutil.which("espeak-ng") is None:
            raise Skip(
                "espeak-ng is not installed: pass --audio DIR with WAV files "
                "(python bench/gpu_check.py --make-audio DIR on a machine that has it)"
            )
        from voiceman.benchmark.workload import synthesise_case

        count, seconds = (1, 6.0) if dry_run else (6, 60.0)
        synthesise_case(work / "case", count, seconds)
        files = sorted((work / "case").glob("*.wav"))
        source = f"espeak-ng, {count} files of >= {seconds:g} s"
    audio = {}
    for path in files:
        samples, _ = decode(path)
        audio[path.name] = samples
    total = sum(a.size for a in audio.values()) / SAMPLE_RATE
    paths = {path.name: path for path in files}
    return {"source": source, "files": sorted(audio), "audio_s": round(total, 2), "_audio": audio, "_paths": paths}


def _free() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    except Exception:  # noqa: BLE001
        pass


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync()
        started = time.perf_counter()
        fn()
        _sync()
        times.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(times)), 3)
