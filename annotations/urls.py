"""HTML pages: one module per area, each with its own urlpatterns."""

from annotations.views import accounts, exports, jobs, reports, studies, study_progress, workspace

urlpatterns = [
    *studies.urlpatterns,
    *workspace.urlpatterns,
    *study_progress.urlpatterns,
    *accounts.urlpatterns,
    *jobs.urlpatterns,
    *reports.urlpatterns,
    *exports.urlpatterns,
]
