"""Safety queue API (the same services as the Safety page). Researchers of the study only."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.errors import api_validation_error
from annotations.api.pagination import BoundedLimitOffsetPagination
from annotations.api.studies import api_study
from annotations.models import SafetyReview
from annotations.services.safety import (
    QUEUE_STATUSES,
    SafetyPair,
    response_exports_set,
    safety_pair,
    safety_pairs_load,
    safety_queue,
    safety_review_set,
)


class SafetySpanOutput(serializers.Serializer):
    response = serializers.CharField(help_text="Response 1 or Response 2")
    label = serializers.CharField()
    quote = serializers.CharField()
    note = serializers.CharField()
    start = serializers.IntegerField()
    end = serializers.IntegerField()


class RaterReasonsOutput(serializers.Serializer):
    rater = serializers.CharField()
    rater_kind = serializers.CharField()
    status = serializers.CharField()
    both_unacceptable = serializers.BooleanField()
    unacceptable_reason = serializers.CharField()
    skip_reason = serializers.CharField()
    skip_is_safety = serializers.BooleanField()
    spans = SafetySpanOutput(many=True)


class SafetyResponseOutput(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    system = serializers.CharField()
    content = serializers.CharField()
    excluded_from_exports = serializers.BooleanField()


class SafetyPairOutput(serializers.Serializer):
    comparison = serializers.IntegerField()
    prompt_id = serializers.CharField()
    prompt = serializers.JSONField()
    response_1 = SafetyResponseOutput()
    response_2 = SafetyResponseOutput()
    status = serializers.CharField(help_text="open (to review) or reviewed")
    note = serializers.CharField()
    reviewed_by = serializers.CharField(allow_null=True)
    reviewed_at = serializers.DateTimeField(allow_null=True)
    raters = RaterReasonsOutput(many=True)


class SafetyPageOutput(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = SafetyPairOutput(many=True)


class ReviewInput(serializers.Serializer):
    # A plain string (checked below): a ChoiceField named "status" would collide with other enums in the schema.
    status = serializers.CharField(default=SafetyReview.Status.REVIEWED, help_text="reviewed (default) or open")
    note = serializers.CharField(required=False, allow_blank=True, max_length=5000, help_text="replaces the note")

    def validate_status(self, value: str) -> str:
        if value not in SafetyReview.Status.values:
            raise serializers.ValidationError("Choose reviewed or open.")
        return value


class ResponseExportsInput(serializers.Serializer):
    excluded = serializers.BooleanField(help_text="true: leave its comparisons out of new exports")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class ResponseExportsOutput(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    excluded_from_exports = serializers.BooleanField()


def _response(response) -> dict:
    return {
        "id": response.pk,
        "external_id": response.external_id,
        "system": response.system.name,
        "content": response.content,
        "excluded_from_exports": response.excluded_from_exports,
    }


def pair_data(pair: SafetyPair) -> dict:
    comparison, review = pair.comparison, pair.review
    return {
        "comparison": comparison.pk,
        "prompt_id": comparison.prompt.external_id,
        "prompt": comparison.prompt.messages,
        "response_1": _response(comparison.response_first),
        "response_2": _response(comparison.response_second),
        "status": pair.status,
        "note": review.note if review else "",
        "reviewed_by": review.reviewed_by.get_username() if review and review.reviewed_by else None,
        "reviewed_at": review.reviewed_at if review else None,
        "raters": [
            {
                "rater": r.rater,
                "rater_kind": r.rater_kind,
                "status": r.status,
                "both_unacceptable": r.both_unacceptable,
                "unacceptable_reason": r.unacceptable_reason,
                "skip_reason": r.skip_reason,
                "skip_is_safety": r.skip_is_safety,
                "spans": [{k: s[k] for k in ("response", "label", "quote", "note", "start", "end")} for s in r.spans],
            }
            for r in pair.raters
        ],
    }


class SafetyQueueApi(APIView):
    @extend_schema(
        operation_id="v1_studies_safety_list",
        parameters=[
            OpenApiParameter("status", str, enum=list(QUEUE_STATUSES), description="default all"),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses=SafetyPageOutput,
        description="Flagged pairs (both unacceptable, skipped for safety, or an 'unsafe' span) with both "
        "responses and every rater's reasons; open ones first. Paginated (count, next, previous, results).",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug)
        try:
            queue = safety_queue(study=study, status=request.query_params.get("status", "") or "all")
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(queue, request, view=self)
        return paginator.get_paginated_response([pair_data(p) for p in safety_pairs_load(comparisons=page)])


class SafetyPairApi(APIView):
    @extend_schema(operation_id="v1_studies_safety_pair_retrieve", responses=SafetyPairOutput)
    def get(self, request: Request, slug: str, comparison_id: int) -> Response:
        study = api_study(request, slug)
        try:
            return Response(pair_data(safety_pair(study=study, comparison_id=comparison_id)))
        except DjangoValidationError:
            raise Http404 from None


class SafetyReviewApi(APIView):
    @extend_schema(
        request=ReviewInput,
        responses=SafetyPairOutput,
        description="Mark a flagged pair reviewed (or open it again), optionally replacing its note; audited.",
    )
    def post(self, request: Request, slug: str, comparison_id: int) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = ReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            safety_review_set(
                study=study,
                comparison_id=comparison_id,
                status=data.validated_data["status"],
                note=data.validated_data.get("note"),
                actor=request.user,
            )
        except DjangoValidationError:
            raise Http404 from None
        return Response(pair_data(safety_pair(study=study, comparison_id=comparison_id)))


class ResponseExportsApi(APIView):
    @extend_schema(
        request=ResponseExportsInput,
        responses=ResponseExportsOutput,
        description="Exclude a response from preference exports (or include it again): exports made afterwards "
        "leave its comparisons out and count them in the manifest (comparisons.excluded_responses). Audited.",
    )
    def post(self, request: Request, slug: str, response_id: int) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = ResponseExportsInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            response = response_exports_set(
                study=study,
                response_id=response_id,
                excluded=data.validated_data["excluded"],
                reason=data.validated_data["reason"],
                actor=request.user,
            )
        except DjangoValidationError:
            raise Http404 from None
        return Response(
            {
                "id": response.pk,
                "external_id": response.external_id,
                "excluded_from_exports": response.excluded_from_exports,
            }
        )


urlpatterns = [
    path("studies/<slug:slug>/safety/", SafetyQueueApi.as_view(), name="api-safety-queue"),
    path("studies/<slug:slug>/safety/<int:comparison_id>/", SafetyPairApi.as_view(), name="api-safety-pair"),
    path("studies/<slug:slug>/safety/<int:comparison_id>/review", SafetyReviewApi.as_view(), name="api-safety-review"),
    path(
        "studies/<slug:slug>/responses/<int:response_id>/exports",
        ResponseExportsApi.as_view(),
        name="api-response-exports",
    ),
]
