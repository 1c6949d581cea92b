"""Researcher API for studies: create, list, read, import, build comparisons, open and close."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import selectors
from annotations.api.errors import api_validation_error
from annotations.models import SCALE_CHOICES, ScreeningHit, Study
from annotations.permissions import studies_visible_to
from annotations.selectors_history import HISTORY_KINDS, history_line, study_history_events
from annotations.services.comparisons import comparisons_build, responses_screen, screening_hit_resolve
from annotations.services.importing import ImportFailed, import_study_file
from annotations.services.studies import SLUG_UNAVAILABLE, study_close, study_create, study_criteria, study_open


def api_study(request: Request, slug: str, perm: str = "annotations.view_study") -> Study:
    study = Study.objects.filter(slug=slug).first()
    if study is None or not request.user.has_perm(perm, study):
        raise Http404
    return study


class StudyOutput(serializers.ModelSerializer):
    criteria = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = ["slug", "title", "description", "status", "scale_points", "overlap_k", "criteria", "created_at"]

    def get_criteria(self, study: Study) -> list[dict]:
        return [{"key": c.key, "version": c.version, "title": c.title} for c in study_criteria(study)]


class StudyCreateInput(serializers.Serializer):
    slug = serializers.SlugField(max_length=80)
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    scale_points = serializers.ChoiceField(choices=SCALE_CHOICES, default=3)
    overlap_k = serializers.IntegerField(min_value=1, default=3)
    criteria = serializers.ListField(child=serializers.SlugField(), required=False)


class SlugTaken(APIException):
    """Two requests for one slug (or a slug already taken): the loser gets 409, worded as the form's refusal."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "slug_taken"
    default_detail = SLUG_UNAVAILABLE


