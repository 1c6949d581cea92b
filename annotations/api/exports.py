"""Preference exports API: list and create, read (status, progress, manifest), download the zip.
Researchers of the study only; an export of a study you cannot see is 404."""

import uuid

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import FileResponse, Http404
from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.errors import api_validation_error
from annotations.api.studies import api_study
from annotations.exporting.rows import FILE_FORMATS, FORMATS
from annotations.models import JobStatus, PreferenceExport, Study
from annotations.services.exports import (
    export_create,
    export_for_study,
    export_summary,
    exports_for_study,
)
from annotations.views.exports import export_zip_response


def _api_export(study: Study, public_id: uuid.UUID) -> PreferenceExport:
    export = export_for_study(study=study, public_id=public_id)
    if export is None:
        raise Http404
    return export


class ExportOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    progress = serializers.FloatField()
    format = serializers.CharField()
    file_format = serializers.CharField()
    criteria = serializers.ListField(child=serializers.CharField())
    policy = serializers.DictField()
    split = serializers.DictField()
    filters = serializers.DictField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    zip_sha256 = serializers.CharField(allow_null=True)
    manifest = serializers.DictField(allow_null=True, help_text="docs/export-format.md; null until finished")


class ExportCreateInput(serializers.Serializer):
    format = serializers.ChoiceField(choices=FORMATS)
    file_format = serializers.ChoiceField(choices=FILE_FORMATS, default="jsonl")
    criteria = serializers.ListField(
        child=serializers.SlugField(), required=False, default=list, help_text="criterion keys; empty: all"
    )
    policy = serializers.DictField(required=False, default=dict, help_text="AggregationPolicy fields")
    split = serializers.DictField(required=False, default=dict, help_text="seed, test_fraction, ...")
    filters = serializers.DictField(
        required=False, default=dict, help_text="systems, submitted_before, exclude_gold_items"
    )


class ExportListCreateApi(APIView):
    @extend_schema(responses=ExportOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug)
        return Response([export_summary(export) for export in exports_for_study(study=study)[:200]])

    @extend_schema(
        request=ExportCreateInput,
        responses={201: ExportOutput, 202: OpenApiResponse(ExportOutput, description="queued for the worker")},
    )
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = ExportCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            export = export_create(
                study=study,
                actor=request.user,
                format=values["format"],
                file_format=values["file_format"],
                criterion_keys=values["criteria"],
                policy=values["policy"],
                split=values["split"],
                filters=values["filters"],
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        finished = export.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
        return Response(
            export_summary(export), status=status.HTTP_201_CREATED if finished else status.HTTP_202_ACCEPTED
        )


class ExportDetailApi(APIView):
    @extend_schema(responses=ExportOutput)
    def get(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        export = _api_export(api_study(request, slug), public_id)
        return Response(export_summary(export))


class ExportDownloadApi(APIView):
    @extend_schema(responses={(200, "application/zip"): OpenApiResponse(description="the export's zip")})
    def get(self, request: Request, slug: str, public_id: uuid.UUID) -> FileResponse:
        study = api_study(request, slug)
        return export_zip_response(study, _api_export(study, public_id), actor=request.user)


urlpatterns = [
    path("studies/<slug:slug>/exports/", ExportListCreateApi.as_view(), name="api-export-list"),
    path("studies/<slug:slug>/exports/<uuid:public_id>/", ExportDetailApi.as_view(), name="api-export-detail"),
    path(
        "studies/<slug:slug>/exports/<uuid:public_id>/download.zip",
        ExportDownloadApi.as_view(),
        name="api-export-download",
    ),
]
