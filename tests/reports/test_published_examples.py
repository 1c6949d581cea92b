"""Oracle tests: published worked examples written as a study file, imported, and reported through the
selector and the service (not only the pure functions)."""

import pytest

from annotations.services.reports import ReportParams, report_document, report_request
from annotations.services.studies import study_create
from tests.stats.tables import PUBLISHED_EXAMPLES

from .builders import import_records, prompt_records, vote

pytestmark = pytest.mark.django_db

KRIPPENDORFF = PUBLISHED_EXAMPLES["krippendorff_2011"]
ABSTRACTORS = PUBLISHED_EXAMPLES["irrcac_cont3x3abstractors"]


def krippendorff_study():
    """Krippendorff (2011): 4 observers, 12 units, values 1..5 -> a 5-point scale (-2..2), one prompt per unit."""
    study = study_create(slug="krippendorff", title="Krippendorff 2011", scale_points=5, criterion_keys=["empathy"])
    records = prompt_records(12)
    for observer, values in KRIPPENDORFF["ratings_by_observer"].items():
        for unit, value in enumerate(values):
            if value is not None:
                records.append(
                    vote(
                        rater=observer,
                        unit=unit,
                        criterion="empathy",
                        value=value - 3,
                        swap=(unit + len(observer)) % 2 == 1,
                    )
                )
    import_records(study, records, "krippendorff-2011.jsonl")
    return study


@pytest.mark.parametrize(
    ("level", "published"), [("nominal_scale", "nominal"), ("ordinal", "ordinal"), ("interval", "interval")]
)
def test_krippendorff_2011_alpha_through_import_and_report(level, published):
    study = krippendorff_study()
    snapshot = report_request(study=study, params=ReportParams(n_resamples=20), inline=True)
    reliability = report_document(study=study, snapshot=snapshot)["report"]["criteria"]["empathy"]["reliability"]
    assert round(reliability["alpha"][level]["estimate"], 3) == KRIPPENDORFF["expected"][f"alpha_{published}"]
    assert reliability["n_raters"] == 4
    assert reliability["n_items"] == 11  # unit 12 has one value: not pairable
    assert reliability["n_pairable_values"] == 40


def test_irrcac_abstractors_through_import_and_report():
    """irrCAC cont3x3abstractors: 100 women, 2 abstractors, 3 categories -> a 3-point scale."""
    study = study_create(slug="abstractors", title="irrCAC abstractors", scale_points=3, criterion_keys=["safety"])
    records, unit = prompt_records(100), 0
    for row, counts in enumerate(ABSTRACTORS["contingency_table"]):
        for column, count in enumerate(counts):
            for _ in range(count):
                records.append(vote(rater="abstractor-1", unit=unit, criterion="safety", value=row - 1))
                records.append(
                    vote(rater="abstractor-2", unit=unit, criterion="safety", value=column - 1, swap=unit % 3 == 0)
                )
                unit += 1
    import_records(study, records, "cont3x3abstractors.jsonl")

    snapshot = report_request(study=study, params=ReportParams(n_resamples=50), inline=True)
    reliability = report_document(study=study, snapshot=snapshot)["report"]["criteria"]["safety"]["reliability"]
    expected = ABSTRACTORS["expected"]
    assert round(reliability["alpha"]["nominal"]["estimate"], 3) == round(expected["krippendorff_alpha"], 3)
    assert reliability["alpha"]["nominal"]["estimate"] == pytest.approx(expected["krippendorff_alpha"], abs=1e-6)
    assert reliability["gwet_ac1"]["estimate"] == pytest.approx(expected["gwet_ac1"], abs=1e-6)
    assert reliability["percent_agreement"]["estimate"] == pytest.approx(expected["percent_agreement"], abs=1e-9)
    assert reliability["fleiss_kappa"]["estimate"] == pytest.approx(
        expected["scott_pi"], abs=1e-6
    )  # 2 raters: Scott's pi
    assert reliability["cohen_kappa_matrix"]["kappa"][0][1] == pytest.approx(expected["cohen_kappa"], abs=1e-6)
    low, high = reliability["alpha"]["nominal"]["ci_low"], reliability["alpha"]["nominal"]["ci_high"]
    assert low < expected["krippendorff_alpha"] < high
