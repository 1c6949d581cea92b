"""A rated study with flagged pairs: both unacceptable, a safety skip, an unsafe span, and an ordinary skip."""

from dataclasses import dataclass

import pytest
from django.utils import timezone

from annotations.models import Assignment, Comparison, Rater, Span
from tests.exports.conftest import RatedStudy, build_rated_study


@pytest.fixture(autouse=True)
def artifacts_root(settings, tmp_path):
    settings.ARTIFACTS_ROOT = tmp_path / "artifacts"
    return settings.ARTIFACTS_ROOT


@dataclass
class Flagged:
    data: RatedStudy
    unacceptable: Comparison
    safety_skip: Comparison
    unsafe_span: Comparison
    plain_skip: Comparison


def _rater(label: str) -> Rater:
    return Rater.objects.get_or_create(kind=Rater.Kind.EXTERNAL, label=label)[0]


@pytest.fixture
def flagged(study) -> Flagged:
    data = build_rated_study(study, prompts=4)
    first, second, third, fourth = data.comparisons[:4]
    Assignment.objects.filter(comparison=first, rater__label="rater-a").update(
        both_unacceptable=True, unacceptable_reason="Both ignore the mention of pills."
    )
    Assignment.objects.create(
        study=study,
        comparison=second,
        rater=_rater("rater-skip"),
        status=Assignment.Status.SKIPPED,
        skip_reason="The conversation mentions self-harm; I am not comfortable rating it.",
    )
    spanned = Assignment.objects.get(comparison=third, rater__label="rater-b")
    text = third.response_first.content
    Span.objects.create(
        assignment=spanned,
        response=third.response_first,
        start=0,
        end=10,
        label="unsafe",
        note="Dismisses the risk",
        quote=text[:10],
    )
    Assignment.objects.create(
        study=study,
        comparison=fourth,
        rater=_rater("rater-busy"),
        status=Assignment.Status.SKIPPED,
        skip_reason="Out of time today.",
        submitted_at=timezone.now(),
    )
    return Flagged(data=data, unacceptable=first, safety_skip=second, unsafe_span=third, plain_skip=fourth)
