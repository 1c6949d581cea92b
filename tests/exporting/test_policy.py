import pytest

from annotations.exporting import AggregationPolicy, PolicyError, SplitConfig, SplitConfigError


def test_it_round_trips_through_a_dict():
    policy = AggregationPolicy(
        decision="unanimity",
        min_votes=3,
        min_margin=0.25,
        ties="separate_file",
        min_gold_accuracy=0.8,
        keep_raters_without_gold=False,
        include_judges=True,
    )
    assert AggregationPolicy.from_dict(policy.to_dict()) == policy


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"decision": "plurality"}, "policy.decision"),
        ({"min_votes": 0}, "policy.min_votes"),
        ({"min_votes": 1.5}, "policy.min_votes"),
        ({"min_votes": True}, "policy.min_votes"),
        ({"min_margin": 1.5}, "policy.min_margin"),
        ({"min_margin": float("nan")}, "policy.min_margin"),
        ({"ties": "keep"}, "policy.ties"),
        ({"min_gold_accuracy": -0.1}, "policy.min_gold_accuracy"),
        ({"keep_raters_without_gold": "yes"}, "policy.keep_raters_without_gold"),
        ({"include_judges": 1}, "policy.include_judges"),
    ],
)
def test_it_names_the_invalid_field(changes, field):
    with pytest.raises(PolicyError, match=field.replace(".", r"\.")):
        AggregationPolicy.from_dict(changes)


def test_it_rejects_unknown_fields_by_name():
    with pytest.raises(PolicyError, match="min_vots"):
        AggregationPolicy.from_dict({"min_vots": 2})


def test_a_policy_is_frozen():
    policy = AggregationPolicy()
    with pytest.raises(AttributeError):
        policy.min_votes = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"test_fraction": 1.0}, "split.test_fraction"),
        ({"validation_fraction": -0.1}, "split.validation_fraction"),
        ({"test_fraction": 0.6, "validation_fraction": 0.5}, "split.test_fraction"),
        ({"seed": "1"}, "split.seed"),
        ({"stratify_by": ""}, "split.stratify_by"),
    ],
)
def test_split_config_names_the_invalid_field(changes, field):
    with pytest.raises(SplitConfigError, match=field.replace(".", r"\.")):
        SplitConfig.from_dict(changes)


def test_split_config_round_trips_through_a_dict():
    config = SplitConfig(seed=7, test_fraction=0.2, validation_fraction=0.1, stratify_by="category")
    assert SplitConfig.from_dict(config.to_dict()) == config
