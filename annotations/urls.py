"""HTML pages: one module per area, each with its own urlpatterns."""

from annotations.views import accounts, studies

urlpatterns = [
    *studies.urlpatterns,
    *accounts.urlpatterns,
]
