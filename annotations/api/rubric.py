"""Researcher API for a study's rubric: read it, edit it (a new rubric version), and read its versions with
what changed and a word diff against the version before."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.errors import api_validation_error
from annotations.api.studies import api_study
from annotations.models import RubricVersion, Study
from annotations.rubric import snapshot_diff
from annotations.services.rubric_edit import (
    rubric_edit,
    rubric_snapshot,
    rubric_versions,
    rubric_versions_ensure,
    scale_change_refusal,
)


class CriterionOutput(serializers.Serializer):
    key = serializers.CharField()
    version = serializers.IntegerField()
    title = serializers.CharField()
    question = serializers.CharField()
    better_when = serializers.CharField()
    worse_when = serializers.CharField()
    position = serializers.IntegerField()
    is_overall = serializers.BooleanField()


class RubricOutput(serializers.Serializer):
    version = serializers.IntegerField(help_text="The rubric version in force.")
    status = serializers.CharField(help_text="The study's status; once it is not draft, edits need confirm=true.")
    scale_points = serializers.IntegerField()
    scale_locked = serializers.CharField(allow_null=True, help_text="Why the scale may not change now, if so.")
    rationale_mode = serializers.CharField()
    rationale_required = serializers.BooleanField()
    rationale_min_length = serializers.IntegerField()
    criteria = CriterionOutput(many=True)


class CriterionInput(serializers.Serializer):
    key = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Existing key; leave out for a new criterion."
    )
    title = serializers.CharField(allow_blank=True)
    question = serializers.CharField(allow_blank=True)
    better_when = serializers.CharField(allow_blank=True)
    worse_when = serializers.CharField(allow_blank=True)


class RubricInput(serializers.Serializer):
    criteria = CriterionInput(many=True, help_text="Every criterion in the order wanted (the overall item last).")
    scale_points = serializers.IntegerField(required=False)
    rationale_mode = serializers.ChoiceField(choices=Study.RationaleMode.choices, required=False)
    rationale_required = serializers.BooleanField(required=False)
    rationale_min_length = serializers.IntegerField(required=False)
    note = serializers.CharField(required=False, allow_blank=True, default="")
    confirm = serializers.BooleanField(
        required=False, default=False, help_text="Required once the study has opened: saving creates a version."
    )


class RubricEditOutput(serializers.Serializer):
    version = serializers.IntegerField(allow_null=True, help_text="The new version; null when nothing changed.")
    changes = serializers.ListField(child=serializers.CharField())


class RubricVersionOutput(serializers.Serializer):
    number = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(allow_null=True)
    after_open = serializers.BooleanField()
    changes = serializers.ListField(child=serializers.CharField())
    note = serializers.CharField()
    criteria = CriterionOutput(many=True)


class DiffRunOutput(serializers.Serializer):
    op = serializers.ChoiceField(choices=["same", "removed", "added"])
    text = serializers.CharField()


class DiffFieldOutput(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    changed = serializers.BooleanField()
    text = serializers.CharField()
    diff = DiffRunOutput(many=True)


class DiffCriterionOutput(serializers.Serializer):
    key = serializers.CharField()
    version = serializers.IntegerField()
    title = serializers.CharField()
    is_overall = serializers.BooleanField()
    status = serializers.CharField(help_text="first (version 1), added, removed, changed or unchanged")
    fields = DiffFieldOutput(many=True)


class RubricVersionDiffOutput(RubricVersionOutput):
    previous = serializers.IntegerField(allow_null=True)
    diff = DiffCriterionOutput(many=True)


def _rubric(study: Study) -> dict:
    latest = rubric_versions_ensure(study=study)
    other = next(p for p in (3, 5, 7) if p != study.scale_points)
    return {
        "version": latest.number,
        "status": study.status,
        "scale_points": study.scale_points,
        "scale_locked": scale_change_refusal(study=study, scale_points=other),
        "rationale_mode": study.rationale_mode,
        "rationale_required": study.rationale_required,
        "rationale_min_length": study.rationale_min_length,
        "criteria": rubric_snapshot(study),
    }


def _version(version: RubricVersion) -> dict:
    return {
        "number": version.number,
        "created_at": version.created_at,
        "created_by": version.created_by.get_username() if version.created_by else None,
        "after_open": version.after_open,
        "changes": version.changes,
        "note": version.note,
        "criteria": version.criteria,
    }


class StudyRubricApi(APIView):
    @extend_schema(responses={200: RubricOutput})
    def get(self, request: Request, slug: str) -> Response:
        return Response(RubricOutput(_rubric(api_study(request, slug))).data)

    @extend_schema(request=RubricInput, responses={200: RubricEditOutput})
    def put(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        body = RubricInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        settings = {
            name: data[name]
            for name in ("scale_points", "rationale_mode", "rationale_required", "rationale_min_length")
            if name in data
        }
        try:
            outcome = rubric_edit(
                study=study,
                actor=request.user,
                criteria=[dict(item) for item in data["criteria"]],
                settings=settings,
                note=data["note"],
                confirm=data["confirm"],
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc, "criteria") from None
        return Response(
            RubricEditOutput(
                {"version": outcome.version.number if outcome.version else None, "changes": outcome.changes}
            ).data
        )


class StudyRubricVersionListApi(APIView):
    @extend_schema(responses={200: RubricVersionOutput(many=True)})
    def get(self, request: Request, slug: str) -> Response:
        versions = rubric_versions(study=api_study(request, slug))
        return Response(RubricVersionOutput([_version(v) for v in versions], many=True).data)


class StudyRubricVersionApi(APIView):
    @extend_schema(responses={200: RubricVersionDiffOutput})
    def get(self, request: Request, slug: str, number: int) -> Response:
        study = api_study(request, slug)
        rubric_versions_ensure(study=study)
        version = RubricVersion.objects.filter(study=study, number=number).select_related("created_by").first()
        if version is None:
            raise Http404
        previous = RubricVersion.objects.filter(study=study, number__lt=number).order_by("-number").first()
        payload = {
            **_version(version),
            "previous": previous.number if previous else None,
            "diff": snapshot_diff(previous.criteria if previous else None, version.criteria),
        }
        return Response(RubricVersionDiffOutput(payload).data)


urlpatterns = [
    path("studies/<slug:slug>/rubric", StudyRubricApi.as_view(), name="api-study-rubric"),
    path("studies/<slug:slug>/rubric/versions", StudyRubricVersionListApi.as_view(), name="api-study-rubric-versions"),
    path(
        "studies/<slug:slug>/rubric/versions/<int:number>",
        StudyRubricVersionApi.as_view(),
        name="api-study-rubric-version",
    ),
]
