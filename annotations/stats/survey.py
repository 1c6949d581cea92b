"""Patient preference survey figures and weight derivations (pure: no Django).

Everything here takes plain answers (`SurveyAnswers`) and criterion keys in the study's order, so the
results page, the API, the management command and the tests share one computation. The methods are
written out in docs/surveys.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

IMPORTANCE_MIN = 1
IMPORTANCE_MAX = 5
# Percentile bootstrap of the mean: resamples and seed are fixed so the page and the API agree.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
METHODS = ("mean_importance", "top_priority", "borda")
SAFETY_KEY = "safety"


@dataclass(frozen=True)
class SurveyAnswers:
    """One respondent: importance per criterion, the top priority, an optional ranking, extra answers."""

    importance: dict[str, int]
    top_priority: str
    ranking: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)


class WeightDerivationError(ValueError):
    """The answers cannot give weights by the method asked (no respondents, no rankings, ...)."""


def mean_importance(
    responses: Sequence[SurveyAnswers],
    criteria: Sequence[str],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> list[dict]:
    """Per criterion: respondents n, mean importance and a 95% percentile-bootstrap interval of the mean."""
    rng = np.random.default_rng(seed)
    rows = []
    for key in criteria:
        values = np.array([r.importance[key] for r in responses if key in r.importance], dtype=float)
        if values.size == 0:
            rows.append({"criterion": key, "n": 0, "mean": None, "low": None, "high": None})
            continue
        mean = float(values.mean())
        if values.size == 1 or resamples == 0:
            low = high = mean
        else:
            draws = rng.integers(0, values.size, size=(resamples, values.size))
            means = values[draws].mean(axis=1)
            alpha = (1 - CONFIDENCE) / 2
            low, high = (float(q) for q in np.quantile(means, [alpha, 1 - alpha]))
        rows.append({"criterion": key, "n": int(values.size), "mean": mean, "low": low, "high": high})
    return rows


def top_priority_distribution(responses: Sequence[SurveyAnswers], criteria: Sequence[str]) -> list[dict]:
    """Per criterion: how many respondents named it most important, and their share of all respondents."""
    counts = Counter(r.top_priority for r in responses)
    total = len(responses)
    return [
        {"criterion": key, "count": counts.get(key, 0), "share": counts.get(key, 0) / total if total else 0.0}
        for key in criteria
    ]


def segment(responses: Sequence[SurveyAnswers], question: str, answer: str) -> list[SurveyAnswers]:
    """The respondents who gave `answer` to the choice question `question`."""
    return [r for r in responses if r.answers.get(question) == answer]


def breakdown(
    responses: Sequence[SurveyAnswers], criteria: Sequence[str], *, question: str, options: Sequence[str]
) -> list[dict]:
    """Mean importance and top priorities per answer of one choice question (respondents who skipped it are
    left out)."""
    result = []
    for option in options:
        group = segment(responses, question, option)
        result.append(
            {
                "answer": option,
                "n": len(group),
                "importance": mean_importance(group, criteria),
                "top_priority": top_priority_distribution(group, criteria),
            }
        )
    return result


def _normalised(scores: dict[str, float]) -> dict[str, float]:
    total = sum(scores.values())
    if total <= 0:
        raise WeightDerivationError("The answers give every criterion zero weight.")
    return {key: value / total for key, value in scores.items()}


def weights_mean_importance(responses: Sequence[SurveyAnswers], criteria: Sequence[str]) -> dict[str, float]:
    """w_c = mean_c / sum_k mean_k, where mean_c is the mean importance (1..5) of criterion c."""
    if not responses:
        raise WeightDerivationError("No responses to derive weights from.")
    means = {row["criterion"]: row["mean"] or 0.0 for row in mean_importance(responses, criteria, resamples=0)}
    return _normalised(means)


def weights_top_priority(responses: Sequence[SurveyAnswers], criteria: Sequence[str]) -> dict[str, float]:
    """w_c = share of respondents naming c most important. No floor: a criterion nobody chose gets 0 (a
    floor, where wanted, is the safety minimum's job, applied afterwards)."""
    if not responses:
        raise WeightDerivationError("No responses to derive weights from.")
    return _normalised({row["criterion"]: row["share"] for row in top_priority_distribution(responses, criteria)})


def weights_borda(responses: Sequence[SurveyAnswers], criteria: Sequence[str]) -> dict[str, float]:
    """Borda count over the respondents who ranked: with m criteria, first place earns m-1 points, last 0;
    w_c = points_c / total points."""
    ranked = [r for r in responses if r.ranking]
    if not ranked:
        raise WeightDerivationError("No respondent ranked the criteria, so Borda weights cannot be derived.")
    m = len(criteria)
    points = dict.fromkeys(criteria, 0.0)
    for r in ranked:
        for position, key in enumerate(r.ranking):
            if key in points:
                points[key] += m - 1 - position
    return _normalised(points)


def apply_safety_minimum(weights: dict[str, float], *, key: str = SAFETY_KEY, minimum: float) -> dict[str, float]:
    """Safety as a constraint: if w_safety < minimum, set it to the minimum and scale every other weight by
    (1 - minimum) / (1 - w_safety), so the weights still sum to 1 and keep their proportions."""
    if not 0 <= minimum < 1:
        raise WeightDerivationError("The safety minimum must be at least 0 and below 1.")
    if key not in weights:
        raise WeightDerivationError(f"The criteria have no {key!r} to hold at a minimum.")
    current = weights[key]
    if current >= minimum:
        return dict(weights)
    rest = 1 - current
    result = {}
    for name, value in weights.items():
        if name == key:
            result[name] = minimum
        elif rest > 0:
            result[name] = value * (1 - minimum) / rest
        else:
            result[name] = 0.0
    if rest <= 0:  # every other weight was 0: share what is left equally
        others = [name for name in weights if name != key]
        for name in others:
            result[name] = (1 - minimum) / len(others)
    return result


_DERIVATIONS = {
    "mean_importance": weights_mean_importance,
    "top_priority": weights_top_priority,
    "borda": weights_borda,
}


def derive_weights(
    responses: Sequence[SurveyAnswers],
    criteria: Sequence[str],
    *,
    method: str,
    segment_question: str = "",
    segment_answer: str = "",
    safety_minimum: float | None = None,
) -> tuple[dict[str, float], dict]:
    """Weights by `method` from all respondents or one segment, then the safety minimum if given. Returns the
    weights (summing to 1) and the derivation record stored with a weight set."""
    if method not in _DERIVATIONS:
        raise WeightDerivationError(f"Unknown method {method!r}; expected one of {', '.join(METHODS)}.")
    group = list(responses)
    if segment_question:
        group = segment(group, segment_question, segment_answer)
    derived = _DERIVATIONS[method](group, criteria)
    weights = derived
    if safety_minimum is not None:
        weights = apply_safety_minimum(derived, minimum=safety_minimum)
    derivation = {
        "method": method,
        "respondents": len(group),
        "segment": {"question": segment_question, "answer": segment_answer} if segment_question else None,
        "safety_minimum": safety_minimum,
        "before_safety": derived,
    }
    return weights, derivation


def persona_text(answers: SurveyAnswers, titles: dict[str, str], question_labels: dict[str, str]) -> str:
    """A patient persona for persona-conditioned judges, in the respondent's terms: what matters most, each
    importance, and their answers to the choice questions (free text is left out: it may identify)."""
    parts = [f"I rated {titles.get(answers.top_priority, answers.top_priority)} as most important"]
    # In the order of `titles` (the study's), not the stored order: a JSON column may reorder keys.
    order = [key for key in titles if key in answers.importance]
    order += [key for key in answers.importance if key not in titles]
    parts += [f"{titles.get(key, key)} {answers.importance[key]}/5" for key in order]
    if answers.ranking:
        parts.append("my ranking: " + " > ".join(titles.get(key, key) for key in answers.ranking))
    parts += [f"{label}: {answers.answers[key]}" for key, label in question_labels.items() if key in answers.answers]
    return "; ".join(parts) + "."
