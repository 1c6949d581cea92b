"""Guidelines: the researcher writes them with a preview (Markdown, sanitised, no system names) and sets the span
labels; a clinician reads them with the rubric before the first pair and from every pair page."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotations.models import Assignment, AuditEvent, Study, StudyMembership
from tests.conftest import PASSWORD
from tests.workspace.conftest import SYSTEM_NAMES

pytestmark = pytest.mark.django_db
GUIDELINES = (
    "# Before you start\n\nRead **both** responses in full.\n\n- Safety first\n- Then the rest\n\n"
    "<script>alert('x')</script>[bad](javascript:alert(1)) [good](https://example.org/guide)"
)


def save(client, study, text=GUIDELINES, labels="unsafe\nValidating\ndismissive, validating", action="save"):
    return client.post(
        reverse("study-guidelines", args=[study.slug]), {"guidelines": text, "span_labels": labels, "action": action}
    )


def test_the_researcher_previews_then_saves_sanitised_guidelines_and_span_labels(client, ws_study, researcher):
    client.force_login(researcher)
    preview = save(client, ws_study, action="preview")
    assert preview.status_code == 200
    html = preview.content.decode()
    assert "<h2>Before you start</h2>" in html and "<strong>both</strong>" in html
    assert "alert(" not in html.split('id="preview-heading"')[1]
    assert 'href="https://example.org/guide"' in html
    ws_study.refresh_from_db()
    assert ws_study.guidelines == "", "a preview saves nothing"

    saved = save(client, ws_study)
    assert saved.status_code == 302
    ws_study.refresh_from_db()
    assert ws_study.guidelines.startswith("# Before you start")
    assert ws_study.span_labels == ["unsafe", "validating", "dismissive"]
    assert AuditEvent.objects.filter(action="study.guidelines", study=ws_study).count() == 1
    page = client.get(reverse("study-guidelines", args=[ws_study.slug])).content.decode()
    assert "Preview: what clinicians see" in page and "<li>Safety first</li>" in page


def test_guidelines_naming_a_system_are_refused_naming_the_field(client, ws_study, researcher):
    client.force_login(researcher)
    refused = save(client, ws_study, text=f"Compare with {SYSTEM_NAMES[0].upper()} carefully.")
    assert refused.status_code == 400
    html = refused.content.decode()
    assert "The guidelines name a system" in html and 'aria-invalid="true"' in html
    ws_study.refresh_from_db()
    assert ws_study.guidelines == ""


def test_clinicians_read_the_guidelines_before_the_first_pair_and_once_per_version(client, ws_study, clinician):
    Study.objects.filter(pk=ws_study.pk).update(guidelines="Take your time with **each** pair.")
    client.force_login(clinician)
    home = client.get(reverse("workspace-home")).content.decode()
    assert (
        "Read the guidelines, then rate" in home and "ws-next" not in home.split("ws-study")[1].split("</section>")[0]
    )

    page = client.get(reverse("workspace-guidelines", args=[ws_study.slug]), {"start": "1"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "<strong>each</strong>" in html and "Start rating" in html
    for title in ("Empathy", "Safety"):
        assert f"<h3>{title}</h3>" in html
    assert "Better when" in html and "Worse when" in html
    assert AuditEvent.objects.filter(action="guidelines.read", actor=clinician).count() == 1

    assert "Rate next" in client.get(reverse("workspace-home")).content.decode()
    # Remembered across log-ins (the audit row), and shown again when the researchers change the text.
    client.logout()
    client.post(reverse("login"), {"username": clinician.username, "password": PASSWORD})
    assert "Rate next" in client.get(reverse("workspace-home")).content.decode()
    Study.objects.filter(pk=ws_study.pk).update(guidelines="New: mark unsafe passages.")
    assert "Read the guidelines, then rate" in client.get(reverse("workspace-home")).content.decode()


def test_without_written_guidelines_rating_starts_at_once_and_the_page_still_shows_the_rubric(
    client, ws_study, clinician
):
    client.force_login(clinician)
    home = client.get(reverse("workspace-home")).content.decode()
    assert "Rate next" in home and "Read the guidelines" not in home
    html = client.get(reverse("workspace-guidelines", args=[ws_study.slug])).content.decode()
    assert "have not written guidelines" in html and "<h3>Empathy</h3>" in html


def test_the_pair_page_links_to_the_guidelines_and_back(client, ws_study, clinician):
    client.force_login(clinician)
    client.post(reverse("workspace-next", args=[ws_study.slug]))
    assignment = Assignment.objects.get(rater__user=clinician)
    pair = client.get(reverse("workspace-pair", args=[assignment.public_id])).content.decode()
    link = f"{reverse('workspace-guidelines', args=[ws_study.slug])}?pair={assignment.public_id}"
    assert link in pair
    page = client.get(link).content.decode()
    assert f'href="{reverse("workspace-pair", args=[assignment.public_id])}"' in page
    assert "Start rating" not in page


def test_a_system_name_slipped_into_the_guidelines_is_hidden_from_clinicians(client, ws_study, clinician):
    Study.objects.filter(pk=ws_study.pk).update(guidelines=f"Imported later: {SYSTEM_NAMES[1]} is the baseline.")
    client.force_login(clinician)
    html = client.get(reverse("workspace-guidelines", args=[ws_study.slug])).content.decode()
    api = client.get(reverse("api-workspace-guidelines", args=[ws_study.slug])).content.decode()
    for body in (html, api):
        assert SYSTEM_NAMES[1] not in body and "[name hidden]" in body


def test_guidelines_api_for_researchers_and_clinicians(client, ws_study, researcher, clinician, other_clinician):
    url = reverse("api-study-guidelines", args=[ws_study.slug])
    client.force_login(researcher)
    put = client.put(url, {"guidelines": "Be *kind*.", "span_labels": ["Dismissive"]}, content_type="application/json")
    assert put.status_code == 200, put.content
    assert put.json() == {
        "guidelines": "Be *kind*.",
        "html": "<p>Be <em>kind</em>.</p>",
        "span_labels": ["unsafe", "dismissive"],
    }
    bad = client.put(url, {"guidelines": SYSTEM_NAMES[2]}, content_type="application/json")
    assert bad.status_code == 400 and "guidelines" in bad.json()["error"]["details"]
    assert client.get(url).json()["span_labels"] == ["unsafe", "dismissive"]

    clinician_url = reverse("api-workspace-guidelines", args=[ws_study.slug])
    client.force_login(clinician)
    assert client.get(url).status_code == 404
    body = client.get(clinician_url).json()
    assert body["html"] == "<p>Be <em>kind</em>.</p>" and body["span_labels"] == ["unsafe", "dismissive"]
    assert body["criteria"][0]["title"] and "better_when" in body["criteria"][0]
    client.force_login(other_clinician)
    assert client.get(clinician_url).status_code == 404
    StudyMembership.objects.create(study=ws_study, user=other_clinician, role=StudyMembership.Role.CLINICIAN)
    assert client.get(clinician_url).status_code == 200


def test_the_command_sets_and_shows_guidelines_and_refuses_a_system_name(ws_study, tmp_path):
    source = tmp_path / "guidelines.md"
    source.write_text("# Hello\n\nBe kind.", encoding="utf-8")
    out = io.StringIO()
    call_command(
        "study_guidelines",
        "--study",
        ws_study.slug,
        "--from-file",
        str(source),
        "--span-labels",
        "validating",
        stdout=out,
    )
    ws_study.refresh_from_db()
    assert ws_study.guidelines == "# Hello\n\nBe kind." and ws_study.span_labels == ["unsafe", "validating"]
    shown = io.StringIO()
    call_command("study_guidelines", "--study", ws_study.slug, stdout=shown)
    assert "Be kind." in shown.getvalue() and "unsafe, validating" in shown.getvalue()
    source.write_text(f"Compare {SYSTEM_NAMES[0]}.", encoding="utf-8")
    with pytest.raises(CommandError, match="name a system"):
        call_command("study_guidelines", "--study", ws_study.slug, "--from-file", str(source))
