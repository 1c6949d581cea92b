"""Training jobs API: list and launch, read (progress, lineage), metrics for the loss curve, cancel,
register as system. Researchers of the study only; a job of a study you cannot see is 404."""

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
from annotations.api.studies import api_study
from annotations.models import PreferenceExport, Study, TrainingJob
from annotations.models.survey import WeightSet
from annotations.services.training_jobs import (
    training_job_cancel,
    training_job_for_study,
    training_job_launch,
    training_job_lineage,
    training_job_metrics,
    training_job_progress,
    training_job_register_system,
    training_jobs_for_study,
)
from annotations.training.spec import heldout_figures


def _api_job(study: Study, public_id: uuid.UUID) -> TrainingJob:
    job = training_job_for_study(study=study, public_id=public_id)
    if job is None:
        raise Http404
    return job


class JobOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    kind = serializers.CharField()
    criterion = serializers.CharField()
    step = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    epoch = serializers.FloatField()
    fraction = serializers.FloatField()
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    cancel_requested = serializers.BooleanField()
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField()
    result = serializers.DictField()


class JobDetailOutput(JobOutput):
    lineage = serializers.DictField()
    heldout = serializers.DictField(
        help_text="Held-out figures by criterion from the export's test split: accuracy, margin, loss, n "
        "(reward: its criterion; DPO and MODPO: every criterion; SFT: loss)"
    )


class JobLaunchInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TrainingJob.Kind.choices)
    base_model = serializers.CharField(max_length=500)
    export = serializers.UUIDField(required=False, allow_null=True, help_text="public id of a finished export")
    criterion = serializers.CharField(required=False, allow_blank=True, default="")
    weights = serializers.DictField(child=serializers.FloatField(), required=False, default=dict)
    hyperparameters = serializers.DictField(required=False, default=dict, help_text="TrainingSpec options")
    inputs = serializers.ListField(child=serializers.UUIDField(), required=False, default=list)
    weight_set = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="id of a weight set of the study, instead of weights"
    )


class JobListCreateApi(APIView):
    @extend_schema(responses=JobOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug)
        return Response([training_job_progress(job) for job in training_jobs_for_study(study=study)[:200]])

    @extend_schema(request=JobLaunchInput, responses={201: JobDetailOutput})
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = JobLaunchInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        export = None
        if values.get("export"):
            export = PreferenceExport.objects.filter(study=study, public_id=values["export"]).first()
            if export is None:
                raise ValidationError({"export": ["No such export in this study."]})
        inputs = list(TrainingJob.objects.filter(study=study, public_id__in=values["inputs"]))
        if len(inputs) != len(set(values["inputs"])):
            raise ValidationError({"inputs": ["No such job in this study."]})
        weight_set = None
        if values["weight_set"] is not None:
            weight_set = WeightSet.objects.filter(study=study, pk=values["weight_set"]).first()
            if weight_set is None:
                raise ValidationError({"weight_set": ["No such weight set in this study."]})
        try:
            job = training_job_launch(
                study=study,
                kind=values["kind"],
                base_model=values["base_model"],
                export=export,
                criterion=values["criterion"],
                weights=values["weights"],
                hyperparameters=values["hyperparameters"],
                inputs=inputs,
                actor=request.user,
                weight_set=weight_set,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(
            {**training_job_progress(job), "lineage": training_job_lineage(job)}, status=status.HTTP_201_CREATED
        )


class JobDetailApi(APIView):
    @extend_schema(responses=JobDetailOutput)
    def get(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        job = _api_job(api_study(request, slug), public_id)
        heldout = heldout_figures((job.result or {}).get("metrics") or {})
        return Response({**training_job_progress(job), "lineage": training_job_lineage(job), "heldout": heldout})


class MetricOutput(serializers.Serializer):
    step = serializers.IntegerField()
    epoch = serializers.FloatField()
    values = serializers.DictField(help_text="loss, rewards/accuracies, rewards/margins, eval_* ...")


class JobMetricsApi(APIView):
    @extend_schema(responses=MetricOutput(many=True))
    def get(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        job = _api_job(api_study(request, slug), public_id)
        return Response(training_job_metrics(job))


class JobCancelApi(APIView):
    @extend_schema(request=None, responses=JobOutput)
    def post(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        job = _api_job(api_study(request, slug, "annotations.manage_study"), public_id)
        try:
            job = training_job_cancel(job=job, actor=request.user)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(training_job_progress(job))


class RegisterSystemInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)


class RegisterSystemOutput(serializers.Serializer):
    name = serializers.CharField()
    training_job = serializers.UUIDField()


class JobRegisterSystemApi(APIView):
    @extend_schema(request=RegisterSystemInput, responses={201: RegisterSystemOutput})
    def post(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        job = _api_job(api_study(request, slug, "annotations.manage_study"), public_id)
        data = RegisterSystemInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            system = training_job_register_system(job=job, name=data.validated_data["name"], actor=request.user)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response({"name": system.name, "training_job": str(job.public_id)}, status=status.HTTP_201_CREATED)


urlpatterns = [
    path("studies/<slug:slug>/jobs/", JobListCreateApi.as_view(), name="api-job-list"),
    path("studies/<slug:slug>/jobs/<uuid:public_id>/", JobDetailApi.as_view(), name="api-job-detail"),
    path("studies/<slug:slug>/jobs/<uuid:public_id>/metrics", JobMetricsApi.as_view(), name="api-job-metrics"),
    path("studies/<slug:slug>/jobs/<uuid:public_id>/cancel", JobCancelApi.as_view(), name="api-job-cancel"),
    path(
        "studies/<slug:slug>/jobs/<uuid:public_id>/register",
        JobRegisterSystemApi.as_view(),
        name="api-job-register-system",
    ),
]
