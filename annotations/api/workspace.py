"""Workspace API: the clinician's pairs (blinded, addressed by opaque ids) and the researcher's progress.

Clinician endpoints return only what the pair page shows: opaque labels, displayed orientation.
"""

import uuid

import rules
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import compiled
from annotations.api.errors import api_validation_error
from annotations.api.studies import api_study
from annotations.models import Assignment, Comparison, Profile, Study, StudyMembership
from annotations.services.assignment import (
    assignment_next,
    assignment_skip,
    clinician_assign,
    rater_for_user,
    workspace_progress,
)
from annotations.services.rating import (
    RatingInput,
    comparison_mark_gold,
    criteria_fingerprint_extra,
    criteria_in_page_order,
    draft_save,
    pair_for_rater,
    rating_revise,
    rating_submit_own,
)
from annotations.services.studies import MAX_QUOTA

PAIR_RELATED = ("study", "comparison__prompt", "comparison__response_first", "comparison__response_second")


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The pair cannot take this change."


def _clinician_study_query(*, slug: str, user_id: int):
    member = StudyMembership.objects.filter(study=OuterRef("pk"), user_id=user_id)
    qn = connection.ops.quote_name
    return (
        Study.objects.filter(slug=slug)
        .annotate(member_role=Subquery(member.values("role")[:1]), member_quota=Subquery(member.values("quota")[:1]))
        .extra(select=criteria_fingerprint_extra(f"{qn(Study._meta.db_table)}.{qn('id')}"))  # noqa: S610 (constant SQL)
    )[:1]


def _clinician_study(request: Request, slug: str) -> Study:
    """The study, if the account is a clinician member of it ("rate_in_study"), read in one query with the
    membership's role and quota (`member_quota`) and the rubric's fingerprint (for criteria_in_page_order's
    cache); compiled once per process (annotations/compiled.py)."""
    study = compiled.first(
        "api_clinician_study", _clinician_study_query, {"slug": str, "user_id": int}, slug=slug, user_id=request.user.pk
    )
    if study is None or study.member_role != StudyMembership.Role.CLINICIAN:
        raise Http404
    return study


def _own_assignment(request: Request, public_id: uuid.UUID, *, with_content: bool = False) -> Assignment:
    # rules.has_perm, not user.has_perm: Django grants a superuser every permission, and admins must never rate.
    queryset = Assignment.objects.select_related("rater", *(PAIR_RELATED if with_content else ("study",)))
    assignment = queryset.filter(public_id=public_id, rater__user=request.user).first()
    if assignment is None or not rules.has_perm("annotations.rate_in_study", request.user, assignment.study):
        raise Http404
    assignment.rater.user = request.user  # the rater is this account: no query when services need it
    return assignment


def _raise_api_error(exc: DjangoValidationError):
    code = getattr(exc, "code", None)
    if code in ("already_submitted", "lease_lost", "study_closed", "skipped", "not_submitted", "calibration"):
        conflict = Conflict(detail=" ".join(exc.messages), code=code)
        conflict.default_code = code  # the API's error shape reports default_code
        raise conflict from None
    raise api_validation_error(exc, "detail") from None


# Time on task above a week is a page left open, not work; the pair page's form clamps to the same bound.
MAX_TIME_ON_TASK_SECONDS = 7 * 24 * 3600


def _seconds_field() -> serializers.FloatField:
    return serializers.FloatField(required=False, min_value=0, max_value=MAX_TIME_ON_TASK_SECONDS, default=0)


class RatingBody(serializers.Serializer):
    values = serializers.DictField(child=serializers.IntegerField(), help_text="criterion key -> displayed value")
    rationales = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)
    rationale = serializers.CharField(required=False, allow_blank=True, default="")
    both_unacceptable = serializers.BooleanField(required=False, default=False)
    unacceptable_reason = serializers.CharField(required=False, allow_blank=True, default="")
    total_seconds = _seconds_field()
    active_seconds = _seconds_field()

    def rating_input(self) -> RatingInput:
        return RatingInput(**self.validated_data)


