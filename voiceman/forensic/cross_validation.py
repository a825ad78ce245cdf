"""Text–voice cross-validation: does how a thing is said match what is said?

Each segment gets exactly one outcome, decided by the first rule that applies:

1. not_assessable  – no usable emotion result (the reason is quoted, no value is invented);
2. corroborated    – own-words hit in a corroborating category, agitated AND negative delivery;
3. calm_threat     – own-words threat/intimidation hit, calm arousal and no stressed voice feature;
4. content_only    – own-words hit(s) whose delivery matches neither rule above;
5. affect_without_content – no own-words hit, but strong negative affect
                     (agitated and negative, or very negative valence, or a stressed voice);
6. consistent      – no own-words hit and no strong negative affect.

"Own words" are hits whose context is in `content_contexts` (default: direct), so a
quoted threat ("he said he'd kill me") does not make a calm narrator a "calm threat".
Thresholds live in config/forensic.yaml; every explanation cites the numbers and the
thresholds it was compared with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from voiceman.forensic.rules import resolve_rules


@dataclass(frozen=True)
class StressedFeature:
    """A voice feature whose z-score, signed so that stress is positive, passed the threshold."""

    feature: str
    z: float


@dataclass(frozen=True)
class CrossCheck:
    """Outcome of comparing a segment's words with its delivery."""

    outcome: str
    flagged: bool
    explanation: str
    content_pattern_ids: list[str] = field(default_factory=list)
    stressed_features: list[StressedFeature] = field(default_factory=list)
    # The most stressed feature (directed z), kept so plots need not re-apply the rules.
    max_stress_feature: str | None = None
    max_stress_z: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def crosscheck_section(rules: dict[str, Any]) -> dict[str, Any]:
    """Accept either the whole rules file or just its `crosscheck` section."""
    return rules["crosscheck"] if "crosscheck" in rules else rules


def directed_stress_z(voice: dict[str, Any] | None, stress_features: dict[str, str]) -> dict[str, float]:
    """z-scores of the configured stress features, negated for features stress lowers.

    Features whose z is missing (no baseline, unvoiced segment) are left out, never zero-filled.
    """
    z_scores = (voice or {}).get("z") or {}
    directed: dict[str, float] = {}
    for feature, direction in stress_features.items():
        z = z_scores.get(feature)
        if z is None:
            continue
        directed[feature] = float(z) if direction == "up" else -float(z)
    return directed


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def _hit_label(hit: dict[str, Any]) -> str:
    return f"{hit['category']}:{hit['pattern_id']}"


def _labels(hits: list[dict[str, Any]]) -> str:
    return ", ".join(_hit_label(h) for h in hits)


def _emotion_unusable_reason(emotion: dict[str, Any] | None) -> str | None:
    """Why the emotion result cannot be used, or None when arousal and valence are present."""
    if emotion is None:
        return "no emotion result for this segment"
    if emotion.get("status") != "analysed":
        return emotion.get("reason") or "emotion not analysed (no reason given)"
    dims = emotion.get("dimensional") or {}
    missing = [k for k in ("arousal", "valence") if dims.get(k) is None]
    if missing:
        return f"emotion analysed but {' and '.join(missing)} missing"
    return None


