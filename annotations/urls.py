"""HTML pages: one module per area, each with its own urlpatterns."""

from annotations.views import studies

urlpatterns = [
    *studies.urlpatterns,
]
