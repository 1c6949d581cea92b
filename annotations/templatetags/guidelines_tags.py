"""{% guidelines_pending study as pending %}: whether the clinician viewing the page has yet to read the study's
current guidelines (annotations/services/guidelines.py), so "Rate next" can lead through them first."""

from typing import Any

from django import template

from annotations.models import Study
from annotations.services.guidelines import guidelines_pending as _pending

register = template.Library()


@register.simple_tag(takes_context=True)
def guidelines_pending(context: dict[str, Any], study: Study) -> bool:
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return False
    return _pending(study=study, user=request.user, session=request.session)
