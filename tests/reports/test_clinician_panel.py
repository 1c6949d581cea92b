"""Clinician profiles reach reports only in aggregate: small groups are merged, nobody is listed."""

import pytest

from annotations.models import Assignment, Comparison, Profile, Rater, StudyMembership
from annotations.selectors_reports import clinician_panel
from annotations.services.comparisons import comparisons_build
from annotations.services.reports import ReportParams, report_request
from annotations.services.studies import study_create

from .builders import import_records, prompt_records

pytestmark = pytest.mark.django_db


def test_the_panel_counts_clinicians_who_rated_and_merges_small_groups(django_user_model, client):
    owner = django_user_model.objects.create_user(username="owner", password="x-long-password-1")
    Profile.objects.create(user=owner, role=Profile.Role.RESEARCHER)
    study = study_create(slug="panel", title="Panel", owner=owner)
    import_records(study, prompt_records(6), "prompts.jsonl")
    comparisons_build(study=study)
    comparisons = list(Comparison.objects.filter(study=study))
    assert comparisons
    people = [
        ("a", "Clinical psychologist", 12, ["trauma"]),
        ("b", "Clinical psychologist", 5, ["trauma", "eating disorders"]),
        ("c", "Clinical psychologist", 20, ["trauma"]),
        ("d", "Psychiatric nurse", 8, ["addiction"]),
        ("e", "Counsellor", None, []),  # did not rate: not counted
    ]
    for username, licence, years, specialties in people:
        user = django_user_model.objects.create_user(username=username, password="x-long-password-1")
        Profile.objects.create(
            user=user,
            role=Profile.Role.CLINICIAN,
            licence_type=licence,
            years_of_practice=years,
            specialties=specialties,
        )
        rater = Rater.objects.create(kind=Rater.Kind.CLINICIAN, label=username, user=user)
        StudyMembership.objects.create(study=study, user=user, role=StudyMembership.Role.CLINICIAN)
        if username != "e":
            Assignment.objects.create(
                study=study, comparison=comparisons[0], rater=rater, status=Assignment.Status.SUBMITTED
            )

    panel = clinician_panel(study=study)
    assert panel["n_clinicians"] == 4
    assert panel["licence_types"] == [{"value": "Clinical psychologist", "count": 3}, {"value": "other", "count": 1}]
    assert panel["specialties"] == [{"value": "trauma", "count": 3}, {"value": "other", "count": 2}]
    assert panel["years_of_practice"] == {"n": 4, "median": 10.0, "min": 5, "max": 20}

    report_request(study=study, params=ReportParams(n_resamples=0), inline=True)  # as the worker would
    client.force_login(owner)
    page = client.get("/studies/panel/reports?resamples=0").content.decode()
    assert "Clinician panel" in page and "Clinical psychologist (3)" in page
    assert "Psychiatric nurse" not in page and "eating disorders" not in page
