"""The clinician workspace: my studies, the blinded pair page, calibration feedback, my submitted pairs.

Thin: parse the form, check the rater owns the pair, call a service, render or redirect. The pair page
works as a plain HTML form; static/js/workspace.js adds keys, autosave and the time-on-task clock.
Pages are addressed by the assignment's opaque public id only.
"""

import json
import uuid
from datetime import datetime
from typing import Any

import rules
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from annotations import compiled
from annotations.models import Assignment, Comparison, Rater, Study, StudyMembership
from annotations.permissions import is_clinician
from annotations.selectors_spans import pair_spans, span_count_extra
from annotations.services.assignment import (
    assignment_next,
    assignment_skip,
    assignment_take_back,
    day_start,
    fair_share,
    rater_for_user,
    rater_progress,
    rater_progress_extra,
    rater_progress_from,
)
from annotations.services.rating import (
    RatingInput,
    calibration_feedback,
    criteria_fingerprint_extra,
    criteria_in_page_order,
    draft_save,
    my_pairs_for_rater,
    pair_for_rater,
    rating_revise,
    rating_submit_own,
    scale_options,
)
from annotations.views.common import error_dict

PAIR_RELATED = ("study", "rater", "comparison__prompt", "comparison__response_first", "comparison__response_second")


def own_assignment(request: HttpRequest, public_id: uuid.UUID, *, with_content: bool = False) -> Assignment:
    """The requesting clinician's assignment, if they are still a clinician member of its study; else 404."""
    # rules.has_perm, not user.has_perm: Django grants a superuser every permission, and admins must never rate.
    queryset = Assignment.objects.select_related(*(PAIR_RELATED if with_content else ("study",)))
    assignment = queryset.filter(public_id=public_id, rater__user=request.user).first()
    if assignment is None or not rules.has_perm("annotations.rate_in_study", request.user, assignment.study):
        raise Http404("No such pair.")
    return assignment


def _pair_page_query(*, public_id: uuid.UUID, user_id: int, today: datetime):
    progress, params = rater_progress_extra(user_id=user_id, today=today)
    return (
        Assignment.objects.select_related(*PAIR_RELATED, "rater__user__profile")
        .extra(  # noqa: S610 (constant SQL)
            select={**progress, **criteria_fingerprint_extra(), **span_count_extra()}, select_params=params
        )
        .filter(public_id=public_id, rater__user_id=user_id)[:1]
    )


def pair_for_page(request: HttpRequest, public_id: uuid.UUID) -> Assignment:
    """own_assignment for the pair page, in one query: the pair with its texts, the membership check, the
    rater's progress ("pair n of N") and the rubric's fingerprint (criteria come from the per-process cache).
    Compiled once per process (annotations/compiled.py): building this SQL cost more than running it."""
    assignment = compiled.first(
        "pair_for_page",
        _pair_page_query,
        {"public_id": uuid.UUID, "user_id": int, "today": datetime},
        public_id=public_id,
        user_id=request.user.pk,
        today=day_start(),
    )
    if assignment is None or assignment.member_role != StudyMembership.Role.CLINICIAN:
        raise Http404("No such pair.")
    # The page's header asks for the account's profile (base.html): it came along with the rater, same account.
    profile = getattr(assignment.rater.user, "profile", None)
    if profile is not None:
        request.user.profile = profile
    return assignment


def clinician_study(request: HttpRequest, slug: str) -> Study:
    study = Study.objects.filter(slug=slug).first()
    if study is None or not rules.has_perm("annotations.rate_in_study", request.user, study):
        raise Http404("No such study.")
    return study


def _float(value: Any) -> float:
    try:
        return max(0.0, min(float(value), 7 * 24 * 3600.0))
    except (TypeError, ValueError):
        return 0.0


def rating_input_from_post(post: QueryDict, keys: list[str] | None = None) -> RatingInput:
    """The form's answers; `keys=None` takes every v_<key> field (the service drops keys the study lacks)."""
    if keys is None:
        keys = [name[2:] for name in post if name.startswith("v_")]
    values: dict[str, int] = {}
    for key in keys:
        raw = post.get(f"v_{key}")
        if raw not in (None, ""):
            try:
                values[key] = int(raw)
            except ValueError:
                pass
    return RatingInput(
        values=values,
        rationales={key: post.get(f"r_{key}", "") for key in keys},
        rationale=post.get("rationale", ""),
        both_unacceptable=post.get("both_unacceptable") in ("1", "on", "true"),
        unacceptable_reason=post.get("unacceptable_reason", ""),
        total_seconds=_float(post.get("total_seconds")),
        active_seconds=_float(post.get("active_seconds")),
    )


