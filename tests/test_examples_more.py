"""Run ``examples/gcv_train_test_gap.py`` and ``examples/compute_optimal_frontier.py`` at small sizes.

Each example compares theory with its own simulation and returns 0 only when every
simulated point passes the project's Monte Carlo rule. Besides agreement, figure and a
perturbed simulation being rejected, the tests check each example's theory against
sources independent of the engine:

* train-test gap: on an isotropic covariance the test error is the closed form of
  MATH.md 4.4 and the training error is ``(lam / kappa)^2`` times it, with ``kappa`` from
  the quadratic of MATH.md 4.4; on a power-law spectrum ``E_test / E_train`` equals
  ``(kappa / lam)^2`` with ``kappa`` solved here by bisection of
  ``kappa (1 - (D/P) mean(lambda / (lambda + kappa))) = lam`` (MATH.md 2.1);
* compute-optimal frontier: the envelope and fit machinery recovers the exponents
  ``a / (1 + alpha)`` and ``1 / (1 + alpha)`` on the scaling family
  ``L = N^-a + t^(-a/alpha)`` (the minimum over ``N`` of ``N^-a + (C/N)^(-a/alpha)`` by
  calculus); the late-time plateau of each theory curve equals
  ``kappa_0 sum lambda beta^2 / (lambda + kappa_0) / (1 - eta Tr(Sigma) / 2B)`` with
  ``n(kappa_0) = N`` solved here by bisection (the s -> 0 limit of MATH.md 5.3).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from example_helpers import load_example, number

GCV_SMALL = ["--D", "80", "--P", "40", "--seeds", "8", "--lams", "1e-3,0.1", "--points", "20"]
FRONTIER_SMALL = [
    "--D", "300", "--ns", "4,8,16,32,64", "--times", "20", "--max-steps", "1e4",
    "--sim-ns", "32", "--steps", "300", "--sim-times", "4", "--draws", "6", "--runs", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def gcv() -> Any:
    return load_example("gcv_train_test_gap")  # its derive() is cached: one derivation for the file


@pytest.fixture(scope="module")
def frontier() -> Any:
    return load_example("compute_optimal_frontier")


def _bisect(f: Any, lo: float, hi: float) -> float:
    """Root of an increasing function on [lo, hi] (geometric bisection)."""
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return float(np.sqrt(lo * hi))


# ---------------------------------------------------------------------------
# the train-test gap
# ---------------------------------------------------------------------------


def test_gcv_example_agrees(gcv: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="the figure needs matplotlib")
    assert gcv.main([*GCV_SMALL, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert (tmp_path / "gcv_train_test_gap.png").stat().st_size > 10_000
    assert "agreement: PASS" in text and "FAIL" not in text
    # 2 ridges x (E_test, E_train, GCV, ratio, (1 - df/P)^-2)
    assert number(r"over (\d+) points", text) == 10
    assert number(r"max \|theory - simulation\| / s\.e\. = ([\d.]+)", text) < 4.0
    assert number(r"max \|\(E_test/E_train\) / S\^2 - 1\| = ([\d.e+-]+)", text) < 1e-8
    assert number(r"max \|derived ratio / S\^2 - 1\| = ([\d.e+-]+)", text) < 1e-8
    assert number(r"against E_test at the simulated ridges: max relative gap ([\d.e+-]+)", text) < 1e-8


def test_gcv_theory_is_the_isotropic_closed_form(gcv: Any) -> None:
    d, p, s, sigma2 = 60, 40, 0.7, 0.2
    lams = np.array([1e-3, 0.05, 0.4, 3.0])
    out = gcv.theory(lams, spectrum=np.ones(d), beta=np.full(d, np.sqrt(s / d)), p=p, sigma2=sigma2)
    q = d / p
    kappa = 0.5 * ((lams + q - 1) + np.sqrt((lams + q - 1) ** 2 + 4 * lams))  # MATH.md 4.4
    gamma = q / (1 + kappa) ** 2
    e_test = (kappa**2 * s / (1 + kappa) ** 2 + sigma2) / (1 - gamma)
    np.testing.assert_allclose(out["kappa"], kappa, rtol=1e-10)
    np.testing.assert_allclose(out["E_test"], e_test, rtol=1e-9)
    np.testing.assert_allclose(out["E_train"], (lams / kappa) ** 2 * e_test, rtol=1e-9)


def test_gcv_ratio_is_s_squared_with_an_independent_kappa(gcv: Any) -> None:
    d, p = 120, 80
    k = np.arange(1, d + 1, dtype=float)
    spectrum, beta = k**-1.2, np.sqrt(k**-0.9)
    lams = np.geomspace(1e-5, 10, 25)
    out = gcv.theory(lams, spectrum=spectrum, beta=beta, p=p, sigma2=0.09)
    for lam, kap, ratio in zip(lams, out["kappa"], out["E_test"] / out["E_train"], strict=True):
        kappa = _bisect(
            lambda x, lam=lam: x * (1 - d / p * np.mean(spectrum / (spectrum + x))) - lam, 1e-12, 1e3
        )
        assert kap == pytest.approx(kappa, rel=1e-9)
        assert ratio == pytest.approx((kappa / lam) ** 2, rel=1e-8)
    # the ratio is not 1 + something small: the gap is large where the ridge is small (P < D)
    assert (out["E_test"] / out["E_train"])[0] > 1e4


def test_gcv_example_rejects_a_biased_simulation(
    gcv: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = gcv.simulate_gcv

    def biased(*args: Any, **kwargs: Any) -> dict[str, float]:
        out = real(*args, **kwargs)
        return {**out, "gcv": 1.3 * out["gcv"]}

    monkeypatch.setattr(gcv, "simulate_gcv", biased)
    small = ["--D", "160", "--P", "80", "--seeds", "12", "--lams", "0.1", "--points", "5"]
    assert gcv.main([*small, "--out", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "agreement: FAIL" in text and re.search(r"GCV .* FAIL", text)
    assert not re.search(r"^lam=\S+\s+(E_test|E_train)\s+theory.*FAIL", text, re.MULTILINE)


def test_gcv_example_without_matplotlib(
    gcv: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import raises ImportError
    small = [*GCV_SMALL[:6], "--lams", "0.1", "--points", "5"]
    assert gcv.main([*small, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "table only" in text and "agreement: PASS" in text
    assert not (tmp_path / "gcv_train_test_gap.png").exists()


# ---------------------------------------------------------------------------
# the compute-optimal frontier
# ---------------------------------------------------------------------------


def test_frontier_example_agrees(frontier: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="the figure needs matplotlib")
    assert frontier.main([*FRONTIER_SMALL, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert (tmp_path / "compute_optimal_frontier.png").stat().st_size > 10_000
    assert "agreement: PASS" in text and "FAIL" not in text
    assert number(r"over (\d+) points", text) == 4
    assert number(r"max \|theory - simulation\| / s\.e\. = ([\d.]+)", text) < 4.0
    # the bottleneck prediction for alpha = 1.5, b = 0.5: a = 1, e = 1 / 2.5, c = 1 / 2.5
    assert number(r"prediction a / \(1 \+ alpha\) = ([\d.]+)", text) == pytest.approx(0.4)
    assert number(r"prediction 1 / \(1 \+ alpha\) = ([\d.]+)", text) == pytest.approx(0.4)
    # small sizes are pre-asymptotic, but the envelope must decay with a power between the
    # slowest single curve (0) and the bottleneck exponent; N* must grow with C
    assert 0.25 < number(r"fitted e = ([\d.]+)", text) < 0.45
    assert 0.2 < number(r"fitted c = ([\d.]+)", text) < 0.5


def test_frontier_fit_recovers_the_scaling_exponents(frontier: Any) -> None:
    a, alpha = 1.0, 1.5
    steps = np.geomspace(1, 1e8, 200)
    sizes = sorted({int(round(n)) for n in np.geomspace(4, 4096, 41)})
    curves = {n: n**-a + steps ** (-a / alpha) for n in sizes}
    front = frontier.frontier(curves, steps, 1, 400)
    # the envelope is the pointwise minimum: below every curve, equal to one of them
    for n in sizes:
        c = n * steps
        inside = (front["compute"] >= c[0]) & (front["compute"] <= c[-1])
        own = n**-a + (front["compute"][inside] / n) ** (-a / alpha)
        assert np.all(front["loss"][inside] <= own * (1 + 1e-3))  # 1e-3: log-log interpolation
    fit = frontier.fit_frontier(front)
    # min over N of N^-a + (C/N)^(-a/alpha): N* ~ C^(1/(1+alpha)), L* ~ C^(-a/(1+alpha))
    assert fit["loss_exponent"] == pytest.approx(a / (1 + alpha), abs=0.01)
    assert fit["size_exponent"] == pytest.approx(1 / (1 + alpha), abs=0.02)
    # another capacity exponent moves both fits as predicted (the fit does not return constants)
    steep = frontier.fit_frontier(
        frontier.frontier({n: n**-a + steps ** (-a / 3.0) for n in sizes}, steps, 1, 400)
    )
    assert steep["loss_exponent"] == pytest.approx(a / 4.0, abs=0.01)
    assert steep["size_exponent"] == pytest.approx(1 / 4.0, abs=0.02)


def test_frontier_theory_plateau_is_the_infinite_time_limit(frontier: Any) -> None:
    d, eta = 300, 0.2
    k = np.arange(1, d + 1, dtype=float)
    lams, beta = k**-1.5, np.sqrt(k**-0.5)
    curves = frontier.theory_curves(lams, beta, [8, 32], np.array([1e6]), eta=eta, batch=1, noise=0.0)
    for n, curve in curves.items():
        kappa0 = _bisect(lambda x, n=n: n - np.sum(lams / (lams + x)), 1e-12, 1e3)  # n(kappa_0) = N
        plateau = kappa0 * np.sum(lams * beta**2 / (lams + kappa0)) / (1 - eta * lams.sum() / 2)
        assert curve[-1] == pytest.approx(plateau, rel=1e-6)


def test_frontier_example_rejects_a_biased_simulation(
    frontier: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = frontier.simulate_random_feature_sgd

    def biased(*args: Any, **kwargs: Any) -> np.ndarray:
        return 2.0 * real(*args, **kwargs)

    monkeypatch.setattr(frontier, "simulate_random_feature_sgd", biased)
    assert frontier.main([*FRONTIER_SMALL, "--out", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "agreement: FAIL" in text and re.search(r"N=32 .* FAIL", text)


def test_frontier_example_without_matplotlib(
    frontier: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import raises ImportError
    small = [*FRONTIER_SMALL[:8], "--max-steps", "1e3", "--sim-ns", "16", "--steps", "50", "--sim-times", "2",
             "--draws", "3", "--runs", "2"]  # fmt: skip
    assert frontier.main([*small, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "table only" in text and "agreement: PASS" in text
    assert not (tmp_path / "compute_optimal_frontier.png").exists()


def test_frontier_example_rejects_bad_options(frontier: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert frontier.main(["--ns", "8,16"]) == 2
    assert frontier.main(["--eta", "5"]) == 2
    err = capsys.readouterr().err
    assert "at least 4 sizes" in err and "unstable" in err
