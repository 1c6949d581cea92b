"""REST API v1: one module per area, each with its own urlpatterns."""

from annotations.api import accounts, studies

urlpatterns = [
    *studies.urlpatterns,
    *accounts.urlpatterns,
]
