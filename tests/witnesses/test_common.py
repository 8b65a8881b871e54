"""The pieces the Monte Carlo witnesses share (detequiv.witnesses.common)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from detequiv.derivations.expressions import Deterministic, FreeMatrix, Gaussian
from detequiv.derivations.laws import Wishart
from detequiv.errors import InvalidArgument
from detequiv.witnesses.common import (
    PairSetting,
    PairWitness,
    check_pairs,
    draw_makers,
    numeric_matrix,
)

D, P, lam, lam2 = sp.symbols("D P lam lam2", positive=True)
X = Gaussian("X", (P, D))
A = Deterministic("A", D)
W = FreeMatrix("W", D, Wishart(sp.Rational(1, 2)))


def test_controls_are_checked_on_the_samples_of_the_equivalent():
    calls = []

    def sample(N, lam, lam2, t_of):
        calls.append(N)
        return 1.0 + 0.01 * len(calls)

    witness = PairWitness(lambda *a: 1.0, sample, {"a": lambda *a: 1.0, "b": lambda *a: 3.0}, "x", "{name} ")
    [check] = check_pairs(
        witness,
        [(0.5, 0.2)],
        ["T"],
        rng=np.random.default_rng(0),
        sizes=(10, 20),
        n_samples=3,
        c_finite=5.0,
        n_se=4.0,
    )
    assert calls == [10, 10, 10, 20, 20, 20]  # no new draws for the controls
    (_, a), (_, b) = check.controls
    assert [r.mean for r in a.rows] == [r.mean for r in check.report.rows]
    assert a.passed and not b.passed
    assert a.label == "a x at (0.5, 0.2)" and check.corrections == (0.0, 2.0)


def test_check_pairs_rejects_an_unknown_test_matrix():
    witness = PairWitness(lambda *a: 1.0, lambda *a: 1.0, {}, "x", "")
    with pytest.raises(InvalidArgument, match="'I' or 'T'"):
        check_pairs(
            witness,
            [(0.5, 0.2)],
            ["X"],
            rng=np.random.default_rng(0),
            sizes=(10,),
            n_samples=2,
            c_finite=5.0,
            n_se=4.0,
        )


def test_pair_setting_draws_the_fixed_matrices_once_per_size():
    child = np.random.default_rng(1)
    setting = PairSetting(
        n_dim=D,
        proportions={"D": 1.0, "P": 2.0},
        params={},
        spectrum=None,
        inside=["A"],
        others=["M"],
        draws=[X],
        samplers=None,
        lams=(lam, lam2),
        child=child,
    )
    m = setting.at(5).mats["M"]
    assert setting.at(5).mats["M"] is m
    expected = np.random.default_rng(1)
    assert np.array_equal(m, np.eye(5) + expected.standard_normal((5, 5)) / np.sqrt(5))
    assert np.array_equal(setting.draw(5)["X"], expected.standard_normal((10, 5)))


def test_draws_follow_the_first_appearance_of_each_leaf():
    makers = draw_makers(
        [W, X.T, X, W], {"D": 4, "P": 8}, {"W": lambda n, rng: np.full((n, n), 7.0)}, np.random.default_rng(0)
    )
    assert list(makers) == ["W", "X"]
    assert makers["W"]()[0, 0] == 7.0


def test_numeric_matrix_coefficient_is_pluggable():
    draws = {"X": np.ones((2, 1))}
    scal = {"P": 2, "D": 1}
    assert numeric_matrix(X.T @ X / P, {}, draws, scal).dtype == complex
    real = numeric_matrix(X.T @ X / P, {}, draws, scal, coefficient=lambda c, s: float(c.subs(P, s["P"])))
    assert real.dtype == float and real[0, 0] == 1.0
    assert (
        numeric_matrix(A.sqrt() @ A.T, {"A": np.diag([4.0]), "A^(1/2)": np.diag([2.0])}, {}, {})[0, 0] == 8.0
    )
