"""Who may do what, in one place (django-rules predicates). Views and API views only ask these.

Roles: admin (superuser or profile role admin); researcher (owner or researcher member of a study);
clinician (clinician member of a study). Clinicians see only their own assignments and never systems.
"""

import rules
from django.contrib.auth.models import AbstractBaseUser

from annotations.models import Profile, Study, StudyMembership


@rules.predicate
def is_admin(user: AbstractBaseUser) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    profile = getattr(user, "profile", None)
    return profile is not None and profile.role == Profile.Role.ADMIN


@rules.predicate
def is_researcher(user: AbstractBaseUser) -> bool:
    """A researcher account (may create studies)."""
    profile = getattr(user, "profile", None) if user.is_authenticated else None
    return profile is not None and profile.role == Profile.Role.RESEARCHER


@rules.predicate
def is_clinician(user: AbstractBaseUser) -> bool:
    profile = getattr(user, "profile", None) if user.is_authenticated else None
    return profile is not None and profile.role == Profile.Role.CLINICIAN


def _membership_role(user: AbstractBaseUser, study: Study | None) -> str | None:
    if study is None or not user.is_authenticated:
        return None
    cache = getattr(user, "_membership_roles", None)
    if cache is None:
        cache = {}
        user._membership_roles = cache  # per-request cache: one query per study, not per check
    if study.pk not in cache:
        cache[study.pk] = (
            StudyMembership.objects.filter(study_id=study.pk, user=user).values_list("role", flat=True).first()
        )
    return cache[study.pk]


@rules.predicate
def is_study_researcher(user: AbstractBaseUser, study: Study | None) -> bool:
    return _membership_role(user, study) in (StudyMembership.Role.OWNER, StudyMembership.Role.RESEARCHER)


@rules.predicate
def is_study_owner(user: AbstractBaseUser, study: Study | None) -> bool:
    return _membership_role(user, study) == StudyMembership.Role.OWNER


@rules.predicate
def is_study_clinician(user: AbstractBaseUser, study: Study | None) -> bool:
    return _membership_role(user, study) == StudyMembership.Role.CLINICIAN


# Study-level permissions (object = Study).
rules.add_perm("annotations.create_study", is_admin | is_researcher)
rules.add_perm("annotations.view_study", is_admin | is_study_researcher)
rules.add_perm("annotations.manage_study", is_admin | is_study_researcher)
rules.add_perm("annotations.manage_members", is_admin | is_study_owner)
rules.add_perm("annotations.rate_in_study", is_study_clinician)
rules.add_perm("annotations.view_audit", is_admin)


def studies_visible_to(user: AbstractBaseUser):
    """Studies a researcher may see (all of them for an admin)."""
    if is_admin(user):
        return Study.objects.all()
    return Study.objects.filter(
        memberships__user=user,
        memberships__role__in=[StudyMembership.Role.OWNER, StudyMembership.Role.RESEARCHER],
    ).distinct()


# Accounts and security (object = Study where one is given).
rules.add_perm("annotations.view_members", is_admin | is_study_researcher)
rules.add_perm("annotations.view_systems", is_admin | is_study_researcher)
rules.add_perm("annotations.manage_accounts", is_admin)
rules.add_perm("annotations.invite_users", is_admin)


# Sign-in help: password reset links (object = the account) and failed-login lockouts.
@rules.predicate
def is_researcher_of_clinician(user: AbstractBaseUser, account: AbstractBaseUser | None) -> bool:
    """`account` is a clinician in a study where `user` is an owner or researcher."""
    if account is None or not user.is_authenticated:
        return False
    return StudyMembership.objects.filter(
        user=account,
        role=StudyMembership.Role.CLINICIAN,
        study__memberships__user=user,
        study__memberships__role__in=[StudyMembership.Role.OWNER, StudyMembership.Role.RESEARCHER],
    ).exists()


@rules.predicate
def owns_a_study(user: AbstractBaseUser) -> bool:
    return user.is_authenticated and StudyMembership.objects.filter(user=user, role=StudyMembership.Role.OWNER).exists()


rules.add_perm("annotations.reset_password", is_admin | is_researcher_of_clinician)
rules.add_perm("annotations.view_lockouts", is_admin | owns_a_study)


def lockout_usernames_visible_to(user: AbstractBaseUser):
    """Usernames whose lockouts `user` may see and clear: None for an admin (every one, existing or not),
    else the members of the studies they own."""
    if is_admin(user):
        return None
    owned = StudyMembership.objects.filter(user=user, role=StudyMembership.Role.OWNER).values("study_id")
    return StudyMembership.objects.filter(study_id__in=owned).values_list("user__username", flat=True).distinct()
