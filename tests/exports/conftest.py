"""Fixtures for the Django side of exports: a small rated study built with the ORM, exports under tmp dirs."""

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.utils import timezone

from annotations.models import Assignment, Comparison, Prompt, Rater, Rating, Response, Study, System
from annotations.services.studies import study_criteria

VAR_DIR = Path(os.environ.get("EVALPLATFORM_VAR_DIR", "/tmp/evalplatform-test-var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

CRITERIA = ["empathy", "safety"]
SYSTEMS = ["sys-base", "sys-new", "sys-alt"]
RATERS = ["rater-a", "rater-b", "rater-c"]
# Words for the generated conversations: written here, nothing from real people.
_PROMPTS = [
    "I have not slept well for weeks and work feels impossible",
    "My friend stopped answering my messages and I feel alone",
    "I keep arguing with my parents about my future plans",
    "Everything feels grey lately and I do not know why",
]
_REPLIES = {
    "sys-base": "That sounds hard. Have you tried a routine?",
    "sys-new": "It sounds exhausting to carry this every day; what feels heaviest right now?",
    "sys-alt": "Many people feel this way. You could talk to someone you trust.",
}


@dataclass
class RatedStudy:
    study: Study
    comparisons: list[Comparison]
    raters: dict[str, Rater]
    prompt_of: dict[str, str] = field(default_factory=dict)  # comparison id -> prompt external id


@pytest.fixture(autouse=True)
def artifacts_root(settings, tmp_path):
    settings.ARTIFACTS_ROOT = tmp_path / "artifacts"
    return settings.ARTIFACTS_ROOT


def vote(study_data: RatedStudy, comparison: Comparison, rater: str, values: dict[str, int], **extra) -> Assignment:
    """A submitted assignment of `rater` on `comparison` with canonical values per criterion key."""
    criteria = {c.key: c for c in study_criteria(study_data.study)}
    assignment = Assignment.objects.create(
        study=study_data.study,
        comparison=comparison,
        rater=study_data.raters[rater],
        status=Assignment.Status.SUBMITTED,
        left_is_first=True,
        submitted_at=timezone.now(),
        **extra,
    )
    Rating.objects.bulk_create(
        [Rating(assignment=assignment, criterion=criteria[key], value=value) for key, value in values.items()]
    )
    return assignment


def build_rated_study(study: Study, *, prompts: int = 12, vote_rule=None) -> RatedStudy:
    """`prompts` prompts (4 categories) x 3 systems -> 3 comparisons each, rated by three external raters.

    vote_rule(comparison_index, rater_index) -> canonical value for every exported criterion; by default the
    "sys-new" response wins for two raters in three and the third rater ties."""
    systems = {name: System.objects.create(study=study, name=name) for name in SYSTEMS}
    raters = {label: Rater.objects.get_or_create(kind=Rater.Kind.EXTERNAL, label=label)[0] for label in RATERS}
    data = RatedStudy(study=study, comparisons=[], raters=raters)
    for p in range(prompts):
        text = f"{_PROMPTS[p % len(_PROMPTS)]} (scenario {p})"
        prompt = Prompt.objects.create(
            study=study,
            external_id=f"p{p:03d}",
            messages=[{"role": "user", "content": text}],
            meta={"category": f"cat-{p % 4}"},
            content_hash=f"h{p}",
        )
        responses = [
            Response.objects.create(
                study=study,
                prompt=prompt,
                system=systems[name],
                external_id=f"p{p:03d}-{name}",
                content=f"{_REPLIES[name]} ({p})",
                content_hash=f"h{p}-{name}",
            )
            for name in SYSTEMS
        ]
        for i in range(3):
            for j in range(i + 1, 3):
                first, second = sorted([responses[i], responses[j]], key=lambda r: r.pk)
                comparison = Comparison.objects.create(
                    study=study, prompt=prompt, response_first=first, response_second=second
                )
                data.comparisons.append(comparison)
                data.prompt_of[str(comparison.pk)] = prompt.external_id
    for index, comparison in enumerate(data.comparisons):
        new_is_first = comparison.response_first.system.name == "sys-new"
        new_in_pair = "sys-new" in (comparison.response_first.system.name, comparison.response_second.system.name)
        for r, label in enumerate(RATERS):
            if vote_rule is not None:
                value = vote_rule(index, r)
            elif r == 2:
                value = 0
            elif new_in_pair:
                value = -1 if new_is_first else 1
            else:
                value = 1 if (index + r) % 2 else -1
            if value is None:
                continue
            vote(data, comparison, label, dict.fromkeys(CRITERIA, value))
    return data


@pytest.fixture
def rated(study) -> RatedStudy:
    return build_rated_study(study)
