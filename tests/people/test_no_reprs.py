"""No Python reprs in the researcher's pages: crawl every page linked from a demo-like study (with people,
invitations, a closed-and-reopened history, a finished export with a manifest) and read the visible text."""

import re
from html.parser import HTMLParser
from urllib.parse import urldefrag, urlparse

import pytest
from django.test import Client

from annotations.models import GenerationRun, PreferenceExport, TrainingJob
from annotations.plain import error_lines, error_text, value_text
from annotations.services.accounts import invitation_create, invitation_revoke
from annotations.services.demo import demo_load
from annotations.services.studies import study_close, study_open

# What a repr looks like in visible text: a dict or list literal, a queryset, or a bare None.
REPRS = [
    ("a dict repr", re.compile(r"\{'")),
    ("a list repr", re.compile(r"\['")),
    ("a queryset repr", re.compile(r"<QuerySet")),
    # None as a value ("Quota: None", "(None)", a cell that says only None), not the English word ("None yet").
    ("None", re.compile(r"[:=(\[,] ?None\b|\bNone\s*($|[,;)\]])", re.M)),
]
MAX_PAGES = 80
SKIP = re.compile(r"/(download|export\.|raw|print|pdf|csv|jsonl|parquet)|\.(csv|zip|json|jsonl|pdf|png|svg)$")


class _Visible(HTMLParser):
    """The text a reader sees (and a screen reader reads): text nodes outside script/style, plus the labels
    of buttons and values of inputs; links collected on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.links: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "style", "template"):
            self._hidden += 1
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        for name in ("aria-label", "title", "placeholder"):
            if attrs.get(name):
                self.text.append(attrs[name])
        if tag == "input" and attrs.get("type") not in ("hidden", "password") and attrs.get("value"):
            self.text.append(attrs["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style", "template") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden and data.strip():
            self.text.append(data)


def _shape(url: str) -> str:
    """Pages of one route (items/3/gold, items/4/gold) count as one shape: two of each are read, not all."""
    return re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+", "N", urlparse(url).path)


def _crawl(client: Client, start: list[str], inside: str) -> dict[str, str]:
    seen: dict[str, str] = {}
    shapes: dict[str, int] = {}
    queue = list(start)
    while queue and len(seen) < MAX_PAGES:
        url = queue.pop(0)
        if url in seen or SKIP.search(url) or shapes.get(_shape(url), 0) >= 2:
            continue
        shapes[_shape(url)] = shapes.get(_shape(url), 0) + 1
        response = client.get(url)
        if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
            seen[url] = ""
            continue
        parser = _Visible()
        parser.feed(response.content.decode())
        # Text nodes apart, so that "^" and "$" in the patterns mean the start and end of one node.
        seen[url] = "\n".join(node.strip() for node in parser.text)
        for href in parser.links:
            href = urldefrag(href)[0]
            parsed = urlparse(href)
            if parsed.scheme or parsed.netloc or not href.startswith(inside):
                continue
            if href not in seen:
                queue.append(href)
    return seen


@pytest.mark.django_db
def test_the_researchers_pages_of_a_demo_study_show_no_python_reprs(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    result = demo_load()
    study = result.study
    researcher = study.owner
    invitation_create(email="pending@example.org", role="clinician", study=study, quota=20, actor=researcher)
    revoked = invitation_create(email="gone@example.org", role="researcher", study=study, actor=researcher)
    invitation_revoke(invitation=revoked, actor=researcher)
    study_close(study=study, actor=researcher)
    study_open(study=study, actor=researcher)
    PreferenceExport.objects.create(
        study=study,
        format="dpo",
        path=str(tmp_path / "exports" / "one"),
        status="succeeded",
        policy={"min_raters": 2, "ties": "drop", "raters": ["a", "b"], "weights": None},
        manifest={
            "rubric_versions": {"empathy": 1},
            "comparisons": {"total": 88, "both_unacceptable": 1, "by_split": {"train": 70, "test": 18}},
            "raters": {"clinicians": 4, "judges": 1},
            "raters_excluded": {"failed_gold": 1},
            "rows": {"empathy": {"train": 60, "test": 15}},
            "split": {"by": "prompt", "test_fraction": 0.2, "seed": 0},
            "filters": {"criteria": ["empathy", "safety"], "rater_kinds": ["clinician"]},
            "agreement": {"empathy": {"alpha": 0.61, "interval": [0.5, 0.7]}},
            "files": {"train.jsonl": "ab" * 32},
            "file_rows": {"train.jsonl": 60},
            "code_version": "test",
            "created_at": "2026-01-01T00:00:00Z",
        },
    )
    export = PreferenceExport.objects.get(study=study)
    job = TrainingJob.objects.create(
        study=study,
        export=export,
        kind="modpo",
        criterion_key="empathy",
        base_model="tiny",
        weights={"empathy": 0.7, "safety": 0.3},
        hyperparameters={"beta": 0.1, "lora": {"r": 8}, "targets": ["q_proj", "v_proj"]},
    )
    GenerationRun.objects.create(
        study=study,
        source="training_job",
        training_job=job,
        system_name="trained-v1",
        generation_settings={"max_new_tokens": 64, "temperature": 0.0, "stop": ["</s>"]},
    )
    client = Client()
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    base = f"/studies/{study.slug}/"
    pages = _crawl(client, ["/studies/", base, f"{base}close", f"{base}history/?kind=all"], inside="/")
    crawled = [url for url, text in pages.items() if text]
    # The crawl reached the pages this issue touches (and the others linked from them).
    for must in (f"{base}members/", f"{base}history/", f"{base}close", "/studies/"):
        assert must in crawled, f"not crawled: {must}"
    assert any("/exports/" in url for url in crawled)
    assert f"{base}jobs/{job.public_id}/" in crawled
    assert any("/generation/" in url and url.count("/") > 4 for url in crawled)
    print(f"crawled {len(crawled)} pages:", *sorted(crawled), sep="\n  ")
    found = [
        f"{url}: {what}: …{text[max(m.start() - 60, 0) : m.end() + 60]}…"
        for url, text in pages.items()
        for what, pattern in REPRS
        if (m := pattern.search(text))
    ]
    assert not found, "Python reprs in pages:\n" + "\n".join(found)


def test_errors_and_values_read_as_words():
    from django.core.exceptions import ValidationError

    assert error_lines(ValidationError({"overlap_k": ["Ensure this value is at least 1."]})) == [
        "Overlap k: Ensure this value is at least 1."
    ]
    # A message that already names its field stands alone.
    assert error_text({"slug": ["Study with this Slug already exists."]}) == "Study with this Slug already exists."
    assert error_text(ValidationError(["One.", "Two"])) == "One. Two."
    assert error_text({"non_field_errors": ["Bad."], "file": {"line 3": ["No prompt."]}}) == (
        "Bad. File: Line 3: No prompt."
    )
    assert value_text({"criteria": ["empathy", "safety"], "seed": None, "ok": True}) == (
        "Criteria: empathy, safety; Seed: none; Ok: yes"
    )
    assert value_text({}) == "none" and value_text(0.25) == "0.25"
