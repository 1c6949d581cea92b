from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest

from annotations.models import Study


def study_for(request: HttpRequest, slug: str, perm: str = "annotations.view_study") -> Study:
    """The study if the user holds `perm` on it; 404 otherwise, so ids and slugs reveal nothing."""
    study = Study.objects.filter(slug=slug).first()
    if study is None or not request.user.has_perm(perm, study):
        raise Http404("No such study.")
    return study


def error_dict(exc: ValidationError, key: str = "__all__") -> dict[str, list[str]]:
    """A service's ValidationError as field -> messages (pages, API and commands); messages without a field
    go under `key`."""
    return exc.message_dict if hasattr(exc, "error_dict") else {key: exc.messages}


def criterion_titles(study: Study) -> dict[str, str]:
    """Criterion key -> title for the study's rubric (pages show titles, never keys)."""
    from annotations.services.studies import study_criteria

    return {criterion.key: criterion.title for criterion in study_criteria(study)}


def agreement_rows(agreement: dict[str, Any], titles: dict[str, str]) -> list[dict[str, Any]]:
    """The agreement recorded in an export's manifest (services.exports.export_agreement), one row per criterion
    in the rubric's order, for the table in exports/_agreement.html."""
    by_criterion = agreement.get("by_criterion") or {}
    order = [key for key in titles if key in by_criterion] + [key for key in by_criterion if key not in titles]
    rows = []
    for key in order:
        figures = by_criterion[key] or {}
        rows.append(
            {
                "title": titles.get(key, key),
                **{name: _with_estimate(figures.get(name)) for name in AGREEMENT_FIGURES},
                "n_items": figures.get("n_items"),
                "n_raters": figures.get("n_raters"),
            }
        )
    return rows


AGREEMENT_FIGURES = ("alpha_nominal", "alpha_ordinal", "percent_agreement")


def _with_estimate(value: Any) -> dict[str, Any] | None:
    """A recorded figure ({estimate, ci_low, ci_high}) when it has an estimate, else None (shown as a dash)."""
    return value if isinstance(value, dict) and value.get("estimate") is not None else None
