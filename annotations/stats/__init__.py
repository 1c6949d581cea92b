"""Statistics core for agreement and results reports: plain numpy data in, plain dicts out (no Django).

Entry point: `compute_report(table, scale_points=...)` with a `RatingTable` (see table.py).
"""

from annotations.stats.agreement import (
    alpha_from_coincidences,
    cohen_kappa,
    coincidence_matrix,
    fleiss_kappa,
    gwet_ac,
    krippendorff_alpha,
    ordinal_weights,
    percent_agreement,
)
from annotations.stats.bootstrap import PromptBootstrap, percentile_interval
from annotations.stats.judging import alternative_annotator_test
from annotations.stats.report import compute_report, krippendorff_alpha_bootstrap, position_bias
from annotations.stats.results import bradley_terry_log_strengths, shares_percent, sign_test, wilson_interval
from annotations.stats.synthetic import synthetic_ratings
from annotations.stats.table import (
    LEFT_UNKNOWN,
    LEFT_WAS_FIRST,
    LEFT_WAS_SECOND,
    RatingTable,
    scale_values,
)

__all__ = [
    "LEFT_UNKNOWN",
    "LEFT_WAS_FIRST",
    "LEFT_WAS_SECOND",
    "PromptBootstrap",
    "RatingTable",
    "alpha_from_coincidences",
    "alternative_annotator_test",
    "bradley_terry_log_strengths",
    "cohen_kappa",
    "coincidence_matrix",
    "compute_report",
    "fleiss_kappa",
    "gwet_ac",
    "krippendorff_alpha",
    "krippendorff_alpha_bootstrap",
    "ordinal_weights",
    "percent_agreement",
    "percentile_interval",
    "position_bias",
    "scale_values",
    "shares_percent",
    "sign_test",
    "synthetic_ratings",
    "wilson_interval",
]
