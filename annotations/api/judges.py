"""AI judges API: add an LLM or reward-model judge to a study, read it, start and follow its runs, cancel.
Researchers of the study only; a judge or run of a study you cannot see is 404. Keys are write-only."""

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
from annotations.models import Judge, JudgeRun, Study, TrainingJob
from annotations.services.judging import (
    MAX_CONCURRENCY,
    judge_for_study,
    judge_key_source,
    judge_run_cancel,
    judge_run_create,
    judge_run_for_study,
    llm_judge_create,
    reward_judge_create,
)


def _judge(study: Study, judge_id: int) -> Judge:
    judge = judge_for_study(study=study, judge_id=judge_id)
    if judge is None:
        raise Http404
    return judge


def judge_data(judge: Judge) -> dict:
    return {
        "id": judge.pk,
        "name": judge.name,
        "label": judge.rater.label,
        "kind": judge.kind,
        "base_url": judge.base_url,
        "model": judge.model_name,
        "api_key": judge_key_source(judge),
        "mode": judge.mode,
        "swap": judge.swap,
        "concurrency": judge.concurrency,
        "persona": judge.persona,
        "template": {"key": judge.template.key, "version": judge.template.version} if judge.template else None,
        "reward_jobs": {
            key: str(public_id)
            for key, public_id in TrainingJob.objects.filter(
                pk__in=judge.config.get("reward_jobs", {}).values()
            ).values_list("criterion_key", "public_id")
        },
    }


def run_data(run: JudgeRun) -> dict:
    return {
        "id": str(run.public_id),
        "judge": run.judge_id,
        "status": run.status,
        "criteria": run.criterion_keys,
        "progress": run.progress,
        "total_comparisons": run.total_comparisons,
        "done_comparisons": run.done_comparisons,
        "failed_comparisons": run.failed_comparisons,
        "calls": run.calls,
        "failed_calls": run.failed_calls,
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "cancel_requested": run.cancel_requested,
        "error": run.error,
        "result": run.result,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


class JudgeDetailOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    label = serializers.CharField(help_text="the rater label in reports")
    kind = serializers.CharField()
    base_url = serializers.CharField()
    model = serializers.CharField()
    api_key = serializers.CharField(help_text="where the key comes from; the key itself is never returned")
    mode = serializers.CharField()
    swap = serializers.BooleanField()
    concurrency = serializers.IntegerField()
    persona = serializers.CharField()
    template = serializers.DictField(allow_null=True)
    reward_jobs = serializers.DictField(child=serializers.UUIDField())


class RunOutput(serializers.Serializer):
    id = serializers.UUIDField()
    judge = serializers.IntegerField()
    status = serializers.CharField()
    criteria = serializers.ListField(child=serializers.CharField())
    progress = serializers.FloatField()
    total_comparisons = serializers.IntegerField()
    done_comparisons = serializers.IntegerField()
    failed_comparisons = serializers.IntegerField()
    calls = serializers.IntegerField()
    failed_calls = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cancel_requested = serializers.BooleanField()
    error = serializers.CharField()
    result = serializers.DictField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class LlmJudgeInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    base_url = serializers.URLField(max_length=500)
    model = serializers.CharField(max_length=200)
    api_key_env = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    api_key = serializers.CharField(
        max_length=4000, required=False, allow_blank=True, default="", write_only=True, help_text="stored encrypted"
    )
    persona = serializers.CharField(max_length=20000, required=False, allow_blank=True, default="")
    mode = serializers.ChoiceField(choices=Judge.Mode.choices, default=Judge.Mode.JOINT)
    swap = serializers.BooleanField(default=True)
    concurrency = serializers.IntegerField(min_value=1, max_value=MAX_CONCURRENCY, default=8)
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=3600, default=120)
    max_attempts = serializers.IntegerField(min_value=1, max_value=10, default=3)


class RewardJudgeInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    reward_jobs = serializers.DictField(
        child=serializers.UUIDField(), help_text="criterion key -> public id of a succeeded reward-model job"
    )


