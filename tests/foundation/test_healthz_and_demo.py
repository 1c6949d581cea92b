import pytest
from django.core.management import call_command

from annotations.models import (
    Comparison,
    JobStatus,
    Judgment,
    PreferenceExport,
    Prompt,
    Rater,
    Rating,
    Response,
    ScreeningHit,
    Study,
    StudyMembership,
    System,
)

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_is_503_when_the_broker_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"].startswith("error")


def test_the_demo_loads_three_systems_of_thirty_prompts_and_is_safe_to_rerun(capsys, settings, tmp_path):
    settings.VAR_DIR = settings.ARTIFACTS_ROOT = tmp_path
    call_command("demo_setup", "--no-model")
    out = capsys.readouterr().out
    assert "clinician1" in out and "researcher" in out
    study = Study.objects.get(slug="demo")
    assert study.status == Study.Status.OPEN
    assert Prompt.objects.filter(study=study).count() == 30
    assert set(System.objects.filter(study=study).values_list("name", flat=True)) == {
        "careful-v2",
        "brisk-base",
        "risky-draft",
    }
    assert Response.objects.filter(study=study).count() == 90
    assert any(len(p.messages) > 1 for p in Prompt.objects.filter(study=study))  # a multi-turn conversation
    assert Prompt.objects.filter(study=study, meta__risk="crisis").count() >= 2
    # The planted revealing response was caught and excluded, with its comparisons.
    assert ScreeningHit.objects.filter(response__external_id="p07-risky", resolution="excluded").exists()
    assert Comparison.objects.filter(study=study, excluded=False).count() == 90 - 2
    assert StudyMembership.objects.filter(study=study, role="clinician").count() == 3
    # Simulated historical ratings (4 raters and a judge, every criterion) give the reports data at once.
    assert Rating.objects.filter(assignment__study=study).count() == 88 * 4 * 7
    assert Judgment.objects.filter(comparison__study=study).count() == 88 * 7
    assert set(Rater.objects.filter(assignments__study=study).values_list("label", flat=True)) == {
        "simulated-rater-1",
        "simulated-rater-2",
        "simulated-rater-3",
        "simulated-rater-4",
    }
    credentials = (tmp_path / "demo-credentials.txt").read_text().split()
    assert "clinician3" in credentials
    # An export ready for training and sweeps, every criterion, 30% of prompts held out: made once.
    export = PreferenceExport.objects.get(study=study)
    assert export.status == JobStatus.SUCCEEDED and export.split["test_fraction"] == 0.3
    assert len(export.criterion_keys) == 7 and f"Demo export for training: {export.public_id}" in out
    call_command("demo_setup", "--no-model")
    assert "already exist" in capsys.readouterr().out
    assert Response.objects.filter(study=study).count() == 90
    assert PreferenceExport.objects.filter(study=study).count() == 1
