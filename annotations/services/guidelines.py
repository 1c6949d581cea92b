"""A study's guidelines for clinicians: Markdown the researcher writes, rendered and sanitised for the page,
with the span labels clinicians mark passages with; and whether a clinician has read the current guidelines.

Rendering: `markdown` (extra, sane_lists), then `nh3` with a short allow-list (no images, no raw HTML survives),
headings moved one level down so the page's own h1 stays the only one. Guidelines must not name a system of the
study (blinding): saving refuses it, and the clinician page hides any name that slipped in (a system imported
after the guidelines were written).

"Read" is remembered per clinician and version of the text: in the session (no query on later pages) and as an
audit event (`guidelines.read`, so it holds across log-ins without a schema change).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import markdown
import nh3
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotations.models import AuditEvent, Study, System
from annotations.services.audit import audit_record
from annotations.services.spans import span_labels_clean

MAX_GUIDELINES_LENGTH = 50_000
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "dl", "dt", "em", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "li", "mark", "ol", "p", "pre", "q", "s", "small", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}, "td": {"align"}, "th": {"align"}}
SESSION_KEY = "guidelines_read"
READ_ACTION = "guidelines.read"
HIDDEN_NAME = "[name hidden]"


def guidelines_html(text: str) -> str:
    """Markdown to sanitised HTML, headings one level down (# becomes h2)."""
    if not text.strip():
        return ""
    rendered = markdown.markdown(text, extensions=["extra", "sane_lists"], output_format="html")
    rendered = re.sub(r"<(/?)h([1-5])\b", lambda m: f"<{m[1]}h{int(m[2]) + 1}", rendered)
    return nh3.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


def _system_names(study: Study) -> list[str]:
    return sorted(System.objects.filter(study=study).values_list("name", flat=True), key=len, reverse=True)


def _named_systems(text: str, names: list[str]) -> list[str]:
    lowered = text.lower()
    return [name for name in names if name and name.lower() in lowered]


def guidelines_for_clinician(*, study: Study) -> str:
    """The study's guidelines as HTML for clinicians, with any system name hidden."""
    text = study.guidelines or ""
    for name in _system_names(study):
        text = re.sub(re.escape(name), HIDDEN_NAME, text, flags=re.IGNORECASE)
    return guidelines_html(text)


@transaction.atomic
def study_guidelines_update(
    *, study: Study, actor: AbstractBaseUser | None, guidelines: Any, span_labels: Any = None
) -> Study:
    """Save the guidelines (Markdown) and, if given, the span labels. Validated, audited; errors name the field."""
    if not isinstance(guidelines, str):
        raise ValidationError({"guidelines": "Expected text (Markdown)."})
    text = guidelines.replace("\r\n", "\n").strip()
    if len(text) > MAX_GUIDELINES_LENGTH:
        raise ValidationError({"guidelines": f"Keep the guidelines under {MAX_GUIDELINES_LENGTH:,} characters."})
    named = _named_systems(text, _system_names(study))
    if named:
        raise ValidationError(
            {
                "guidelines": f"The guidelines name a system of this study ({', '.join(named)}); clinicians must "
                "not learn which systems are compared. Remove the name."
            }
        )
    locked = Study.objects.select_for_update().get(pk=study.pk)
    before = {"guidelines": locked.guidelines, "span_labels": list(locked.span_labels or [])}
    locked.guidelines = text
    fields = ["guidelines"]
    if span_labels is not None:
        locked.span_labels = span_labels_clean(span_labels)
        fields.append("span_labels")
    after = {"guidelines": locked.guidelines, "span_labels": list(locked.span_labels or [])}
    if before == after:
        return locked
    locked.save(update_fields=fields)
    audit_record(
        actor=actor,
        action="study.guidelines",
        study=locked,
        obj=locked,
        data={
            "before": {"digest": guidelines_digest(before["guidelines"]), "span_labels": before["span_labels"]},
            "after": {"digest": guidelines_digest(after["guidelines"]), "span_labels": after["span_labels"]},
            "length": len(text),
        },
    )
    return locked


def guidelines_digest(text: str) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()[:16]


def guidelines_pending(*, study: Study, user: AbstractBaseUser, session: Any) -> bool:
    """True when the study has written guidelines this clinician has not opened in their current version."""
    if not (study.guidelines or "").strip():
        return False
    digest = guidelines_digest(study.guidelines)
    seen = session.get(SESSION_KEY, {}) if session is not None else {}
    if seen.get(str(study.pk)) == digest:
        return False
    read = AuditEvent.objects.filter(actor=user, study=study, action=READ_ACTION, data__digest=digest).exists()
    if read and session is not None:
        session[SESSION_KEY] = {**seen, str(study.pk): digest}
    return not read


def guidelines_mark_read(*, study: Study, user: AbstractBaseUser, session: Any) -> bool:
    """Remember that the clinician opened the current guidelines; audited once per version. True if new."""
    digest = guidelines_digest(study.guidelines)
    if session is not None:
        session[SESSION_KEY] = {**session.get(SESSION_KEY, {}), str(study.pk): digest}
    if not (study.guidelines or "").strip():
        return False
    with transaction.atomic():
        if AuditEvent.objects.filter(actor=user, study=study, action=READ_ACTION, data__digest=digest).exists():
            return False
        audit_record(actor=user, action=READ_ACTION, study=study, obj=study, data={"digest": digest})
    return True
