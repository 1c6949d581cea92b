"""Blinding: log in as a clinician, do a whole study through every page and endpoint a clinician can reach,
and fail if any system name, internal id or ordering clue appears in a body, header or URL."""

import re
from collections import deque
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import pytest
from django.db import connection
from django.urls import reverse

from annotations.models import Comparison, Prompt, Response, Span, StudyMembership, System
from annotations.services.rating import comparison_mark_gold
from tests.conftest import PASSWORD
from tests.workspace.conftest import SYSTEM_NAMES, build_study

pytestmark = pytest.mark.django_db
KEYS = ("empathy", "safety", "overall")
# Internal ids are pushed into distinctive ranges, so any leak of one is recognisable in the text.
ID_BASES = {
    "annotations_system": 91_000_000,
    "annotations_response": 92_000_000,
    "annotations_comparison": 93_000_000,
    "annotations_prompt": 94_000_000,
    "annotations_assignment": 95_000_000,
}
ORDER_CLUES = ("left_is_first", "order_seed", "response_first", "response_second", "is_gold", "gold", "system")


class LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and (name in ("href", "src", "action") or (name.startswith("data-") and name.endswith("-url"))):
                self.links.append(value)


class Recorder:
    """Every response the clinician's client receives, with its URL and headers, for the final check."""

    def __init__(self, client) -> None:
        self.client = client
        self.seen: list[tuple[str, str]] = []

    def record(self, url: str, response) -> None:
        body = b"".join(response.streaming_content) if response.streaming else response.content
        headers = "\n".join(f"{k}: {v}" for k, v in response.items())
        self.seen.append((url, f"{url}\n{headers}\n{body.decode('utf-8', 'replace')}"))
        return response

    def get(self, url, **kw):
        return self.record(url, self.client.get(url, **kw))

    def post(self, url, data=None, **kw):
        return self.record(url, self.client.post(url, data or {}, **kw))


def crawl(recorder: Recorder, start: list[str]) -> int:
    """Breadth-first over every same-site GET link reachable from `start` (logout excluded)."""
    queue, visited = deque(start), set()
    while queue:
        url = queue.popleft()
        path = urlparse(url).path
        if path in visited or path.startswith("/accounts/logout"):
            continue
        visited.add(path)
        response = recorder.get(path)
        if response.get("Content-Type", "").startswith("text/html"):
            parser = LinkParser()
            parser.feed(response.content.decode())
            for link in parser.links:
                absolute = urljoin(path, link)
                if urlparse(absolute).netloc in ("", "testserver"):
                    queue.append(urlparse(absolute).path)
        if response.status_code in (301, 302) and response.get("Location"):
            queue.append(urlparse(response["Location"]).path)
    return len(visited)


def bump_sequences() -> None:
    with connection.cursor() as cursor:
        for table, base in ID_BASES.items():
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", [base])


