"""Generated numpy evaluators (codegen.to_module, issue 5) against independent values.

Expected values come from: the engine's reference solver ``result.evaluate`` (scipy
``brentq`` per point, a separate implementation of the physical branch), ``brentq``
references written here from the boxed equations of MATH.md 2.1 and 2.4, and the
closed forms of MATH.md 4.4 and 7 (isotropic Marchenko-Pastur).
"""

from __future__ import annotations

import ast
import importlib.util
import math
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

import detequiv as de
from detequiv.codegen.pycode import to_module
from detequiv.errors import InvalidArgument, UndefinedTransform

lam = sp.Symbol("lam", positive=True)
D, N, P, q = sp.symbols("D N P q", positive=True)
Sigma = de.Deterministic("Sigma", D)
T = de.Deterministic("T", D)
X = de.Gaussian("X", (P, D))
F = de.Gaussian("F", (N, D))
SIGMA_HAT = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P
SAMPLE = lam * de.resolvent(SIGMA_HAT, lam)
RF = lam * de.resolvent(F.T @ F @ SIGMA_HAT / N, lam)


def load(result, tmp_path, name="evaluator"):
    """Write the module to a file and import it from there (as a user would)."""
    path = tmp_path / f"{name}.py"
    path.write_text(to_module(result, name))
    spec = importlib.util.spec_from_file_location(f"_generated_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sample_result():
    return de.derive(SAMPLE)


@pytest.fixture(scope="module")
def rf_result():
    return de.derive(RF)


def powerlaw(d, alpha=1.3):
    return np.arange(1, d + 1, dtype=float) ** -alpha


def kappa_sample_reference(spec, lam_value, ratio):
    """MATH.md 2.1: lam = k (1 - (D/P) df1(k)), root k > kappa_0 (kappa_0 = 0 if P >= D)."""

    def df(k):
        return float(np.mean(spec / (spec + k)))

    lo = 0.0
    if ratio > 1:  # n(kappa_0) = P
        lo = brentq(lambda k: df(k) - 1 / ratio, 1e-300, 1e6, xtol=1e-300, rtol=1e-15)
    if lam_value == 0:
        return lo
    return brentq(lambda k: k * (1 - ratio * df(k)) - lam_value, lo, 1e6, xtol=1e-300, rtol=1e-15)


def kappa2_reference(spec, lam_value, n_feat, p):
    """MATH.md 2.4: lam = kappa2 (1 - n/P)(1 - n/N), n = Tr Sigma (Sigma + kappa2)^-1."""

    def n_of(k):
        return float(np.sum(spec / (spec + k)))

    m = min(p, n_feat)
    lo = 0.0
    if spec.size > m:
        lo = brentq(lambda k: n_of(k) - m, 1e-300, 1e6, xtol=1e-300, rtol=1e-15)
    if lam_value == 0:
        return lo
    f = lambda k: k * (1 - n_of(k) / p) * (1 - n_of(k) / n_feat) - lam_value  # noqa: E731
    return brentq(f, lo, 1e6, xtol=1e-300, rtol=1e-15)


# ---------------------------------------------------------------------------
# the source
# ---------------------------------------------------------------------------


def test_source_is_a_numpy_only_module_with_the_formula(rf_result, tmp_path):
    source = to_module(rf_result, "rf_ridge")
    tree = ast.parse(source)
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"numpy"}
    compile(source, "rf_ridge.py", "exec")
    doc = ast.get_docstring(tree)
    assert doc.startswith("rf_ridge:")
    # the formula and the fixed points, as text and LaTeX
    assert "kappa_2 = lam/((-D*df1(Sigma, kappa_2)/N + 1)*(-D*df1(Sigma, kappa_2)/P + 1))" in doc
    assert r"\kappa_{2} = \frac{lam}" in doc
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert {"evaluate", "_branch_kappa_2", "_threshold_kappa_2", "_fixed_point_kappa_1"} <= functions
    # cse: the implicit equation's g and g' share subexpressions (temporaries _t0, ...)
    assert "_t0 = " in source
    module = load(rf_result, tmp_path, "rf_ridge")
    assert module.__doc__.startswith("rf_ridge:")
    assert "sympy" not in vars(module)


