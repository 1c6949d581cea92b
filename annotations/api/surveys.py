"""Patient preference survey API: list and create surveys, their results (the figures of the results page),
the responses as CSV, and the study's weight sets (list, and derive one from a survey). Researchers of the
study only; a survey of a study you cannot see is 404."""

import uuid

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpResponse
from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.errors import api_validation_error
from annotations.api.studies import api_study
from annotations.models import Study
from annotations.models.survey import Survey, WeightSet
from annotations.services.surveys import survey_create, survey_results, weight_set_derive
from annotations.stats.survey import METHODS
from annotations.views.surveys import survey_csv_response


def _api_survey(study: Study, public_id: uuid.UUID) -> Survey:
    survey = Survey.objects.filter(study=study, public_id=public_id).first()
    if survey is None:
        raise Http404
    return survey


def survey_summary(survey: Survey) -> dict:
    return {
        "id": survey.public_id,
        "title": survey.title,
        "status": survey.status,
        "introduction": survey.introduction,
        "consent_text": survey.consent_text,
        "questions": survey.questions,
        "ask_ranking": survey.ask_ranking,
        "access_code_required": bool(survey.access_code_hash),
        "link_token": survey.link_token,
        "responses": survey.responses.count(),
        "created_at": survey.created_at,
    }


def weight_set_summary(weight_set: WeightSet) -> dict:
    return {
        "id": weight_set.pk,
        "name": weight_set.name,
        "method": weight_set.method,
        "weights": weight_set.weights,
        "derivation": weight_set.derivation,
        "survey": weight_set.survey.public_id if weight_set.survey_id else None,
        "created_at": weight_set.created_at,
    }


class SurveyQuestionInput(serializers.Serializer):
    key = serializers.CharField(max_length=40)
    label = serializers.CharField(max_length=300)
    kind = serializers.ChoiceField(choices=["choice", "text"])
    options = serializers.ListField(child=serializers.CharField(max_length=300), required=False, default=list)
    required = serializers.BooleanField(default=False)


class SurveyCreateInput(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    consent_text = serializers.CharField()
    introduction = serializers.CharField(required=False, default="", allow_blank=True)
    questions = SurveyQuestionInput(many=True, required=False, default=list)
    ask_ranking = serializers.BooleanField(default=False)
    access_code = serializers.CharField(
        required=False, default="", allow_blank=True, write_only=True, help_text="stored as its SHA-256 only"
    )


class SurveyOutput(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    status = serializers.CharField()
    introduction = serializers.CharField()
    consent_text = serializers.CharField()
    questions = serializers.ListField(child=serializers.DictField())
    ask_ranking = serializers.BooleanField()
    access_code_required = serializers.BooleanField()
    link_token = serializers.CharField(help_text="the public page is /survey/<link_token>/")
    responses = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class SurveyResultsOutput(serializers.Serializer):
    respondents = serializers.IntegerField()
    criteria = serializers.ListField(child=serializers.DictField(), help_text="key and title, in the study's order")
    importance = serializers.ListField(
        child=serializers.DictField(), help_text="criterion, n, mean, low, high (95% percentile bootstrap)"
    )
    top_priority = serializers.ListField(child=serializers.DictField(), help_text="criterion, count, share")
    breakdowns = serializers.ListField(
        child=serializers.DictField(), help_text="per choice question: its answers' importance and top priorities"
    )


class WeightSetOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    method = serializers.CharField()
    weights = serializers.DictField(child=serializers.FloatField())
    derivation = serializers.DictField()
    survey = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()


class WeightSetDeriveInput(serializers.Serializer):
    survey = serializers.UUIDField()
    name = serializers.CharField(max_length=100)
    method = serializers.ChoiceField(choices=METHODS, help_text="docs/surveys.md")
    segment_question = serializers.CharField(required=False, default="", allow_blank=True)
    segment_answer = serializers.CharField(required=False, default="", allow_blank=True)
    safety_minimum = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0, max_value=1)


class SurveyListCreateApi(APIView):
    @extend_schema(responses=SurveyOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug)
        return Response([survey_summary(s) for s in study.surveys.all()[:200]])

    @extend_schema(request=SurveyCreateInput, responses={201: SurveyOutput})
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = SurveyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            survey = survey_create(study=study, actor=request.user, **data.validated_data)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(survey_summary(survey), status=status.HTTP_201_CREATED)


class SurveyResultsApi(APIView):
    @extend_schema(responses=SurveyResultsOutput)
    def get(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        survey = _api_survey(api_study(request, slug), public_id)
        return Response(survey_results(survey))


class SurveyResponsesCsvApi(APIView):
    @extend_schema(responses={(200, "text/csv"): OpenApiResponse(description="one row per response")})
    def get(self, request: Request, slug: str, public_id: uuid.UUID) -> HttpResponse:
        survey = _api_survey(api_study(request, slug), public_id)
        return survey_csv_response(survey, actor=request.user)


class WeightSetListCreateApi(APIView):
    @extend_schema(responses=WeightSetOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug)
        return Response([weight_set_summary(w) for w in WeightSet.objects.filter(study=study)[:500]])

    @extend_schema(request=WeightSetDeriveInput, responses={201: WeightSetOutput})
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = WeightSetDeriveInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        survey = Survey.objects.filter(study=study, public_id=values.pop("survey")).first()
        if survey is None:
            raise api_validation_error(DjangoValidationError({"survey": ["No such survey in this study."]}))
        try:
            weight_set = weight_set_derive(survey=survey, actor=request.user, **values)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(weight_set_summary(weight_set), status=status.HTTP_201_CREATED)


urlpatterns = [
    path("studies/<slug:slug>/surveys/", SurveyListCreateApi.as_view(), name="api-survey-list"),
    path(
        "studies/<slug:slug>/surveys/<uuid:public_id>/results/", SurveyResultsApi.as_view(), name="api-survey-results"
    ),
    path(
        "studies/<slug:slug>/surveys/<uuid:public_id>/responses.csv",
        SurveyResponsesCsvApi.as_view(),
        name="api-survey-responses-csv",
    ),
    path("studies/<slug:slug>/weight-sets/", WeightSetListCreateApi.as_view(), name="api-weight-set-list"),
]
