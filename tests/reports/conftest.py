import pytest

from annotations.models import StudyMembership
from annotations.services.studies import study_create

from .builders import import_records, load_records_quickly, paper_records


def _paper_study(owner, clinician):
    study = study_create(
        slug="paper", title="Paper shares", owner=owner, criterion_keys=["empathy", "safety", "overall"]
    )
    StudyMembership.objects.create(study=study, user=clinician, role=StudyMembership.Role.CLINICIAN)
    return study


@pytest.fixture
def paper_study(researcher, clinician):
    """The research's table built in: base vs new, six clinicians and a judge, three criteria (bulk-loaded)."""
    study = _paper_study(researcher, clinician)
    load_records_quickly(study, paper_records())
    return study


@pytest.fixture
def imported_paper_study(researcher, clinician):
    """The same study, through the importer (`import_study_file`)."""
    study = _paper_study(researcher, clinician)
    import_records(study, paper_records(), "paper.jsonl")
    return study
