"""A sweep end to end through a real Celery worker with the tiny model: every job succeeds with held-out figures
per criterion, the front is marked, and the sweep's page draws the chart."""

import base64
import re

import pytest

from annotations.models import JobStatus
from annotations.services.sweeps import sweep_launch, sweep_overview, sweep_vectors_resolve
from annotations.services.training_jobs import training_job_launch
from tests.jobs.conftest import FAST, wait_until_finished

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_modpo_sweep_trains_every_vector_and_shows_its_front(
    celery_worker, study, export, tiny_assets, researcher, client
):
    base = tiny_assets["base"]
    safety_rm = training_job_launch(
        study=study, export=export, base_model=base, kind="reward", criterion="safety", hyperparameters=FAST
    )
    wait_until_finished([safety_rm])
    assert safety_rm.status == JobStatus.SUCCEEDED, safety_rm.error

    vectors = sweep_vectors_resolve(study=study, rows=[{"empathy": 1.0}, {"empathy": 0.5, "safety": 0.5}])
    sweep = sweep_launch(
        study=study,
        kind="modpo",
        export=export,
        base_model=base,
        vectors=vectors,
        name="worker sweep",
        hyperparameters=FAST,
        actor=researcher,
    )
    jobs = list(sweep.jobs.order_by("created_at"))
    wait_until_finished(jobs, timeout=240)
    assert [(job.status, job.error) for job in jobs] == [(JobStatus.SUCCEEDED, "")] * 2
    assert list(jobs[1].inputs.all()) == [safety_rm]

    overview = sweep_overview(sweep, None, None)
    points = overview["points"]
    assert [p["role"] for p in points] == ["dpo-baseline", "modpo"]
    for point in points:  # the implicit reward of each policy on every criterion's test pairs
        for criterion in ("empathy", "safety", "active_listening"):
            figure = point["figures"][criterion]
            assert 0 <= figure["accuracy"] <= 1 and figure["n"] == points[0]["figures"][criterion]["n"] > 0
    assert any(p["front"] for p in points)

    client.force_login(researcher)
    page = client.get(f"/studies/{study.slug}/jobs/sweeps/{sweep.public_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    svg = base64.b64decode(re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', html).group(1)).decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "Empathy: held-out accuracy" in svg and "Safety: held-out accuracy" in svg
    assert "★ on the front" in html
    api = client.get(f"/api/v1/studies/{study.slug}/sweeps/{sweep.public_id}/").json()
    assert api["status"] == {"jobs": 2, "counts": {"succeeded": 2}, "finished": True}
    assert api["axes"] == ["empathy", "safety"]
    assert [p["heldout"]["safety"]["n"] for p in api["points"]] == [points[0]["figures"]["safety"]["n"]] * 2
