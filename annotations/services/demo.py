"""The demo study that `make run` loads: our own help-seeker messages and three systems' responses."""

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from annotations.models import Profile, Rater, ScreeningHit, Study, StudyMembership
from annotations.services.comparisons import comparisons_build, responses_screen, screening_hit_resolve
from annotations.services.importing import import_study_file
from annotations.services.studies import study_create, study_open

DEMO_FILE = Path(__file__).resolve().parent.parent / "demo" / "demo_study.jsonl"
DEMO_SLUG = "demo"
RESEARCHER = "researcher"
CLINICIANS = ["clinician1", "clinician2", "clinician3"]


@dataclass
class DemoResult:
    created_accounts: dict[str, str]  # username -> password, only for accounts made in this call
    study: Study


def account_ensure(*, username: str, role: str, is_staff: bool = False) -> str | None:
    """Create the account with a random password (returned) if missing; None if it already exists."""
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return None
    password = secrets.token_urlsafe(12)
    user = user_model.objects.create_user(username=username, password=password, is_staff=is_staff)
    Profile.objects.create(user=user, role=role)
    if role == Profile.Role.CLINICIAN:
        Rater.objects.get_or_create(kind=Rater.Kind.CLINICIAN, label=username, defaults={"user": user})
    return password


@transaction.atomic
def demo_load() -> DemoResult:
    """Create the demo accounts and study; safe to run again (nothing is duplicated or reset)."""
    created: dict[str, str] = {}
    password = account_ensure(username=RESEARCHER, role=Profile.Role.RESEARCHER)
    if password:
        created[RESEARCHER] = password
    for name in CLINICIANS:
        password = account_ensure(username=name, role=Profile.Role.CLINICIAN)
        if password:
            created[name] = password
    user_model = get_user_model()
    researcher = user_model.objects.get(username=RESEARCHER)
    study = Study.objects.filter(slug=DEMO_SLUG).first()
    if study is None:
        study = study_create(
            slug=DEMO_SLUG,
            title="Demo: responses to help-seekers",
            description="Thirty help-seeker messages written for this demo, each answered by three systems.",
            overlap_k=3,
            owner=researcher,
        )
        with DEMO_FILE.open("rb") as stream:
            import_study_file(study=study, stream=stream, filename=DEMO_FILE.name, actor=researcher)
        comparisons_build(study=study, actor=researcher)
        responses_screen(study=study)
        # The demo plants one revealing response to show screening; exclude it so the study can open.
        for hit in ScreeningHit.objects.filter(response__study=study, resolution=ScreeningHit.Resolution.OPEN):
            screening_hit_resolve(hit=hit, resolution=ScreeningHit.Resolution.EXCLUDED, actor=researcher)
        study_open(study=study, actor=researcher)
    for name in CLINICIANS:
        StudyMembership.objects.get_or_create(
            study=study, user=user_model.objects.get(username=name), defaults={"role": StudyMembership.Role.CLINICIAN}
        )
    return DemoResult(created_accounts=created, study=study)