def _state_from_input(data: RatingInput) -> dict[str, Any]:
    return {
        "values": data.values,
        "rationales": data.rationales,
        "rationale": data.rationale,
        "both_unacceptable": data.both_unacceptable,
        "unacceptable_reason": data.unacceptable_reason,
    }


# Parts of the pair page that are the same on every pristine pair (no answer, mark or error yet), rendered once
# per process, by template and everything their context shows. Bounded: cleared when full.
_PRISTINE_HTML: dict[str, str] = {}
_PRISTINE_MAX = 256


def pristine_html(template: str, context: dict[str, Any]) -> str:
    """render_to_string(template, context) from the per-process cache; `context` must hold everything it shows
    and need no request (no CSRF token)."""
    key = template + json.dumps(context, sort_keys=True, default=str)
    html = _PRISTINE_HTML.get(key)
    if html is None:
        html = render_to_string(template, context)
        if len(_PRISTINE_HTML) >= _PRISTINE_MAX:
            _PRISTINE_HTML.clear()
        _PRISTINE_HTML[key] = html
    return html


def criteria_html(*, pair: dict[str, Any], criteria: list[dict[str, Any]]) -> str:
    """The pair page's criteria fieldsets. A pair with no answer, rationale or error yet (most page loads: the
    next pair after a submit) shows exactly what every such pair of the same rubric shows, so that HTML is
    rendered once per process and reused; about half the page's template work."""
    context = {
        "criteria": criteria,
        "pair": {
            name: pair[name] for name in ("scale", "rationale_mode", "rationale_required", "rationale_min_length")
        },
    }
    if any(c["chosen"] is not None or c["rationale"] or c["errors"] for c in criteria):
        return render_to_string("workspace/_criteria.html", context)
    return pristine_html("workspace/_criteria.html", context)


def span_bar_html(request: HttpRequest, *, side: int, marks: list[dict[str, Any]], pair_id: str) -> str:
    """One response's "Mark a passage" bar and its marks (workspace/_span_bar.html); without marks the same on
    every pair, so from the per-process cache."""
    if marks:
        context = {"side": side, "marks": marks, "pair": {"id": pair_id}}
        return render_to_string("workspace/_span_bar.html", context, request=request)
    return pristine_html("workspace/_span_bar.html", {"side": side, "marks": []})


def _render_pair(
    request: HttpRequest, assignment: Assignment, *, state: dict | None = None, errors: dict | None = None, status=200
) -> HttpResponse:
    study = assignment.study
    annotated = hasattr(assignment, "member_role")  # fetched by pair_for_page: progress and criteria came along
    criteria_list = criteria_in_page_order(study, row=assignment if annotated else None)
    pair = pair_for_rater(assignment=assignment, criteria=criteria_list)
    if state is not None:
        pair["state"] = state
    values = pair["state"]["values"]
    progress = (
        rater_progress_from(study=study, row=assignment)
        if annotated
        else rater_progress(study=study, rater=assignment.rater)
    )
    revising = assignment.status == Assignment.Status.SUBMITTED
    rationales = pair["state"].get("rationales", {})
    criteria = [
        {
            **c,
            "chosen": values.get(c["key"]),
            "rationale": rationales.get(c["key"], ""),
            "errors": (errors or {}).get(c["key"], []) + (errors or {}).get(f"rationale_{c['key']}", []),
        }
        for c in pair["criteria"]
    ]
    spans = pair_spans(assignment=assignment)  # marked passages: a query only if there are some
    for side, response in enumerate(pair["responses"], start=1):
        marks = next((s["marks"] for s in spans["sides"] if s["side"] == side), [])
        response["span_bar"] = span_bar_html(request, side=side, marks=marks, pair_id=pair["id"])  # safe: rendered
    context = {
        "pair": pair,
        "study": study,
        "criteria": criteria,
        "criteria_html": criteria_html(pair=pair, criteria=criteria),
        "revising": revising,
        "progress": progress,
        # Calibration is practice and not counted, so it has no place in "pair n of N".
        "pair_number": None if revising or pair["calibration"] else min(progress.done + 1, max(progress.target, 1)),
        "minutes_today": round((progress.seconds_today + (0 if revising else pair["active_seconds"])) / 60),
        "lease_lost": assignment.status == Assignment.Status.EXPIRED,
        "errors": errors or {},
        "spans": spans,
        "error_list": [m for msgs in (errors or {}).values() for m in msgs],
        "client_state": {
            "id": pair["id"],
            "keys": [c["key"] for c in pair["criteria"]],
            "scale": [o["value"] for o in pair["scale"]],
            "state": pair["state"],
            "total_seconds": pair["total_seconds"],
            "active_seconds": pair["active_seconds"],
            "server_draft": bool(assignment.draft) or state is not None,
            "rationale_mode": pair["rationale_mode"],
            "rationale_required": pair["rationale_required"],
            "rationale_min_length": pair["rationale_min_length"],
        },
    }
    return render(request, "workspace/pair.html", context, status=status)


