"""Spans API: a clinician lists, marks and removes passages of their own pair's two responses.

Blinded like the pair itself: a response is named by the side it was shown on (1 = Response 1, 2 = Response 2);
no response id or system appears in a request or an answer. Researchers read spans with each item of the item
explorer API (annotations/api/items.py) and as the `kind=spans` raw data download.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.workspace import _own_assignment, _raise_api_error
from annotations.selectors_spans import spans_for_rater
from annotations.services.spans import MAX_NOTE_LENGTH, SpanInput, span_create, span_delete


class SpanOutput(serializers.Serializer):
    id = serializers.IntegerField()
    side = serializers.IntegerField(help_text="1: Response 1 (shown left), 2: Response 2 (shown right)")
    start = serializers.IntegerField(help_text="character offset into the response text (0-based, inclusive)")
    end = serializers.IntegerField(help_text="character offset into the response text (exclusive)")
    label = serializers.CharField()
    note = serializers.CharField()
    quote = serializers.CharField(help_text="the response text from start to end, as marked")


class SpanListOutput(serializers.Serializer):
    labels = serializers.ListField(child=serializers.CharField(), help_text="the study's span labels")
    spans = SpanOutput(many=True)


class SpanBody(serializers.Serializer):
    side = serializers.IntegerField(min_value=1, max_value=2)
    start = serializers.IntegerField(min_value=0)
    end = serializers.IntegerField(min_value=1)
    label = serializers.CharField(max_length=64)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_NOTE_LENGTH)
    quote = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        help_text="optional: the text you saw between start and end; refused if the response differs there",
    )


class SpanCreateOutput(serializers.Serializer):
    span = SpanOutput()
    created = serializers.BooleanField(help_text="false when the same passage already had this label")


class PairSpansApi(APIView):
    @extend_schema(
        responses=SpanListOutput,
        description="The study's span labels and your marked passages on this pair, by side.",
    )
    def get(self, request: Request, public_id: uuid.UUID) -> Response:
        assignment = _own_assignment(request, public_id)
        labels = list(assignment.study.span_labels or ["unsafe"])
        return Response({"labels": labels, "spans": spans_for_rater(assignment=assignment)})

    @extend_schema(
        request=SpanBody,
        responses={201: SpanCreateOutput, 200: SpanCreateOutput},
        description="Mark a passage of Response 1 or 2 by character offsets into its text. The same passage "
        "with the same label again returns the existing mark (200).",
    )
    def post(self, request: Request, public_id: uuid.UUID) -> Response:
        assignment = _own_assignment(request, public_id)
        body = SpanBody(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            span, created = span_create(
                assignment=assignment, rater=assignment.rater, data=SpanInput(**body.validated_data)
            )
        except DjangoValidationError as exc:
            _raise_api_error(exc)
        return Response({"span": span, "created": created}, status=status.HTTP_201_CREATED if created else 200)


class PairSpanDetailApi(APIView):
    @extend_schema(responses={204: None}, description="Remove one of your marked passages on this pair.")
    def delete(self, request: Request, public_id: uuid.UUID, span_id: int) -> Response:
        assignment = _own_assignment(request, public_id)
        try:
            span_delete(assignment=assignment, rater=assignment.rater, span_id=span_id)
        except DjangoValidationError as exc:
            if getattr(exc, "code", None) == "not_found":
                raise Http404 from None
            _raise_api_error(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    path("workspace/pairs/<uuid:public_id>/spans", PairSpansApi.as_view(), name="api-workspace-spans"),
    path(
        "workspace/pairs/<uuid:public_id>/spans/<int:span_id>",
        PairSpanDetailApi.as_view(),
        name="api-workspace-span-detail",
    ),
]
