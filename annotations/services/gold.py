"""Gold and calibration comparisons set by a researcher answering the pair as a clinician would.

A gold comparison carries the expected answer per criterion (canonical orientation: negative favours the
comparison's first response) and an explanation shown to clinicians as feedback after a calibration pair.
Calibration comparisons are gold comparisons that new clinicians get first (services.assignment._pick_gold).
"""

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotations.models import Assignment, Comparison, Study
from annotations.services.audit import audit_record
from annotations.services.rating import criteria_in_page_order

MAX_EXPLANATION = 5000


class GoldKind:
    GOLD = "gold"
    CALIBRATION = "calibration"
    CHOICES = (
        (GOLD, "Gold item: mixed in unmarked as a check on each clinician"),
        (CALIBRATION, "Calibration item: given to new clinicians first, with the expected answers as feedback"),
    )


@dataclass(frozen=True)
class GoldAnswer:
    """A researcher's answers for a comparison, in canonical orientation, keyed by criterion key."""

    values: dict[str, int]
    explanation: str = ""
    kind: str = GoldKind.GOLD


def gold_answer_clean(*, study: Study, values: dict[str, Any], explanation: Any, kind: Any) -> GoldAnswer:
    """Check a researcher's answers: every criterion answered on the study's scale, a known kind, and an
    explanation for a calibration item (it is the feedback). Raises ValidationError naming each field."""
    errors: dict[str, list[str]] = {}
    limit = study.max_abs_value
    criteria = criteria_in_page_order(study)
    if not criteria:
        raise ValidationError({"expected": ["The study has no criteria yet; add them on the Rubric tab first."]})
    clean: dict[str, int] = {}
    for criterion in criteria:
        value = values.get(criterion.key)
        if value is None or value == "":
            errors[criterion.key] = [f"Choose the expected answer for “{criterion.title}”."]
            continue
        try:
            whole = not isinstance(value, bool) and not (isinstance(value, float) and not value.is_integer())
            number = int(value) if whole else None
        except (TypeError, ValueError):
            number = None
        if number is None or not -limit <= number <= limit:
            errors[criterion.key] = [f"“{criterion.title}”: expected a whole number from -{limit} to {limit}."]
        else:
            clean[criterion.key] = number
    unknown = sorted(set(values) - {c.key for c in criteria})
    if unknown:
        errors["expected"] = [f"Not criteria of this study: {', '.join(unknown)}."]
    if kind not in (GoldKind.GOLD, GoldKind.CALIBRATION):
        errors["kind"] = ["Choose gold or calibration."]
    text = str(explanation or "").strip()
    if len(text) > MAX_EXPLANATION:
        errors["explanation"] = [f"The explanation is longer than {MAX_EXPLANATION} characters."]
    elif kind == GoldKind.CALIBRATION and not text:
        errors["explanation"] = [
            "Explain the expected answers: clinicians read this as feedback after a calibration pair."
        ]
    if errors:
        raise ValidationError(errors)
    return GoldAnswer(values=clean, explanation=text, kind=kind)


@transaction.atomic
def comparison_gold_set(*, comparison: Comparison, answer: GoldAnswer, actor: AbstractBaseUser | None) -> Comparison:
    """Mark (or re-mark) a comparison as gold or calibration with the researcher's answers and explanation.

    A comparison already given to clinicians as a regular pair is refused: their answers would then count
    as checks they never knew about, and the pair would leave the pool half rated."""
    locked = Comparison.objects.select_for_update().select_related("study").get(pk=comparison.pk)
    if locked.excluded:
        raise ValidationError({"comparison": ["This comparison is excluded from the study; it cannot be gold."]})
    if not locked.is_gold and locked.active_assignments:
        raise ValidationError(
            {
                "comparison": [
                    f"This comparison is already with {locked.active_assignments} clinician"
                    f"{'s' if locked.active_assignments != 1 else ''} as a regular pair; choose another."
                ]
            }
        )
    before = _state(locked)
    locked.is_gold = True
    locked.is_calibration = answer.kind == GoldKind.CALIBRATION
    locked.gold_expected = dict(answer.values)
    locked.gold_explanation = answer.explanation
    locked.save(update_fields=["is_gold", "is_calibration", "gold_expected", "gold_explanation"])
    audit_record(
        actor=actor,
        action="comparison.gold",
        study=locked.study,
        obj=locked,
        data={"before": before, "after": _state(locked)},
    )
    return locked


@transaction.atomic
def comparison_gold_clear(*, comparison: Comparison, actor: AbstractBaseUser | None) -> Comparison:
    """Unmark a gold or calibration comparison: it joins the regular pool; answers already given stay."""
    locked = Comparison.objects.select_for_update().select_related("study").get(pk=comparison.pk)
    if not locked.is_gold and not locked.is_calibration:
        return locked
    before = _state(locked)
    locked.is_gold, locked.is_calibration, locked.gold_expected = False, False, {}
    locked.save(update_fields=["is_gold", "is_calibration", "gold_expected"])
    audit_record(
        actor=actor,
        action="comparison.gold",
        study=locked.study,
        obj=locked,
        data={"before": before, "after": _state(locked)},
    )
    return locked


def _state(comparison: Comparison) -> dict[str, Any]:
    return {
        "is_gold": comparison.is_gold,
        "is_calibration": comparison.is_calibration,
        "expected": comparison.gold_expected,
        "explanation": comparison.gold_explanation,
    }


def gold_answers_given(*, comparison: Comparison) -> dict[str, int]:
    """How many clinicians answered this comparison as calibration and as a hidden gold check."""
    counts = {"calibration": 0, "gold": 0}
    for purpose in Assignment.objects.filter(
        comparison=comparison,
        status=Assignment.Status.SUBMITTED,
        purpose__in=(Assignment.Purpose.CALIBRATION, Assignment.Purpose.GOLD),
    ).values_list("purpose", flat=True):
        counts[purpose] += 1
    return counts