def _next_or_home(request: HttpRequest, study: Study) -> HttpResponse:
    rater = rater_for_user(user=request.user)
    assignment = assignment_next(study=study, rater=rater, with_content=False)
    if assignment is None:
        if study.status != Study.Status.OPEN:
            messages.info(request, f"“{study.title}” is not open for rating.")
        else:
            messages.success(request, f"Nothing left for you to rate in “{study.title}” right now. Thank you.")
        return redirect("workspace-home")
    return redirect("workspace-pair", public_id=assignment.public_id)


@login_required
def workspace_home(request: HttpRequest) -> HttpResponse:
    """My studies, each with done / assigned / remaining and a "Rate next" button."""
    if not is_clinician(request.user):
        raise PermissionDenied
    memberships = list(
        StudyMembership.objects.filter(user=request.user, role=StudyMembership.Role.CLINICIAN)
        .exclude(study__status=Study.Status.DRAFT)
        .select_related("study")
        .order_by("study__title")
    )
    study_ids = [m.study_id for m in memberships]
    rater = Rater.objects.filter(user=request.user).first()
    mine: dict[int, dict[str, int]] = {}
    if rater is not None:
        for row in (
            Assignment.objects.filter(rater=rater, study_id__in=study_ids)
            .values("study_id")
            .annotate(
                done=Count("id", filter=Q(status=Assignment.Status.SUBMITTED) & ~Q(purpose="calibration")),
                calibration=Count("id", filter=Q(status=Assignment.Status.SUBMITTED, purpose="calibration")),
                leased=Count("id", filter=Q(status=Assignment.Status.LEASED)),
            )
        ):
            mine[row["study_id"]] = row
    comparisons = dict(
        Comparison.objects.filter(study_id__in=study_ids, excluded=False, is_gold=False)
        .values_list("study_id")
        .annotate(n=Count("id"))
    )
    clinicians = dict(
        StudyMembership.objects.filter(study_id__in=study_ids, role=StudyMembership.Role.CLINICIAN)
        .values_list("study_id")
        .annotate(n=Count("id"))
    )
    rows = []
    for membership in memberships:
        study = membership.study
        counts = mine.get(study.pk, {"done": 0, "calibration": 0, "leased": 0})
        quota = membership.quota if membership.quota is not None else study.quota_per_rater
        target = (
            quota
            if quota is not None
            else fair_share(
                comparisons=comparisons.get(study.pk, 0),
                overlap_k=study.overlap_k,
                clinicians=clinicians.get(study.pk, 0),
            )
        )
        target = max(target, counts["done"])
        rows.append(
            {
                "study": study,
                "done": counts["done"],
                "assigned": target,
                "remaining": max(target - counts["done"], 0),
                "in_progress": counts["leased"],
                "calibration_done": counts["calibration"],
                "calibration_size": study.calibration_size,
            }
        )
    return render(request, "workspace/home.html", {"rows": rows})


@login_required
@require_POST
def workspace_next(request: HttpRequest, slug: str) -> HttpResponse:
    return _next_or_home(request, clinician_study(request, slug))


@login_required
def workspace_done(request: HttpRequest, slug: str) -> HttpResponse:
    """The clinician's own pairs in this study: submitted ones (newest first, open for revision) with the
    opening of the message, the answers and flags; skipped ones with the reason, to take back while open."""
    study = clinician_study(request, slug)
    rater = Rater.objects.filter(user=request.user).first()
    pairs = my_pairs_for_rater(study=study, rater=rater) if rater else {"submitted": [], "skipped": []}
    return render(request, "workspace/done.html", {"study": study, **pairs})


