"""Guidelines API: researchers read and change a study's guidelines (Markdown) and span labels; clinicians read
the guidelines (sanitised HTML) with the rubric, as on their guidelines page."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.errors import api_validation_error
from annotations.api.studies import api_study
from annotations.api.workspace import _clinician_study
from annotations.models import Study
from annotations.services.guidelines import (
    MAX_GUIDELINES_LENGTH,
    guidelines_for_clinician,
    guidelines_html,
    guidelines_mark_read,
    study_guidelines_update,
)
from annotations.services.rating import criteria_in_page_order


class GuidelinesOutput(serializers.Serializer):
    guidelines = serializers.CharField(help_text="Markdown, as the researcher wrote it")
    html = serializers.CharField(help_text="the sanitised HTML clinicians see")
    span_labels = serializers.ListField(child=serializers.CharField())


class GuidelinesBody(serializers.Serializer):
    guidelines = serializers.CharField(allow_blank=True, max_length=MAX_GUIDELINES_LENGTH, trim_whitespace=False)
    span_labels = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        allow_null=True,
        default=None,
        help_text="labels clinicians can put on a marked passage; 'unsafe' is always kept; omit to leave unchanged",
    )


def _output(study: Study) -> dict:
    return {
        "guidelines": study.guidelines,
        "html": guidelines_html(study.guidelines),
        "span_labels": list(study.span_labels or ["unsafe"]),
    }


class StudyGuidelinesApi(APIView):
    @extend_schema(responses=GuidelinesOutput, description="The study's guidelines and span labels.")
    def get(self, request: Request, slug: str) -> Response:
        return Response(_output(api_study(request, slug)))

    @extend_schema(
        request=GuidelinesBody,
        responses=GuidelinesOutput,
        description="Replace the guidelines (and, if given, the span labels). Refused when the text names a "
        "system of the study. Audited.",
    )
    def put(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        body = GuidelinesBody(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            study = study_guidelines_update(study=study, actor=request.user, **body.validated_data)
        except DjangoValidationError as exc:
            raise api_validation_error(exc, "guidelines") from None
        return Response(_output(study))


class RubricCriterionOutput(serializers.Serializer):
    title = serializers.CharField()
    question = serializers.CharField()
    better_when = serializers.CharField()
    worse_when = serializers.CharField()


class ClinicianGuidelinesOutput(serializers.Serializer):
    html = serializers.CharField(help_text="the researchers' guidelines, sanitised HTML (empty if none)")
    criteria = RubricCriterionOutput(many=True)
    span_labels = serializers.ListField(child=serializers.CharField())


class WorkspaceGuidelinesApi(APIView):
    @extend_schema(
        responses=ClinicianGuidelinesOutput,
        description="The study's guidelines and rubric for a clinician of the study; reading them counts as read.",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = _clinician_study(request, slug)
        guidelines_mark_read(study=study, user=request.user, session=None)
        criteria = [
            {"title": c.title, "question": c.question, "better_when": c.better_when, "worse_when": c.worse_when}
            for c in criteria_in_page_order(study)
        ]
        return Response(
            {
                "html": guidelines_for_clinician(study=study),
                "criteria": criteria,
                "span_labels": list(study.span_labels or ["unsafe"]),
            }
        )


urlpatterns = [
    path("studies/<slug:slug>/guidelines", StudyGuidelinesApi.as_view(), name="api-study-guidelines"),
    path("workspace/studies/<slug:slug>/guidelines", WorkspaceGuidelinesApi.as_view(), name="api-workspace-guidelines"),
]
