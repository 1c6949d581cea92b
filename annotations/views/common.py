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
