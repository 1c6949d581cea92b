"""Oracle tests: published worked examples, through this package's own code paths."""

import numpy as np
import pytest

from annotations.stats import compute_report, fleiss_kappa, gwet_ac, krippendorff_alpha
from annotations.stats.agreement import cohen_kappa

from .tables import (
    PUBLISHED_EXAMPLES,
    abstractor_ratings,
    krippendorff_example_ratings,
    table_from_ratings,
    value_counts,
)

KRIPPENDORFF = PUBLISHED_EXAMPLES["krippendorff_2011"]


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_from_coincidences_reproduces_krippendorff_2011(level):
    counts = value_counts(krippendorff_example_ratings(), KRIPPENDORFF["values"])
    alpha = krippendorff_alpha(counts, np.array(KRIPPENDORFF["values"]), level)
    assert round(alpha, 3) == KRIPPENDORFF["expected"][f"alpha_{level}"]


@pytest.mark.parametrize("level", ["ordinal", "interval"])
def test_report_reproduces_krippendorff_2011_on_a_five_point_scale(level):
    # Values 1..5 become -2..2: ordinal and interval alpha do not depend on the shift.
    table = table_from_ratings(krippendorff_example_ratings(value_offset=-3))
    report = compute_report(table, scale_points=5, n_resamples=0)
    reliability = report["criteria"]["overall"]["reliability"]
    assert round(reliability["alpha"][level]["estimate"], 3) == KRIPPENDORFF["expected"][f"alpha_{level}"]
    # Unit 12 has one value only: it is not pairable.
    assert reliability["n_items"] == 11
    assert reliability["n_pairable_values"] == 40


def test_fleiss_kappa_reproduces_the_wikipedia_example():
    example = PUBLISHED_EXAMPLES["fleiss_wikipedia"]
    assert round(fleiss_kappa(np.array(example["value_counts"])), 3) == example["expected"]["fleiss_kappa"]


def test_coefficients_reproduce_irrcac_abstractors_example():
    example = PUBLISHED_EXAMPLES["irrcac_cont3x3abstractors"]
    expected = example["expected"]
    ratings = abstractor_ratings()
    first = np.array([r[2] for r in ratings[0::2]])
    second = np.array([r[2] for r in ratings[1::2]])
    kappa, _ = cohen_kappa(first, second)
    counts = value_counts(ratings, [-1, 0, 1])
    assert kappa == pytest.approx(expected["cohen_kappa"], abs=1e-6)
    assert gwet_ac(counts) == pytest.approx(expected["gwet_ac1"], abs=1e-6)
    assert krippendorff_alpha(counts, np.array([-1, 0, 1]), "nominal") == pytest.approx(
        expected["krippendorff_alpha"], abs=1e-6
    )


def test_report_reproduces_irrcac_abstractors_example():
    expected = PUBLISHED_EXAMPLES["irrcac_cont3x3abstractors"]["expected"]
    report = compute_report(table_from_ratings(abstractor_ratings()), scale_points=3, n_resamples=50)
    reliability = report["criteria"]["overall"]["reliability"]
    assert reliability["gwet_ac1"]["estimate"] == pytest.approx(expected["gwet_ac1"], abs=1e-6)
    assert reliability["alpha"]["nominal"]["estimate"] == pytest.approx(expected["krippendorff_alpha"], abs=1e-6)
    assert reliability["percent_agreement"]["estimate"] == pytest.approx(expected["percent_agreement"], abs=1e-9)
    # With two raters on every item Fleiss' kappa is Scott's pi.
    assert reliability["fleiss_kappa"]["estimate"] == pytest.approx(expected["scott_pi"], abs=1e-6)
    matrix = reliability["cohen_kappa_matrix"]
    assert matrix["kappa"][0][1] == pytest.approx(expected["cohen_kappa"], abs=1e-6)
    assert matrix["n_items"][0][1] == 100
    assert reliability["alpha"]["nominal"]["ci_low"] < expected["krippendorff_alpha"]
    assert reliability["alpha"]["nominal"]["ci_high"] > expected["krippendorff_alpha"]
