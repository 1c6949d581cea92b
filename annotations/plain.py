"""Errors and stored values in words, for pages: never a Python repr ("{'slug': [...]}", "['a', 'b']", "None").

One place turns a ValidationError (or the dict/list a service or DRF gives) into readable lines, and one place
turns a stored dict or list (a manifest's filters, an audit row's data) into "Name: value" text. Views,
templates (the `plain` template library) and commands all call these.
"""

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

# Keys that carry no field: their messages stand alone.
_NO_FIELD = {"__all__", "non_field_errors", "detail", ""}


def field_label(name: str) -> str:
    """A field name as a reader sees it: `overlap_k` -> "Overlap k", `rubric_versions` -> "Rubric versions"."""
    text = str(name).replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def _lines_of(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, ValidationError):
        if hasattr(value, "error_dict"):
            return _lines_of(value.message_dict, prefix)
        return [f"{prefix}{message}" for message in value.messages]
    if isinstance(value, Mapping):
        lines: list[str] = []
        for key, inner in value.items():
            if key in _NO_FIELD:
                lines.extend(_lines_of(inner, prefix))
                continue
            label = field_label(key)
            for line in _lines_of(inner):
                # A message that already names its field ("This slug is not available") reads better alone.
                named = label.lower() in line.lower()
                lines.append(f"{prefix}{line}" if named else f"{prefix}{label}: {line}")
        return lines
    if isinstance(value, list | tuple):
        lines = []
        for inner in value:
            lines.extend(_lines_of(inner, prefix))
        return lines
    if value is None:
        return []
    return [f"{prefix}{value}"]


def error_lines(error: ValidationError | Mapping | list | tuple | str | Exception) -> list[str]:
    """Readable lines for an error: one per message, each prefixed with its field's label where it has one.

    >>> error_lines(ValidationError({"quota": ["Enter a whole number."]}))
    ['Quota: Enter a whole number.']
    >>> error_lines({"slug": ["This slug is not available; choose another."]})  # the message names its field
    ['This slug is not available; choose another.']
    """
    if isinstance(error, ValidationError | Mapping | list | tuple | str):
        return _lines_of(error) or ["Something in the input was not accepted."]
    return [str(error) or type(error).__name__]


def error_text(error: ValidationError | Mapping | list | tuple | str | Exception) -> str:
    """The error's lines as one sentence run (for a flash message or a command's error)."""
    lines = error_lines(error)
    return " ".join(line if line.endswith((".", "?", "!")) else f"{line}." for line in lines)


def value_text(value: Any, empty: str = "none") -> str:
    """A stored value in words: dicts as "Name: value; Name: value", lists comma-separated, None as `empty`,
    booleans as yes/no. Nested values are written the same way, in parentheses."""
    if value is None or value == "" or value == {} or value == []:
        return empty
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        parts = []
        for key, inner in value.items():
            text = value_text(inner, empty)
            if isinstance(inner, Mapping) and inner:
                text = f"({text})"
            parts.append(f"{field_label(key)}: {text}")
        return "; ".join(parts)
    if isinstance(value, list | tuple | set):
        return ", ".join(value_text(inner, empty) for inner in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
