"""Votes -> one label per criterion of one comparison, under an AggregationPolicy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from annotations.exporting.policy import AggregationPolicy
from annotations.exporting.records import ComparisonRecord, ExportInputError, VoteRecord

SCALE_MAX_STRENGTH = {3: 1, 5: 2, 7: 3}

# Why a criterion of a comparison did or did not get a label; manifest "outcomes" counts these.
STATUSES = (
    "a",
    "b",
    "tie",
    "too_few_votes",
    "no_consensus",
    "disputed",
    "below_margin",
    "both_unacceptable",
)

# Why a rater's votes are not counted.
EXCLUDED_JUDGE = "judge_not_counted"
EXCLUDED_BELOW_GOLD = "below_gold_accuracy"
EXCLUDED_WITHOUT_GOLD = "without_gold_accuracy"


def max_strength_for_scale(scale_points: int) -> int:
    if scale_points not in SCALE_MAX_STRENGTH:
        raise ExportInputError(f"scale_points must be 3, 5 or 7; got {scale_points!r}")
    return SCALE_MAX_STRENGTH[scale_points]


@dataclass(frozen=True, slots=True)
class VoteCounts:
    a: int = 0
    tie: int = 0
    b: int = 0

    @property
    def total(self) -> int:
        return self.a + self.tie + self.b

    def to_dict(self) -> dict[str, int]:
        return {"a": self.a, "tie": self.tie, "b": self.b}


@dataclass(frozen=True, slots=True)
class CriterionOutcome:
    """The label of one criterion of one comparison. "a" is the first response, "b" the second.

    preferred: "a", "b", "tie", or None (no label; status says why).
    votes: counted votes (judges included when the policy counts them); judge_votes: the judges' share of them.
    agreement: share of counted votes on the preferred option; for no label, the share of the
        most-voted option (0.0 without votes).
    margin: strength-weighted margin toward the preferred side, in [0, 1] (mean of value / max|value|
        over counted votes, clamped at 0); 0.0 for ties and no label.
    """

    status: str
    preferred: str | None
    votes: VoteCounts
    judge_votes: VoteCounts
    agreement: float
    margin: float
    # The label is an adjudicator's decision (policy decision "adjudicated"), not the votes'.
    adjudicated: bool = False

    def label_dict(self) -> dict[str, object]:
        return {
            "preferred": self.preferred,
            "votes": self.votes.to_dict(),
            "judge_votes": self.judge_votes.to_dict(),
            "agreement": self.agreement,
            "margin": self.margin,
        }


def rater_exclusion(
    rater: str,
    *,
    is_judge: bool,
    policy: AggregationPolicy,
    rater_gold_accuracy: Mapping[str, float | None],
) -> str | None:
    """None when the rater's votes count, else the reason they do not."""
    if is_judge and not policy.include_judges:
        return EXCLUDED_JUDGE
    if policy.min_gold_accuracy is None:
        return None
    accuracy = rater_gold_accuracy.get(rater)
    if accuracy is None:
        return None if policy.keep_raters_without_gold else EXCLUDED_WITHOUT_GOLD
    return EXCLUDED_BELOW_GOLD if accuracy < policy.min_gold_accuracy else None


def is_flagged_both_unacceptable(record: ComparisonRecord, policy: AggregationPolicy) -> bool:
    """Any clinician's flag excludes the comparison, even a clinician not counted for gold accuracy:
    safety outranks accuracy. A judge's flag counts only when judges count as votes."""
    return any(v.both_unacceptable and (not v.is_judge or policy.include_judges) for v in record.votes)


def aggregate_comparison(
    record: ComparisonRecord,
    *,
    criteria: Iterable[str],
    policy: AggregationPolicy,
    scale_points: int,
    rater_gold_accuracy: Mapping[str, float | None],
) -> dict[str, CriterionOutcome]:
    """One CriterionOutcome per requested criterion (votes on other criteria are ignored).

    Under decision "adjudicated", a criterion the record carries an adjudication for takes the adjudicated
    value instead of the votes' label (whatever the votes, min_votes and min_margin say); a comparison
    flagged "both unacceptable" still gets no label: safety outranks adjudication."""
    max_strength = max_strength_for_scale(scale_points)
    flagged = is_flagged_both_unacceptable(record, policy)
    counted_by_criterion: dict[str, list[VoteRecord]] = {key: [] for key in criteria}
    for vote in record.votes:
        if vote.criterion not in counted_by_criterion:
            continue
        if rater_exclusion(vote.rater, is_judge=vote.is_judge, policy=policy, rater_gold_accuracy=rater_gold_accuracy):
            continue
        counted_by_criterion[vote.criterion].append(vote)
    decided = dict(record.adjudications) if policy.decision == "adjudicated" and not flagged else {}
    return {
        key: (
            adjudicated_outcome(votes, value=decided[key], max_strength=max_strength)
            if key in decided
            else aggregate_votes(votes, policy=policy, max_strength=max_strength, both_unacceptable=flagged)
        )
        for key, votes in counted_by_criterion.items()
    }