def test_module_runs_where_sympy_cannot_be_imported(sample_result, tmp_path):
    path = tmp_path / "standalone.py"
    path.write_text(to_module(sample_result, "standalone"))
    script = (
        "import sys; sys.modules['sympy'] = None; sys.modules['detequiv'] = None\n"
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('standalone', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "import numpy\n"
        "print(repr(float(m.evaluate(0.1, Sigma=numpy.ones(3), P=6)['kappa'])))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert float(run.stdout) == pytest.approx(0.1741657387, abs=1e-10)  # MATH.md 7, q = 0.5


def test_module_name_must_be_an_identifier(sample_result):
    with pytest.raises(InvalidArgument, match="identifier"):
        to_module(sample_result, "my-module")


# ---------------------------------------------------------------------------
# numbers against independent values
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("p_value", [60, 300])
def test_sample_covariance_against_the_reference_solver(sample_result, tmp_path, p_value):
    spec = powerlaw(150)
    grid = np.concatenate([[0.0], np.geomspace(1e-6, 10, 11)])
    out = load(sample_result, tmp_path).evaluate(grid, Sigma=spec, P=p_value)
    for i, x in enumerate(grid):
        expected = kappa_sample_reference(spec, x, 150 / p_value)
        assert out["kappa"][i] == pytest.approx(expected, rel=1e-11, abs=1e-300)
        if x > 0:
            ref = sample_result.evaluate({Sigma: spec, lam: x, D: 150, P: p_value})
            assert out["kappa"][i] == pytest.approx(ref["kappa"], rel=1e-10)
            assert out["value"][i] == pytest.approx(ref.trace(), rel=1e-10)
    assert out["kappa"].shape == grid.shape
    np.testing.assert_array_equal(out["ridge"], out["kappa"])


def test_trace_against_a_test_matrix(tmp_path):
    result = de.derive(de.trace(T @ SAMPLE))
    rng = np.random.default_rng(3)
    spec, weights = powerlaw(80, 1.1), rng.normal(size=80)
    grid = np.geomspace(1e-3, 3, 7)
    out = load(result, tmp_path).evaluate(grid, Sigma=spec, T=weights, P=50)
    for i, x in enumerate(grid):
        assert out["value"][i] == pytest.approx(
            result.evaluate({Sigma: spec, T: weights, lam: x, D: 80, P: 50}), rel=1e-10
        )
        k = kappa_sample_reference(spec, x, 80 / 50)
        assert out["value"][i] == pytest.approx(np.mean(weights * k / (k + spec)), rel=1e-10)


def test_quadratic_form_in_eigen_coordinates(tmp_path):
    u = de.DeterministicVector("u", D)
    result = de.derive(u.T @ SAMPLE @ u)
    spec = powerlaw(60, 0.8)
    beta = np.arange(1, 61, dtype=float) ** -0.6
    grid = np.array([0.01, 0.2, 1.5])
    out = load(result, tmp_path).evaluate(grid, Sigma=spec, u=beta, P=200)
    for i, x in enumerate(grid):
        k = kappa_sample_reference(spec, x, 60 / 200)
        assert out["value"][i] == pytest.approx(np.sum(beta**2 * k / (k + spec)), rel=1e-10)
        assert out["value"][i] == pytest.approx(
            result.evaluate({Sigma: spec, "u": beta, lam: x, D: 60, P: 200}), rel=1e-10
        )


def test_free_wishart_law_broadcast_over_ratios(tmp_path):
    """lam (lam + Sigma^1/2 W Sigma^1/2)^-1, W ~ MP(q) free: kappa = lam / (1 - q df1)."""
    wishart = de.FreeMatrix("W", D, de.Wishart(q))
    result = de.derive(lam * de.resolvent(Sigma.sqrt() @ wishart @ Sigma.sqrt(), lam))
    spec = np.linspace(0.3, 2.5, 50)
    grid = np.geomspace(1e-3, 5, 6)[:, None]
    ratios = np.array([[0.4, 1.0, 2.5]])
    out = load(result, tmp_path).evaluate(grid, Sigma=spec, q=ratios)
    assert out["kappa"].shape == (6, 3)
    for i in range(6):
        for j in range(3):
            ref = result.evaluate({Sigma: spec, lam: grid[i, 0], q: ratios[0, j]})
            assert out["kappa"][i, j] == pytest.approx(ref["kappa"], rel=1e-10)
            assert out["value"][i, j] == pytest.approx(ref.trace(), rel=1e-10)


@pytest.mark.parametrize(("n_feat", "p_value"), [(60, 90), (90, 60), (200, 300)])
def test_random_feature_chain(rf_result, tmp_path, n_feat, p_value):
    """Two layers, MATH.md 2.4: lam = kappa2 (1 - n/P)(1 - n/N); kappa1 = lam / (1 - n/P)."""
    spec = np.linspace(0.2, 2.0, 120)
    grid = np.concatenate([[0.0], np.geomspace(1e-4, 4, 9)])
    out = load(rf_result, tmp_path).evaluate(grid, Sigma=spec, N=n_feat, P=p_value)
    for i, x in enumerate(grid):
        k2 = kappa2_reference(spec, x, n_feat, p_value)
        n = float(np.sum(spec / (spec + k2)))
        assert out["kappa_2"][i] == pytest.approx(k2, rel=1e-11)
        assert out["value"][i] == pytest.approx(1 - n / 120, rel=1e-11)
        if x > 0:
            assert out["kappa_1"][i] == pytest.approx(x / (1 - n / p_value), rel=1e-9)
            ref = rf_result.evaluate({Sigma: spec, lam: x, D: 120, N: n_feat, P: p_value})
            assert out["kappa_1"][i] == pytest.approx(ref["kappa_1"], rel=1e-10)
        else:
            # ridgeless: kappa1 = kappa2 (1 - n/N), with n = min(N, P) when below D
            assert out["kappa_1"][i] == pytest.approx(k2 * (1 - n / n_feat), rel=1e-10, abs=1e-14)


def test_negative_control_single_layer_formula_is_rejected(rf_result, tmp_path):
    """The same check fails for a plausible wrong result: the random-feature chain with the
    data layer forgotten (lam = kappa (1 - n/N))."""
    from detequiv.derivations.derivation import FixedPoint
    from detequiv.derivations.onepoint import with_fixed_points
    from detequiv.derivations.quantities import df1

    k2 = sp.Symbol("kappa_2")
    d = df1(Sigma.to_sympy(), k2)
    wrong = with_fixed_points(rf_result, (FixedPoint(k2, sp.Eq(k2, lam / (1 - D / N * d))),))
    spec = np.linspace(0.2, 2.0, 120)
    out = load(wrong, tmp_path, "wrong").evaluate(np.array([0.05]), Sigma=spec, N=60)
    assert out["kappa_2"][0] != pytest.approx(kappa2_reference(spec, 0.05, 60, 90), rel=1e-3)


def test_isotropic_marchenko_pastur_closed_forms(sample_result, tmp_path):
    """MATH.md 7, isotropic kappa; Sigma = I, q = D/P."""
    evaluate = load(sample_result, tmp_path).evaluate
    table = [
        (0.5, 0.1, 0.1741657387),
        (0.5, 1.0, 1.2807764064),
        (2.0, 0.0, 1.0),
        (2.0, 0.1, 1.1844288770),
        (2.0, 1.0, 1 + math.sqrt(2)),
    ]
    ones = np.ones(8)
    for ratio, x, expected in table:
        out = evaluate(x, Sigma=ones, P=8 / ratio)
        assert out["kappa"].shape == ()
        assert float(out["kappa"]) == pytest.approx(expected, abs=1e-10)


def test_pure_marchenko_pastur_without_matrices(tmp_path):
    """lam (lam + W)^-1, W ~ MP(q) alone: no spectrum argument, q broadcast (MATH.md 7)."""
    wishart = de.FreeMatrix("W", D, de.Wishart(q))
    module = load(de.derive(lam * de.resolvent(wishart, lam)), tmp_path, "mp")
    out = module.evaluate(np.array([0.0, 0.1, 1.0]), q=np.array([[0.5], [2.0]]))
    expected = [[0.0, 0.1741657387, 1.2807764064], [1.0, 1.1844288770, 1 + math.sqrt(2)]]
    np.testing.assert_allclose(out["kappa"], expected, rtol=0, atol=1e-10)  # the table has 10 decimals
    # tr lam (lam + W)^-1 = 1 - df1(I, kappa) = kappa / (1 + kappa)
    np.testing.assert_allclose(out["value"], out["kappa"] / (1 + out["kappa"]), rtol=1e-14)


@pytest.mark.parametrize("ratio", [0.5, 0.9, 1.0, 1.1, 2.0])
def test_ridgeless_both_sides_of_the_threshold_isotropic(sample_result, tmp_path, ratio):
    """MATH.md 4.4: kappa = ((lam + q - 1) + sqrt((lam + q - 1)^2 + 4 lam)) / 2, q = D/P."""
    grid = np.concatenate([[0.0], np.geomspace(1e-10, 1, 21)])
    with np.errstate(all="raise"):
        out = load(sample_result, tmp_path).evaluate(grid, Sigma=np.ones(10), D=10, P=10 / ratio)
    b = grid + ratio - 1
    # the root written without cancellation: 2 lam / (sqrt(b^2 + 4 lam) - b) when b < 0
    root = np.sqrt(b**2 + 4 * grid)
    expected = np.where(b >= 0, (b + root) / 2, 2 * grid / np.where(root - b > 0, root - b, 1))
    np.testing.assert_allclose(out["kappa"], expected, rtol=1e-9, atol=0)
    # tr lam (lam + Sigma_hat)^-1 -> the kernel fraction max(0, 1 - 1/q) at lam = 0
    assert out["value"][0] == pytest.approx(max(0.0, 1 - 1 / ratio), abs=1e-12)


def test_ridgeless_with_a_spectrum_and_zero_eigenvalues(sample_result, tmp_path):
    """kappa_0 solves n(kappa_0) = P below the threshold (MATH.md 2.1); above it kappa_0 = 0,
    and the kernel projector keeps the zero eigenvalues."""
    evaluate = load(sample_result, tmp_path).evaluate
    spec = powerlaw(200, 1.5)
    out = evaluate(np.array([0.0, 1e-12]), Sigma=spec, P=np.array([80, 80]))
    k0 = brentq(lambda k: np.sum(spec / (spec + k)) - 80, 1e-12, 10, xtol=1e-300, rtol=1e-15)
    assert out["kappa"][0] == pytest.approx(k0, rel=1e-11)
    assert out["kappa"][1] == pytest.approx(kappa_sample_reference(spec, 1e-12, 200 / 80), rel=1e-11)
    # MATH.md 2.1: d kappa / d lam = 1 / (1 - gamma), gamma = q df2(kappa, kappa)
    gamma = 200 / 80 * np.mean(spec**2 / (spec + k0) ** 2)
    assert out["kappa"][1] - out["kappa"][0] == pytest.approx(1e-12 / (1 - gamma), rel=1e-4)
    half_zero = np.concatenate([np.zeros(50), np.linspace(1, 2, 50)])
    out = evaluate(0.0, Sigma=half_zero, P=400)
    assert float(out["kappa"]) == 0.0
    assert float(out["value"]) == pytest.approx(0.5, abs=1e-15)  # tr of the projector on ker Sigma


def test_large_spectrum_uses_the_warm_start_and_agrees(sample_result, tmp_path):
    spec = powerlaw(20000, 1.2)
    grid = np.array([0.0, 1e-7, 1e-4, 0.05, 2.0])
    out = load(sample_result, tmp_path).evaluate(grid, Sigma=spec, P=5000)
    for i, x in enumerate(grid):
        assert out["kappa"][i] == pytest.approx(kappa_sample_reference(spec, x, 4.0), rel=1e-11)


def test_large_grids_use_interpolated_sums_and_agree(rf_result, tmp_path):
    """1e3-point grids take the interpolated-sum path (Chebyshev in log k); every 50th point
    is checked against the brentq reference of MATH.md 2.4, and a sub-grid evaluated alone
    (exact sums) gives the same numbers."""
    evaluate = load(rf_result, tmp_path).evaluate
    spec = powerlaw(3000, 1.1)
    grid = np.concatenate([[0.0], np.geomspace(1e-8, 1e3, 999)])
    for n_feat, p_value in [(1000, 2000), (5000, 1500)]:
        out = evaluate(grid, Sigma=spec, N=n_feat, P=p_value)
        pick = np.arange(0, grid.size, 50)
        for i in pick:
            k2 = kappa2_reference(spec, grid[i], n_feat, p_value)
            n = float(np.sum(spec / (spec + k2)))
            assert out["kappa_2"][i] == pytest.approx(k2, rel=1e-11)
            assert out["value"][i] == pytest.approx(1 - n / 3000, rel=1e-11)
        alone = evaluate(grid[pick], Sigma=spec, N=n_feat, P=p_value)
        for key in ("kappa_2", "kappa_1", "value"):
            # kappa_1 = kappa_2 (1 - n/N) is 0 up to rounding at lam = 0 when n = N
            np.testing.assert_allclose(out[key][pick], alone[key], rtol=1e-12, atol=1e-16)


def test_interpolated_sums_against_exact_sums(sample_result, tmp_path):
    """The runtime's Stieltjes sums: interpolated in log k (many k) against exact blocks."""
    module = load(sample_result, tmp_path)
    rng = np.random.default_rng(5)
    k = np.geomspace(1e-12, 1e12, 4000)
    spectra = [powerlaw(2000), np.concatenate([np.zeros(7), rng.exponential(size=300)]), np.ones(20)]
    for y in spectra:
        for ridge, w in ((False, None), (True, rng.normal(size=y.size))):
            value, slope = module._spectral_sums(y, w, k, ridge, True)
            weights = np.ones(y.size) if w is None else w
            # independent: the sums written out directly, one k at a time
            f = (k[:, None] / (k[:, None] + y)) if ridge else (y / (k[:, None] + y))
            df = (1 if ridge else -1) * y / (k[:, None] + y) ** 2
            scale = np.abs(weights) @ f.T / y.size
            np.testing.assert_array_less(np.abs(value - f @ weights / y.size), 1e-13 * scale)
            dscale = np.abs(weights) @ np.abs(df).T / y.size
            np.testing.assert_array_less(np.abs(slope - df @ weights / y.size), 1e-12 * dscale)


def test_complex_lam_by_continuation(sample_result, rf_result, tmp_path):
    """Complex lam (Talbot contours): against the reference solver, conj symmetry, the sign
    of Im kappa (MATH.md 2.1) and the isotropic quadratic closed form (MATH.md 4.4)."""
    spec = np.linspace(0.2, 2.0, 60)
    grid = np.array([0.3 + 0.4j, -0.02 + 0.05j, 1 - 2j, -1 + 1e-3j, 0.1, 0.0])
    for result, values in ((sample_result, {"P": 40}), (rf_result, {"P": 40, "N": 30})):
        out = load(result, tmp_path, f"complex_{len(values)}").evaluate(grid, Sigma=spec, **values)
        key = str(result.ridge)
        assert out[key].dtype == complex
        for i, x in enumerate(grid[:-1]):
            ref = result.evaluate(
                {Sigma: spec, lam: complex(x), D: 60, **{sp.Symbol(k): v for k, v in values.items()}}
            )
            assert out[key][i] == pytest.approx(complex(ref[key]), rel=1e-12)
            assert out["value"][i] == pytest.approx(complex(ref.trace()), rel=1e-12)
            assert np.sign(out[key][i].imag) == np.sign(x.imag)
        conj = load(result, tmp_path, f"conj_{len(values)}").evaluate(grid.conj(), Sigma=spec, **values)
        np.testing.assert_allclose(conj[key], out[key].conj(), rtol=1e-13)
    # isotropic: kappa^2 + (1 - q - lam) kappa - lam = 0, the root with Im kappa of the sign of Im lam
    evaluate = load(sample_result, tmp_path, "iso").evaluate
    for ratio in (0.5, 2.0):
        z = np.array([0.2 + 0.3j, -0.5 + 0.1j, 2 - 1j, -3 - 0.01j])
        out = evaluate(z, Sigma=np.ones(6), P=6 / ratio)
        b = z + ratio - 1
        roots = np.stack([(b + np.sqrt(b * b + 4 * z)) / 2, (b - np.sqrt(b * b + 4 * z)) / 2])
        physical = np.sign(roots.imag) == np.sign(z.imag)
        assert np.all(physical.sum(axis=0) == 1)
        np.testing.assert_allclose(
            out["kappa"], roots[physical.argmax(axis=0), np.arange(z.size)], rtol=1e-12
        )


def test_feature_space_and_three_layers(tmp_path):
    """Feature space: tau I_N with tau = 1 - n/N (MATH.md 2.4); three Gram layers:
    lam = k3 (1 - n/P)(1 - n/Q)(1 - n/N), checked by brentq written here."""
    spec = np.linspace(0.2, 2.0, 120)
    grid = np.array([0.0, 0.02, 0.5])
    out = load(de.derive(lam * de.resolvent(F @ SIGMA_HAT @ F.T / N, lam)), tmp_path, "fs").evaluate(
        grid, Sigma=spec, N=60, P=90
    )
    for i, x in enumerate(grid):
        k2 = kappa2_reference(spec, x, 60, 90)
        n = float(np.sum(spec / (spec + k2)))
        assert out["value"][i] == pytest.approx(1 - n / 60, rel=1e-10, abs=1e-14)
    assert out["ridge"].dtype == float
    Q = sp.Symbol("Q", positive=True)
    Y = de.Gaussian("Y", (Q, D))
    word = F @ Sigma.sqrt() @ X.T @ X @ Y.T @ Y @ Sigma.sqrt() @ F.T / (N * P * Q)
    evaluate = load(
        de.derive(lam * de.resolvent(word, lam), order=("Y", "X", "F")), tmp_path, "three"
    ).evaluate
    out = evaluate(grid, Sigma=spec, N=60, P=90, Q=150)

    def n_of(k):
        return float(np.sum(spec / (spec + k)))

    k0 = brentq(lambda k: n_of(k) - 60, 1e-9, 1e3, xtol=1e-300, rtol=1e-15)
    for i, x in enumerate(grid):
        f = lambda k, x=x: k * (1 - n_of(k) / 90) * (1 - n_of(k) / 150) * (1 - n_of(k) / 60) - x  # noqa: E731
        k3 = k0 if x == 0 else brentq(f, k0, 1e3, xtol=1e-300, rtol=1e-15)
        assert out["kappa_3"][i] == pytest.approx(k3, rel=1e-11)
        assert out["tau"][i] == pytest.approx(1 - n_of(k3) / 60, rel=1e-10, abs=1e-14)


def test_other_matrices_of_the_commuting_class(tmp_path):
    """Y = Sigma^2 in lam (lam + Sigma X^T X Sigma / P)^-1; tr(Sigma R) with T = Sigma."""
    result = de.derive(lam * de.resolvent(Sigma @ X.T @ X @ Sigma / P, lam))
    spec = np.linspace(0.5, 1.5, 40)
    out = load(result, tmp_path, "square").evaluate(np.array([0.01, 0.5]), Sigma=spec, P=30)
    for i, x in enumerate([0.01, 0.5]):
        k = kappa_sample_reference(spec**2, x, 40 / 30)
        assert out["kappa"][i] == pytest.approx(k, rel=1e-11)
        assert out["value"][i] == pytest.approx(np.mean(k / (k + spec**2)), rel=1e-11)
    result = de.derive(de.trace(Sigma @ SAMPLE))
    out = load(result, tmp_path, "trace_sigma").evaluate(0.2, Sigma=spec, P=30)
    k = kappa_sample_reference(spec, 0.2, 40 / 30)
    assert float(out["value"]) == pytest.approx(np.mean(spec * k / (k + spec)), rel=1e-11)


# ---------------------------------------------------------------------------
# bad inputs and results outside the class
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lam": -0.1}, "lam = -0.1 < 0"),
        ({"lam": np.array([0.1, np.nan])}, "lam has non-finite"),
        ({"lam": np.array([-0.5 + 0j, 0.1j])}, "< 0 on the real axis"),
        ({"P": 5 + 1j}, "P must be a real number"),
        ({"Sigma": np.array([1.0, -0.5, 2.0])}, "negative eigenvalue -0.5"),
        ({"Sigma": np.array([1.0, np.inf, 2.0])}, "Sigma has non-finite"),
        ({"Sigma": np.ones((3, 3))}, "1-D array"),
        ({"Sigma": None}, "missing Sigma"),
        ({"P": None}, "missing P"),
        ({"P": -3}, "P = -3 must be > 0"),
        ({"P": np.array([3.0, 4.0]), "lam": np.array([0.1, 0.2, 0.3])}, "do not broadcast"),
        ({"T": np.ones(4)}, "different lengths"),
    ],
)
def test_bad_inputs_raise_value_errors(tmp_path, kwargs, message):
    result = de.derive(de.trace(T @ SAMPLE))
    evaluate = load(result, tmp_path).evaluate
    args = {"lam": np.array([0.1, 0.2]), "Sigma": np.ones(3), "T": np.ones(3), "P": 5.0} | kwargs
    with pytest.raises(ValueError, match=message):
        evaluate(args.pop("lam"), **args)