def test_nothing_a_clinician_can_reach_reveals_a_system_or_an_internal_id(client, researcher, clinician):
    bump_sequences()
    study = build_study(owner=researcher, prompts=3, overlap_k=2, calibration_size=1, gold_rate=0.5)
    for comparison in Comparison.objects.filter(study=study).order_by("id")[:2]:
        comparison_mark_gold(comparison=comparison, expected={"overall": -1}, actor=researcher)
    StudyMembership.objects.create(study=study, user=clinician, role=StudyMembership.Role.CLINICIAN)
    # Guidelines and span labels: shown to clinicians, so part of the crawl.
    study.guidelines = "## How to rate\n\nRead both responses in full; mark unsafe passages."
    study.span_labels = ["unsafe", "dismissive"]
    study.save(update_fields=["guidelines", "span_labels"])

    # The secrets: system names and ids, response and prompt ids (internal and external), comparison ids.
    forbidden = set(SYSTEM_NAMES)
    forbidden |= {str(pk) for pk in System.objects.filter(study=study).values_list("pk", flat=True)}
    for pk, external in Response.objects.filter(study=study).values_list("pk", "external_id"):
        forbidden |= {str(pk), external}
    for pk, external in Prompt.objects.filter(study=study).values_list("pk", "external_id"):
        forbidden |= {str(pk), external}
    forbidden |= {str(pk) for pk in Comparison.objects.filter(study=study).values_list("pk", flat=True)}
    assert all(len(token) >= 6 for token in forbidden)

    recorder = Recorder(client)
    login_page = recorder.get(reverse("login"))
    assert login_page.status_code == 200
    logged_in = recorder.post(reverse("login"), {"username": clinician.username, "password": PASSWORD})
    assert logged_in.status_code == 302

    # Rate the whole study through the HTML pages: calibration, feedback, pairs, a skip, a draft, a revision.
    response = recorder.post(reverse("workspace-next", args=[study.slug]))
    pairs_done = 0
    while response.status_code == 302 and "/workspace/pair/" in response["Location"]:
        url = urlparse(response["Location"]).path
        if url.endswith("/feedback"):
            recorder.get(url)
            response = recorder.post(reverse("workspace-next", args=[study.slug]))
            continue
        page = recorder.get(url)
        public_id = url.rstrip("/").split("/")[-1]
        recorder.post(reverse("workspace-draft", args=[public_id]), {"draft": '{"values": {"empathy": 1}}'})
        # Marked passages on both sides, as the page's script sends them; then the page that draws them.
        for side in ("1", "2"):
            recorder.post(
                reverse("workspace-span-create", args=[public_id]),
                {"side": side, "start": "0", "end": "5", "label": "unsafe", "note": "Too quick."},
                HTTP_ACCEPT="application/json",
            )
        recorder.get(url)
        if pairs_done == 3:
            response = recorder.post(reverse("workspace-skip", args=[public_id]), {"skip_reason": "Not my area"})
        else:
            values = {f"v_{k}": "-1" for k in KEYS}
            response = recorder.post(reverse("workspace-submit", args=[public_id]), {**values, "mode": "submit"})
        assert page.status_code == 200
        pairs_done += 1
    assert pairs_done >= 6

    # The API, the same way a script would use it.
    api_pair = None
    for other in Comparison.objects.filter(study=study, is_gold=False)[:1]:
        other.active_assignments = 0  # make room so the API can hand out one more pair
        other.save(update_fields=["active_assignments"])
    nxt = recorder.post(reverse("api-workspace-next", args=[study.slug]))
    if nxt.status_code == 200:
        api_pair = nxt.json()["id"]
        recorder.get(reverse("api-workspace-pair", args=[api_pair]))
        spans_url = reverse("api-workspace-spans", args=[api_pair])
        marked = client.post(
            spans_url, {"side": 2, "start": 0, "end": 5, "label": "dismissive"}, content_type="application/json"
        )
        recorder.record("span", marked)
        recorder.get(spans_url)
        recorder.record(
            "span delete",
            client.delete(reverse("api-workspace-span-detail", args=[api_pair, marked.json()["span"]["id"]])),
        )
        recorder.record(
            "draft",
            client.put(reverse("api-workspace-draft", args=[api_pair]), {"draft": {}}, content_type="application/json"),
        )
        recorder.record(
            "submit",
            client.post(
                reverse("api-workspace-submit", args=[api_pair]),
                {"values": dict.fromkeys(KEYS, 1)},
                content_type="application/json",
            ),
        )
        recorder.record(
            "revise",
            client.post(
                reverse("api-workspace-revise", args=[api_pair]),
                {"values": dict.fromkeys(KEYS, 0)},
                content_type="application/json",
            ),
        )

    # Every GET link reachable from the clinician's pages, plus researcher and API pages they might try.
    visited = crawl(
        recorder,
        [
            "/",
            reverse("workspace-home"),
            reverse("workspace-done", args=[study.slug]),
            reverse("workspace-guidelines", args=[study.slug]),
            reverse("api-workspace-guidelines", args=[study.slug]),
            reverse("study-list"),
            reverse("study-detail", args=[study.slug]),
            reverse("study-progress", args=[study.slug]),
            reverse("api-study-progress", args=[study.slug]),
            reverse("api-study-detail", args=[study.slug]),
            "/api/v1/studies/",
            f"/api/v1/studies/{study.slug}/screening-hits",
        ],
    )
    assert visited >= 10
    assert Span.objects.filter(assignment__study=study).count() >= 6, "the crawl saw marked passages"

    id_pattern = re.compile(r"\b9[1-5]\d{6}\b")
    leaks = []
    for url, text in recorder.seen:
        for token in forbidden:
            if token in text:
                leaks.append((url, token))
        for match in id_pattern.findall(text):
            leaks.append((url, match))
        lowered = re.sub(r"-?\b(apple-)?system-ui\b|-apple-system", "", text).lower()  # font stacks, not a System
        for clue in ORDER_CLUES:
            if clue in lowered:
                leaks.append((url, clue))
    assert leaks == [], leaks[:20]
    assert len(recorder.seen) > 30
