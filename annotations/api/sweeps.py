"""Weight sweeps API: list and launch, read (every model's held-out figures, the Pareto front of two chosen
criteria and of all, every job's progress), cancel-all. Researchers of the study only; others get 404."""

import uuid

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.errors import api_validation_error
from annotations.api.jobs import JobOutput
from annotations.api.studies import api_study
from annotations.models import PreferenceExport, Study, Sweep, TrainingJob
from annotations.models.survey import WeightSet
from annotations.services.sweeps import (
    sweep_cancel,
    sweep_detail_data,
    sweep_for_study,
    sweep_launch,
    sweep_status,
    sweep_summary,
    sweep_vectors_resolve,
    sweeps_for_study,
)


def _api_sweep(study: Study, public_id: uuid.UUID) -> Sweep:
    sweep = sweep_for_study(study=study, public_id=public_id)
    if sweep is None:
        raise Http404
    return sweep


class SweepStatusOutput(serializers.Serializer):
    jobs = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="jobs by status")
    finished = serializers.BooleanField()


class WeightVectorOutput(serializers.Serializer):
    label = serializers.CharField()
    weights = serializers.DictField(child=serializers.FloatField())
    job = serializers.CharField(required=False, help_text="public id of the job whose model this vector is")
    role = serializers.CharField(required=False)


class SweepOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.CharField()
    export = serializers.UUIDField(allow_null=True)
    base_model = serializers.CharField()
    hyperparameters = serializers.DictField()
    weight_vectors = WeightVectorOutput(many=True)
    created_at = serializers.DateTimeField()
    status = SweepStatusOutput()


class PointOutput(serializers.Serializer):
    label = serializers.CharField()
    role = serializers.CharField(help_text="modpo, dpo-baseline, merge, source (a per-criterion model) or reference")
    weights = serializers.DictField(child=serializers.FloatField())
    job = serializers.UUIDField(allow_null=True)
    job_status = serializers.CharField(allow_null=True)
    heldout = serializers.DictField(help_text="criterion -> {accuracy, margin, n} on the export's test pairs")
    front = serializers.BooleanField(help_text="on the Pareto front of the two axis criteria")
    front_all = serializers.BooleanField(help_text="on the Pareto front over every scored criterion")


class SweepDetailOutput(SweepOutput):
    axes = serializers.ListField(child=serializers.CharField(), help_text="the two criteria of `front`")
    criteria = serializers.ListField(child=serializers.CharField())
    points = PointOutput(many=True)
    jobs = JobOutput(many=True)


class SweepLaunchInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Sweep.Kind.choices)
    export = serializers.UUIDField(help_text="public id of a finished export of the study")
    base_model = serializers.CharField(max_length=500)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    criteria = serializers.ListField(
        child=serializers.CharField(), required=False, default=list, help_text="criteria of a grid"
    )
    step = serializers.FloatField(required=False, allow_null=True, default=None, help_text="grid step, e.g. 0.25")
    weight_sets = serializers.ListField(
        child=serializers.IntegerField(), required=False, default=list, help_text="ids of the study's weight sets"
    )
    vectors = serializers.ListField(
        child=serializers.DictField(child=serializers.FloatField()),
        required=False,
        default=list,
        help_text='typed weight vectors, e.g. [{"empathy": 0.7, "safety": 0.3}]',
    )
    models = serializers.DictField(
        child=serializers.UUIDField(),
        required=False,
        default=dict,
        help_text="criterion -> public id of the reward model (MODPO) or DPO model (soup) to use; "
        "default: the latest finished one on the export",
    )
    hyperparameters = serializers.DictField(required=False, default=dict, help_text="TrainingSpec options")


class SweepListCreateApi(APIView):
    @extend_schema(responses=SweepOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug)
        return Response([sweep_summary(sweep) for sweep in sweeps_for_study(study=study)[:200]])

    @extend_schema(request=SweepLaunchInput, responses={201: SweepDetailOutput})
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = SweepLaunchInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        export = PreferenceExport.objects.filter(study=study, public_id=values["export"]).first()
        if export is None:
            raise ValidationError({"export": ["No such export in this study."]})
        weight_sets = list(WeightSet.objects.filter(study=study, pk__in=values["weight_sets"]))
        if len(weight_sets) != len(set(values["weight_sets"])):
            raise ValidationError({"weight_sets": ["No such weight set in this study."]})
        models = {}
        for criterion, public_id in values["models"].items():
            job = TrainingJob.objects.filter(study=study, public_id=public_id).first()
            if job is None:
                raise ValidationError({"models": [f"{criterion}: no such job in this study."]})
            models[criterion] = job
        try:
            vectors = sweep_vectors_resolve(
                study=study,
                grid_criteria=values["criteria"],
                step=values["step"],
                weight_sets=weight_sets,
                rows=values["vectors"],
            )
            sweep = sweep_launch(
                study=study,
                kind=values["kind"],
                export=export,
                base_model=values["base_model"],
                vectors=vectors,
                name=values["name"],
                hyperparameters=values["hyperparameters"],
                models=models,
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(sweep_detail_data(sweep), status=status.HTTP_201_CREATED)


AXIS_PARAMETERS = [
    OpenApiParameter("x", str, description="criterion key of the first axis (default empathy)"),
    OpenApiParameter("y", str, description="criterion key of the second axis (default safety)"),
]


class SweepDetailApi(APIView):
    @extend_schema(parameters=AXIS_PARAMETERS, responses=SweepDetailOutput)
    def get(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        sweep = _api_sweep(api_study(request, slug), public_id)
        return Response(sweep_detail_data(sweep, request.query_params.get("x"), request.query_params.get("y")))


class SweepCancelOutput(serializers.Serializer):
    cancelled = serializers.IntegerField(help_text="jobs asked to stop")
    status = SweepStatusOutput()


class SweepCancelApi(APIView):
    @extend_schema(request=None, responses=SweepCancelOutput)
    def post(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        sweep = _api_sweep(api_study(request, slug, "annotations.manage_study"), public_id)
        try:
            count = sweep_cancel(sweep=sweep, actor=request.user)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response({"cancelled": count, "status": sweep_status(sweep)})


urlpatterns = [
    path("studies/<slug:slug>/sweeps/", SweepListCreateApi.as_view(), name="api-sweep-list"),
    path("studies/<slug:slug>/sweeps/<uuid:public_id>/", SweepDetailApi.as_view(), name="api-sweep-detail"),
    path("studies/<slug:slug>/sweeps/<uuid:public_id>/cancel", SweepCancelApi.as_view(), name="api-sweep-cancel"),
]
