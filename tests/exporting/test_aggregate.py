import pytest

from annotations.exporting import AggregationPolicy, VoteRecord, aggregate_comparison
from annotations.exporting.synthetic import make_comparison


def outcome(votes, *, policy=None, scale_points=3, gold=None, criterion="empathy"):
    record = make_comparison(votes)
    result = aggregate_comparison(
        record,
        criteria=[criterion],
        policy=policy or AggregationPolicy(),
        scale_points=scale_points,
        rater_gold_accuracy=gold or {},
    )
    return result[criterion]


def clinicians(*values, criterion="empathy"):
    return [(criterion, f"c{i}", value) for i, value in enumerate(values)]


def test_majority_picks_the_side_with_most_votes():
    result = outcome(clinicians(-1, -1, 1))
    assert (result.preferred, result.votes.to_dict()) == ("a", {"a": 2, "tie": 0, "b": 1})
    assert result.agreement == pytest.approx(2 / 3, abs=1e-6)
    assert outcome(clinicians(1, 1, 0)).preferred == "b"


@pytest.mark.parametrize("values", [(-1, 1), (-1, 0), (-1, 1, 0), (1, 1, 0, 0)])
def test_majority_calls_a_shared_top_a_dispute_not_a_tie(values):
    """Raters who disagree have not said the responses are equal: no label, and never a tie row."""
    result = outcome(clinicians(*values))
    assert (result.status, result.preferred) == ("disputed", None)


@pytest.mark.parametrize("values", [(0, 0), (0, 0, -1), (0, 0, -1, 1)])
def test_majority_calls_a_tie_only_when_the_raters_chose_tie(values):
    assert outcome(clinicians(*values)).preferred == "tie"


def test_majority_needs_the_minimum_number_of_votes():
    policy = AggregationPolicy(min_votes=3)
    assert outcome(clinicians(-1, -1), policy=policy).status == "too_few_votes"
    assert outcome(clinicians(-1, -1), policy=policy).preferred is None
    assert outcome(clinicians(-1, -1, -1), policy=policy).preferred == "a"


def test_unanimity_requires_every_vote_on_one_side():
    policy = AggregationPolicy(decision="unanimity")
    assert outcome(clinicians(1, 1, 1), policy=policy).preferred == "b"
    assert outcome(clinicians(0, 0), policy=policy).preferred == "tie"
    split = outcome(clinicians(1, 1, 0), policy=policy)
    assert (split.status, split.preferred) == ("no_consensus", None)


def test_margin_is_the_mean_strength_toward_the_chosen_side():
    # 7-point scale: max |value| is 3. Votes -3, -1, 0 -> mean strength toward a = (3 + 1 + 0) / (3 * 3).
    result = outcome(clinicians(-3, -1, 0), scale_points=7)
    assert result.preferred == "a"
    assert result.margin == pytest.approx(4 / 9, abs=1e-6)


def test_minimum_margin_drops_weak_preferences():
    policy = AggregationPolicy(min_margin=0.5)
    weak = outcome(clinicians(-1, -1, 0), policy=policy, scale_points=7)  # (1 + 1) / 9
    strong = outcome(clinicians(-3, -2, 0), policy=policy, scale_points=7)  # 5 / 9
    assert (weak.status, weak.preferred) == ("below_margin", None)
    assert strong.preferred == "a"


def test_minimum_margin_drops_a_majority_that_strength_contradicts():
    # Two weak votes for a, one strong vote for b: the majority says a, the strength says b.
    policy = AggregationPolicy(min_margin=0.01)
    assert outcome(clinicians(-1, -1, 3), scale_points=7).preferred == "a"
    assert outcome(clinicians(-1, -1, 3), policy=policy, scale_points=7).status == "below_margin"


def flagged(criterion, rater, value, *, is_judge=False):
    return VoteRecord(criterion, rater, is_judge, value, both_unacceptable=True)


def test_both_unacceptable_is_never_chosen_on_any_criterion():
    record = make_comparison(
        [
            *clinicians(-1, -1, -1, criterion="empathy"),
            *clinicians(1, 1, 1, criterion="safety"),
            flagged("overall", "c0", -1),  # the flag sits on another criterion's rating
        ]
    )
    result = aggregate_comparison(
        record,
        criteria=["empathy", "safety"],
        policy=AggregationPolicy(),
        scale_points=3,
        rater_gold_accuracy={},
    )
    assert {key: (o.status, o.preferred) for key, o in result.items()} == {
        "empathy": ("both_unacceptable", None),
        "safety": ("both_unacceptable", None),
    }


def test_a_clinician_excluded_for_gold_accuracy_still_flags_both_unacceptable():
    votes = [*clinicians(-1, -1), flagged("empathy", "weak", -1)]
    policy = AggregationPolicy(min_gold_accuracy=0.7)
    result = outcome(votes, policy=policy, gold={"c0": 0.9, "c1": 0.9, "weak": 0.1})
    assert result.status == "both_unacceptable"


def test_a_judge_flag_counts_only_when_judges_are_counted():
    votes = [*clinicians(-1, -1), flagged("empathy", "judge", -1, is_judge=True)]
    assert outcome(votes).preferred == "a"
    assert outcome(votes, policy=AggregationPolicy(include_judges=True)).status == "both_unacceptable"


def test_raters_below_the_gold_threshold_are_not_counted():
    votes = [("empathy", "good", 1), ("empathy", "poor-1", -1), ("empathy", "poor-2", -1)]
    gold = {"good": 0.9, "poor-1": 0.4, "poor-2": 0.5}
    assert outcome(votes, gold=gold).preferred == "a"
    result = outcome(votes, policy=AggregationPolicy(min_gold_accuracy=0.8), gold=gold)
    assert (result.preferred, result.votes.total) == ("b", 1)


def test_raters_without_gold_accuracy_follow_the_policy():
    votes = [("empathy", "good", 1), ("empathy", "unknown-1", -1), ("empathy", "unknown-2", -1)]
    gold = {"good": 0.9, "unknown-1": None}  # unknown-2 is absent: also unknown
    keep = AggregationPolicy(min_gold_accuracy=0.8, keep_raters_without_gold=True)
    drop = AggregationPolicy(min_gold_accuracy=0.8, keep_raters_without_gold=False)
    assert outcome(votes, policy=keep, gold=gold).preferred == "a"
    assert outcome(votes, policy=drop, gold=gold).preferred == "b"


def test_judges_are_counted_only_when_the_policy_says_so_and_reported_apart():
    votes = [
        ("empathy", "c0", 1),
        VoteRecord("empathy", "judge-1", True, -1),
        VoteRecord("empathy", "judge-2", True, -1),
    ]
    without = outcome(votes)
    with_judges = outcome(votes, policy=AggregationPolicy(include_judges=True))
    assert (without.preferred, without.votes.total, without.judge_votes.total) == ("b", 1, 0)
    assert (with_judges.preferred, with_judges.votes.total) == ("a", 3)
    assert with_judges.judge_votes.to_dict() == {"a": 2, "tie": 0, "b": 0}


def test_votes_on_criteria_not_exported_are_ignored():
    result = outcome([("empathy", "c0", -1), ("safety", "c0", 1), ("safety", "c1", 1)])
    assert (result.preferred, result.votes.total) == ("a", 1)
