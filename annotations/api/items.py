"""Researcher API for the item explorer and the raw data download (the same selectors as the pages)."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, StreamingHttpResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.views import APIView

from annotations.api.studies import api_study
from annotations.models import Comparison
from annotations.selectors_items import item_filters_from_query, items_for_study, items_page_load
from annotations.services.raw_data import RAW_FORMATS, raw_data_filename, raw_data_stream, raw_kind_check

ITEM_PARAMETERS = [
    OpenApiParameter("criterion", str, description="criterion key: only this criterion's ratings and disagreement"),
    OpenApiParameter("systems", str, description="a system pair as two system ids joined by a hyphen, e.g. 3-7"),
    OpenApiParameter("system", str, many=True, description="system name; one: either side, two: that pair"),
    OpenApiParameter("rater", int, many=True, description="rater id; repeat for items that every one rated"),
    OpenApiParameter("rater_label", str, many=True, description="rater or judge label, as the report names them"),
    OpenApiParameter("disagreement", bool, description="only items whose raters chose different sides"),
    OpenApiParameter("flagged", bool, description="only items flagged as both unacceptable"),
    OpenApiParameter("skipped", bool, description="only items someone skipped"),
    OpenApiParameter("gold", bool, description="only gold items"),
    OpenApiParameter("sort", str, enum=["id", "disagreement"], description="`disagreement`: most disputed first"),
]


class ItemRatingOutput(serializers.Serializer):
    rater = serializers.CharField()
    rater_kind = serializers.CharField()
    criterion = serializers.CharField()
    rubric_version = serializers.IntegerField()
    value = serializers.IntegerField(help_text="canonical: negative favours the first response")
    first_shown_left = serializers.BooleanField(allow_null=True)
    rationale = serializers.CharField()
    flagged_unacceptable = serializers.BooleanField()
    active_seconds = serializers.FloatField(allow_null=True)


class ItemSkipOutput(serializers.Serializer):
    rater = serializers.CharField()
    rater_kind = serializers.CharField()
    status = serializers.CharField()
    reason = serializers.CharField()


class ItemSpanOutput(serializers.Serializer):
    rater = serializers.CharField()
    rater_kind = serializers.CharField()
    response = serializers.CharField(help_text="first or second response of the comparison")
    system = serializers.CharField()
    label = serializers.CharField()
    start = serializers.IntegerField(help_text="character offset into the response text")
    end = serializers.IntegerField(help_text="character offset into the response text (exclusive)")
    quote = serializers.CharField()
    note = serializers.CharField()


class ItemOutput(serializers.Serializer):
    comparison_id = serializers.IntegerField(source="pk")
    prompt_id = serializers.CharField(source="prompt.external_id")
    prompt = serializers.JSONField(source="prompt.messages")
    system_first = serializers.CharField(source="response_first.system.name")
    response_first = serializers.CharField(source="response_first.content")
    system_second = serializers.CharField(source="response_second.system.name")
    response_second = serializers.CharField(source="response_second.content")
    is_gold = serializers.BooleanField()
    excluded = serializers.BooleanField()
    disagreement = serializers.IntegerField(help_text="0 all agree, 1 a side against a tie, 2 both sides")
    ratings = serializers.SerializerMethodField()
    not_rated = serializers.SerializerMethodField()
    spans = serializers.SerializerMethodField()

    @extend_schema_field(ItemSpanOutput(many=True))
    def get_spans(self, item: Comparison) -> list[dict]:
        """Marked passages of both responses (docs/spans.md), attached by items_page_load."""
        rows = [
            {
                "rater": span.assignment.rater.label,
                "rater_kind": span.assignment.rater.kind,
                "response": position,
                "system": response.system.name,
                "label": span.label,
                "start": span.start,
                "end": span.end,
                "quote": span.quote,
                "note": span.note,
            }
            for position, response, spans in (
                ("first", item.response_first, getattr(item, "spans_first", [])),
                ("second", item.response_second, getattr(item, "spans_second", [])),
            )
            for span in spans
        ]
        return ItemSpanOutput(rows, many=True).data

    @extend_schema_field(ItemRatingOutput(many=True))
    @extend_schema_field(ItemRatingOutput(many=True))
    def get_ratings(self, item: Comparison) -> list[dict]:
        rows = [
            {
                "rater": a.rater.label,
                "rater_kind": a.rater.kind,
                "criterion": r.criterion.key,
                "rubric_version": r.criterion.version,
                "value": r.value,
                "first_shown_left": a.left_is_first,
                "rationale": r.rationale or a.rationale,
                "flagged_unacceptable": a.both_unacceptable,
                "active_seconds": a.active_seconds,
            }
            for a in item.assignments.all()
            for r in a.ratings.all()
        ]
        rows += [
            {
                "rater": j.judge.rater.label,
                "rater_kind": "judge",
                "criterion": j.criterion.key,
                "rubric_version": j.criterion.version,
                "value": j.value,
                "first_shown_left": j.left_is_first,
                "rationale": j.rationale,
                "flagged_unacceptable": j.both_unacceptable,
                "active_seconds": None,
            }
            for j in item.judgments.all()
        ]
        return ItemRatingOutput(rows, many=True).data

    @extend_schema_field(ItemSkipOutput(many=True))
    @extend_schema_field(ItemSkipOutput(many=True))
    def get_not_rated(self, item: Comparison) -> list[dict]:
        rows = [
            {"rater": a.rater.label, "rater_kind": a.rater.kind, "status": a.status, "reason": a.skip_reason}
            for a in item.assignments.all()
            if a.status in ("skipped", "expired")
        ]
        return ItemSkipOutput(rows, many=True).data


class StudyItemsApi(ListAPIView):
    serializer_class = ItemOutput

    def _filters(self):
        try:
            return item_filters_from_query(self.request.query_params)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from None

    def get_queryset(self):
        study = api_study(self.request, self.kwargs["slug"])
        return items_for_study(study=study, filters=self._filters())

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return items_page_load(items=page, filters=self._filters())

    @extend_schema(
        parameters=ITEM_PARAMETERS,
        description="Every comparison of the study with its prompt, both responses and systems, every rating and "
        "judgment (researchers of the study only).",
    )
    def get(self, request: Request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class StudyRawDataApi(APIView):
    @extend_schema(
        responses={
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY,
        },
        parameters=[
            OpenApiParameter(
                "kind", str, enum=["ratings", "spans"], description="`spans`: one row per marked passage instead"
            )
        ],
        description="Every rating and judgment of the study as one long table (docs/raw-data.md), streamed; "
        "`file_format` is csv or parquet; `kind=spans` gives the marked passages instead. Each download is audited.",
    )
    def get(self, request: Request, slug: str, file_format: str) -> StreamingHttpResponse:
        study = api_study(request, slug)
        if file_format not in RAW_FORMATS:
            raise Http404
        try:
            kind = raw_kind_check(request.query_params.get("kind", ""))
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from None
        chunks = raw_data_stream(study=study, file_format=file_format, actor=request.user, via="api", kind=kind)
        response = StreamingHttpResponse(chunks, content_type=RAW_FORMATS[file_format])
        filename = raw_data_filename(study=study, file_format=file_format, kind=kind)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


urlpatterns = [
    path("studies/<slug:slug>/items", StudyItemsApi.as_view(), name="api-study-items"),
    path("studies/<slug:slug>/raw.<str:file_format>", StudyRawDataApi.as_view(), name="api-study-raw-data"),
]
