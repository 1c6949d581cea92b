"""A small rated study (the exports' fixture) with disputed items: two raters split on some comparisons."""

import pytest

from tests.exports.conftest import RatedStudy, build_rated_study


@pytest.fixture(autouse=True)
def artifacts_root(settings, tmp_path):
    settings.ARTIFACTS_ROOT = tmp_path / "artifacts"
    return settings.ARTIFACTS_ROOT


def split_rule(index: int, rater: int) -> int | None:
    """Comparisons 0-3 are disputed (one rater for each response, no third vote); the rest have a majority
    for the second response (two votes) against a tie."""
    if index < 4:
        return (-1, 1, None)[rater]
    return (1, 1, 0)[rater]


@pytest.fixture
def disputed(study) -> RatedStudy:
    return build_rated_study(study, prompts=4, vote_rule=split_rule)
