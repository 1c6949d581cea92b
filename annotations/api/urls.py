"""REST API v1: one module per area, each with its own urlpatterns."""

from annotations.api import studies

urlpatterns = [
    *studies.urlpatterns,
]
