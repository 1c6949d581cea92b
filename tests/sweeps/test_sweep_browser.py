"""The sweep pages in Chromium at desktop and phone sizes: the chart with its front, the axis chooser, the table
and the jobs, axe-core clean, no sideways scrolling of the page on a phone."""

import pytest

from annotations.models import JobStatus, Sweep, TrainingJob
from annotations.services.sweeps import sweep_launch, sweep_vectors_resolve
from tests.browser.conftest import ARTIFACTS, axe_serious_violations
from tests.sweeps.test_sweep_pages_api_command import figures
from tests.sweeps.test_sweep_service import finished_job

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def a_finished_sweep(study, export, tiny_assets, researcher, tmp_path) -> Sweep:
    finished_job(study, export, "reward", "safety", tmp_path)
    finished_job(study, export, "dpo", "empathy", tmp_path, figures(0.91, 0.44))  # an earlier DPO job: reference
    vectors = sweep_vectors_resolve(study=study, grid_criteria=["empathy", "safety"], step=0.25)
    sweep = sweep_launch(
        study=study,
        kind="modpo",
        export=export,
        base_model=tiny_assets["base"],
        vectors=vectors,
        name="Empathy against safety",
        actor=researcher,
        dispatch=False,
    )
    values = [(0.94, 0.48), (0.86, 0.57), (0.78, 0.63), (0.66, 0.69), None]
    for job, value in zip(sweep.jobs.order_by("created_at"), values, strict=True):
        if value is None:
            TrainingJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, step=4, total_steps=10)
        else:
            TrainingJob.objects.filter(pk=job.pk).update(
                status=JobStatus.SUCCEEDED, result={"status": "completed", "metrics": figures(*value)}
            )
    return sweep


@pytest.mark.parametrize(("width", "height", "name"), [(1366, 900, "desktop"), (390, 844, "phone")])
def test_the_sweep_page_reads_at_desktop_and_phone_sizes(
    browser, live_server, client, study, export, tiny_assets, researcher, tmp_path, width, height, name
):
    from playwright.sync_api import expect

    sweep = a_finished_sweep(study, export, tiny_assets, researcher, tmp_path)
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()
    page.goto(f"{live_server.url}/studies/{study.slug}/jobs/sweeps/{sweep.public_id}/")
    expect(page.get_by_role("heading", name="Held-out clinician pairs: Empathy against Safety")).to_be_visible()
    chart = page.get_by_role("img", name="Scatter of held-out accuracy")
    expect(chart).to_be_visible()
    assert page.evaluate("document.querySelector('.sweep-chart img').naturalWidth") > 0  # the SVG decoded
    assert "On the Pareto front: Empathy only (Empathy 94%, Safety 48%)" in chart.get_attribute("alt")
    expect(page.locator("#sweep-models tr.on-front")).to_have_count(4)
    expect(page.get_by_role("button", name="Cancel every unfinished job")).to_be_visible()
    assert axe_serious_violations(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # wide tables scroll inside their box
    page.screenshot(path=str(ARTIFACTS / f"sweep-{name}.png"), full_page=True)

    page.get_by_label("Horizontal axis").select_option("safety")
    page.get_by_label("Vertical axis").select_option("empathy")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", name="Held-out clinician pairs: Safety against Empathy")).to_be_visible()

    page.goto(f"{live_server.url}/studies/{study.slug}/jobs/sweeps/")
    expect(page.get_by_role("link", name="Empathy against safety")).to_be_visible()
    assert axe_serious_violations(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=str(ARTIFACTS / f"sweep-list-{name}.png"), full_page=True)
    context.close()
