"""Pages and files with clinical text are never kept by browsers or proxies (Cache-Control: no-store), and every
CSV the platform writes defuses spreadsheet formulas in labels that came from imported files."""

import csv
import io
import json

import pytest
from django.test import Client
from django.urls import reverse

from annotations.csvsafe import csv_safe, csv_writer
from annotations.services.importing import import_study_file
from annotations.services.reports import report_csv, report_params_parse, report_request
from annotations.services.studies import study_create
from tests.security.route_matrix import ROUTES

pytestmark = pytest.mark.django_db

# Each route that shows or hands over clinical text, and the persona allowed to read it.
CLINICAL_ROUTES = {
    "workspace-pair": "clinician",
    "api-workspace-pair": "clinician",
    "api-workspace-next": "clinician",
    "study-report": "researcher",
    "study-report-print": "researcher",
    "study-report-download": "researcher",
    "api-study-report": "researcher",
    "api-study-report-csv": "researcher",
    "export-detail": "researcher",
    "export-download": "researcher",
    "api-export-download": "researcher",
    "job-artifacts": "researcher",
}


@pytest.mark.parametrize("name", sorted(CLINICAL_ROUTES))
def test_clinical_pages_and_files_are_sent_with_no_store(world, name):
    client = Client()
    client.force_login(world.user(CLINICAL_ROUTES[name]), backend="django.contrib.auth.backends.ModelBackend")
    persona = CLINICAL_ROUTES[name]
    readable = [check for check in ROUTES[name] if _statuses(check.expect[persona])[0] < 400]
    assert readable
    for check in readable:
        url = reverse(name, kwargs=check.kwargs(world) if check.kwargs else None)
        response = client.generic(
            check.method.upper(),
            url + ("?" + "&".join(f"{k}={v}" for k, v in check.query.items()) if check.query else ""),
        )
        assert response.status_code < 400, f"{url}: {response.status_code}"
        assert "no-store" in response.get("Cache-Control", ""), f"{url} may be cached: {response.get('Cache-Control')}"


def _statuses(wanted) -> tuple[int, ...]:
    return wanted if isinstance(wanted, tuple) else (wanted,)


def test_error_pages_and_api_errors_are_not_cached_either(world):
    client = Client()
    client.force_login(world.clinician, backend="django.contrib.auth.backends.ModelBackend")
    assert "no-store" in client.get("/api/v1/workspace/pairs/00000000-0000-0000-0000-000000000000")["Cache-Control"]
    assert "no-store" in client.get("/workspace/pair/00000000-0000-0000-0000-000000000000/")["Cache-Control"]


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"])
def test_text_that_a_spreadsheet_would_run_is_written_as_text(text):
    stream = io.StringIO()
    csv_writer(stream).writerow([text, -0.25, 3, None])
    (row,) = csv.reader(io.StringIO(stream.getvalue()))
    assert row == ["'" + text, "-0.25", "3", ""]
    assert csv_safe("plain label") == "plain label"


FORMULA_SYSTEMS = ("=cmd|'/C calc'!A0", "@SUM(1)")
FORMULA_RATERS = ("+rater-one", "-rater-two")


def _formula_study(owner):
    study = study_create(slug="csv", title="CSV", owner=owner, criterion_keys=["empathy"])
    lines = []
    for p in range(4):
        lines.append({"kind": "prompt", "id": f"p{p}", "messages": [{"role": "user", "content": f"Help {p}"}]})
        for s, system in enumerate(FORMULA_SYSTEMS):
            lines.append({"kind": "response", "id": f"p{p}-{s}", "prompt": f"p{p}", "system": system, "content": "ok"})
        for r, rater in enumerate(FORMULA_RATERS):
            value = (-1, 1, 0, -1)[(p + r) % 4]
            lines.append(
                {
                    "kind": "rating",
                    "rater": rater,
                    "response_a": f"p{p}-0",
                    "response_b": f"p{p}-1",
                    "criterion": "empathy",
                    "value": value,
                }
            )
    payload = "\n".join(json.dumps(line) for line in lines).encode()
    import_study_file(study=study, stream=io.BytesIO(payload), filename="formulas.jsonl")
    return study


def test_report_csv_defuses_formulas_in_imported_system_and_rater_labels(researcher):
    study = _formula_study(researcher)
    report = report_request(study=study, params=report_params_parse(n_resamples="0"), inline=True).result["report"]
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    cells = [cell for row in rows[1:] for cell in row]
    labelled = [cell for cell in cells if any(label in cell for label in FORMULA_SYSTEMS + FORMULA_RATERS)]
    assert labelled, "the report names the systems and raters"
    for cell in cells:
        if cell[:1] in ("=", "+", "@", "\t", "\r") or (cell[:1] == "-" and not _is_number(cell)):
            pytest.fail(f"a cell a spreadsheet would run as a formula: {cell!r}")
    assert any(cell.startswith("'-rater-two") or cell.startswith("'=cmd") for cell in cells)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_every_csv_the_platform_writes_goes_through_the_one_guard():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "annotations"
    writers = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "csvsafe.py" and ("csv.writer(" in path.read_text() or "csv.DictWriter(" in path.read_text())
    ]
    assert not writers, f"write CSV with annotations.csvsafe.csv_writer instead: {writers}"
