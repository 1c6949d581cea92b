"""A researcher exports from the page and downloads the zip; nobody else can see or fetch it (404)."""

import hashlib
import math
import subprocess
import sys

import pytest

from annotations.exporting import verify_export
from annotations.models import JobStatus, PreferenceExport
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


def downloaded(response) -> bytes:
    return b"".join(response.streaming_content)


def test_a_researcher_exports_from_the_page_and_downloads_a_verified_zip(rated, client, researcher, tmp_path):
    client.force_login(researcher)
    page = client.get("/studies/s1/exports/")
    assert page.status_code == 200 and b'href="/studies/s1/exports/"' in page.content  # the Exports tab

    response = client.post(
        "/studies/s1/exports/",
        {
            "format": "trl-dpo",
            "file_format": "jsonl",
            "criteria": ["empathy", "safety"],
            "decision": "majority",
            "min_votes": "2",
            "ties": "separate_file",
            "seed": "5",
            "test_fraction": "0.25",
            "validation_fraction": "0",
        },
    )
    export = PreferenceExport.objects.get(study=rated.study)
    assert response.status_code == 302 and response["Location"] == f"/studies/s1/exports/{export.public_id}/"
    assert export.status == JobStatus.SUCCEEDED, export.error
    assert export.policy["min_votes"] == 2 and export.policy["ties"] == "separate_file"
    assert export.split["seed"] == 5 and export.created_by == researcher

    detail = client.get(response["Location"])
    assert detail.status_code == 200
    assert b"Download zip" in detail.content and b"Dataset card" in detail.content
    assert export.zip_sha256.encode() in detail.content

    download = client.get(f"/studies/s1/exports/{export.public_id}/download.zip")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    archive = tmp_path / "export.zip"
    archive.write_bytes(downloaded(download))
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == export.zip_sha256
    assert verify_export(archive) == []


def test_a_bad_form_comes_back_with_the_field_named(rated, client, researcher):
    client.force_login(researcher)
    response = client.post("/studies/s1/exports/", {"format": "trl-dpo", "min_margin": "2"})
    assert response.status_code == 400
    assert b"policy.min_margin" in response.content
    assert not PreferenceExport.objects.exists()


@pytest.mark.parametrize("persona", ["other_researcher", "clinician", "other_clinician"])
def test_others_get_404_for_the_page_the_api_and_the_zip(rated, researcher, client, persona, request):
    from annotations.services.exports import export_create

    export = export_create(
        study=rated.study, actor=researcher, format="reward", criterion_keys=["empathy"], inline=True
    )
    client.force_login(request.getfixturevalue(persona))
    for url in (
        "/studies/s1/exports/",
        f"/studies/s1/exports/{export.public_id}/",
        f"/studies/s1/exports/{export.public_id}/download.zip",
        "/api/v1/studies/s1/exports/",
        f"/api/v1/studies/s1/exports/{export.public_id}/",
        f"/api/v1/studies/s1/exports/{export.public_id}/download.zip",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post("/api/v1/studies/s1/exports/", {"format": "trl-dpo"}).status_code == 404


def test_the_api_creates_small_exports_inline(rated, client, researcher):
    client.force_login(researcher)
    response = client.post(
        "/api/v1/studies/s1/exports/",
        {"format": "multi-objective", "file_format": "parquet", "criteria": ["empathy", "safety"]},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == JobStatus.SUCCEEDED and body["progress"] == 1.0
    assert body["manifest"]["format"] == "multi-objective"
    assert math.isclose(sum(body["manifest"]["comparisons"]["by_split"].values()), len(rated.comparisons))
    listed = client.get("/api/v1/studies/s1/exports/").json()
    assert [item["id"] for item in listed] == [body["id"]]
    bad = client.post(
        "/api/v1/studies/s1/exports/",
        {"format": "trl-dpo", "policy": {"ties": "keep"}},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "policy" in bad.json()["error"]["details"]


@pytest.mark.slow
def test_the_benchmark_runs_in_quick_mode():
    result = subprocess.run(
        [sys.executable, "bench/export.py", "--quick", "--database", "ep_exports_bench_smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ratio" in result.stdout and "peak RSS" in result.stdout
