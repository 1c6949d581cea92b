from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotations.models import Assignment, Criterion, ScreeningHit, Study, StudyCriterion, StudyMembership
from annotations.rubric import DEFAULT_CRITERIA
from annotations.services.audit import audit_record

# A personal quota (pairs per clinician) above this is a typo, and above 2**31 the database refuses it.
MAX_QUOTA = 1_000_000


def criteria_ensure_defaults() -> list[Criterion]:
    """Create version 1 of each default criterion if missing; return the default set in rubric order."""
    criteria = []
    for item in DEFAULT_CRITERIA:
        fields = {k: v for k, v in item.items() if k != "key"}
        criterion, _ = Criterion.objects.get_or_create(key=item["key"], version=1, defaults=fields)
        criteria.append(criterion)
    return criteria


def criterion_define(*, key: str, title: str, question: str, better_when: str, worse_when: str) -> Criterion:
    """Return the latest version of `key` if its text is unchanged, else create the next version."""
    latest = Criterion.objects.filter(key=key).order_by("-version").first()
    text = {"title": title, "question": question, "better_when": better_when, "worse_when": worse_when}
    if latest and all(getattr(latest, field) == value for field, value in text.items()):
        return latest
    criterion = Criterion(key=key, version=(latest.version + 1) if latest else 1, is_overall=key == "overall", **text)
    criterion.full_clean()
    criterion.save()
    return criterion


# Slugs are unique across the platform, so a taken slug cannot be offered again; the refusal is worded the same
# whether or not the caller can see the study that holds it, and names nothing about that study.
SLUG_UNAVAILABLE = "This slug is not available; choose another."


def study_slug_check_available(slug: str) -> None:
    """Raise ValidationError({"slug": SLUG_UNAVAILABLE}) if a study holds `slug`."""
    if Study.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": [ValidationError(SLUG_UNAVAILABLE, code="slug_taken")]})


def study_insert(study: Study) -> None:
    """Insert a new study. The unique index decides a slug race (a check beforehand would race): the loser
    gets the same refusal as any unavailable slug, never a 500."""
    study.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            study.save()
    except IntegrityError:
        # Another request took the slug between the caller's check and this insert.
        raise ValidationError({"slug": [ValidationError(SLUG_UNAVAILABLE, code="slug_taken")]}) from None


@transaction.atomic
def study_create(
    *,
    slug: str,
    title: str,
    scale_points: int = 3,
    overlap_k: int = 3,
    criterion_keys: list[str] | None = None,
    owner: AbstractBaseUser | None = None,
    description: str = "",
) -> Study:
    study_slug_check_available(slug)
    study = Study(
        slug=slug, title=title, scale_points=scale_points, overlap_k=overlap_k, owner=owner, description=description
    )
    study_insert(study)
    defaults = {c.key: c for c in criteria_ensure_defaults()}
    keys = criterion_keys or [c["key"] for c in DEFAULT_CRITERIA]
    for position, key in enumerate(keys):
        criterion = defaults.get(key) or Criterion.objects.filter(key=key).order_by("-version").first()
        if criterion is None:
            raise ValidationError({"criteria": f"Unknown criterion {key!r}."})
        StudyCriterion.objects.create(study=study, criterion=criterion, position=position)
    if owner is not None:
        StudyMembership.objects.create(study=study, user=owner, role=StudyMembership.Role.OWNER)
    audit_record(actor=owner, action="study.create", study=study, obj=study, data={"slug": slug})
    return study


def study_criteria(study: Study) -> list[Criterion]:
    return [sc.criterion for sc in study.study_criteria.select_related("criterion").order_by("position")]


@transaction.atomic
def study_open(*, study: Study, actor: AbstractBaseUser | None, override_screening: bool = False) -> Study:
    """Open a draft study for rating, or reopen a closed one (recorded as a reopening). Opening twice is a no-op."""
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.status == Study.Status.OPEN:
        return study
    reopening = study.status == Study.Status.CLOSED
    open_hits = ScreeningHit.objects.filter(
        response__study=study, resolution=ScreeningHit.Resolution.OPEN, response__excluded=False
    ).count()
    if open_hits and not (override_screening or study.screening_override):
        raise ValidationError(
            f"{open_hits} screening hit(s) may reveal a system; resolve them or open with an explicit override."
        )
    if not study.comparisons.filter(excluded=False).exists():
        raise ValidationError("The study has no comparisons yet; build them first.")
    closed_at = study.closed_at
    study.status = Study.Status.OPEN
    if not reopening or study.opened_at is None:
        study.opened_at = timezone.now()
    study.closed_at = None
    if override_screening:
        study.screening_override = True
    study.save(update_fields=["status", "opened_at", "closed_at", "screening_override"])
    data: dict = {"override": override_screening, "open_hits": open_hits}
    if reopening:
        data["closed_at"] = closed_at.isoformat() if closed_at else None
    audit_record(
        actor=actor,
        action="study.reopen" if reopening else "study.open",
        study=study,
        obj=study,
        data=data,
    )
    return study


@dataclass(frozen=True)
class CloseEffects:
    """What closing a study touches now, for the confirmation page (and the audit row)."""

    leases_open: int
    drafts: int
    submitted: int


def study_close_effects(*, study: Study) -> CloseEffects:
    counts = Assignment.objects.filter(study=study).aggregate(
        leases_open=Count("pk", filter=Q(status=Assignment.Status.LEASED)),
        drafts=Count("pk", filter=Q(status=Assignment.Status.LEASED) & ~Q(draft={})),
        submitted=Count("pk", filter=Q(status=Assignment.Status.SUBMITTED)),
    )
    return CloseEffects(**counts)


@transaction.atomic
def study_close(*, study: Study, actor: AbstractBaseUser | None) -> Study:
    """Close a study: no pair is handed out, submitted, revised or taken back until it is reopened.

    Leases are left as they are (not ended), so a clinician's pair and draft are still theirs if the study is
    reopened before the lease runs out; reports and exports read the submitted ratings as before."""
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.status == Study.Status.CLOSED:
        return study
    effects = study_close_effects(study=study)
    previous = study.status
    study.status = Study.Status.CLOSED
    study.closed_at = timezone.now()
    study.save(update_fields=["status", "closed_at"])
    audit_record(
        actor=actor,
        action="study.close",
        study=study,
        obj=study,
        data={"from": previous, "leases_open": effects.leases_open, "submitted": effects.submitted},
    )
    return study


@transaction.atomic
def membership_set(
    *, study: Study, user: AbstractBaseUser, role: str, actor: AbstractBaseUser | None, quota: int | None = None
) -> StudyMembership:
    membership, created = StudyMembership.objects.update_or_create(
        study=study, user=user, defaults={"role": role, "quota": quota}
    )
    audit_record(
        actor=actor,
        action="membership.set",
        study=study,
        obj=membership,
        data={"user": user.get_username(), "role": role, "created": created},
    )
    return membership
