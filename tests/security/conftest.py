"""Fixtures for the security tests: one small world that every route of the permission matrix can address."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from annotations.models import Assignment, Comparison, Prompt, Response, Study, StudyMembership, System
from annotations.services.studies import study_create

# Distinctive, so finding it anywhere in a clinician's response means a system name leaked.
SYSTEM_NAME = "zz-system-alpha-7f3"
OTHER_SYSTEM_NAME = "zz-system-beta-9c1"


@dataclass
class World:
    """Personas and the objects routes point at. `study` belongs to researcher, with clinician as a member;
    `other_study` belongs to other_researcher, with other_clinician as a member. Admin belongs to neither."""

    researcher: object
    other_researcher: object
    clinician: object
    other_clinician: object
    admin: object
    study: Study
    other_study: Study
    system: System
    comparison: Comparison
    assignment: Assignment  # clinician's, leased, in `study`
    other_assignment: Assignment  # other_clinician's, leased, in `other_study`

    def user(self, persona: str):
        return None if persona == "anonymous" else getattr(self, persona)


def _pair(study: Study, prefix: str) -> Comparison:
    prompt = Prompt.objects.create(
        study=study,
        external_id=f"{prefix}-p1",
        messages=[{"role": "user", "content": "I have been feeling low."}],
        content_hash=f"{prefix}-hash",
    )
    responses = []
    for index, name in enumerate((SYSTEM_NAME, OTHER_SYSTEM_NAME)):
        system, _ = System.objects.get_or_create(study=study, name=name)
        responses.append(
            Response.objects.create(
                study=study,
                prompt=prompt,
                system=system,
                external_id=f"{prefix}-r{index}",
                content=f"A kind, careful reply number {index}.",
                content_hash=f"{prefix}-rh{index}",
            )
        )
    return Comparison.objects.create(
        study=study, prompt=prompt, response_first=responses[0], response_second=responses[1]
    )


def _lease(comparison: Comparison, user) -> Assignment:
    return Assignment.objects.create(
        study=comparison.study,
        comparison=comparison,
        rater=user.rater,
        left_is_first=False,
        leased_until=timezone.now() + timedelta(minutes=30),
    )


@pytest.fixture
def world(researcher, other_researcher, clinician, other_clinician, admin_user, study) -> World:
    other_study = study_create(slug="s2", title="Study two", owner=other_researcher, overlap_k=2)
    StudyMembership.objects.create(study=other_study, user=other_clinician, role=StudyMembership.Role.CLINICIAN)
    comparison = _pair(study, "s1")
    other_comparison = _pair(other_study, "s2")
    return World(
        researcher=researcher,
        other_researcher=other_researcher,
        clinician=clinician,
        other_clinician=other_clinician,
        admin=admin_user,
        study=study,
        other_study=other_study,
        system=System.objects.get(study=study, name=SYSTEM_NAME),
        comparison=comparison,
        assignment=_lease(comparison, clinician),
        other_assignment=_lease(other_comparison, other_clinician),
    )


@pytest.fixture(autouse=True)
def _fresh_throttle_cache():
    # DRF's throttle counts live in the cache, which outlives each test's database transaction.
    cache.clear()
    yield
    cache.clear()