class LlmJudgeCreateApi(APIView):
    @extend_schema(request=LlmJudgeInput, responses={201: JudgeDetailOutput})
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = LlmJudgeInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            judge = llm_judge_create(
                study=study,
                name=values["name"],
                base_url=values["base_url"],
                model_name=values["model"],
                api_key_env=values["api_key_env"],
                api_key=values["api_key"],
                persona=values["persona"],
                mode=values["mode"],
                swap=values["swap"],
                concurrency=values["concurrency"],
                timeout_seconds=values["timeout_seconds"],
                max_attempts=values["max_attempts"],
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(judge_data(judge), status=status.HTTP_201_CREATED)


class RewardJudgeCreateApi(APIView):
    @extend_schema(request=RewardJudgeInput, responses={201: JudgeDetailOutput})
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = RewardJudgeInput(data=request.data)
        data.is_valid(raise_exception=True)
        wanted = data.validated_data["reward_jobs"]
        jobs = {job.public_id: job for job in TrainingJob.objects.filter(study=study, public_id__in=wanted.values())}
        if len(jobs) != len(set(wanted.values())):
            raise ValidationError({"reward_jobs": ["No such job in this study."]})
        try:
            judge = reward_judge_create(
                study=study,
                name=data.validated_data["name"],
                reward_jobs={key: jobs[public_id] for key, public_id in wanted.items()},
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(judge_data(judge), status=status.HTTP_201_CREATED)


class JudgeDetailApi(APIView):
    @extend_schema(responses=JudgeDetailOutput)
    def get(self, request: Request, slug: str, judge_id: int) -> Response:
        return Response(judge_data(_judge(api_study(request, slug), judge_id)))


class RunInput(serializers.Serializer):
    criteria = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list, max_length=50
    )


class JudgeRunListCreateApi(APIView):
    @extend_schema(responses=RunOutput(many=True))
    def get(self, request: Request, slug: str, judge_id: int) -> Response:
        judge = _judge(api_study(request, slug), judge_id)
        return Response([run_data(run) for run in judge.runs.order_by("-created_at")[:200]])

    @extend_schema(request=RunInput, responses={201: RunOutput})
    def post(self, request: Request, slug: str, judge_id: int) -> Response:
        judge = _judge(api_study(request, slug, "annotations.manage_study"), judge_id)
        data = RunInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = judge_run_create(
                judge=judge, criterion_keys=data.validated_data["criteria"] or None, actor=request.user
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(run_data(run), status=status.HTTP_201_CREATED)


def _run(study: Study, public_id: uuid.UUID) -> JudgeRun:
    run = judge_run_for_study(study=study, public_id=public_id)
    if run is None:
        raise Http404
    return run


class JudgeRunDetailApi(APIView):
    @extend_schema(responses=RunOutput)
    def get(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        return Response(run_data(_run(api_study(request, slug), public_id)))


class JudgeRunCancelApi(APIView):
    @extend_schema(request=None, responses=RunOutput)
    def post(self, request: Request, slug: str, public_id: uuid.UUID) -> Response:
        run = _run(api_study(request, slug, "annotations.manage_study"), public_id)
        try:
            run = judge_run_cancel(run=run, actor=request.user)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(run_data(run))


urlpatterns = [
    path("studies/<slug:slug>/judges/llm", LlmJudgeCreateApi.as_view(), name="api-judge-create-llm"),
    path("studies/<slug:slug>/judges/reward", RewardJudgeCreateApi.as_view(), name="api-judge-create-reward"),
    path("studies/<slug:slug>/judges/<int:judge_id>", JudgeDetailApi.as_view(), name="api-judge-detail"),
    path("studies/<slug:slug>/judges/<int:judge_id>/runs", JudgeRunListCreateApi.as_view(), name="api-judge-runs"),
    path("studies/<slug:slug>/judge-runs/<uuid:public_id>", JudgeRunDetailApi.as_view(), name="api-judge-run-detail"),
    path(
        "studies/<slug:slug>/judge-runs/<uuid:public_id>/cancel",
        JudgeRunCancelApi.as_view(),
        name="api-judge-run-cancel",
    ),
]
