"""{% load plain %}: `{{ value|plain }}` writes a dict or list in words; `{{ error|error_lines }}` lists an error's
readable lines (annotations.plain does the work, so pages, API and commands word things alike)."""

from typing import Any

from django import template

from annotations.plain import error_lines as _error_lines
from annotations.plain import field_label, value_text

register = template.Library()


@register.filter
def plain(value: Any, empty: str = "none") -> str:
    return value_text(value, empty)


@register.filter
def error_lines(value: Any) -> list[str]:
    return _error_lines(value)


@register.filter
def plain_label(value: Any) -> str:
    """A stored key (`min_raters`) as a label ("Min raters")."""
    return field_label(str(value))


@register.filter
def title_of(key: Any, titles: dict[str, str] | None) -> str:
    """A criterion key as the rubric's title (`{{ job.criterion_key|title_of:titles }}`); "—" when empty."""
    if not key:
        return "—"
    return (titles or {}).get(key, key)
