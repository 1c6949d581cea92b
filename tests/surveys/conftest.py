import pytest
from django.core.cache import cache

from annotations.services.surveys import survey_create, survey_open
from tests.jobs.conftest import tiny_assets  # noqa: F401 (the tiny model fixture, for the MODPO launch)


@pytest.fixture(autouse=True)
def _fresh_throttle_cache():
    # The public form's throttle counts live in the cache, which outlives each test's database transaction.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def survey(study, researcher):
    created = survey_create(
        study=study,
        actor=researcher,
        title="What matters to you",
        consent_text="Your answers are anonymous. You may stop at any time.",
        questions=[
            {
                "key": "age",
                "label": "Age group",
                "kind": "choice",
                "options": ["18-24", "25-34", "35+"],
                "required": True,
            },
            {"key": "comments", "label": "Anything else?", "kind": "text", "options": [], "required": False},
        ],
        ask_ranking=True,
    )
    return survey_open(survey=created, actor=researcher)
