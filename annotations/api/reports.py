"""Researcher API for the agreement and results report (the same document as the page and the command)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.studies import api_study
from annotations.models import JobStatus
from annotations.services.audit import audit_download
from annotations.services.reports import (
    ReportLimitReached,
    report_csv,
    report_document,
    report_params_from_query,
    report_request,
)

REPORT_PARAMETERS = [
    OpenApiParameter("criterion", str, many=True, description="criterion key; repeat for several (default: all)"),
    OpenApiParameter("rater", str, many=True, description="rater or judge label; repeat for several (default: all)"),
    OpenApiParameter(
        "kind",
        str,
        many=True,
        enum=["clinician", "external", "judge"],
        description="kinds of rater: platform clinicians, imported raters, AI judges; repeat (default: all)",
    ),
    OpenApiParameter("from", OpenApiTypes.DATE, description="first day a rating was stored, inclusive"),
    OpenApiParameter("to", OpenApiTypes.DATE, description="last day a rating was stored, inclusive"),
    OpenApiParameter("min_gold_accuracy", float, description="leave out clinicians below this gold accuracy (0-1)"),
    OpenApiParameter("resamples", int, description="bootstrap resamples (default 1000, 0 for no intervals)"),
    OpenApiParameter("seed", int, description="bootstrap seed (default 0)"),
]


def _snapshot(request: Request, study):
    """The snapshot for the current data, queued on a worker when new; 429 past the per-user limit."""
    try:
        return report_request(study=study, params=_params(request), requested_by=request.user)
    except ReportLimitReached as exc:
        raise Throttled(detail=str(exc)) from None


def _params(request: Request):
    query = request.query_params
    try:
        return report_params_from_query(query)
    except DjangoValidationError as exc:
        raise ValidationError(exc.message_dict) from None


class StudyReportApi(APIView):
    @extend_schema(
        parameters=REPORT_PARAMETERS,
        responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT},
        description="The report document (docs/reports.md). 202 with `report: null` while it is computed; "
        "poll until `status` is `succeeded` (or `failed`).",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug)
        snapshot = _snapshot(request, study)
        computing = snapshot.status in (JobStatus.QUEUED, JobStatus.RUNNING)
        if snapshot.status == JobStatus.SUCCEEDED:
            audit_download(actor=request.user, kind="report_json", study=study, obj=snapshot, data={"via": "api"})
        return Response(
            report_document(study=study, snapshot=snapshot),
            status=status.HTTP_202_ACCEPTED if computing else status.HTTP_200_OK,
        )


class StudyReportCsvApi(APIView):
    @extend_schema(
        parameters=REPORT_PARAMETERS,
        responses={(200, "text/csv"): OpenApiTypes.STR, 202: OpenApiTypes.OBJECT},
        description="The report as long-format CSV (one statistic per line); 202 with the JSON status while computing.",
    )
    def get(self, request: Request, slug: str) -> HttpResponse:
        study = api_study(request, slug)
        snapshot = _snapshot(request, study)
        document = report_document(study=study, snapshot=snapshot)
        if snapshot.status != JobStatus.SUCCEEDED:
            return Response(document, status=status.HTTP_202_ACCEPTED)
        audit_download(actor=request.user, kind="report_csv", study=study, obj=snapshot, data={"via": "api"})
        return HttpResponse(report_csv(document["report"]), content_type="text/csv; charset=utf-8")


class StudyReportPdfApi(APIView):
    @extend_schema(
        parameters=REPORT_PARAMETERS,
        responses={(200, "application/pdf"): OpenApiTypes.BINARY, 202: OpenApiTypes.OBJECT},
        description="The report as a PDF for a paper's supplement: summary, forest plot and win-rate chart, figures "
        "per criterion, methods with references, data provenance. 202 with the JSON status while computing.",
    )
    def get(self, request: Request, slug: str) -> HttpResponse:
        from annotations.views.reports import report_pdf_for  # the page's own PDF, drawn with matplotlib

        study = api_study(request, slug)
        snapshot = _snapshot(request, study)
        if snapshot.status != JobStatus.SUCCEEDED:
            return Response(report_document(study=study, snapshot=snapshot), status=status.HTTP_202_ACCEPTED)
        response = HttpResponse(report_pdf_for(study=study, snapshot=snapshot), content_type="application/pdf")
        audit_download(actor=request.user, kind="report_pdf", study=study, obj=snapshot, data={"via": "api"})
        response["Content-Disposition"] = f'attachment; filename="{study.slug}-report.pdf"'
        return response


urlpatterns = [
    path("studies/<slug:slug>/report", StudyReportApi.as_view(), name="api-study-report"),
    path("studies/<slug:slug>/report.csv", StudyReportCsvApi.as_view(), name="api-study-report-csv"),
    path("studies/<slug:slug>/report.pdf", StudyReportPdfApi.as_view(), name="api-study-report-pdf"),
]
