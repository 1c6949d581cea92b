"""Generation and follow-up API: list and create generation runs (from a succeeded job, or an endpoint), read
one (progress), cancel it; create a follow-up study. Researchers of the study only; anything of a study you
cannot see is 404."""

import uuid

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.errors import api_validation_error
from annotations.api.studies import StudyOutput, api_study
from annotations.models import GenerationRun, PreferenceExport, Study
from annotations.services.followup import followup_study_create, followup_summary
from annotations.services.generation import (
    generation_run_cancel,
    generation_run_create,
    generation_run_for_study,
    generation_run_progress,
    generation_runs_for_study,
)
from annotations.services.training_jobs import training_job_for_study


def _api_run(study: Study, public_id: uuid.UUID) -> GenerationRun:
    run = generation_run_for_study(study=study, public_id=public_id)
    if run is None:
        raise Http404
    return run


def _api_export(study: Study, public_id: uuid.UUID | None) -> PreferenceExport | None:
    if public_id is None:
        return None
    export = PreferenceExport.objects.filter(study=study, public_id=public_id).first()
    if export is None:
        raise ValidationError({"export": ["No such export in this study."]})
    return export


class GenerationRunOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    source = serializers.CharField()
    training_job = serializers.UUIDField(allow_null=True)
    base_url = serializers.CharField()
    model_name = serializers.CharField()
    api_key_env = serializers.CharField()
    prompt_set = serializers.CharField()
    export = serializers.UUIDField(allow_null=True)
    system_name = serializers.CharField()
    settings = serializers.DictField()
    done_prompts = serializers.IntegerField()
    total_prompts = serializers.IntegerField()
    fraction = serializers.FloatField()
    cancel_requested = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField()


class GenerationSettingsInput(serializers.Serializer):
    max_new_tokens = serializers.IntegerField(required=False)
    temperature = serializers.FloatField(required=False, help_text="0 = greedy")
    top_p = serializers.FloatField(required=False)
    seed = serializers.IntegerField(required=False)
    batch_size = serializers.IntegerField(required=False)


class GenerationRunCreateInput(serializers.Serializer):
    system_name = serializers.CharField(max_length=200)
    source = serializers.ChoiceField(choices=GenerationRun.Source.choices, default=GenerationRun.Source.TRAINING_JOB)
    training_job = serializers.UUIDField(required=False, allow_null=True, help_text="public id of a succeeded job")
    base_url = serializers.CharField(required=False, allow_blank=True, default="")
    model_name = serializers.CharField(required=False, allow_blank=True, default="")
    api_key_env = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="environment variable holding the key on the worker"
    )
    prompt_set = serializers.ChoiceField(choices=GenerationRun.PromptSet.choices, default=GenerationRun.PromptSet.ALL)
    export = serializers.UUIDField(
        required=False, allow_null=True, help_text="export whose test split to answer (default: the job's)"
    )
    settings = GenerationSettingsInput(required=False)


class GenerationRunListCreateApi(APIView):
    @extend_schema(responses=GenerationRunOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug)
        return Response([generation_run_progress(run) for run in generation_runs_for_study(study=study)[:200]])

    @extend_schema(request=GenerationRunCreateInput, responses={201: GenerationRunOutput})
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = GenerationRunCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        job = None
        if values.get("training_job"):
            job = training_job_for_study(study=study, public_id=values["training_job"])
            if job is None:
                raise ValidationError({"training_job": ["No such job in this study."]})
        try:
            run = generation_run_create(
                study=study,
                system_name=values["system_name"],
                source=values["source"],
                training_job=job,
                base_url=values["base_url"],
                model_name=values["model_name"],
                api_key_env=values["api_key_env"],
                prompt_set=values["prompt_set"],
                export=_api_export(study, values.get("export")),
                settings=dict(values.get("settings") or {}),
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(generation_run_progress(run), status=status.HTTP_201_CREATED)


class GenerationRunDetailApi(APIView):
    @extend_schema(responses=GenerationRunOutput)
    def get(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        return Response(generation_run_progress(_api_run(api_study(request, slug), public_id)))


class GenerationRunCancelApi(APIView):
    @extend_schema(request=None, responses=GenerationRunOutput)
    def post(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        run = _api_run(api_study(request, slug, "annotations.manage_study"), public_id)
        try:
            run = generation_run_cancel(run=run, actor=request.user)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(generation_run_progress(run))


class FollowupCreateInput(serializers.Serializer):
    slug = serializers.SlugField(max_length=80)
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    systems = serializers.ListField(child=serializers.CharField(max_length=200), min_length=2)
    prompt_ids = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="external ids of the source's prompts"
    )
    generation_run = serializers.UUIDField(required=False, allow_null=True, help_text="only that run's prompts")
    export = serializers.UUIDField(required=False, allow_null=True, help_text="only the test split of that export")
    carry_clinicians = serializers.BooleanField(default=False)


class FollowupOutput(StudyOutput):
    summary = serializers.SerializerMethodField()

    class Meta(StudyOutput.Meta):
        fields = [*StudyOutput.Meta.fields, "summary"]

    def get_summary(self, study: Study) -> dict:
        return followup_summary(study).__dict__


class FollowupCreateApi(APIView):
    @extend_schema(request=FollowupCreateInput, responses={201: FollowupOutput})
    def post(self, request: Request, slug: str) -> Response:
        source = api_study(request, slug, "annotations.manage_study")
        data = FollowupCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        run = None
        if values.get("generation_run"):
            run = generation_run_for_study(study=source, public_id=values["generation_run"])
            if run is None:
                raise ValidationError({"generation_run": ["No such generation run in this study."]})
        prompt_ids = None
        if "prompt_ids" in values:
            wanted = set(values["prompt_ids"])
            found = dict(source.prompts.filter(external_id__in=wanted).values_list("external_id", "pk"))
            if set(found) != wanted:
                raise ValidationError({"prompt_ids": ["Some prompts are not in this study."]})
            prompt_ids = list(found.values())
        try:
            study = followup_study_create(
                source=source,
                slug=values["slug"],
                title=values["title"],
                system_names=values["systems"],
                prompt_ids=prompt_ids,
                generation_run=run,
                export=_api_export(source, values.get("export")),
                carry_clinicians=values["carry_clinicians"],
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(FollowupOutput(study).data, status=status.HTTP_201_CREATED)


urlpatterns = [
    path("studies/<slug:slug>/generation/", GenerationRunListCreateApi.as_view(), name="api-generation-run-list"),
    path(
        "studies/<slug:slug>/generation/<uuid:public_id>/",
        GenerationRunDetailApi.as_view(),
        name="api-generation-run-detail",
    ),
    path(
        "studies/<slug:slug>/generation/<uuid:public_id>/cancel",
        GenerationRunCancelApi.as_view(),
        name="api-generation-run-cancel",
    ),
    path("studies/<slug:slug>/followup", FollowupCreateApi.as_view(), name="api-followup-create"),
]
