"""REST API v1: one module per area, each with its own urlpatterns."""

from annotations.api import (
    accounts,
    adjudication,
    exports,
    generation,
    gold,
    items,
    jobs,
    judges,
    reports,
    rubric,
    safety,
    studies,
    surveys,
    sweeps,
    workspace,
)

urlpatterns = [
    *adjudication.urlpatterns,
    *safety.urlpatterns,
    *studies.urlpatterns,
    *workspace.urlpatterns,
    *accounts.urlpatterns,
    *jobs.urlpatterns,
    *reports.urlpatterns,
    *exports.urlpatterns,
    *judges.urlpatterns,
    *generation.urlpatterns,
    *items.urlpatterns,
    *rubric.urlpatterns,
    *gold.urlpatterns,
    *surveys.urlpatterns,
    *sweeps.urlpatterns,
]
