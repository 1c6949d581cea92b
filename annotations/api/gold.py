"""Researcher API for one comparison's gold answers: read, set (gold or calibration, with an explanation)
and unmark. Values are canonical: negative favours the comparison's first response."""

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
from annotations.models import Comparison, Study
from annotations.services.gold import (
    GoldKind,
    comparison_gold_clear,
    comparison_gold_set,
    gold_answer_clean,
    gold_answers_given,
)


class GoldOutput(serializers.Serializer):
    comparison = serializers.IntegerField()
    is_gold = serializers.BooleanField()
    is_calibration = serializers.BooleanField()
    expected = serializers.DictField(child=serializers.IntegerField(), help_text="criterion key -> canonical value")
    explanation = serializers.CharField(allow_blank=True)
    answered_as_calibration = serializers.IntegerField()
    answered_as_gold = serializers.IntegerField()


class GoldInput(serializers.Serializer):
    expected = serializers.DictField(
        child=serializers.IntegerField(), help_text="Every criterion key -> canonical value (negative: first better)."
    )
    explanation = serializers.CharField(required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=[value for value, _ in GoldKind.CHOICES], default=GoldKind.GOLD)


def _comparison(study: Study, comparison_id: int) -> Comparison:
    comparison = Comparison.objects.filter(study=study, pk=comparison_id).first()
    if comparison is None:
        raise Http404
    return comparison


def _out(comparison: Comparison) -> dict:
    given = gold_answers_given(comparison=comparison)
    return GoldOutput(
        {
            "comparison": comparison.pk,
            "is_gold": comparison.is_gold,
            "is_calibration": comparison.is_calibration,
            "expected": comparison.gold_expected or {},
            "explanation": comparison.gold_explanation,
            "answered_as_calibration": given["calibration"],
            "answered_as_gold": given["gold"],
        }
    ).data


class ComparisonGoldApi(APIView):
    @extend_schema(responses={200: GoldOutput})
    def get(self, request: Request, slug: str, comparison_id: int) -> Response:
        return Response(_out(_comparison(api_study(request, slug), comparison_id)))

    @extend_schema(request=GoldInput, responses={200: GoldOutput})
    def put(self, request: Request, slug: str, comparison_id: int) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        comparison = _comparison(study, comparison_id)
        body = GoldInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            answer = gold_answer_clean(
                study=study, values=dict(data["expected"]), explanation=data["explanation"], kind=data["kind"]
            )
            marked = comparison_gold_set(comparison=comparison, answer=answer, actor=request.user)
        except DjangoValidationError as exc:
            raise api_validation_error(exc, "comparison") from None
        return Response(_out(marked))

    @extend_schema(request=None, responses={200: GoldOutput})
    def delete(self, request: Request, slug: str, comparison_id: int) -> Response:
        study = api_study(request, slug, "annotations.manage_study")
        cleared = comparison_gold_clear(comparison=_comparison(study, comparison_id), actor=request.user)
        return Response(_out(cleared))


urlpatterns = [
    path(
        "studies/<slug:slug>/comparisons/<int:comparison_id>/gold",
        ComparisonGoldApi.as_view(),
        name="api-comparison-gold",
    ),
]
