"""Generated comparison records for tests, benchmarks and demos (no real text of anyone)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from annotations.exporting.aggregate import max_strength_for_scale
from annotations.exporting.records import ComparisonRecord, Message, ResponseRecord, VoteRecord


def generate_comparisons(
    n: int,
    *,
    criteria: Sequence[str] = ("empathy", "safety"),
    seed: int = 0,
    scale_points: int = 7,
    clinicians: int = 3,
    judges: int = 1,
    comparisons_per_prompt: int = 4,
    both_unacceptable_rate: float = 0.01,
    response_words: int = 30,
) -> Iterator[ComparisonRecord]:
    """Yield n records lazily, in comparison-id order; the same arguments give the same records."""
    rng = random.Random(seed)
    max_strength = max_strength_for_scale(scale_points)
    clinician_labels = [f"clinician-{i}" for i in range(clinicians)]
    judge_labels = [f"judge-{i}" for i in range(judges)]
    for index in range(n):
        prompt_index = index // comparisons_per_prompt
        # Each comparison has a hidden "true" lean per criterion; raters follow it noisily.
        votes = []
        flagged = rng.random() < both_unacceptable_rate
        for criterion in criteria:
            lean = rng.uniform(-1.0, 1.0)
            for label, is_judge in [(c, False) for c in clinician_labels] + [(j, True) for j in judge_labels]:
                value = round(max(-1.0, min(1.0, lean + rng.gauss(0.0, 0.5))) * max_strength)
                votes.append(
                    VoteRecord(
                        criterion=criterion,
                        rater=label,
                        is_judge=is_judge,
                        value=value,
                        both_unacceptable=flagged and label == clinician_labels[0] and criterion == criteria[0],
                    )
                )
        yield ComparisonRecord(
            comparison_id=f"cmp-{index:09d}",
            prompt_id=f"prompt-{prompt_index:09d}",
            prompt=(
                Message("system", "You are a supportive listener."),
                Message("user", f"Synthetic help-seeker message number {prompt_index}. " + _words(rng, response_words)),
            ),
            first=ResponseRecord(f"resp-{index}-1", _words(rng, response_words), "system-base"),
            second=ResponseRecord(f"resp-{index}-2", _words(rng, response_words), "system-new"),
            votes=tuple(votes),
        )


_VOCABULARY = (
    "that sounds hard and I hear how much you are carrying right now it makes sense to feel "
    "tired would you like to talk about what helped before you deserve support reaching out "
    "to someone you trust or a professional can help"
).split()


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(_VOCABULARY) for _ in range(count))


def make_comparison(
    votes: Sequence[tuple[str, str, int] | VoteRecord],
    *,
    comparison_id: str = "cmp-1",
    prompt_id: str = "prompt-1",
    first: str = "first response",
    second: str = "second response",
) -> ComparisonRecord:
    """A hand-built record for tests: votes as (criterion, clinician label, value) or VoteRecord."""
    return ComparisonRecord(
        comparison_id=comparison_id,
        prompt_id=prompt_id,
        prompt=(Message("user", f"message of {prompt_id}"),),
        first=ResponseRecord(f"{comparison_id}-first", first, "system-base"),
        second=ResponseRecord(f"{comparison_id}-second", second, "system-new"),
        votes=tuple(v if isinstance(v, VoteRecord) else VoteRecord(v[0], v[1], False, v[2]) for v in votes),
    )
