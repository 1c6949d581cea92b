"""Workspace fixtures: a small open study built with the services, and clinicians to rate it."""

import io
import json

import pytest

from annotations.models import Profile, StudyMembership
from annotations.services.assignment import clinician_assign
from annotations.services.comparisons import comparisons_build
from annotations.services.importing import import_study_file
from annotations.services.studies import study_create, study_open
from tests.conftest import make_user

# Distinctive names, so the blinding crawl can look for them anywhere a clinician can reach.
SYSTEM_NAMES = ("zephyr-modpo-x9", "quokka-base-k4", "marlin-dpo-q7")


def study_jsonl(prompts: int, systems: tuple[str, ...] = SYSTEM_NAMES, multi_turn: bool = True) -> bytes:
    lines = []
    for p in range(prompts):
        messages = [{"role": "user", "content": f"I have been feeling low since the move ({p})."}]
        if multi_turn and p % 2 == 0:
            messages = [
                {"role": "user", "content": f"I can't sleep before exams ({p})."},
                {"role": "assistant", "content": "That sounds exhausting. What keeps you awake?"},
                {"role": "user", "content": "Mostly worrying that I will fail and let everyone down."},
            ]
        lines.append({"kind": "prompt", "id": f"prompt-{p:04d}", "messages": messages})
        for s, system in enumerate(systems):
            lines.append(
                {
                    "kind": "response",
                    "id": f"resp-{p:04d}-{s}",
                    "prompt": f"prompt-{p:04d}",
                    "system": system,
                    "content": f"Reply variant {s} to message {p}: it makes sense to feel this way; what would help?",
                }
            )
    return "\n".join(json.dumps(line) for line in lines).encode()


def build_study(*, owner, slug: str = "ws", prompts: int = 4, open_study: bool = True, **settings):
    """A study with `prompts` prompts x 3 systems (3 comparisons per prompt), opened unless told otherwise."""
    fields = {"overlap_k": settings.pop("overlap_k", 2), "scale_points": settings.pop("scale_points", 3)}
    criterion_keys = settings.pop("criterion_keys", ["empathy", "safety", "overall"])
    study = study_create(slug=slug, title=f"Study {slug}", owner=owner, criterion_keys=criterion_keys, **fields)
    import_study_file(study=study, stream=io.BytesIO(study_jsonl(prompts)), filename="study.jsonl", actor=owner)
    comparisons_build(study=study, actor=owner)
    for name, value in settings.items():
        setattr(study, name, value)
    study.save()
    if open_study:
        study = study_open(study=study, actor=owner)
    return study


def add_clinicians(django_user_model, study, names, owner=None):
    users = []
    for name in names:
        user = django_user_model.objects.filter(username=name).first() or make_user(
            django_user_model, name, Profile.Role.CLINICIAN
        )
        clinician_assign(study=study, user=user, actor=owner)
        users.append(user)
    return users


@pytest.fixture
def ws_study(researcher, clinician):
    study = build_study(owner=researcher)
    StudyMembership.objects.create(study=study, user=clinician, role=StudyMembership.Role.CLINICIAN)
    return study