class StudyListCreateApi(ListAPIView):
    serializer_class = StudyOutput

    def get_queryset(self):
        return studies_visible_to(self.request.user).order_by("-created_at")

    @extend_schema(request=StudyCreateInput, responses={201: StudyOutput, 409: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        if not request.user.has_perm("annotations.create_study"):
            raise PermissionDenied
        data = StudyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            study = study_create(
                slug=data.validated_data["slug"],
                title=data.validated_data["title"],
                description=data.validated_data["description"],
                scale_points=data.validated_data["scale_points"],
                overlap_k=data.validated_data["overlap_k"],
                criterion_keys=data.validated_data.get("criteria"),
                owner=request.user,
            )
        except DjangoValidationError as exc:
            if any(error.code == "slug_taken" for error in getattr(exc, "error_dict", {}).get("slug", [])):
                raise SlugTaken from None
            raise api_validation_error(exc) from None
        return Response(StudyOutput(study).data, status=status.HTTP_201_CREATED)


class StudyDetailApi(APIView):
    @extend_schema(responses=StudyOutput)
    def get(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug)
        return Response({**StudyOutput(study).data, "overview": selectors.study_overview(study=study)})


class ImportInput(serializers.Serializer):
    file = serializers.FileField()


class ImportOutput(serializers.Serializer):
    filename = serializers.CharField()
    created = serializers.DictField(child=serializers.IntegerField())
    unchanged = serializers.DictField(child=serializers.IntegerField())
    message = serializers.CharField()


class StudyImportApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(request={"multipart/form-data": ImportInput}, responses={200: ImportOutput})
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = ImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        try:
            summary = import_study_file(study=study, stream=upload, filename=upload.name, actor=request.user)
        except ImportFailed as exc:
            raise ValidationError(
                {"file": [str(issue) for issue in exc.issues] + (["More errors not shown."] if exc.truncated else [])}
            ) from None
        responses_screen(study=study)
        return Response({**summary.as_dict(), "message": summary.describe()})


class BuildInput(serializers.Serializer):
    strategy = serializers.ChoiceField(choices=["all_pairs", "reference"], default="all_pairs")
    reference_system = serializers.CharField(required=False, allow_blank=True)
    budget = serializers.IntegerField(required=False, min_value=1)
    seed = serializers.IntegerField(required=False, default=0)


class BuildOutput(serializers.Serializer):
    created = serializers.IntegerField()
    open_screening_hits = serializers.IntegerField()


class StudyBuildComparisonsApi(APIView):
    @extend_schema(request=BuildInput, responses=BuildOutput)
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = BuildInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            created = comparisons_build(
                study=study,
                strategy=data.validated_data["strategy"],
                reference_system=data.validated_data.get("reference_system") or None,
                budget=data.validated_data.get("budget"),
                seed=data.validated_data["seed"],
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        screening = responses_screen(study=study)
        return Response({"created": created, "open_screening_hits": screening.open_hits})


class StatusInput(serializers.Serializer):
    override_screening = serializers.BooleanField(default=False)


class StudyStatusApi(APIView):
    """Open a draft study, reopen a closed one (`open`), or close it (`close`). Closing stops new pairs,
    submissions and revisions; pairs in hand and their drafts stay with their clinicians; reports and exports
    still work. Every change is in the study's history."""

    action = "open"

    @extend_schema(request=StatusInput, responses=StudyOutput)
    def post(self, request: Request, slug: str) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        data = StatusInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            if self.action == "open":
                study = study_open(
                    study=study, actor=request.user, override_screening=data.validated_data["override_screening"]
                )
            else:
                study = study_close(study=study, actor=request.user)
        except DjangoValidationError as exc:
            raise ValidationError({"status": exc.messages}) from None
        return Response(StudyOutput(study).data)


class HistoryLineOutput(serializers.Serializer):
    when = serializers.DateTimeField()
    who = serializers.CharField()
    what = serializers.CharField(help_text="The change in plain words.")
    action = serializers.CharField(help_text="The audit action, e.g. `study.close`.")


class StudyHistoryApi(ListAPIView):
    """The study's history in plain words, newest first, read from the audit log."""

    serializer_class = HistoryLineOutput

    def get_queryset(self):
        study = api_study(self.request, self.kwargs["slug"])
        kind = self.request.query_params.get("kind", "changes")
        if kind not in HISTORY_KINDS:
            raise ValidationError({"kind": [f"Choose one of: {', '.join(HISTORY_KINDS)}."]})
        return study_history_events(study=study, kind=kind)

    def list(self, request: Request, *args, **kwargs) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        lines = [history_line(event) for event in (page if page is not None else self.get_queryset())]
        data = HistoryLineOutput(lines, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "kind",
                str,
                enum=[*HISTORY_KINDS],
                description="Which changes; `changes` (default) leaves out per-pair rating work.",
            )
        ]
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class ScreeningHitOutput(serializers.Serializer):
    id = serializers.IntegerField()
    response = serializers.CharField(source="response.external_id")
    system = serializers.CharField(source="response.system.name")
    term = serializers.CharField()
    snippet = serializers.CharField()


class ScreeningHitListApi(ListAPIView):
    serializer_class = ScreeningHitOutput

    def get_queryset(self):
        return selectors.screening_hits_open(study=api_study(self.request, self.kwargs["slug"]))


class ScreeningResolveInput(serializers.Serializer):
    resolution = serializers.ChoiceField(choices=["excluded", "dismissed"])


class ScreeningResolveApi(APIView):
    @extend_schema(request=ScreeningResolveInput, responses=ScreeningHitOutput)
    def post(self, request: Request, slug: str, hit_id: int) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        hit = ScreeningHit.objects.filter(pk=hit_id, response__study=study).select_related("response__system").first()
        if hit is None:
            raise Http404
        data = ScreeningResolveInput(data=request.data)
        data.is_valid(raise_exception=True)
        hit = screening_hit_resolve(hit=hit, resolution=data.validated_data["resolution"], actor=request.user)
        return Response(ScreeningHitOutput(hit).data)


class ComparisonOutput(serializers.Serializer):
    id = serializers.IntegerField()
    prompt = serializers.CharField(source="prompt.external_id")
    response_first = serializers.CharField(source="response_first.external_id")
    system_first = serializers.CharField(source="response_first.system.name")
    response_second = serializers.CharField(source="response_second.external_id")
    system_second = serializers.CharField(source="response_second.system.name")
    is_gold = serializers.BooleanField()
    excluded = serializers.BooleanField()
    submitted = serializers.IntegerField(help_text="raters who submitted this comparison (imports included)")


class ComparisonListApi(ListAPIView):
    """A study's comparisons in canonical order (first = the response with the lower internal id)."""

    serializer_class = ComparisonOutput

    def get_queryset(self):
        return selectors.comparisons_for_study(study=api_study(self.request, self.kwargs["slug"]))


class JudgeOutput(serializers.Serializer):
    label = serializers.CharField(source="rater.label")
    kind = serializers.CharField()
    judgments = serializers.IntegerField(source="judgments_count", help_text="judgments in this study")


class JudgeListApi(ListAPIView):
    """AI judges with judgments in the study: reward models, LLM endpoints, or imported verdicts."""

    serializer_class = JudgeOutput

    def get_queryset(self):
        return selectors.judges_for_study(study=api_study(self.request, self.kwargs["slug"]))


urlpatterns = [
    path("studies/", StudyListCreateApi.as_view(), name="api-study-list"),
    path("studies/<slug:slug>/", StudyDetailApi.as_view(), name="api-study-detail"),
    path("studies/<slug:slug>/import", StudyImportApi.as_view(), name="api-study-import"),
    path(
        "studies/<slug:slug>/comparisons/build", StudyBuildComparisonsApi.as_view(), name="api-study-build-comparisons"
    ),
    path("studies/<slug:slug>/open", StudyStatusApi.as_view(action="open"), name="api-study-open"),
    path("studies/<slug:slug>/close", StudyStatusApi.as_view(action="close"), name="api-study-close"),
    path("studies/<slug:slug>/history", StudyHistoryApi.as_view(), name="api-study-history"),
    path("studies/<slug:slug>/screening-hits", ScreeningHitListApi.as_view(), name="api-study-screening-hits"),
    path(
        "studies/<slug:slug>/screening-hits/<int:hit_id>/resolve",
        ScreeningResolveApi.as_view(),
        name="api-study-screening-resolve",
    ),
    path("studies/<slug:slug>/comparisons", ComparisonListApi.as_view(), name="api-study-comparisons"),
    path("studies/<slug:slug>/judges", JudgeListApi.as_view(), name="api-study-judges"),
]
