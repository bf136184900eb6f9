"""APPS metrics against hand-computed values."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from appsneo_utils.execution import ExecResult
from appsneo_utils.metrics import (bootstrap_ci, pass_at_k, pass_at_k_array, problem_scores, program_code,
                                   summarize)


@pytest.mark.parametrize("n, c, k, expected", [
    (5, 0, 1, 0.0),
    (5, 5, 1, 1.0),
    (5, 2, 1, 0.4),  # c/n
    (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
    (4, 3, 2, 1.0),  # n - c < k: every k-subset holds a correct sample
    (1, 1, 1, 1.0),
    (100, 1, 10, 0.1),  # 1 - C(99,10)/C(100,10) = 10/100
])
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_pass_at_k_matches_exact_binomials():
    for n, c, k in [(200, 7, 100), (2000, 3, 1), (1000, 999, 10), (50, 25, 25)]:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    # tiny probabilities keep their relative precision (1 - product would round them away)
    assert pass_at_k(10 ** 7, 1, 1) == pytest.approx(1e-7, rel=1e-9)
    assert pass_at_k(10 ** 9, 3, 2) == pytest.approx(float(1 - Fraction(math.comb(10 ** 9 - 3, 2), math.comb(10 ** 9, 2))), rel=1e-9)
    # huge n and c: no overflow, no NaN
    value = pass_at_k(10 ** 6, 5 * 10 ** 5, 100)
    assert value == 1.0 or 1 - value < 1e-25
    assert 0.0 <= pass_at_k(10 ** 6, 10, 1000) <= 1.0


def test_pass_at_k_refuses_nonsense():
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 5)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)
    assert np.isnan(pass_at_k_array([3, 10], [1, 2], 5)[0])
    assert pass_at_k_array([3, 10], [1, 2], 5)[1] == pytest.approx(1 - math.comb(8, 5) / math.comb(10, 5))


def test_program_code():
    assert program_code([True, True]) is True
    assert program_code([True, False, -1]) is False
    assert program_code([True, -1, False]) == -1
    assert program_code([-2, -2]) == -2
    assert program_code([]) is False


def _records():
    """A: two samples (2/2 and 1/2 tests); B: a compile error; C: a runtime error on 1 of 3 tests."""
    return [
        {"problem_id": 1, "sample_id": 0, "difficulty": "introductory", "passed": True,
         "verdicts": ["passed", "passed"], "n_tests": 2},
        {"problem_id": 1, "sample_id": 1, "difficulty": "introductory", "passed": False,
         "verdicts": ["passed", "wrong_answer"], "n_tests": 2},
        {"problem_id": 2, "sample_id": 0, "difficulty": "interview", "passed": False,
         "verdicts": ["compile_error"] * 4, "n_tests": 4},
        {"problem_id": 3, "sample_id": 0, "difficulty": "interview", "passed": False,
         "verdicts": ["passed", "runtime_error", "passed"], "n_tests": 3},
    ]


def test_problem_scores_by_hand():
    table = problem_scores(_records()).set_index("problem_id")
    assert table.loc[1, ["n", "c"]].tolist() == [2, 1]
    assert table.loc[1, "test_case_average"] == pytest.approx((1 + 0.5) / 2)
    assert table.loc[2, "test_case_average"] == 0.0  # a compile error fails every test
    assert table.loc[3, "test_case_average"] == pytest.approx(2 / 3)  # a runtime error is a failure
    assert table["strict_accuracy"].tolist() == [0.5, 0.0, 0.0]


def test_summarize_overall_and_per_difficulty():
    s = summarize(_records(), ks=(1, 2), n_boot=200).set_index(["difficulty", "metric"])
    assert s.loc[("all", "test_case_average"), "value"] == pytest.approx((0.75 + 0 + 2 / 3) / 3)
    assert s.loc[("all", "strict_accuracy"), "value"] == pytest.approx(1 / 6)
    assert s.loc[("all", "pass@1"), "value"] == pytest.approx(1 / 6)  # pass@1 = mean c/n
    assert s.loc[("all", "pass@2"), "value"] == 1.0 and s.loc[("all", "pass@2"), "problems"] == 1
    assert s.loc[("introductory", "test_case_average"), "value"] == pytest.approx(0.75)
    assert s.loc[("interview", "test_case_average"), "value"] == pytest.approx(1 / 3)
    assert s.loc[("interview", "strict_accuracy"), "value"] == 0.0
    assert set(s.index.get_level_values(0)) == {"all", "introductory", "interview"}
    assert s.loc[("interview", "pass@2"), "problems"] == 0 and np.isnan(s.loc[("interview", "pass@2"), "value"])
    s = s.dropna(subset=["value"])
    assert (s["low"] <= s["value"] + 1e-12).all() and (s["value"] <= s["high"] + 1e-12).all()


def test_inputs_as_dataframe_pairs_and_difficulty_map():
    frame = pd.DataFrame(_records())
    a = summarize(frame, ks=(1,), n_boot=50)
    b = summarize(_records(), ks=(1,), n_boot=50)
    pd.testing.assert_frame_equal(a, b)
    result = ExecResult(verdicts=["passed", "timeout"], apps_codes=[True, -1], passed=False,
                        errors=[None, "t"], seconds=1.0, n_tests=2)
    table = problem_scores([(7, result)], difficulties={7: "competition"})
    assert table.loc[0, "difficulty"] == "competition" and table.loc[0, "test_case_average"] == 0.5


def test_bootstrap_ci():
    assert bootstrap_ci([0.3] * 10) == pytest.approx((0.3, 0.3))
    values = np.r_[np.zeros(50), np.ones(50)]
    low, high = bootstrap_ci(values, n_boot=2000, seed=1)
    # the mean of 100 fair coins: sd 0.05, so the 95% interval is about 0.40..0.60
    assert 0.37 < low < 0.45 and 0.55 < high < 0.63
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)
    assert all(np.isnan(bootstrap_ci([])))
