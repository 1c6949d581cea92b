"""The item explorer (every comparison behind a study's numbers, with systems shown: researchers only) and
the raw data download."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import path

from annotations.selectors_items import (
    ITEMS_PER_PAGE,
    ItemFilters,
    item_filter_choices,
    item_filters_from_query,
    items_for_study,
    items_page_load,
)
from annotations.services.raw_data import RAW_FORMATS, raw_data_filename, raw_data_stream, raw_kind_check
from annotations.views.common import error_dict, study_for

FILTER_FIELDS = (
    "criterion",
    "systems",
    "system",
    "rater",
    "rater_label",
    "disagreement",
    "flagged",
    "skipped",
    "gold",
    "sort",
)


@login_required
def study_items(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    errors: dict[str, list[str]] = {}
    try:
        filters = item_filters_from_query(request.GET)
    except ValidationError as exc:
        errors, filters = error_dict(exc), ItemFilters()
    page = Paginator(items_for_study(study=study, filters=filters), ITEMS_PER_PAGE).get_page(request.GET.get("page"))
    query = urlencode([(k, v) for k in FILTER_FIELDS for v in request.GET.getlist(k) if v])
    context = {
        "study": study,
        "filters": filters,
        "errors": errors,
        "choices": item_filter_choices(study=study),
        "page": page,
        "items": items_page_load(items=page.object_list, filters=filters),
        "filter_query": query,
        "selected_pair": "-".join(str(i) for i in sorted(filters.systems)) if filters.systems else "",
    }
    status = 400 if errors else 200
    return render(request, "items/list.html", context, status=status)


@login_required
def study_raw_data(request: HttpRequest, slug: str, file_format: str) -> StreamingHttpResponse:
    study = study_for(request, slug)
    if file_format not in RAW_FORMATS:
        raise Http404("No such format.")
    try:
        kind = raw_kind_check(request.GET.get("kind", ""))  # ?kind=spans: the marked passages
    except ValidationError as exc:
        return render(request, "bad_input.html", {"message": " ".join(exc.messages)}, status=400)
    chunks = raw_data_stream(study=study, file_format=file_format, actor=request.user, via="page", kind=kind)
    response = StreamingHttpResponse(chunks, content_type=RAW_FORMATS[file_format])
    filename = raw_data_filename(study=study, file_format=file_format, kind=kind)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


urlpatterns = [
    path("studies/<slug:slug>/items/", study_items, name="study-items"),
    path("studies/<slug:slug>/items/raw.<str:file_format>", study_raw_data, name="study-raw-data"),
]
