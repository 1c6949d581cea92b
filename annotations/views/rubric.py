"""The study's Rubric tab: view and edit the criteria, the scale and the rationale settings; the rubric
version history with what changed, and any version against the one before.

The form works without JavaScript: "Move up", "Move down" and "Add a criterion" post the form back and
show it rearranged without saving; only "Save" writes (services.rubric_edit)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path

from annotations.models import RubricVersion, Study
from annotations.rubric import TEXT_FIELDS, snapshot_diff
from annotations.services.rubric_edit import (
    after_open_warning,
    rubric_edit,
    rubric_versions,
    rubric_versions_ensure,
    scale_change_refusal,
)
from annotations.services.studies import study_criteria
from annotations.views.common import error_dict, study_for

MAX_ROWS = 30


def _rows_from_study(study: Study) -> list[dict[str, Any]]:
    criteria = study_criteria(study)
    ordered = [c for c in criteria if not c.is_overall] + [c for c in criteria if c.is_overall]
    return [
        {
            "key": c.key,
            "version": c.version,
            "is_overall": c.is_overall,
            "remove": False,
            "errors": {},
            **{f: getattr(c, f) for f in TEXT_FIELDS},
        }
        for c in ordered
    ]


def _rows_from_post(post: QueryDict) -> list[dict[str, Any]]:
    try:
        count = min(int(post.get("rows") or 0), MAX_ROWS + 1)
    except ValueError:
        count = 0
    rows = []
    for i in range(count):
        prefix = f"c-{i}-"
        row = {f: post.get(prefix + f, "").strip() for f in TEXT_FIELDS}
        row.update(
            key=post.get(prefix + "key", "").strip(),
            version=post.get(prefix + "version", ""),
            is_overall=post.get(prefix + "overall") == "1",
            remove=post.get(prefix + "remove") == "1",
            errors={},
        )
        rows.append(row)
    return rows


def _is_blank(row: dict[str, Any]) -> bool:
    return not row["key"] and not any(row[f] for f in TEXT_FIELDS)


def _move(rows: list[dict[str, Any]], how: str) -> list[dict[str, Any]]:
    """Apply "3:up" / "3:down" (never past the overall item, which stays last)."""
    index_text, _, direction = how.partition(":")
    try:
        index = int(index_text)
    except ValueError:
        return rows
    target = index - 1 if direction == "up" else index + 1
    movable = [i for i, row in enumerate(rows) if not row["is_overall"]]
    if index in movable and target in movable:
        rows[index], rows[target] = rows[target], rows[index]
    return rows


def _settings_from_post(post: QueryDict, study: Study) -> tuple[dict[str, Any], dict[str, list[str]]]:
    values: dict[str, Any] = {
        "rationale_mode": post.get("rationale_mode", study.rationale_mode),
        "rationale_required": post.get("rationale_required") == "1",
    }
    errors: dict[str, list[str]] = {}
    if post.get("scale_points"):  # absent when the scale is locked (the select is disabled)
        try:
            values["scale_points"] = int(post["scale_points"])
        except ValueError:
            errors["scale_points"] = ["The scale is 3, 5 or 7 points."]
    try:
        values["rationale_min_length"] = int(post.get("rationale_min_length") or 0)
    except ValueError:
        errors["rationale_min_length"] = ["The shortest rationale is a whole number of characters."]
    return values, errors


def _page(
    request: HttpRequest,
    study: Study,
    *,
    rows: list[dict[str, Any]],
    settings: dict[str, Any] | None = None,
    note: str = "",
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> HttpResponse:
    latest = rubric_versions_ensure(study=study)
    settings = settings or {
        "scale_points": study.scale_points,
        "rationale_mode": study.rationale_mode,
        "rationale_required": study.rationale_required,
        "rationale_min_length": study.rationale_min_length,
    }
    other = [study.scale_points + d for d in (-4, -2, 2, 4) if study.scale_points + d in (3, 5, 7)]
    scale_locked = scale_change_refusal(study=study, scale_points=other[0]) if other else None
    errors = errors or {}
    movable = [i for i, row in enumerate(rows) if not row["is_overall"]]
    for i, row in enumerate(rows):
        row["can_up"] = bool(movable) and i in movable and i != movable[0]
        row["can_down"] = bool(movable) and i in movable and i != movable[-1]
    return render(
        request,
        "studies/rubric.html",
        {
            "study": study,
            "latest": latest,
            "rows": rows,
            "row_count": len(rows),
            "settings": settings,
            "note": note,
            "errors": errors,
            "error_list": [m for messages_ in errors.values() for m in messages_],
            "scale_locked": scale_locked,
            "scale_choices": [(3, "3 points: A / tie / B"), (5, "5 points"), (7, "7 points")],
            "rationale_choices": Study.RationaleMode.choices,
            "warning": after_open_warning(study=study, number=latest.number)
            if study.status != Study.Status.DRAFT
            else "",
            "can_edit": request.user.has_perm("annotations.manage_study", study),
        },
        status=status,
    )


@login_required
def study_rubric(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    if request.method != "POST":
        return _page(request, study, rows=_rows_from_study(study))
    study = study_for(request, slug, "annotations.manage_study")
    post = request.POST
    rows = _rows_from_post(post)
    settings, setting_errors = _settings_from_post(post, study)
    note = post.get("note", "").strip()
    if post.get("move"):
        return _page(request, study, rows=_move(rows, post["move"]), settings=settings, note=note)
    if post.get("action") == "add":
        if len(rows) >= MAX_ROWS:
            errors = {"criteria": [f"A rubric holds at most {MAX_ROWS} criteria."]}
            return _page(request, study, rows=rows, settings=settings, note=note, errors=errors, status=400)
        blank = {"key": "", "version": "", "is_overall": False, "remove": False, "errors": {}}
        blank.update({f: "" for f in TEXT_FIELDS})
        at = next((i for i, row in enumerate(rows) if row["is_overall"]), len(rows))
        rows.insert(at, blank)
        return _page(request, study, rows=rows, settings=settings, note=note)
    if setting_errors:
        return _page(request, study, rows=rows, settings=settings, note=note, errors=setting_errors, status=400)
    kept = [(i, row) for i, row in enumerate(rows) if not row["remove"] and not _is_blank(row)]
    try:
        outcome = rubric_edit(
            study=study,
            actor=request.user,
            criteria=[{"key": row["key"], **{f: row[f] for f in TEXT_FIELDS}} for _, row in kept],
            settings=settings,
            note=note,
            confirm=post.get("confirm") == "1",
        )
    except ValidationError as exc:
        errors = error_dict(exc, "criteria")
        if "confirm" in errors:  # the warning is already on the page: say what to do
            errors["confirm"] = [
                f"Tick “I understand” above the Save button to save rubric v{rubric_versions_ensure(study=study).number + 1}"
                f" while the study is {study.status}."
            ]
        for name, messages_ in errors.items():
            parts = name.split(".")
            if parts[0] == "criteria" and len(parts) == 3 and parts[1].isdigit() and int(parts[1]) < len(kept):
                kept[int(parts[1])][1]["errors"][parts[2]] = messages_
        return _page(request, study, rows=rows, settings=settings, note=note, errors=errors, status=400)
    if outcome.version is None:
        messages.info(request, "Nothing changed, so no new rubric version was made.")
    else:
        messages.success(request, f"Saved rubric v{outcome.version.number}: " + "; ".join(outcome.changes) + ".")
    return redirect("study-rubric", slug=study.slug)


@login_required
def study_rubric_versions(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    return render(request, "studies/rubric_versions.html", {"study": study, "versions": rubric_versions(study=study)})


@login_required
def study_rubric_version(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    study = study_for(request, slug)
    rubric_versions_ensure(study=study)
    version = RubricVersion.objects.filter(study=study, number=number).select_related("created_by").first()
    if version is None:
        raise Http404("No such rubric version.")
    previous = RubricVersion.objects.filter(study=study, number__lt=number).order_by("-number").first()
    return render(
        request,
        "studies/rubric_version.html",
        {
            "study": study,
            "version": version,
            "previous": previous,
            "rows": snapshot_diff(previous.criteria if previous else None, version.criteria),
            "newer": RubricVersion.objects.filter(study=study, number__gt=number).order_by("number").first(),
        },
    )


urlpatterns = [
    path("studies/<slug:slug>/rubric/", study_rubric, name="study-rubric"),
    path("studies/<slug:slug>/rubric/versions/", study_rubric_versions, name="study-rubric-versions"),
    path("studies/<slug:slug>/rubric/versions/<int:number>/", study_rubric_version, name="study-rubric-version"),
]
