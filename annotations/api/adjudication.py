"""Disputes and adjudication API (the same services as the Disputes page). Researchers of the study only."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.errors import api_validation_error
from annotations.api.pagination import BoundedLimitOffsetPagination
from annotations.api.studies import api_study
from annotations.models import Adjudication, Comparison
from annotations.services.adjudication import (
    DECISIONS,
    STATUSES,
    DisputedItem,
    adjudication_decide,
    adjudication_withdraw,
    dispute_detail,
    disputed_items,
)

DECISION_HELP = "response_1, tie or response_2 (the comparison's canonical first and second responses)"


class AdjudicationOutput(serializers.Serializer):
    comparison = serializers.IntegerField()
    criterion = serializers.CharField()
    decision = serializers.ChoiceField(choices=list(DECISIONS), help_text=DECISION_HELP)
    value = serializers.IntegerField(help_text="canonical: -1 favours response 1, 0 tie, 1 response 2")
    reason = serializers.CharField()
    decided_by = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField()


class VotesOutput(serializers.Serializer):
    response_1 = serializers.IntegerField()
    tie = serializers.IntegerField()
    response_2 = serializers.IntegerField()


class DisputeOutput(serializers.Serializer):
    comparison = serializers.IntegerField()
    criterion = serializers.CharField()
    criterion_title = serializers.CharField()
    system_1 = serializers.CharField()
    system_2 = serializers.CharField()
    votes = VotesOutput()
    disputed = serializers.BooleanField(help_text="false only for an adjudicated item that later votes settled")
    adjudication = AdjudicationOutput(allow_null=True)


class DisputePageOutput(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = DisputeOutput(many=True)


class DisputeRatingOutput(serializers.Serializer):
    rater = serializers.CharField()
    rater_kind = serializers.CharField()
    value = serializers.IntegerField()
    text = serializers.CharField()
    first_shown = serializers.CharField(help_text="left, right, or empty for imported ratings")
    rationale = serializers.CharField()
    both_unacceptable = serializers.BooleanField()


class DisputeDetailOutput(DisputeOutput):
    prompt = serializers.JSONField()
    response_1 = serializers.CharField()
    response_2 = serializers.CharField()
    ratings = DisputeRatingOutput(many=True)


class DecideInput(serializers.Serializer):
    comparison = serializers.IntegerField()
    criterion = serializers.SlugField()
    decision = serializers.ChoiceField(choices=list(DECISIONS), help_text=DECISION_HELP)
    reason = serializers.CharField(max_length=5000)


def adjudication_data(adjudication: Adjudication | None) -> dict | None:
    if adjudication is None:
        return None
    return {
        "comparison": adjudication.comparison_id,
        "criterion": adjudication.criterion.key,
        "decision": next(k for k, v in DECISIONS.items() if v == adjudication.value),
        "value": adjudication.value,
        "reason": adjudication.reason,
        "decided_by": adjudication.decided_by.get_username() if adjudication.decided_by else None,
        "updated_at": adjudication.updated_at,
    }


def _dispute_data(item: DisputedItem, comparison: Comparison) -> dict:
    return {
        "comparison": item.comparison_id,
        "criterion": item.criterion.key,
        "criterion_title": item.criterion.title,
        "system_1": comparison.response_first.system.name,
        "system_2": comparison.response_second.system.name,
        "votes": {"response_1": item.votes.a, "tie": item.votes.tie, "response_2": item.votes.b},
        "disputed": item.disputed,
        "adjudication": adjudication_data(item.adjudication),
    }


class DisputeListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("criterion", str, description="criterion key: only this criterion"),
            OpenApiParameter("status", str, enum=list(STATUSES), description="default all"),
            OpenApiParameter("system", str, description="system name: comparisons where it wrote a response"),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses=DisputePageOutput,
        description="Items whose clinicians disagree with no majority on a criterion (the export's 'disputed'), "
        "with their adjudication if any. Paginated (count, next, previous, results).",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug)
        try:
            items = disputed_items(
                study=study,
                criterion_key=request.query_params.get("criterion", ""),
                status=request.query_params.get("status", "") or "all",
                system=request.query_params.get("system", ""),
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(items, request, view=self)
        comparisons = Comparison.objects.filter(pk__in=[i.comparison_id for i in page]).select_related(
            "response_first__system", "response_second__system"
        )
        by_id = {c.pk: c for c in comparisons}
        return paginator.get_paginated_response([_dispute_data(i, by_id[i.comparison_id]) for i in page])


class AdjudicationListApi(APIView):
    @extend_schema(responses=AdjudicationOutput(many=True), description="Every decision recorded in the study.")
    def get(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug)
        adjudications = (
            Adjudication.objects.filter(study=study)
            .select_related("criterion", "decided_by")
            .order_by("comparison_id", "criterion__key")
        )
        return Response([adjudication_data(a) for a in adjudications[:10000]])

    @extend_schema(
        request=DecideInput,
        responses={201: AdjudicationOutput, 200: OpenApiResponse(AdjudicationOutput, description="changed")},
        description="Decide a disputed item, or change its decision (the reason is required; audited).",
    )
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = DecideInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        existed = Adjudication.objects.filter(
            study=study, comparison_id=values["comparison"], criterion__key=values["criterion"]
        ).exists()
        try:
            adjudication = adjudication_decide(
                study=study,
                comparison_id=values["comparison"],
                criterion_key=values["criterion"],
                decision=values["decision"],
                reason=values["reason"],
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(
            adjudication_data(adjudication), status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        )


class AdjudicationDetailApi(APIView):
    @extend_schema(responses=DisputeDetailOutput, description="One item: both responses, every rating, decision.")
    def get(self, request: Request, slug: str, comparison_id: int, criterion: str) -> Response:
        study = api_study(request, slug)
        try:
            detail = dispute_detail(study=study, comparison_id=comparison_id, criterion_key=criterion)
        except DjangoValidationError:
            raise Http404 from None
        if detail.item is None:
            raise Http404
        comparison = detail.comparison
        return Response(
            {
                **_dispute_data(detail.item, comparison),
                "prompt": comparison.prompt.messages,
                "response_1": comparison.response_first.content,
                "response_2": comparison.response_second.content,
                "ratings": [
                    {k: r[k] for k in ("rater", "rater_kind", "value", "text", "first_shown", "rationale")}
                    | {"both_unacceptable": r["both_unacceptable"]}
                    for r in detail.ratings
                ],
            }
        )

    @extend_schema(responses={204: None}, description="Withdraw the decision: the item is unresolved again.")
    def delete(self, request: Request, slug: str, comparison_id: int, criterion: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        try:
            withdrawn = adjudication_withdraw(
                study=study, comparison_id=comparison_id, criterion_key=criterion, actor=request.user
            )
        except DjangoValidationError:
            raise Http404 from None
        if not withdrawn:
            raise Http404
        return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    path("studies/<slug:slug>/disputes/", DisputeListApi.as_view(), name="api-dispute-list"),
    path("studies/<slug:slug>/adjudications/", AdjudicationListApi.as_view(), name="api-adjudication-list"),
    path(
        "studies/<slug:slug>/adjudications/<int:comparison_id>/<slug:criterion>/",
        AdjudicationDetailApi.as_view(),
        name="api-adjudication-detail",
    ),
]