def crosscheck(
    segment: dict[str, Any],
    emotion: dict[str, Any] | None,
    voice: dict[str, Any] | None,
    patterns: list[dict[str, Any]],
    rules: dict[str, Any] | None = None,
) -> CrossCheck:
    """Compare pattern hits (what is said) with emotion and voice stress (how it is said)."""
    cfg = crosscheck_section(resolve_rules(rules))
    flagged_outcomes = set(cfg["flagged_outcomes"])
    own_hits = [h for h in patterns if h.get("context") in cfg["content_contexts"]]
    other_hits = [h for h in patterns if h.get("context") not in cfg["content_contexts"]]
    own_ids = [h["pattern_id"] for h in own_hits]
    side_note = (
        f"; not counted ({'/'.join(sorted({h['context'] for h in other_hits}))}): {_labels(other_hits)}"
        if other_hits
        else ""
    )

    directed = directed_stress_z(voice, cfg["stress_features"])
    threshold = cfg["stress_z_threshold"]
    stressed = [StressedFeature(f, round(z, 3)) for f, z in directed.items() if z >= threshold]
    stressed.sort(key=lambda s: -s.z)
    stressed_voice = len(stressed) >= cfg["stress_min_features"]
    stress_text = ", ".join(f"{s.feature} stress z={s.z:+.2f}" for s in stressed)
    top_stress = max(directed.items(), key=lambda kv: kv[1], default=None)

    def result(outcome: str, explanation: str) -> CrossCheck:
        return CrossCheck(
            outcome,
            outcome in flagged_outcomes,
            explanation + side_note,
            own_ids,
            stressed,
            top_stress[0] if top_stress else None,
            round(top_stress[1], 3) if top_stress else None,
        )

    unusable = _emotion_unusable_reason(emotion)
    if unusable is not None:
        words = f"; {len(own_hits)} own-words pattern(s) scored from text only: {_labels(own_hits)}" if own_hits else ""
        return result("not_assessable", f"not assessable: emotion not analysed ({unusable}){words}")

    dims = emotion["dimensional"]  # type: ignore[index]
    arousal, valence = float(dims["arousal"]), float(dims["valence"])
    high, calm, negative = cfg["high_arousal"], cfg["calm_arousal"], cfg["negative_valence"]
    agitated = arousal >= high
    calm_voice = arousal <= calm and not stressed_voice
    negative_affect = valence <= negative
    a_txt, v_txt = _fmt(arousal), _fmt(valence)

    corroborating = [h for h in own_hits if h["category"] in cfg["corroborating_categories"]]
    calm_threats = [h for h in own_hits if h["category"] in cfg["calm_threat_categories"]]

    if corroborating and agitated and negative_affect:
        return result(
            "corroborated",
            f"{_labels(corroborating)} said with agitated, negative delivery: "
            f"arousal {a_txt} >= {_fmt(high)} and valence {v_txt} <= {_fmt(negative)}"
            + (f"; stressed voice: {stress_text}" if stressed else ""),
        )
    if calm_threats and calm_voice:
        return result(
            "calm_threat",
            f"{_labels(calm_threats)} said in a calm voice: arousal {a_txt} <= {_fmt(calm)}, "
            f"valence {v_txt}, no voice feature at stress z >= {_fmt(threshold)}",
        )
    if own_hits:
        stress_part = (
            f"stressed voice: {stress_text}" if stressed else f"no voice feature at stress z >= {_fmt(threshold)}"
        )
        return result(
            "content_only",
            f"{_labels(own_hits)} without matching delivery: arousal {a_txt} "
            f"(agitated >= {_fmt(high)}, calm <= {_fmt(calm)}), valence {v_txt} "
            f"(negative <= {_fmt(negative)}); {stress_part}",
        )

    triggers: list[str] = []
    if agitated and negative_affect:
        triggers.append(f"arousal {a_txt} >= {_fmt(high)} with valence {v_txt} <= {_fmt(negative)}")
    if valence <= cfg["strong_negative_valence"]:
        triggers.append(f"valence {v_txt} <= {_fmt(cfg['strong_negative_valence'])}")
    if stressed_voice:
        triggers.append(f"stressed voice: {stress_text} (z >= {_fmt(threshold)})")
    if triggers:
        return result(
            "affect_without_content", "strong negative affect without a verbal pattern: " + "; ".join(triggers)
        )

    stress_part = (
        f"highest stress z {top_stress[0]} {top_stress[1]:+.2f} < {_fmt(threshold)}"
        if top_stress
        else "no voice z-scores"
    )
    return result(
        "consistent",
        f"no verbal pattern and no strong negative affect: arousal {a_txt}, valence {v_txt}, {stress_part}",
    )
