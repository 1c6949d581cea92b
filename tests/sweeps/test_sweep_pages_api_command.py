"""The three ways to a sweep: the pages (launch form, the sweep's page with chart, table and cancel-all), the REST
API and the sweep_launch command. Jobs are queued without a worker here; held-out figures are written onto them."""

import base64
import io
import json
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotations.models import AuditEvent, JobStatus, Sweep, TrainingJob
from tests.sweeps.test_sweep_service import finished_job

pytestmark = pytest.mark.django_db


def figures(empathy: float, safety: float) -> dict:
    return {
        "heldout/empathy/accuracy": empathy,
        "heldout/empathy/n": 8.0,
        "heldout/safety/accuracy": safety,
        "heldout/safety/n": 8.0,
    }


@pytest.fixture
def safety_rm(study, export, tmp_path):
    return finished_job(study, export, "reward", "safety", tmp_path)


@pytest.fixture
def form(export, tiny_assets):
    return {
        "name": "page sweep",
        "kind": "modpo",
        "export": str(export.public_id),
        "base_model": tiny_assets["base"],
        "criteria": ["empathy", "safety"],
        "step": "0.5",
        "vectors": "",
        "max_steps": "3",
        "learning_rate": "0.003",
        "batch_size": "4",
        "beta": "0.1",
        "max_length": "64",
        "seed": "0",
        "use_lora": "on",
    }


def finish_with_figures(sweep: Sweep, values: list[tuple[float, float]]) -> None:
    for job, (empathy, safety) in zip(sweep.jobs.order_by("created_at"), values, strict=True):
        TrainingJob.objects.filter(pk=job.pk).update(
            status=JobStatus.SUCCEEDED, result={"status": "completed", "metrics": figures(empathy, safety)}
        )


def test_the_launch_form_offers_criteria_by_title_and_a_three_vector_grid_by_default(
    client, researcher, study, safety_rm
):
    client.force_login(researcher)
    html = client.get(f"/studies/{study.slug}/jobs/sweeps/").content.decode()
    assert f"Finished reward models: Safety ({str(safety_rm.public_id)[:8]})." in html
    assert "Launch a weight sweep" in html and "No sweeps yet" in html
    assert re.search(r'value="empathy" checked> Empathy', html) and re.search(r'value="safety" checked> Safety', html)
    assert re.search(r'<option value="0.5" selected>', html)


def test_the_form_launches_a_sweep_and_its_page_shows_the_chart_the_front_and_the_table(
    client, researcher, study, safety_rm, form
):
    client.force_login(researcher)
    response = client.post(f"/studies/{study.slug}/jobs/sweeps/", form)
    sweep = Sweep.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/jobs/sweeps/{sweep.public_id}/")
    assert sweep.jobs.count() == 3 and sweep.hyperparameters["max_steps"] == 3
    page = client.get(response["Location"]).content.decode()
    assert "No model has held-out figures on both criteria yet" in page and "Cancel every unfinished job" in page

    finish_with_figures(sweep, [(0.94, 0.48), (0.78, 0.63), (0.55, 0.6)])
    page = client.get(response["Location"]).content.decode()
    data = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', page).group(1)
    svg = base64.b64decode(data).decode()
    assert "Pareto front" in svg and "Empathy 0.5 · Safety 0.5" in svg
    alt = re.search(r'alt="([^"]+)"', page[page.index("data:image/svg") - 20 :]).group(1)
    assert "On the Pareto front: Empathy only (Empathy 94%, Safety 48%); Empathy 0.5 · Safety 0.5" in alt
    assert page.count("★ on the front") == 2 and "dominated" in page
    assert "Cancel every unfinished job" not in page  # all finished
    assert "{" not in re.sub(r"<script.*?</script>", "", page.split("<main", 1)[-1])  # no dict reprs

    flipped = client.get(response["Location"] + "?x=safety&y=empathy").content.decode()
    assert "Safety against Empathy" in flipped
    bad = client.get(response["Location"] + "?x=nonsense&y=empathy").content.decode()
    assert "Empathy against Safety" in bad  # an unknown axis falls back to the default


def test_a_bad_form_comes_back_with_the_error_naming_the_field_and_launches_nothing(
    client, researcher, study, safety_rm, form
):
    client.force_login(researcher)
    response = client.post(f"/studies/{study.slug}/jobs/sweeps/", {**form, "step": "0.3"})
    assert response.status_code == 400
    assert "Step: The step must divide 1 exactly" in response.content.decode()
    response = client.post(f"/studies/{study.slug}/jobs/sweeps/", {**form, "step": "", "vectors": "empathy=2"})
    assert response.status_code == 400 and "Vectors:" in response.content.decode()
    assert "empathy=2</textarea>" in response.content.decode()  # what was typed is kept
    assert not Sweep.objects.exists() and not TrainingJob.objects.filter(kind="modpo").exists()


def test_cancel_all_from_the_page(client, researcher, study, safety_rm, form):
    client.force_login(researcher)
    client.post(f"/studies/{study.slug}/jobs/sweeps/", form)
    sweep = Sweep.objects.get()
    response = client.post(f"/studies/{study.slug}/jobs/sweeps/{sweep.public_id}/cancel", follow=True)
    assert "Cancel requested for 3 job(s)" in response.content.decode()
    assert set(sweep.jobs.values_list("status", flat=True)) == {"cancelled"}


