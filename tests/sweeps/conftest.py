"""Sweep tests reuse the training-job fixtures (a tiny base model and a synthetic export, built once per session)
and the browser fixture."""

from tests.browser.conftest import browser  # noqa: F401  (fixture)
from tests.jobs.conftest import artifacts_root, export, tiny_assets  # noqa: F401  (fixtures)
