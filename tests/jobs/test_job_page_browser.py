"""The job page in Chromium: the progress bar and the SVG loss curve follow the job, under the strict CSP."""

import os
import shutil
from pathlib import Path

import pytest

from annotations.models import JobStatus, TrainingJob, TrainingMetric

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs in this thread
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def add_metrics(job, steps):
    for step in steps:
        TrainingMetric.objects.create(job=job, step=step, epoch=step / 4, values={"loss": 1.0 / step})


def test_the_job_page_draws_the_loss_curve_and_follows_the_job(live_server, client, study, researcher, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed")
    (tmp_path / "result.json").write_text("{}")
    job = TrainingJob.objects.create(
        study=study,
        kind="dpo",
        criterion_key="empathy",
        status=JobStatus.RUNNING,
        step=2,
        total_steps=4,
        attempts=1,
        artifacts_path=str(tmp_path),
    )
    add_metrics(job, [1, 2])
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    url = f"{live_server.url}/studies/{study.slug}/jobs/{job.public_id}/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context()
        context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
        page = context.new_page()
        problems = []
        page.on(
            "console",
            lambda message: (
                problems.append(message.text)
                if message.type == "error" and "favicon" not in message.location.get("url", "")
                else None
            ),
        )
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(url)
        # Locators, not wait_for_function: the page's CSP forbids the eval that the latter needs.
        expect(page.locator("#loss-chart polyline")).to_have_count(1)
        expect(page.locator("#loss-chart circle")).to_have_count(2)
        assert page.locator("#job-progress").get_attribute("value") == "0.5"

        add_metrics(job, [3, 4])
        TrainingJob.objects.filter(pk=job.pk).update(step=4)
        expect(page.locator("#loss-chart circle")).to_have_count(4, timeout=10000)
        expect(page.locator("#job-step")).to_have_text("step 4 of 4")

        # When the job finishes the page reloads to show the download link.
        TrainingJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
        page.wait_for_selector("text=Download artifacts (zip)", timeout=10000)
        browser.close()
    # No Content-Security-Policy violation or script error (a missing favicon is not one).
    assert problems == []


SHOTS = Path(os.environ.get("EVALPLATFORM_SCREENSHOTS", "/tmp/ep-train/screenshots"))


def open_page(playwright, live_server, client, url, viewport):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
    context = browser.new_context(viewport=viewport)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(url)
    return browser, page, problems


def test_the_job_page_plots_reward_accuracy_and_margin_beside_the_loss(live_server, client, study, researcher):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed")
    metrics = {
        "empathy": {"accuracy": 0.875, "margin": 0.31, "n": 8},
        "safety": {"accuracy": 0.375, "margin": -0.1, "n": 8},
    }
    result = {f"heldout/{c}/{k}": v for c, figures in metrics.items() for k, v in figures.items()}
    dpo = TrainingJob.objects.create(
        study=study,
        kind="dpo",
        criterion_key="empathy",
        status=JobStatus.SUCCEEDED,
        step=4,
        total_steps=4,
        result={"status": "completed", "metrics": result},
    )
    for step in (1, 2, 3, 4):
        values = {"loss": 0.7 - 0.05 * step, "rewards/accuracies": 0.4 + 0.1 * step, "rewards/margins": 0.02 * step}
        TrainingMetric.objects.create(job=dpo, step=step, epoch=step / 4, values=values)
    TrainingMetric.objects.create(
        job=dpo, step=4, epoch=1, values={"eval_loss": 0.6, "eval_rewards/accuracies": 0.8, "eval_rewards/margins": 0.1}
    )
    sft = TrainingJob.objects.create(study=study, kind="sft", criterion_key="empathy", status=JobStatus.SUCCEEDED)
    TrainingMetric.objects.create(job=sft, step=1, epoch=1, values={"loss": 2.0})
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        for name, viewport in (("desktop", {"width": 1366, "height": 900}), ("phone", {"width": 390, "height": 844})):
            url = f"{live_server.url}/studies/{study.slug}/jobs/{dpo.public_id}/"
            browser, page, problems = open_page(playwright, live_server, client, url, viewport)
            expect(page.locator("#accuracy-chart polyline")).to_have_count(2)  # train and held-out
            expect(page.locator("#accuracy-chart circle")).to_have_count(5)
            expect(page.locator("#margin-chart circle")).to_have_count(5)
            expect(page.locator("#heldout")).to_contain_text("88%")
            page.screenshot(path=str(SHOTS / f"job-dpo-{name}.png"), full_page=True)
            page.goto(f"{live_server.url}/studies/{study.slug}/jobs/{sft.public_id}/")
            expect(page.locator("#loss-chart circle")).to_have_count(1)
            expect(page.locator("#accuracy-chart")).to_contain_text("no reward")
            expect(page.locator("#margin-chart")).to_contain_text("no reward")
            page.goto(f"{live_server.url}/studies/{study.slug}/jobs/models/?sort=-accuracy:safety")
            expect(page.locator("#models tbody tr")).to_have_count(2)
            page.screenshot(path=str(SHOTS / f"job-models-{name}.png"), full_page=True)
            browser.close()
            assert problems == []
