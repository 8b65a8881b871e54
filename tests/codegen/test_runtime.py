"""The numeric run time of the generated evaluators (:mod:`detequiv.runtime`), tested directly.

Expected values come from independent sources: the closed forms of MATH.md 4.4 and 7
(isotropic Marchenko-Pastur), ``scipy.optimize.brentq`` on the boxed equation of MATH.md
2.1 written out here, and the spectral sums written as plain numpy means.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

from detequiv import runtime
from detequiv.codegen import loss_to_module, to_module
from detequiv.codegen.evaluator_plan import runtime_name
from detequiv.derivations.derive import derive
from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian, resolvent
from detequiv.errors import InvalidArgument
from detequiv.models.ridge import RidgeRegression

PATH = Path(runtime.__file__)


def mp_branch(d: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """g(df1) = 1 - q df1 (the sample covariance, q = D / P), and dg / d df1."""
    return 1 - q * d, -q


def solve_mp(lam, q, y):
    lam = np.atleast_1d(np.asarray(lam))
    q = np.broadcast_to(np.asarray(q, dtype=float), lam.shape).copy()
    return runtime.solve_ridge(mp_branch, [q], lam, np.asarray(y, dtype=float), 1 / q)


def kappa_brentq(spec: np.ndarray, lam: float, q: float) -> float:
    """MATH.md 2.1: lam = k (1 - q df1(k)), the root above kappa_0 (kappa_0 = 0 if P >= rank)."""

    def df(k):
        return float(np.mean(spec / (spec + k))) if k > 0 else float(np.mean(spec > 0))

    lo = 0.0
    if q * np.mean(spec > 0) > 1:
        lo = brentq(lambda k: df(k) - 1 / q, 1e-300, 1e8, xtol=1e-300, rtol=1e-15)
    if lam == 0:
        return lo
    return brentq(lambda k: k * (1 - q * df(k)) - lam, lo, lam + q * spec.sum() + 1, xtol=1e-300, rtol=1e-15)


# ---------------------------------------------------------------------------
# the physical branch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "lam", "kappa"),
    [
        (0.5, 0.1, 0.1741657387),
        (0.5, 1.0, 1.2807764064),
        (2.0, 0.0, 1.0),
        (2.0, 0.1, 1.1844288770),
        (2.0, 1.0, 1 + math.sqrt(2)),
        (0.5, 0.0, 0.0),
    ],
)
def test_marchenko_pastur_isotropic_table(q, lam, kappa):
    """MATH.md 7: Sigma = I, q = D / P."""
    assert solve_mp(lam, q, np.ones(5))[0] == pytest.approx(kappa, abs=1e-10)


@pytest.mark.parametrize("q", [0.5, 0.9, 1.0, 1.1, 2.0])
def test_marchenko_pastur_closed_form_on_a_grid(q):
    """MATH.md 4.4: kappa = ((lam + q - 1) + sqrt((lam + q - 1)^2 + 4 lam)) / 2, both sides of q = 1."""
    grid = np.concatenate([[0.0], np.geomspace(1e-10, 10, 300)])  # > 160 points: the tabulated start
    b = grid + q - 1
    root = np.sqrt(b**2 + 4 * grid)
    expected = np.where(b >= 0, (b + root) / 2, 2 * grid / np.where(root - b > 0, root - b, 1))
    np.testing.assert_allclose(solve_mp(grid, q, np.ones(7)), expected, rtol=1e-9, atol=0)


@pytest.mark.parametrize("q", [0.3, 2.5])
def test_solve_ridge_agrees_with_brentq_on_a_random_spectrum(q):
    rng = np.random.default_rng(7)
    spec = np.concatenate([rng.exponential(size=180), np.zeros(20)])
    grid = np.concatenate([[0.0], np.geomspace(1e-6, 50, 40)])
    kappa = solve_mp(grid, q, spec)
    for i, x in enumerate(grid):
        assert kappa[i] == pytest.approx(kappa_brentq(spec, x, q), rel=1e-11, abs=1e-300), x
    many = np.geomspace(1e-6, 50, 1000)  # the warm start: one table for the whole grid
    np.testing.assert_allclose(solve_mp(many, q, spec)[::97], solve_mp(many[::97], q, spec), rtol=1e-12)


def test_solve_ridge_on_a_large_spectrum_uses_the_coarse_start():
    spec = np.arange(1, 10001, dtype=float) ** -1.2  # > 4096 eigenvalues, few points
    grid = np.array([1e-7, 1e-3, 0.3])
    kappa = solve_mp(grid, 4.0, spec)
    for i, x in enumerate(grid):
        assert kappa[i] == pytest.approx(kappa_brentq(spec, x, 4.0), rel=1e-11)


def test_solve_ridge_with_complex_lam():
    """The root of the same equation whose imaginary part has the sign of Im lam; real
    points of a complex grid on the real branch; conjugate symmetry."""
    spec = np.linspace(0.2, 2.0, 60)
    z = np.array([0.3 + 0.4j, -0.02 + 0.05j, 1 - 2j, -1 + 1e-3j, 0.1 + 0j, 0j])
    kappa = solve_mp(z, 0.7, spec)
    assert kappa.dtype == complex
    d = np.array([np.mean(spec / (spec + k)) for k in kappa])
    np.testing.assert_allclose(kappa * (1 - 0.7 * d), z, rtol=1e-12, atol=1e-14)
    assert np.all(np.sign(kappa[:4].imag) == np.sign(z[:4].imag))
    assert kappa[4] == pytest.approx(kappa_brentq(spec, 0.1, 0.7), rel=1e-12)
    np.testing.assert_allclose(solve_mp(z.conj(), 0.7, spec), kappa.conj(), rtol=1e-13)


def test_solve_ridge_takes_any_branch_and_parameters_per_point():
    """Two Gram layers (MATH.md 2.4): g = (1 - n/P)(1 - n/N), n = D df1, parameters per point."""
    spec = np.linspace(0.2, 2.0, 120)
    n_feat, p = np.array([60.0, 90.0, 200.0]), np.array([90.0, 60.0, 300.0])

    def branch(d, a, b):  # a = D / N, b = D / P
        return (1 - a * d) * (1 - b * d), -a * (1 - b * d) - b * (1 - a * d)

    a, b = 120 / n_feat, 120 / p
    lam = np.array([0.05, 0.0, 2.0])
    dstar = runtime.smallest_positive([1 / a, 1 / b], 3)
    kappa = runtime.solve_ridge(branch, [a, b], lam, spec, dstar, "kappa_2")

    def n_of(k):
        return float(np.sum(spec / (spec + k)))

    for i in range(3):
        m = min(n_feat[i], p[i])
        lo = brentq(lambda k, m=m: n_of(k) - m, 1e-300, 1e6, xtol=1e-300, rtol=1e-15) if m < 120 else 0.0
        if lam[i] == 0:
            expected = lo
        else:

            def f(k, i=i):
                return k * (1 - n_of(k) / p[i]) * (1 - n_of(k) / n_feat[i]) - lam[i]

            expected = brentq(f, lo, 1e6, xtol=1e-300, rtol=1e-15)
        assert kappa[i] == pytest.approx(expected, rel=1e-11)


def test_ridgeless_threshold_against_brentq():
    spec = np.arange(1, 201, dtype=float) ** -1.5
    dstar = np.array([0.4, 0.4, 0.9, 1.5, np.inf])
    kappa0 = runtime.ridgeless_threshold(spec, dstar)
    for i, d in enumerate(dstar):
        expected = (
            0.0 if d >= 1 else brentq(lambda k, d=d: np.mean(spec / (spec + k)) - d, 1e-12, 10, rtol=1e-15)
        )
        assert kappa0[i] == pytest.approx(expected, rel=1e-12)


def test_newton_converges_and_reports_failure():
    target = np.array([2.0, 10.0, 1e-6])

    def square(x, idx):
        return x * x - target[idx], 2 * x

    root = runtime.newton(square, np.zeros(3), np.full(3, np.inf), np.ones(3), "the root")
    np.testing.assert_allclose(root, np.sqrt(target), rtol=1e-13, atol=1e-13)

    def never(x, idx):  # F < 0 everywhere: the bracket grows without end
        return -np.ones_like(x), np.zeros_like(x)

    with pytest.raises(RuntimeError, match="the Newton iteration for the answer did not converge"):
        runtime.newton(never, np.zeros(1), np.full(1, np.inf), np.ones(1), "the answer")


def test_smallest_positive_keeps_real_positive_roots():
    out = runtime.smallest_positive([np.array([2.0, -1.0, 0.5 + 1j]), 3.0, np.array([1.0, np.nan, 0.7])], 3)
    np.testing.assert_array_equal(out, [1.0, 3.0, 0.7])
    assert runtime.smallest_positive([], 2).tolist() == [np.inf, np.inf]


# ---------------------------------------------------------------------------
# spectral sums
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ridge", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_spectral_sums_exact_and_interpolated(ridge, weighted):
    rng = np.random.default_rng(11)
    y = np.concatenate([np.zeros(5), rng.exponential(size=500)])
    w = rng.normal(size=y.size) if weighted else None
    weights = np.ones(y.size) if w is None else w
    for k in (np.geomspace(1e-9, 1e9, 3000), np.array([1e-3, 0.2, 7.0])):  # interpolated, exact
        value, slope = runtime.spectral_sums(y, w, k, ridge, True)
        f = k[:, None] / (k[:, None] + y) if ridge else y / (k[:, None] + y)
        df = (1 if ridge else -1) * y / (k[:, None] + y) ** 2
        scale = np.abs(weights) @ f.T / y.size
        np.testing.assert_array_less(np.abs(value - f @ weights / y.size), 1e-13 * scale + 1e-300)
        dscale = np.abs(weights) @ np.abs(df).T / y.size
        np.testing.assert_array_less(np.abs(slope - df @ weights / y.size), 1e-12 * dscale + 1e-300)
        np.testing.assert_array_equal(runtime.spectral_sums(y, w, k, ridge), value)


def test_spectral_sums_at_zero_and_complex_k():
    y = np.array([0.0, 0.0, 1.0, 4.0])
    value, slope = runtime.spectral_sums(y, None, np.array([0.0, 1.0]), False, True)
    assert value[0] == 0.5 and slope[0] == -np.inf  # df1(0) = mean(y > 0)
    assert value[1] == pytest.approx(np.mean(y / (y + 1)), rel=1e-15)
    ridge = runtime.spectral_sums(y, np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0]), True)
    assert ridge[0] == pytest.approx((1 + 2) / 4)  # the kernel projector: mean(w [y == 0])
    z = np.array([0.3 + 0.4j, -1 + 0.01j])
    np.testing.assert_allclose(runtime.df1(y, z), np.mean(y / (y + z[:, None]), axis=1), rtol=1e-14)
    np.testing.assert_allclose(runtime.trace_ratio(z, y, 1), np.mean(z[:, None] / (z[:, None] + y), axis=1))


def test_kernel_sums_and_the_tabulated_ridge():
    """A loss's sums: interpolated (many k) equal exact (few k); the ridge solved on the table
    equals solve_ridge followed by exact sums."""
    s = np.arange(1, 801, dtype=float) ** -1.2
    b2 = np.arange(1, 801, dtype=float) ** -0.9

    def weights(s):
        return s, s, b2 * s

    def kernels(k, s):
        r = 1 / (s + k)
        return r, r * r

    w = runtime.weight_vectors(weights, (True, True, False), (s,), s.size)
    which = (0, 1, 1)
    k = np.concatenate([[0.0], np.geomspace(1e-6, 1e2, 999)])
    sums = runtime.kernel_sums(kernels, which, w, k, (s,))
    pick = np.arange(0, k.size, 111)
    np.testing.assert_allclose(
        sums[:, pick], runtime.kernel_sums(kernels, which, w, k[pick], (s,)), rtol=1e-12
    )
    np.testing.assert_allclose(sums[0, 1:], np.mean(s / (s + k[1:, None]), axis=1), rtol=1e-12)
    lam = np.concatenate([[0.0], np.geomspace(1e-5, 10, 500)])
    q = np.full(lam.shape, 2.0)
    kappa, at = runtime.solve_ridge_and_sums(
        mp_branch, [q], lam, s, 1 / q, "kappa", kernels, which, w, (s,), (0, 1)
    )
    np.testing.assert_allclose(kappa, solve_mp(lam, 2.0, s), rtol=1e-12)
    np.testing.assert_allclose(at[:, 1:], runtime.kernel_sums(kernels, which, w, kappa[1:], (s,)), rtol=1e-11)


# ---------------------------------------------------------------------------
# inputs and outputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "missing Sigma"),
        (np.array([1 + 1j]), "must be real numbers"),
        (np.ones((2, 2)), "non-empty 1-D array"),
        (np.array([]), "non-empty 1-D array"),
        (np.array([1.0, np.nan]), "non-finite"),
        (np.array([1.0, -0.5]), "negative eigenvalue -0.5"),
    ],
)
def test_check_spectrum_refuses_bad_spectra(value, message):
    with pytest.raises(ValueError, match=message):
        runtime.check_spectrum("Sigma", value, True)


def test_check_spectrum_allows_negative_weights():
    np.testing.assert_array_equal(runtime.check_spectrum("T", [-1, 2], False), [-1.0, 2.0])


@pytest.mark.parametrize(
    ("lam", "params", "message"),
    [
        (-0.1, [("P", 2)], "lam = -0.1 < 0"),
        (np.array([-0.5 + 0j, 0.1j]), [("P", 2)], "< 0 on the real axis"),
        (np.array([np.nan]), [("P", 2)], "lam has non-finite"),
        (np.array([1j * np.inf]), [("P", 2)], "lam has non-finite"),
        (0.1, [("P", None)], "missing P"),
        (0.1, [("P", 0)], "P = 0 must be > 0"),
        (0.1, [("P", 1j)], "P must be a real number"),
        (0.1, [("P", "x")], "P must be a real number"),
        (np.ones(3), [("P", np.ones(2))], "do not broadcast"),
    ],
)
def test_broadcast_grid_refuses_bad_grids(lam, params, message):
    with pytest.raises(ValueError, match=message):
        runtime.broadcast_grid("lam", lam, params)


def test_broadcast_grid_keeps_real_points_of_a_complex_grid_real():
    shape, (lam,) = runtime.broadcast_grid("lam", np.array([0.5 + 0j, 1.0 + 0j]), [])
    assert shape == (2,) and lam.dtype == float


@pytest.mark.parametrize(
    ("lam", "nonnegative", "message"),
    [
        (0.1 + 0.2j, [("sigma2", 1)], "lam must be real"),
        (0.1, [("sigma2", -1.0)], "sigma2 = -1 must be >= 0"),
        (0.1, [("sigma2", None)], "missing sigma2"),
        (0.1, [("sigma2", np.inf)], "non-finite"),
        (np.ones(3), [("sigma2", np.ones(2))], "do not broadcast"),
    ],
)
def test_broadcast_loss_grid_refuses_bad_grids(lam, nonnegative, message):
    with pytest.raises(ValueError, match=message):
        runtime.broadcast_loss_grid("lam", lam, [("P", 2)], nonnegative)


def test_common_length_finish_and_ridgeless_checks():
    with pytest.raises(ValueError, match="different lengths"):
        runtime.common_length({"Sigma": np.ones(3), "T": np.ones(4)})
    with pytest.raises(ValueError, match="value is not finite at lam"):
        runtime.finish_outputs((2,), np.array([0.0, 1.0]), {"value": np.array([np.nan, 1.0])})
    out = runtime.finish_outputs((1, 2), np.array([0.5, 1.0]), {"kappa": np.array([1, 2])})
    assert out["kappa"].shape == (1, 2) and out["kappa"].dtype == float
    runtime.check_ridgeless(np.array([0.0]), ("bias",), (np.array([1e-3]), np.array([1.0])))
    with pytest.raises(ValueError, match="bias has no finite ridgeless value"):
        runtime.check_ridgeless(np.array([0.0]), ("bias",), (np.array([1e-14]), np.array([10.0])))


# ---------------------------------------------------------------------------
# the module itself and its copies
# ---------------------------------------------------------------------------


def test_runtime_imports_numpy_and_the_standard_library_only():
    tree = ast.parse(PATH.read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert modules == {"numpy", "numpy.typing", "typing", "collections.abc"}
    assert PATH.read_text().isascii()


def test_runtime_runs_without_sympy_and_detequiv(tmp_path):
    script = (
        "import sys\n"
        "for blocked in ('sympy', 'scipy', 'detequiv'):\n"
        "    sys.modules[blocked] = None\n"
        "import importlib.util, numpy\n"
        f"spec = importlib.util.spec_from_file_location('rt', {str(PATH)!r})\n"
        "rt = importlib.util.module_from_spec(spec); spec.loader.exec_module(rt)\n"
        "q = numpy.full(1, 0.5)\n"
        "print(repr(float(rt.solve_ridge(lambda d, q: (1 - q * d, -q), [q], numpy.array([0.1]), "
        "numpy.ones(3), 1 / q)[0])))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(0.1741657387, abs=1e-10)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A one-point module and a loss module, imported from files."""
    lam = sp.Symbol("lam", positive=True)
    d, p = sp.symbols("D P", positive=True)
    sigma, x = Deterministic("Sigma", d), Gaussian("X", (p, d))
    folder = tmp_path_factory.mktemp("generated")
    sources = {
        "one": to_module(derive(lam * resolvent(sigma.sqrt() @ x.T @ x @ sigma.sqrt() / p, lam)), "one"),
        "loss": loss_to_module(
            RidgeRegression(sigma, x, DeterministicVector("beta", d)).test_error(), "loss"
        ),
    }
    modules = {}
    for name, source in sources.items():
        (folder / f"{name}.py").write_text(source)
        spec = importlib.util.spec_from_file_location(f"_generated_runtime_{name}", folder / f"{name}.py")
        modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    return sources, modules


