"""The Pareto front and the weight grid: pure functions, hand-checked cases."""

import math
import re

import pytest

from annotations.stats.pareto import MAX_GRID_VECTORS, dominates, pareto_front, simplex_grid


def test_it_marks_the_points_no_other_point_beats_on_both_criteria():
    # (empathy, safety): DPO on empathy wins empathy and loses safety; MODPO balances; one model is worse at both.
    points = [(0.94, 0.48), (0.78, 0.63), (0.50, 0.80), (0.70, 0.60)]
    assert pareto_front(points) == [True, True, True, False]


def test_a_point_equal_on_one_criterion_and_better_on_the_other_dominates():
    assert dominates((0.8, 0.6), (0.8, 0.5))
    assert pareto_front([(0.8, 0.6), (0.8, 0.5)]) == [True, False]


def test_identical_points_do_not_dominate_each_other_whatever_the_order():
    assert not dominates((0.7, 0.7), (0.7, 0.7))
    assert pareto_front([(0.7, 0.7), (0.7, 0.7), (0.6, 0.6)]) == [True, True, False]
    assert pareto_front([(0.6, 0.6), (0.7, 0.7), (0.7, 0.7)]) == [False, True, True]


def test_a_point_with_a_missing_figure_is_off_the_front_and_dominates_nothing():
    # The unfinished job (None) would dominate everything if its known figure counted.
    assert pareto_front([(None, 0.99), (0.5, 0.5), (0.4, 0.4)]) == [False, True, False]
    assert pareto_front([(math.nan, 0.9), (0.1, 0.1)]) == [False, True]


def test_one_point_is_its_own_front_and_no_points_is_an_empty_front():
    assert pareto_front([(0.1, 0.2)]) == [True]
    assert pareto_front([]) == []


def test_three_criteria_front():
    points = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.3, 0.3, 0.3), (0.2, 0.3, 0.3)]
    assert pareto_front(points) == [True, True, True, True, False]


def test_points_of_different_lengths_are_refused():
    with pytest.raises(ValueError):
        dominates((1, 2), (1, 2, 3))


def test_the_grid_runs_from_the_first_criterions_corner_to_the_last():
    assert simplex_grid(["empathy", "safety"], 0.25) == [
        {"empathy": 1.0, "safety": 0.0},
        {"empathy": 0.75, "safety": 0.25},
        {"empathy": 0.5, "safety": 0.5},
        {"empathy": 0.25, "safety": 0.75},
        {"empathy": 0.0, "safety": 1.0},
    ]


def test_every_grid_vector_sums_to_one_and_the_count_is_the_simplex_lattice():
    grid = simplex_grid(["a", "b", "c"], 0.2)
    assert len(grid) == math.comb(5 + 2, 2) == 21
    assert all(abs(sum(v.values()) - 1) < 1e-9 for v in grid)
    assert len({tuple(v.values()) for v in grid}) == len(grid)


@pytest.mark.parametrize(
    ("criteria", "step", "words"),
    [
        (["empathy"], 0.5, "at least two criteria"),
        (["empathy", "empathy"], 0.5, "once"),
        (["empathy", "safety"], 0.3, "divide 1"),
        (["empathy", "safety"], 0, "(0, 1]"),
        (["empathy", "safety"], 1.5, "(0, 1]"),
        (["a", "b", "c", "d"], 0.1, f"at most {MAX_GRID_VECTORS}"),
    ],
)
def test_a_bad_grid_is_refused_with_the_reason(criteria, step, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        simplex_grid(criteria, step)
