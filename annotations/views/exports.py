"""Preference export pages: list and create, an export's page (progress, manifest, dataset card), zip download.
Researchers of the study only; everyone else gets 404."""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_GET

from annotations.exporting.export import CARD_NAME
from annotations.exporting.policy import DECISIONS, TIE_HANDLING
from annotations.exporting.rows import FILE_FORMATS, FORMATS
from annotations.models import JobStatus, PreferenceExport, Study, System
from annotations.services.audit import audit_download
from annotations.services.exports import (
    export_create,
    export_directory,
    export_for_study,
    export_zip_path,
    exports_for_study,
)
from annotations.services.studies import study_criteria
from annotations.views.common import agreement_rows, criterion_titles, error_dict, study_for

# While an export runs its page reloads itself this often (no script needed for a progress bar).
REFRESH_SECONDS = 2


def _number(form: QueryDict, name: str, cast: type, errors: dict[str, list[str]]) -> object:
    text = form.get(name, "").strip()
    if text == "":
        return None
    try:
        return cast(text)
    except ValueError:
        errors.setdefault(name, []).append("Expected a number.")
        return None


def _settings_from_form(form: QueryDict) -> dict:
    """The export's settings from the form, in export_create's terms (it validates them)."""
    errors: dict[str, list[str]] = {}
    policy = {
        "decision": form.get("decision", "majority"),
        "min_votes": _number(form, "min_votes", int, errors),
        "min_margin": _number(form, "min_margin", float, errors),
        "ties": form.get("ties", "drop"),
        "min_gold_accuracy": _number(form, "min_gold_accuracy", float, errors),
        "keep_raters_without_gold": "exclude_raters_without_gold" not in form,
        "include_judges": "include_judges" in form,
    }
    split = {
        "seed": _number(form, "seed", int, errors),
        "test_fraction": _number(form, "test_fraction", float, errors),
        "validation_fraction": _number(form, "validation_fraction", float, errors),
        "stratify_by": form.get("stratify_by", "").strip() or None,
    }
    if errors:
        raise ValidationError(errors)
    return {
        "format": form.get("format", ""),
        "file_format": form.get("file_format", "jsonl"),
        "criterion_keys": form.getlist("criteria"),
        # Empty fields keep the core's defaults.
        "policy": {k: v for k, v in policy.items() if v is not None},
        "split": {k: v for k, v in split.items() if v is not None},
        "filters": {
            "systems": form.getlist("systems"),
            "submitted_before": form.get("submitted_before", "").strip() or None,
            "exclude_gold_items": "exclude_gold_items" in form,
        },
    }


@login_required
def export_list(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        study = study_for(request, slug, "annotations.manage_study")
        try:
            export = export_create(study=study, actor=request.user, **_settings_from_form(request.POST))
        except ValidationError as exc:
            errors = error_dict(exc)
        else:
            if export.status == JobStatus.SUCCEEDED:
                messages.success(request, "Export written.")
            elif export.status == JobStatus.FAILED:
                messages.error(request, "The export failed; see the error below.")
            else:
                messages.success(request, "Export queued: this page follows its progress.")
            return redirect("export-detail", slug=study.slug, public_id=export.public_id)
    context = {
        "study": study,
        "exports": exports_for_study(study=study),
        "criteria": study_criteria(study),
        "systems": System.objects.filter(study=study).order_by("name"),
        "formats": FORMATS,
        "file_formats": FILE_FORMATS,
        "decisions": DECISIONS,
        "tie_handling": TIE_HANDLING,
        "form": request.POST if request.method == "POST" else {},
        "errors": errors,
    }
    return render(request, "exports/list.html", context, status=400 if errors else 200)


def _export_or_404(study: Study, public_id: uuid.UUID) -> PreferenceExport:
    export = export_for_study(study=study, public_id=public_id)
    if export is None:
        raise Http404("No such export.")
    return export


@login_required
@require_GET
def export_detail(request: HttpRequest, slug: str, public_id: uuid.UUID) -> HttpResponse:
    study = study_for(request, slug)
    export = _export_or_404(study, public_id)
    manifest = export.manifest or {}
    card = ""
    card_path = export_directory(export) / CARD_NAME
    if export.status == JobStatus.SUCCEEDED and card_path.is_file():
        card = card_path.read_text(encoding="utf-8")
    context = {
        "study": study,
        "export": export,
        "running": export.status in (JobStatus.QUEUED, JobStatus.RUNNING),
        "refresh_seconds": REFRESH_SECONDS,
        "manifest": manifest,
        "files": sorted((manifest.get("files") or {}).items()),
        "file_rows": manifest.get("file_rows") or {},
        "agreement_rows": agreement_rows(manifest.get("agreement") or {}, criterion_titles(study)),
        "card": card,
        "can_download": export.status == JobStatus.SUCCEEDED and export_zip_path(export).is_file(),
    }
    return render(request, "exports/detail.html", context)


@login_required
@require_GET
def export_download(request: HttpRequest, slug: str, public_id: uuid.UUID) -> FileResponse:
    study = study_for(request, slug)
    return export_zip_response(study, _export_or_404(study, public_id), actor=request.user)


def export_zip_response(study: Study, export: PreferenceExport, *, actor: AbstractBaseUser) -> FileResponse:
    """The export's zip as a download (page and API), recorded in the audit log; 404 until the export has
    succeeded."""
    zip_path = export_zip_path(export)
    if export.status != JobStatus.SUCCEEDED or not zip_path.is_file():
        raise Http404("This export has no zip yet.")
    filename = f"{study.slug}-{export.format}-{export.public_id}.zip"
    audit_download(
        actor=actor, kind="export_zip", study=study, obj=export, data={"file": filename, "sha256": export.zip_sha256}
    )
    return FileResponse(
        open(zip_path, "rb"),  # FileResponse closes it
        as_attachment=True,
        filename=filename,
        content_type="application/zip",
    )


urlpatterns = [
    path("studies/<slug:slug>/exports/", export_list, name="export-list"),
    path("studies/<slug:slug>/exports/<uuid:public_id>/", export_detail, name="export-detail"),
    path("studies/<slug:slug>/exports/<uuid:public_id>/download.zip", export_download, name="export-download"),
]
