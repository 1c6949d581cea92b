"""Weight derivations and survey figures on constructed answers, each computed by hand."""

import pytest

from annotations.stats.survey import (
    SurveyAnswers,
    WeightDerivationError,
    apply_safety_minimum,
    breakdown,
    derive_weights,
    mean_importance,
    persona_text,
    top_priority_distribution,
    weights_borda,
    weights_mean_importance,
    weights_top_priority,
)

CRITERIA = ["empathy", "safety", "clarity"]
RESPONSES = [
    SurveyAnswers(
        {"empathy": 5, "safety": 3, "clarity": 4}, "empathy", ["empathy", "clarity", "safety"], {"age": "18-24"}
    ),
    SurveyAnswers(
        {"empathy": 4, "safety": 4, "clarity": 2}, "empathy", ["empathy", "safety", "clarity"], {"age": "25-34"}
    ),
    SurveyAnswers(
        {"empathy": 3, "safety": 5, "clarity": 3}, "safety", ["safety", "empathy", "clarity"], {"age": "25-34"}
    ),
    SurveyAnswers({"empathy": 4, "safety": 4, "clarity": 3}, "empathy", [], {}),
]


def test_mean_importance_weights_are_each_mean_over_the_sum_of_means():
    # means: empathy 16/4 = 4, safety 16/4 = 4, clarity 12/4 = 3; sum 11
    weights = weights_mean_importance(RESPONSES, CRITERIA)
    assert weights == pytest.approx({"empathy": 4 / 11, "safety": 4 / 11, "clarity": 3 / 11})


def test_top_priority_weights_are_the_shares_with_no_floor():
    # empathy 3 of 4, safety 1 of 4, clarity none
    assert weights_top_priority(RESPONSES, CRITERIA) == pytest.approx({"empathy": 0.75, "safety": 0.25, "clarity": 0.0})


def test_borda_gives_m_minus_one_points_for_first_and_counts_only_respondents_who_ranked():
    # m = 3: first 2 points, second 1, last 0.
    # empathy 2 + 2 + 1 = 5; safety 0 + 1 + 2 = 3; clarity 1 + 0 + 0 = 1; total 9
    assert weights_borda(RESPONSES, CRITERIA) == pytest.approx({"empathy": 5 / 9, "safety": 3 / 9, "clarity": 1 / 9})


def test_borda_without_any_ranking_is_refused():
    with pytest.raises(WeightDerivationError, match="ranked"):
        weights_borda([RESPONSES[3]], CRITERIA)


def test_safety_minimum_raises_safety_and_rescales_the_others_proportionally():
    # safety 0.25 < 0.4: others scaled by (1 - 0.4) / (1 - 0.25) = 0.8
    weights = apply_safety_minimum({"empathy": 0.75, "safety": 0.25, "clarity": 0.0}, minimum=0.4)
    assert weights == pytest.approx({"empathy": 0.6, "safety": 0.4, "clarity": 0.0})
    assert sum(weights.values()) == pytest.approx(1.0)


def test_safety_minimum_leaves_weights_alone_when_safety_already_has_more():
    weights = {"empathy": 0.5, "safety": 0.5, "clarity": 0.0}
    assert apply_safety_minimum(weights, minimum=0.2) == weights


def test_a_segment_derives_from_its_respondents_only():
    # age 25-34: respondents 2 and 3; means empathy 3.5, safety 4.5, clarity 2.5; sum 10.5
    weights, derivation = derive_weights(
        RESPONSES, CRITERIA, method="mean_importance", segment_question="age", segment_answer="25-34"
    )
    assert weights == pytest.approx({"empathy": 3.5 / 10.5, "safety": 4.5 / 10.5, "clarity": 2.5 / 10.5})
    assert derivation["respondents"] == 2
    assert derivation["segment"] == {"question": "age", "answer": "25-34"}


def test_derivation_records_the_weights_before_the_safety_minimum():
    weights, derivation = derive_weights(RESPONSES, CRITERIA, method="top_priority", safety_minimum=0.4)
    assert weights["safety"] == pytest.approx(0.4)
    assert derivation["before_safety"]["safety"] == pytest.approx(0.25)
    assert derivation["safety_minimum"] == 0.4


def test_top_priority_distribution_counts_and_shares():
    rows = top_priority_distribution(RESPONSES, CRITERIA)
    assert [(r["criterion"], r["count"], r["share"]) for r in rows] == [
        ("empathy", 3, 0.75),
        ("safety", 1, 0.25),
        ("clarity", 0, 0.0),
    ]


def test_mean_importance_interval_contains_the_mean_and_stays_within_the_scale():
    rows = mean_importance(RESPONSES, CRITERIA)
    empathy = rows[0]
    assert empathy["n"] == 4 and empathy["mean"] == 4.0
    assert 3 <= empathy["low"] <= 4.0 <= empathy["high"] <= 5


def test_breakdown_by_a_choice_question_groups_respondents_by_answer():
    groups = breakdown(RESPONSES, CRITERIA, question="age", options=["18-24", "25-34"])
    assert [(g["answer"], g["n"]) for g in groups] == [("18-24", 1), ("25-34", 2)]
    assert groups[0]["importance"][0]["mean"] == 5.0


def test_persona_text_names_the_top_priority_and_each_importance():
    text = persona_text(
        RESPONSES[0], {"empathy": "Empathy", "safety": "Safety", "clarity": "Clarity"}, {"age": "Age group"}
    )
    assert text.startswith("I rated Empathy as most important; Empathy 5/5; Safety 3/5; Clarity 4/5")
    assert "Age group: 18-24" in text


def test_persona_text_follows_the_studys_order_whatever_order_the_answers_were_stored_in():
    stored = SurveyAnswers({"clarity": 2, "empathy": 5, "safety": 4}, "safety", [], {"age": "35+"})
    titles = {"empathy": "Empathy", "safety": "Safety", "clarity": "Clarity"}
    text = persona_text(stored, titles, {"age": "Age group"})
    assert text == "I rated Safety as most important; Empathy 5/5; Safety 4/5; Clarity 2/5; Age group: 35+."