def test_generated_modules_carry_renamed_copies_of_what_they_call(generated):
    sources, modules = generated
    one, loss = modules["one"], modules["loss"]
    assert one.__all__ == ["evaluate"] and loss.__all__ == ["evaluate"]
    for module in (one, loss):
        assert not hasattr(module, "solve_ridge")  # public run-time names are private copies
        assert module._solve_ridge.__doc__.startswith("The physical root of")
        assert "Parameters" not in module._solve_ridge.__doc__  # docstrings cut to their summary
    assert hasattr(one, "_trace_ratio") and not hasattr(loss, "_trace_ratio")  # only what is used
    assert hasattr(loss, "_solve_ridge_and_sums") and not hasattr(one, "_solve_ridge_and_sums")
    assert ">>>" not in sources["one"] and ">>>" not in sources["loss"]
    spec = np.linspace(0.1, 3, 50)
    lam = np.geomspace(1e-4, 10, 300)
    q = np.full(lam.shape, 1.7)
    expected = runtime.solve_ridge(mp_branch, [q], lam, spec, 1 / q)
    np.testing.assert_array_equal(one._solve_ridge(mp_branch, [q], lam, spec, 1 / q), expected)
    np.testing.assert_array_equal(
        one._spectral_sums(spec, None, lam, False), runtime.spectral_sums(spec, None, lam, False)
    )


def test_runtime_name_refuses_other_functions():
    assert runtime_name(runtime.df1) == "_df1"
    with pytest.raises(InvalidArgument, match="not a public function of detequiv.runtime"):
        runtime_name(np.mean)