def test_another_researcher_cannot_see_or_cancel_the_sweep(
    client, researcher, other_researcher, study, safety_rm, form
):
    client.force_login(researcher)
    client.post(f"/studies/{study.slug}/jobs/sweeps/", form)
    sweep = Sweep.objects.get()
    client.force_login(other_researcher)
    assert client.get(f"/studies/{study.slug}/jobs/sweeps/{sweep.public_id}/").status_code == 404
    assert client.post(f"/studies/{study.slug}/jobs/sweeps/{sweep.public_id}/cancel").status_code == 404
    assert client.get(f"/api/v1/studies/{study.slug}/sweeps/{sweep.public_id}/").status_code == 404
    assert set(sweep.jobs.values_list("status", flat=True)) == {"queued"}


def test_the_api_launches_lists_reads_the_front_and_cancels(client, researcher, study, export, safety_rm, tiny_assets):
    client.force_login(researcher)
    url = f"/api/v1/studies/{study.slug}/sweeps/"
    body = {
        "kind": "modpo",
        "export": str(export.public_id),
        "base_model": tiny_assets["base"],
        "vectors": [{"empathy": 1.0}, {"empathy": 0.5, "safety": 0.5}],
        "models": {"safety": str(safety_rm.public_id)},
        "hyperparameters": {"max_steps": 3},
    }
    created = client.post(url, body, content_type="application/json")
    assert created.status_code == 201, created.content
    sweep_id = created.json()["id"]
    assert [p["role"] for p in created.json()["points"]] == ["dpo-baseline", "modpo"]
    assert [item["id"] for item in client.get(url).json()] == [sweep_id]

    finish_with_figures(Sweep.objects.get(), [(0.9, 0.4), (0.8, 0.7)])
    detail = client.get(f"{url}{sweep_id}/").json()
    assert detail["axes"] == ["empathy", "safety"] and detail["status"]["finished"]
    assert [(p["front"], p["heldout"]["empathy"]["accuracy"]) for p in detail["points"]] == [(True, 0.9), (True, 0.8)]
    one_axis = client.get(f"{url}{sweep_id}/?x=safety&y=empathy").json()
    assert one_axis["axes"] == ["safety", "empathy"]
    cancelled = client.post(f"{url}{sweep_id}/cancel")
    assert cancelled.status_code == 400 and cancelled.json()["error"]["details"]["status"]


def test_the_api_refuses_bad_input_naming_the_field(client, researcher, study, export, safety_rm, tiny_assets):
    client.force_login(researcher)
    url = f"/api/v1/studies/{study.slug}/sweeps/"
    base = {"kind": "modpo", "export": str(export.public_id), "base_model": tiny_assets["base"]}
    cases = [
        ({"criteria": ["empathy", "safety"], "step": 0.3}, "step"),
        ({"vectors": [{"empathy": 0.5}]}, "vectors"),
        ({"vectors": [{"empathy": 1.0}], "models": {"safety": str(export.public_id)}}, "models"),
        ({"vectors": [{"empathy": 1.0}], "base_model": "/nowhere"}, "base_model"),
        ({"vectors": [{"empathy": 1.0}], "kind": "other"}, "kind"),
    ]
    for change, field in cases:
        response = client.post(url, {**base, **change}, content_type="application/json")
        assert response.status_code == 400, (change, response.content)
        assert field in response.json()["error"]["details"], (change, response.json())
    assert not Sweep.objects.exists()


def test_the_command_launches_a_grid_and_shows_the_front(study, export, safety_rm, tiny_assets, researcher):
    out = io.StringIO()
    call_command(
        "sweep_launch",
        "--study",
        study.slug,
        "--grid",
        "empathy,safety",
        "--step",
        "0.5",
        "--base-model",
        tiny_assets["base"],
        "--set",
        "max_steps=3",
        "--user",
        researcher.username,
        stdout=out,
    )
    sweep = Sweep.objects.get()
    assert f"Sweep {sweep.public_id}: 3 weight vectors queued." in out.getvalue()
    assert sweep.export == export and sweep.created_by == researcher
    assert AuditEvent.objects.filter(action="sweep.launch", actor=researcher).count() == 1
    finish_with_figures(sweep, [(0.9, 0.4), (0.8, 0.7), (0.5, 0.5)])
    shown = io.StringIO()
    call_command("sweep_launch", "--study", study.slug, "--show", str(sweep.public_id), stdout=shown)
    data = json.loads(shown.getvalue())
    assert [p["front"] for p in data["points"]] == [True, True, False]


def test_the_command_names_the_field_of_a_bad_vector(study, export, safety_rm, tiny_assets):
    with pytest.raises(CommandError, match=r"vectors: .*sum to 0.9"):
        call_command(
            "sweep_launch",
            "--study",
            study.slug,
            "--vector",
            "empathy=0.5, safety=0.4",
            "--base-model",
            tiny_assets["base"],
        )
    with pytest.raises(CommandError, match="No sweep"):
        call_command("sweep_launch", "--study", study.slug, "--show", "not-a-uuid")