def test_ridgeless_divergence_is_an_error_not_nan(tmp_path):
    """tr (lam + Sigma_hat)^-1 = tr(R)/lam-prefactor form: not finite at lam = 0."""
    result = de.derive(de.resolvent(SIGMA_HAT, lam))
    evaluate = load(result, tmp_path).evaluate
    finite = evaluate(0.5, Sigma=np.ones(4), P=8)
    k = kappa_sample_reference(np.ones(4), 0.5, 0.5)
    assert float(finite["value"]) == pytest.approx(k / 0.5 / (k + 1), rel=1e-12)
    with pytest.raises(ValueError, match="prefactor is not finite at lam"):
        evaluate(0.0, Sigma=np.ones(4), P=2)


def test_results_outside_the_class_are_refused():
    additive = lam * de.resolvent(
        X.T @ X @ Sigma / P + de.FreeMatrix("B", D, de.Semicircle(sp.Rational(1, 4))), lam
    )
    with pytest.raises(InvalidArgument, match="outside the class"):
        to_module(de.derive(additive))
    undefined = lam * de.resolvent(
        Sigma.sqrt() @ de.FreeMatrix("B", D, de.CumulantLaw("B")) @ Sigma.sqrt(), lam
    )
    with pytest.raises(UndefinedTransform, match="no closed form"):
        to_module(de.derive(undefined))
    general = de.Deterministic("M", D, symmetric=False)
    with pytest.raises(InvalidArgument, match="symmetric=False"):
        to_module(de.derive(lam * de.resolvent(general.T @ X.T @ X @ general / P, lam)))
    feature_test = de.Deterministic("TN", N)
    with pytest.raises(InvalidArgument, match="different sizes"):
        to_module(de.derive(de.trace(feature_test @ (lam * de.resolvent(F @ SIGMA_HAT @ F.T / N, lam)))))
    with pytest.raises(InvalidArgument, match="OnePoint"):
        to_module("lam (lam + Sigma_hat)^-1")