@login_required
@require_POST
def workspace_take_back(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Undo a skip: the pair is the clinician's again, if its place is still free."""
    assignment = own_assignment(request, public_id)
    try:
        assignment_take_back(assignment=assignment, rater=rater_for_user(user=request.user))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("workspace-done", slug=assignment.study.slug)
    return redirect("workspace-pair", public_id=assignment.public_id)


@login_required
def workspace_pair(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    assignment = pair_for_page(request, public_id)
    if assignment.status == Assignment.Status.SKIPPED:
        messages.info(request, "You skipped that pair.")
        return redirect("workspace-home")
    return _render_pair(request, assignment)


@login_required
@require_POST
def workspace_submit(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Submit (and go straight on to the next pair, claimed in the same transaction), or save a revision."""
    revising = request.POST.get("mode") == "revise"
    if revising:
        assignment = own_assignment(request, public_id, with_content=True)
        data = rating_input_from_post(request.POST, [c.key for c in criteria_in_page_order(assignment.study)])
        try:
            rating_revise(assignment=assignment, rater=rater_for_user(user=request.user), data=data)
        except ValidationError as exc:
            return _refused(request, public_id, exc, data)
        messages.success(request, "Your revised answers are saved.")
        return redirect("workspace-done", slug=assignment.study.slug)
    data = rating_input_from_post(request.POST)
    try:
        result = rating_submit_own(
            user=request.user, public_id=public_id, data=data, claim_next=True, drop_unknown=True
        )
    except Assignment.DoesNotExist:
        raise Http404("No such pair.") from None
    except ValidationError as exc:
        return _refused(request, public_id, exc, data)
    if result.outcome.feedback is not None:
        return redirect("workspace-feedback", public_id=public_id)
    if result.next is None:
        return _next_or_home(request, result.outcome.assignment.study)
    return redirect("workspace-pair", public_id=result.next.public_id)


def _refused(request: HttpRequest, public_id: uuid.UUID, exc: ValidationError, data: RatingInput) -> HttpResponse:
    """A refused submit: back home for a pair that can no longer be rated, else the page with its errors."""
    if getattr(exc, "code", None) in ("lease_lost", "study_closed", "skipped"):
        messages.error(request, " ".join(exc.messages))
        return redirect("workspace-home")
    assignment = pair_for_page(request, public_id)
    errors = error_dict(exc, "form")
    return _render_pair(request, assignment, state=_state_from_input(data), errors=errors, status=400)


@login_required
@require_POST
def workspace_skip(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    assignment = own_assignment(request, public_id)
    try:
        assignment_skip(
            assignment=assignment, rater=rater_for_user(user=request.user), reason=request.POST.get("skip_reason", "")
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("workspace-pair", public_id=assignment.public_id)
    return _next_or_home(request, assignment.study)


@login_required
@require_POST
def workspace_draft(request: HttpRequest, public_id: uuid.UUID) -> JsonResponse:
    """Autosave from the page (fetch or sendBeacon, form-encoded with the CSRF token)."""
    assignment = own_assignment(request, public_id)
    try:
        draft = json.loads(request.POST.get("draft") or "{}")
        saved = draft_save(
            assignment=assignment,
            rater=rater_for_user(user=request.user),
            draft=draft,
            total_seconds=_float(request.POST.get("total_seconds")),
            active_seconds=_float(request.POST.get("active_seconds")),
        )
    except (ValueError, ValidationError):
        return JsonResponse({"saved": False, "error": "invalid draft"}, status=400)
    return JsonResponse({"saved": saved})


@login_required
def workspace_feedback(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """After a calibration item: the expected answers beside the rater's, with the rubric text."""
    assignment = own_assignment(request, public_id, with_content=True)
    if assignment.purpose != Assignment.Purpose.CALIBRATION or assignment.status != Assignment.Status.SUBMITTED:
        raise Http404("No feedback for this pair.")
    criteria = criteria_in_page_order(assignment.study)
    canonical = dict(assignment.ratings.values_list("criterion__key", "value"))
    labels = {o["value"]: o["label"] for o in scale_options(assignment.study.scale_points)}
    feedback = [
        {"item": item, "chosen_label": labels[item.chosen], "expected_label": labels[item.expected]}
        for item in calibration_feedback(assignment=assignment, criteria=criteria, canonical=canonical)
    ]
    pair = pair_for_rater(assignment=assignment, criteria=criteria)
    return render(
        request,
        "workspace/feedback.html",
        {
            "study": assignment.study,
            "feedback": feedback,
            "pair": pair,
            "agreed": sum(f["item"].agrees for f in feedback),
        },
    )


def pair_url(assignment: Assignment) -> str:
    return reverse("workspace-pair", kwargs={"public_id": assignment.public_id})


urlpatterns = [
    path("workspace/", workspace_home, name="workspace-home"),
    path("workspace/pair/<uuid:public_id>/", workspace_pair, name="workspace-pair"),
    path("workspace/pair/<uuid:public_id>/submit", workspace_submit, name="workspace-submit"),
    path("workspace/pair/<uuid:public_id>/skip", workspace_skip, name="workspace-skip"),
    path("workspace/pair/<uuid:public_id>/take-back", workspace_take_back, name="workspace-take-back"),
    path("workspace/pair/<uuid:public_id>/draft", workspace_draft, name="workspace-draft"),
    path("workspace/pair/<uuid:public_id>/feedback", workspace_feedback, name="workspace-feedback"),
    path("workspace/<slug:slug>/next", workspace_next, name="workspace-next"),
    path("workspace/<slug:slug>/done", workspace_done, name="workspace-done"),
]