class PairOutput(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    calibration = serializers.BooleanField()
    conversation = serializers.ListField(child=serializers.DictField())
    responses = serializers.ListField(child=serializers.DictField())
    criteria = serializers.ListField(child=serializers.DictField())
    scale = serializers.ListField(child=serializers.DictField())
    state = serializers.DictField()


def _pair_response(assignment: Assignment, criteria: list | None = None) -> Response:
    pair = pair_for_rater(assignment=assignment, criteria=criteria)
    pair.pop("study", None)
    return Response(pair)


class NextPairApi(APIView):
    @extend_schema(request=None, responses={200: PairOutput, 204: None})
    def post(self, request: Request, slug: str) -> Response:
        study = _clinician_study(request, slug)
        assignment = assignment_next(
            study=study, rater=rater_for_user(user=request.user), member_quota=study.member_quota
        )
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        # assignment_next hands the pair over with its content loaded; the criteria come from the per-process
        # cache while the rubric's fingerprint, read with the study, is unchanged.
        return _pair_response(assignment, criteria_in_page_order(study, row=study))


class PairApi(APIView):
    @extend_schema(responses=PairOutput)
    def get(self, request: Request, public_id: uuid.UUID) -> Response:
        return _pair_response(_own_assignment(request, public_id, with_content=True))


class SubmitOutput(serializers.Serializer):
    status = serializers.CharField()
    created = serializers.BooleanField()
    feedback = serializers.ListField(child=serializers.DictField(), allow_null=True)


class PairSubmitApi(APIView):
    @extend_schema(request=RatingBody, responses=SubmitOutput)
    def post(self, request: Request, public_id: uuid.UUID) -> Response:
        body = RatingBody(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            # The page's submit without the next claim: the pair is locked and checked in one query.
            outcome = rating_submit_own(
                user=request.user, public_id=public_id, data=body.rating_input(), claim_next=False, drop_unknown=False
            ).outcome
        except Assignment.DoesNotExist:
            raise Http404 from None
        except DjangoValidationError as exc:
            _raise_api_error(exc)
        feedback = [f.__dict__ for f in outcome.feedback] if outcome.feedback is not None else None
        return Response({"status": outcome.assignment.status, "created": outcome.created, "feedback": feedback})


class PairReviseApi(APIView):
    @extend_schema(request=RatingBody, responses=SubmitOutput)
    def post(self, request: Request, public_id: uuid.UUID) -> Response:
        assignment = _own_assignment(request, public_id)
        body = RatingBody(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            revised = rating_revise(assignment=assignment, rater=assignment.rater, data=body.rating_input())
        except DjangoValidationError as exc:
            _raise_api_error(exc)
        return Response({"status": revised.status, "created": False, "feedback": None})


class SkipBody(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class PairSkipApi(APIView):
    @extend_schema(request=SkipBody, responses={200: None})
    def post(self, request: Request, public_id: uuid.UUID) -> Response:
        assignment = _own_assignment(request, public_id)
        body = SkipBody(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            skipped = assignment_skip(
                assignment=assignment, rater=assignment.rater, reason=body.validated_data["reason"]
            )
        except DjangoValidationError as exc:
            _raise_api_error(exc)
        return Response({"status": skipped.status})


class DraftBody(serializers.Serializer):
    draft = serializers.DictField()
    total_seconds = _seconds_field()
    active_seconds = _seconds_field()


class PairDraftApi(APIView):
    @extend_schema(request=DraftBody, responses={200: None})
    def put(self, request: Request, public_id: uuid.UUID) -> Response:
        assignment = _own_assignment(request, public_id)
        body = DraftBody(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            saved = draft_save(assignment=assignment, rater=assignment.rater, **body.validated_data)
        except DjangoValidationError as exc:
            _raise_api_error(exc)
        return Response({"saved": saved})


# ---- researcher -----------------------------------------------------------------------------


class StudyProgressApi(APIView):
    @extend_schema(responses={200: None})
    def get(self, request: Request, slug: str) -> Response:
        return Response(workspace_progress(study=api_study(request, slug)))


class GoldBody(serializers.Serializer):
    comparison = serializers.IntegerField()
    expected = serializers.DictField(child=serializers.IntegerField(), allow_null=True)


class StudyGoldApi(APIView):
    @extend_schema(request=GoldBody, responses={200: None})
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        body = GoldBody(data=request.data)
        body.is_valid(raise_exception=True)
        comparison = Comparison.objects.filter(study=study, pk=body.validated_data["comparison"]).first()
        if comparison is None:
            raise ValidationError({"comparison": ["No such comparison in this study."]})
        try:
            marked = comparison_mark_gold(
                comparison=comparison, expected=body.validated_data["expected"], actor=request.user
            )
        except DjangoValidationError as exc:
            _raise_api_error(exc)
        return Response({"comparison": marked.pk, "is_gold": marked.is_gold, "expected": marked.gold_expected})


class ClinicianBody(serializers.Serializer):
    username = serializers.CharField()
    quota = serializers.IntegerField(min_value=0, max_value=MAX_QUOTA, required=False, allow_null=True, default=None)


class StudyClinicianApi(APIView):
    @extend_schema(request=ClinicianBody, responses={201: None})
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        body = ClinicianBody(data=request.data)
        body.is_valid(raise_exception=True)
        user = (
            get_user_model()
            .objects.filter(username=body.validated_data["username"], profile__role=Profile.Role.CLINICIAN)
            .first()
        )
        if user is None:
            raise ValidationError({"username": ["No clinician account with this username."]})
        try:
            clinician_assign(study=study, user=user, actor=request.user, quota=body.validated_data["quota"])
        except DjangoValidationError as exc:
            _raise_api_error(exc)
        return Response({"username": user.get_username(), "quota": body.validated_data["quota"]}, status=201)


urlpatterns = [
    path("workspace/studies/<slug:slug>/next", NextPairApi.as_view(), name="api-workspace-next"),
    path("workspace/pairs/<uuid:public_id>", PairApi.as_view(), name="api-workspace-pair"),
    path("workspace/pairs/<uuid:public_id>/submit", PairSubmitApi.as_view(), name="api-workspace-submit"),
    path("workspace/pairs/<uuid:public_id>/revise", PairReviseApi.as_view(), name="api-workspace-revise"),
    path("workspace/pairs/<uuid:public_id>/skip", PairSkipApi.as_view(), name="api-workspace-skip"),
    path("workspace/pairs/<uuid:public_id>/draft", PairDraftApi.as_view(), name="api-workspace-draft"),
    path("studies/<slug:slug>/progress", StudyProgressApi.as_view(), name="api-study-progress"),
    path("studies/<slug:slug>/gold", StudyGoldApi.as_view(), name="api-study-gold"),
    path("studies/<slug:slug>/clinicians", StudyClinicianApi.as_view(), name="api-study-clinicians"),
]
