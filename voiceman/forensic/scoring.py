"""Explained forensic scores (0–100) for segments, speakers and whole files.

Every score carries an `evidence` list; each item names its source, what it is, the
value it used, the weight applied and its contribution. The score is always the sum of
the contributions clipped to 0..100 (rounded to 2 decimals), so an investigator can
re-add the evidence and get the number.

Segment:  pattern hits (severity x points x category weight x context weight)
        + emotion (arousal above neutral, valence below neutral, categorical probability)
        + voice stress (directed z from floor to cap x points per z)
        + a cross-check bonus for the outcome.
Speaker/file:  max_weight x highest segment score
             + mean_weight x duration-weighted mean of segment scores,
          with the highest-scoring segments listed as `top_segments`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from voiceman.forensic.cross_validation import CrossCheck, crosscheck, directed_stress_z
from voiceman.forensic.rules import resolve_rules

SCORE_MIN, SCORE_MAX = 0.0, 100.0


@dataclass(frozen=True)
class Evidence:
    """One contribution to a score."""

    source: str  # pattern | emotion | voice | crosscheck | aggregate
    detail: str
    value: float | None
    weight: float
    contribution: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Score:
    """A 0–100 score and the evidence it is the clipped sum of."""

    score: float
    uncapped_total: float
    evidence: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "uncapped_total": self.uncapped_total,
            "evidence": [e.to_dict() for e in self.evidence],
        }


def _evidence(source: str, detail: str, value: float | None, weight: float) -> Evidence:
    weight = round(float(weight), 4)
    contribution = weight if value is None else float(value) * weight
    return Evidence(source, detail, None if value is None else round(float(value), 4), weight, round(contribution, 4))


def score_from_evidence(evidence: list[Evidence]) -> Score:
    """The score identity: clip(sum of contributions) to 0..100."""
    total = round(sum(e.contribution for e in evidence), 4)
    return Score(round(min(SCORE_MAX, max(SCORE_MIN, total)), 2), total, list(evidence))


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pattern_evidence(patterns: list[dict[str, Any]], cfg: dict[str, Any]) -> list[Evidence]:
    items = []
    for hit in patterns:
        if hit.get("category") not in cfg["category_weights"] or hit.get("context") not in cfg["context_weights"]:
            raise ValueError(
                f"pattern hit {hit.get('pattern_id')!r}: category {hit.get('category')!r} / context "
                f"{hit.get('context')!r} has no weight in scoring.pattern of the forensic rules"
            )
        cat_w = cfg["category_weights"][hit["category"]]
        ctx_w = cfg["context_weights"][hit["context"]]
        pts = cfg["points_per_severity"]
        detail = (
            f'{hit["category"]} pattern {hit["pattern_id"]} "{_short(str(hit.get("text", "")))}" '
            f"({hit['context']}, severity {hit['severity']}): "
            f"{pts:g} pts/severity x category {cat_w:g} x context {ctx_w:g}"
        )
        items.append(_evidence("pattern", detail, hit["severity"], pts * cat_w * ctx_w))
    return items


def _emotion_evidence(emotion: dict[str, Any] | None, cfg: dict[str, Any]) -> list[Evidence]:
    """Emotion contributions; nothing at all when emotion was not analysed (no invented values)."""
    if not emotion or emotion.get("status") != "analysed":
        return []
    items = []
    neutral = cfg["neutral"]
    dims = emotion.get("dimensional") or {}
    arousal, valence = dims.get("arousal"), dims.get("valence")
    if arousal is not None:
        excess = min(1.0, max(0.0, (float(arousal) - neutral) / (1.0 - neutral)))
        if excess > 0:
            items.append(
                _evidence(
                    "emotion",
                    f"arousal {float(arousal):.2f} above neutral {neutral:.2f}: {excess:.2f} of the way to 1.0",
                    excess,
                    cfg["arousal_weight"],
                )
            )
    if valence is not None:
        deficit = min(1.0, max(0.0, (neutral - float(valence)) / neutral))
        if deficit > 0:
            items.append(
                _evidence(
                    "emotion",
                    f"valence {float(valence):.2f} below neutral {neutral:.2f}: {deficit:.2f} of the way to 0.0",
                    deficit,
                    cfg["negative_valence_weight"],
                )
            )
    categorical = emotion.get("categorical") or {}
    probabilities = categorical.get("probabilities") or {}
    for label, weight in cfg["categorical_weights"].items():
        # Only a stated probability is weighed: a bare label gives no number to weigh.
        probability = probabilities.get(label)
        if probability:
            items.append(
                _evidence("emotion", f"categorical P({label}) = {float(probability):.2f}", probability, weight)
            )
    return items


def _voice_evidence(
    voice: dict[str, Any] | None, stress_features: dict[str, str], cfg: dict[str, Any]
) -> list[Evidence]:
    items = []
    directed = directed_stress_z(voice, stress_features)
    for feature, z in sorted(directed.items(), key=lambda kv: -kv[1]):
        if z < cfg["z_floor"]:
            continue
        used = min(z, cfg["z_cap"])
        direction = stress_features[feature]
        capped = f", capped at {cfg['z_cap']:g}" if z > cfg["z_cap"] else ""
        detail = f"{feature} stress z={z:+.2f} vs speaker baseline (stress moves it {direction}{capped})"
        items.append(_evidence("voice", detail, used, cfg["points_per_z"]))
    return items


def score_segment(
    segment: dict[str, Any],
    emotion: dict[str, Any] | None,
    voice: dict[str, Any] | None,
    patterns: list[dict[str, Any]],
    check: CrossCheck | dict[str, Any] | None = None,
    rules: dict[str, Any] | None = None,
) -> Score:
    """Score one segment from its pattern hits, emotion, voice stress and cross-check outcome."""
    rules = resolve_rules(rules)
    if check is None:
        check = crosscheck(segment, emotion, voice, patterns, rules)
    check_dict = check.to_dict() if isinstance(check, CrossCheck) else check
    scoring = rules["scoring"]
    evidence = _pattern_evidence(patterns, scoring["pattern"])
    evidence += _emotion_evidence(emotion, scoring["emotion"])
    evidence += _voice_evidence(voice, rules["crosscheck"]["stress_features"], scoring["voice"])
    bonus = scoring["crosscheck_bonus"].get(check_dict["outcome"])
    if bonus:
        evidence.append(
            _evidence("crosscheck", f"cross-check {check_dict['outcome']}: {check_dict['explanation']}", None, bonus)
        )
    return score_from_evidence(evidence)


# ---------------------------------------------------------------- aggregation


def _duration(seg: dict[str, Any]) -> float:
    return max(0.0, float(seg["end"]) - float(seg["start"]))


def _segment_index(seg: dict[str, Any], position: int) -> int:
    return int(seg.get("index", position))


def _top_segment_entry(seg: dict[str, Any], position: int) -> dict[str, Any]:
    check = seg.get("crosscheck") or {}
    top_evidence = sorted(seg.get("evidence") or [], key=lambda e: -abs(e["contribution"]))[:3]
    return {
        "index": _segment_index(seg, position),
        "start": float(seg["start"]),
        "end": float(seg["end"]),
        "speaker": seg.get("speaker"),
        "score": float(seg["score"]),
        "outcome": check.get("outcome"),
        "flagged": bool(check.get("flagged", False)),
        "top_evidence": top_evidence,
    }


def aggregate_segment_scores(segments: list[tuple[int, dict[str, Any]]], rules: dict[str, Any]) -> dict[str, Any]:
    """Combine (position, segment) pairs into one explained score (see module docstring).

    The mean is weighted by segment duration so a long calm conversation is not outweighed
    by many one-word fragments; if every segment has zero length it falls back to a plain mean.
    """
    agg = rules["aggregation"]
    if not segments:
        return {
            "score": 0.0,
            "uncapped_total": 0.0,
            "evidence": [],
            "segment_count": 0,
            "speech_s": 0.0,
            "max_segment_score": None,
            "mean_segment_score": None,
            "flagged_segments": 0,
            "outcomes": {},
            "top_segments": [],
            "method": "no speech segments: score 0 with no evidence",
        }
    durations = [_duration(seg) for _, seg in segments]
    scores = [float(seg["score"]) for _, seg in segments]
    total_s = sum(durations)
    if total_s > 0:
        mean = sum(s * d for s, d in zip(scores, durations)) / total_s
        mean_kind = "duration-weighted mean"
        mean_desc = f"{mean_kind} of {len(scores)} segment scores over {total_s:.1f} s of speech"
    else:
        mean = sum(scores) / len(scores)
        mean_kind = "plain mean"
        mean_desc = f"{mean_kind} of {len(scores)} zero-length segment scores"
    best_pos, best_seg = max(segments, key=lambda ps: float(ps[1]["score"]))
    max_score = float(best_seg["score"])
    evidence = [
        _evidence(
            "aggregate",
            f"highest segment score {max_score:.2f} (segment #{_segment_index(best_seg, best_pos)}, "
            f"{float(best_seg['start']):.1f}-{float(best_seg['end']):.1f} s)",
            max_score,
            agg["max_weight"],
        ),
        _evidence("aggregate", mean_desc, mean, agg["mean_weight"]),
    ]
    score = score_from_evidence(evidence)
    ranked = sorted(segments, key=lambda ps: (-float(ps[1]["score"]), float(ps[1]["start"])))
    outcomes = Counter((seg.get("crosscheck") or {}).get("outcome", "unknown") for _, seg in segments)
    return {
        **score.to_dict(),
        "segment_count": len(segments),
        "speech_s": round(total_s, 3),
        "max_segment_score": round(max_score, 2),
        "mean_segment_score": round(mean, 2),
        "flagged_segments": sum(1 for _, seg in segments if (seg.get("crosscheck") or {}).get("flagged")),
        "outcomes": dict(sorted(outcomes.items())),
        "top_segments": [_top_segment_entry(seg, pos) for pos, seg in ranked[: agg["top_segments"]]],
        "method": (
            f"{agg['max_weight']:g} x highest segment score + {agg['mean_weight']:g} x {mean_kind}, clipped to 0..100"
        ),
    }


def score_speakers(
    segments_with_scores: list[dict[str, Any]], rules: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One explained score per speaker (null speaker = unassigned), highest score first."""
    rules = resolve_rules(rules)
    by_speaker: dict[str | None, list[tuple[int, dict[str, Any]]]] = {}
    for position, seg in enumerate(segments_with_scores):
        by_speaker.setdefault(seg.get("speaker"), []).append((position, seg))
    result = [{"speaker": speaker, **aggregate_segment_scores(segs, rules)} for speaker, segs in by_speaker.items()]
    result.sort(key=lambda r: (-r["score"], r["speaker"] is None, str(r["speaker"])))
    return result


def score_file(segments_with_scores: list[dict[str, Any]], rules: dict[str, Any] | None = None) -> dict[str, Any]:
    """One explained score for the whole file, aggregated over all its segments."""
    rules = resolve_rules(rules)
    speakers = {seg.get("speaker") for seg in segments_with_scores}
    return {**aggregate_segment_scores(list(enumerate(segments_with_scores)), rules), "speaker_count": len(speakers)}