def aggregate_votes(
    votes: list[VoteRecord],
    *,
    policy: AggregationPolicy,
    max_strength: int,
    both_unacceptable: bool = False,
) -> CriterionOutcome:
    """Aggregate already-counted votes on one criterion of one comparison."""
    counts = _count(votes)
    judge_counts = _count(v for v in votes if v.is_judge)
    n = counts.total
    # Mean normalised strength in canonical orientation: negative favours a (the first response).
    signed_strength = sum(v.value for v in votes) / (max_strength * n) if n else 0.0
    top_share = max(counts.a, counts.tie, counts.b) / n if n else 0.0

    def no_label(status: str) -> CriterionOutcome:
        return CriterionOutcome(status, None, counts, judge_counts, _round(top_share), 0.0)

    if both_unacceptable:
        return no_label("both_unacceptable")
    if n < policy.min_votes:
        return no_label("too_few_votes")

    if policy.decision == "unanimity":
        if counts.a == n:
            preferred = "a"
        elif counts.b == n:
            preferred = "b"
        elif counts.tie == n:
            preferred = "tie"
        else:
            return no_label("no_consensus")
    else:
        # "majority", and "adjudicated" where no adjudication exists.
        preferred = plurality(counts)
        if preferred is None:
            # No plurality (1 A against 1 B, or as many ties as votes for a side): the raters disagree. That
            # is not equality, and a model must not be trained to treat it as a tie.
            return no_label("disputed")

    if preferred == "tie":
        return CriterionOutcome("tie", "tie", counts, judge_counts, _round(counts.tie / n), 0.0)

    toward_preferred = -signed_strength if preferred == "a" else signed_strength
    if policy.min_margin > 0 and toward_preferred < policy.min_margin:
        return no_label("below_margin")
    agreement = (counts.a if preferred == "a" else counts.b) / n
    return CriterionOutcome(
        preferred, preferred, counts, judge_counts, _round(agreement), _round(max(0.0, toward_preferred))
    )


def _count(votes: Iterable[VoteRecord]) -> VoteCounts:
    return count_values(vote.value for vote in votes)


def count_values(values: Iterable[int]) -> VoteCounts:
    """Votes by option from canonical values (negative: a, the first response; positive: b; 0: tie)."""
    a = tie = b = 0
    for value in values:
        if value < 0:
            a += 1
        elif value > 0:
            b += 1
        else:
            tie += 1
    return VoteCounts(a=a, tie=tie, b=b)


def plurality(counts: VoteCounts) -> str | None:
    """The majority rule: "a", "b" or "tie" when that option has strictly the most votes, else None."""
    if counts.a > counts.b and counts.a > counts.tie:
        return "a"
    if counts.b > counts.a and counts.b > counts.tie:
        return "b"
    if counts.tie > counts.a and counts.tie > counts.b:
        return "tie"
    return None


def is_disputed(counts: VoteCounts) -> bool:
    """The raters disagree with no plurality (1 A against 1 B, or as many ties as votes for a side): the
    majority rule's "disputed", which is not a tie. The one definition the export, the Disputes page and
    adjudication share."""
    return counts.total > 0 and plurality(counts) is None


def option_of_value(value: int) -> str:
    """ "a", "b" or "tie" for a canonical value."""
    return "a" if value < 0 else "b" if value > 0 else "tie"


def adjudicated_outcome(votes: list[VoteRecord], *, value: int, max_strength: int) -> CriterionOutcome:
    """The label an adjudicator decided (canonical `value`), with the counted votes kept for the record:
    agreement is the share of counted votes on the decided option, margin the votes' strength toward it."""
    counts = _count(votes)
    n = counts.total
    preferred = option_of_value(value)
    on_preferred = {"a": counts.a, "b": counts.b, "tie": counts.tie}[preferred]
    agreement = _round(on_preferred / n) if n else 0.0
    margin = 0.0
    if preferred != "tie" and n:
        signed_strength = sum(v.value for v in votes) / (max_strength * n)
        margin = _round(max(0.0, -signed_strength if preferred == "a" else signed_strength))
    return CriterionOutcome(
        preferred, preferred, counts, _count(v for v in votes if v.is_judge), agreement, margin, True
    )


def _round(value: float) -> float:
    # Fixed precision keeps files short and identical across platforms' float formatting.
    return round(value, 6)
