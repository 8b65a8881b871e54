"""Tests of :func:`detequiv.codegen.pycode.loss_to_module` (issue 5).

Expected values come from independent sources: the dense reference
``LossFormula.evaluate`` (matrices inverted by numpy, kappa by the engine's solver),
MATH.md 7's isotropic ridge table, and MATH.md 4.1-4.3 written out by hand below with
``scipy.optimize.brentq`` for kappa.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

from detequiv.cli.curve import curve_main
from detequiv.codegen.pycode import loss_to_module
from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
from detequiv.errors import InvalidArgument
from detequiv.models.ridge import RidgeRegression

D, P = sp.symbols("D P", positive=True)
SIGMA, X, BETA = Deterministic("Sigma", D), Gaussian("X", (P, D)), DeterministicVector("beta", D)
SHIFT = Deterministic("Sigma_t", D)


def _load(source: str, path: Any, name: str) -> Any:
    """Write the module to a file and import it from there (as a user would)."""
    file = path / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(f"_generated_{name}", file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def losses() -> dict[str, Any]:
    return {
        "test": RidgeRegression(SIGMA, X, BETA).test_error(),
        "train": RidgeRegression(SIGMA, X, BETA).training_error(),
        "shift": RidgeRegression(SIGMA, X, BETA, test_covariance=SHIFT).test_error(),
    }


@pytest.fixture(scope="module")
def sources(losses: dict[str, Any]) -> dict[str, str]:
    return {key: loss_to_module(loss, f"ridge_{key}") for key, loss in losses.items()}


@pytest.fixture(scope="module")
def modules(sources: dict[str, str], tmp_path_factory: Any) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("loss_modules")
    return {key: _load(src, path, f"ridge_{key}") for key, src in sources.items()}


def _problem(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Power-law spectrum (MATH.md 4.2's check), a random target and a test covariance."""
    rng = np.random.default_rng(seed)
    k = np.arange(1, n + 1)
    return {
        "Sigma": k**-1.2,
        "beta": rng.normal(size=n) * k**-0.45,
        "Sigma_t": rng.uniform(0.2, 2.0, n),
    }


# ---------------------------------------------------------------------------
# a naive reference written from MATH.md 4.1-4.3 (brentq for kappa)
# ---------------------------------------------------------------------------


def _kappa(lam: float, s: np.ndarray, q: float) -> float:
    """Physical root of lam = kappa (1 - q df1(kappa)), kappa > kappa_0 (MATH.md 2.1)."""
    n_over_p = q * np.mean(s > 0)

    def h(k: float) -> float:
        return float(k * (1 - q * np.mean(s / (s + k))) - lam)

    if lam == 0:
        if n_over_p <= 1:
            return 0.0
        return brentq(
            lambda k: q * np.mean(s / (s + k)) - 1, 1e-300, 1e6 * s.max() * q, xtol=1e-300, rtol=1e-15
        )
    lo = 0.0 if n_over_p <= 1 else _kappa(0.0, s, q)
    hi = lam + q * s.sum() + 1.0
    return brentq(h, lo + 1e-300, hi, xtol=1e-300, rtol=1e-15)


def _by_hand(
    lam: float, s: np.ndarray, b: np.ndarray, q: float, sigma2: float, st: np.ndarray
) -> dict[str, float]:
    k = _kappa(lam, s, q)
    r = 1 / (k + s)  # E_tr = (lam / kappa)^2 E_g = (1 - q df1)^2 E_g (MATH.md 4.2)
    gamma = q * np.mean(s**2 * r**2)
    bias = k**2 * np.sum(b**2 * s * r**2) / (1 - gamma)
    var = sigma2 * gamma / (1 - gamma)
    e_g = bias + var + sigma2
    shifted = k**2 * np.sum(b**2 * st * r**2) + q * np.mean(st * s * r**2) / (1 - gamma) * (
        k**2 * np.sum(b**2 * s * r**2) + sigma2
    )
    return {
        "kappa": k,
        "bias": bias,
        "variance": var,
        "E_g": e_g,
        "E_tr": (1 - q * np.mean(s * r)) ** 2 * e_g,
        "shift": shifted + sigma2,
    }


# ---------------------------------------------------------------------------
# against the dense reference LossFormula.evaluate
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["test", "train", "shift"])
@pytest.mark.parametrize("p_value", [12, 60])
def test_matches_the_dense_reference(losses, modules, key, p_value):
    n = 30
    prob = _problem(n)
    lams = np.array([1e-3, 0.05, 0.7, 5.0])
    kwargs: dict[str, Any] = dict(Sigma=prob["Sigma"], beta=prob["beta"], D=n, P=p_value, sigma2=0.09)
    values: dict[str, Any] = {
        "Sigma": prob["Sigma"],
        "beta": prob["beta"],
        "D": n,
        "P": p_value,
        "sigma2": 0.09,
    }
    if key == "shift":
        kwargs["Sigma_t"] = values["Sigma_t"] = prob["Sigma_t"]
    out = modules[key].evaluate(lams, **kwargs)
    assert set(out) == {*losses[key].terms, "total", "kappa"}
    for i, lam in enumerate(lams):
        ref = losses[key].evaluate({**values, "lam": lam})
        for name, value in ref.items():
            assert out[name][i] == pytest.approx(value, rel=1e-9, abs=1e-12), (key, name, lam)


# ---------------------------------------------------------------------------
# MATH.md 7 (isotropic) and MATH.md 4.1-4.3 by hand
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "lam", "kappa", "e_g", "e_tr"),
    [
        (0.5, 1.0, 1.2807764064, 0.6254594533, 0.3812874611),
        (2.0, 0.1, 1.1844288770, 0.9365286644, 0.0066757967),
    ],
)
def test_isotropic_ridge_table(modules, q, lam, kappa, e_g, e_tr):
    n = 8  # Sigma = I, |beta|^2 = s = 1, sigma2 = 0.25; only D / P = q matters
    iso = dict(Sigma=np.ones(n), beta=np.full(n, n**-0.5), D=n, P=n / q, sigma2=0.25)
    test = modules["test"].evaluate(lam, **iso)
    train = modules["train"].evaluate(lam, **iso)
    assert test["kappa"] == pytest.approx(kappa, abs=1e-10)
    assert test["total"] == pytest.approx(e_g, abs=1e-9)
    assert train["total"] == pytest.approx(e_tr, abs=1e-9)


def test_isotropic_ridgeless_and_optimal_ridge(modules):
    n = 8
    iso = dict(Sigma=np.ones(n), beta=np.full(n, n**-0.5), D=n, sigma2=0.25)
    ridgeless = modules["test"].evaluate(0.0, P=np.array([2 * n, n / 2]), **iso)["total"]
    np.testing.assert_allclose(ridgeless, [0.5, 1.0], atol=1e-12)  # q = 0.5, q = 2
    at = modules["test"].evaluate(np.array([0.375, 0.1875, 0.75]), P=n / 1.5, **iso)["total"]
    np.testing.assert_allclose(at, [0.793400, 0.812152, 0.813475], atol=1e-6)  # MATH.md 7, q = 1.5


def test_ridgeless_underparameterised_any_spectrum(modules):
    prob = _problem(40)  # MATH.md 7: E_g = sigma2 / (1 - N/P) = 0.18 for sigma2 = 0.09, q = 0.5
    out = modules["test"].evaluate(0.0, Sigma=prob["Sigma"], beta=prob["beta"], P=80, sigma2=0.09)
    assert out["total"] == pytest.approx(0.18, abs=1e-12)
    assert out["bias"] == 0.0


@pytest.mark.parametrize("p_value", [150, 2000])  # over- and under-parameterised, D = 600
def test_general_spectrum_against_math_4_by_hand(modules, p_value):
    n = 600
    prob = _problem(n, seed=3)
    lams = np.concatenate([[0.0], np.geomspace(1e-5, 30.0, 199)])  # 199 > 4 * 24: interpolated sums
    common = dict(Sigma=prob["Sigma"], beta=prob["beta"], P=p_value, sigma2=0.09)
    test = modules["test"].evaluate(lams, **common)
    train = modules["train"].evaluate(lams, **common)
    shift = modules["shift"].evaluate(lams, Sigma_t=prob["Sigma_t"], **common)
    for i in range(0, lams.size, 11):
        ref = _by_hand(lams[i], prob["Sigma"], prob["beta"], n / p_value, 0.09, prob["Sigma_t"])
        assert test["kappa"][i] == pytest.approx(ref["kappa"], rel=1e-10, abs=1e-14)
        assert test["bias"][i] == pytest.approx(ref["bias"], rel=1e-9, abs=1e-14)
        assert test["variance"][i] == pytest.approx(ref["variance"], rel=1e-9, abs=1e-14)
        assert test["total"][i] == pytest.approx(ref["E_g"], rel=1e-9)
        assert train["total"][i] == pytest.approx(ref["E_tr"], rel=1e-9, abs=1e-14)
        assert shift["total"][i] == pytest.approx(ref["shift"], rel=1e-9)


def test_interpolated_sums_equal_exact_sums(modules):
    """Many lam use Chebyshev interpolation in log kappa; single points sum exactly."""
    prob = _problem(3000, seed=5)
    lams = np.geomspace(1e-6, 1e3, 500)
    common = dict(Sigma=prob["Sigma"], beta=prob["beta"], Sigma_t=prob["Sigma_t"], P=1000, sigma2=0.3)
    grid = modules["shift"].evaluate(lams, **common)
    for i in range(0, 500, 37):
        one = modules["shift"].evaluate(lams[i], **common)
        for name in ("bias", "variance", "total"):
            assert grid[name][i] == pytest.approx(float(one[name]), rel=1e-12), (name, lams[i])


def test_ridgeless_limit_is_continuous_on_both_sides(modules):
    prob = _problem(50, seed=1)
    for p_value in (20, 200):
        common = dict(Sigma=prob["Sigma"], beta=prob["beta"], P=p_value, sigma2=0.09)
        for key in ("test", "train"):
            out = modules[key].evaluate(np.array([0.0, 1e-10]), **common)
            assert out["total"][0] == pytest.approx(out["total"][1], rel=1e-7), (key, p_value)


def test_broadcasting_of_lam_ratios_and_noise(modules):
    prob = _problem(40, seed=2)
    lams = np.array([[0.01], [0.1], [1.0]])
    ps = np.array([20.0, 40.0, 90.0])
    sig = np.array([0.0, 0.1, 0.5])
    out = modules["test"].evaluate(lams, Sigma=prob["Sigma"], beta=prob["beta"], P=ps, sigma2=sig)
    assert out["total"].shape == (3, 3)
    for i in range(3):
        for j in range(3):
            one = modules["test"].evaluate(
                lams[i, 0], Sigma=prob["Sigma"], beta=prob["beta"], P=ps[j], sigma2=sig[j]
            )
            assert out["total"][i, j] == pytest.approx(float(one["total"]), rel=1e-12)
    assert np.all(out["variance"][:, 0] == 0.0)  # sigma2 = 0 is allowed: no noise


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_divergent_ridgeless_limit_is_a_value_error(modules):
    prob = _problem(30)
    with pytest.raises(ValueError, match="has no finite ridgeless value here"):
        modules["test"].evaluate(0.0, Sigma=prob["Sigma"], beta=prob["beta"], P=30, sigma2=0.09)  # P = D


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lam": -0.1}, "lam = -0.1 < 0"),
        ({"lam": 0.1 + 0.2j}, "lam must be real"),
        ({"sigma2": -1.0}, "sigma2 = -1 must be >= 0"),
        ({"sigma2": None}, "missing sigma2"),
        ({"P": 0.0}, "P = 0 must be > 0"),
        ({"Sigma": -np.ones(5)}, "negative eigenvalue"),
        ({"beta": np.ones(4)}, "different lengths"),
        ({"beta": None}, "missing beta"),
        ({"Sigma": np.array([1.0, np.nan, 1, 1, 1])}, "non-finite"),
        ({"lam": np.ones(3), "P": np.ones(2) * 5}, "do not broadcast"),
    ],
)
def test_bad_inputs_raise_value_errors(modules, change, message):
    args: dict[str, Any] = dict(lam=0.1, Sigma=np.ones(5), beta=np.ones(5), P=10, sigma2=0.1)
    args.update(change)
    lam = args.pop("lam")
    with pytest.raises(ValueError, match=message):
        modules["test"].evaluate(lam, **args)


def test_loss_to_module_rejects_bad_arguments(losses):
    with pytest.raises(InvalidArgument, match="identifier"):
        loss_to_module(losses["test"], "not a name")
    with pytest.raises(InvalidArgument, match="LossFormula"):
        loss_to_module("E_g", "m")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# the module itself
# ---------------------------------------------------------------------------


def test_source_is_numpy_only_and_shows_the_formula(sources):
    for key, src in sources.items():
        tree = ast.parse(src)
        imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert imported == {"numpy"}, key
        doc = ast.get_docstring(tree)
        assert doc is not None and "evaluated as (lam eliminated)" in doc and "mean_k" in doc
    assert (
        "def evaluate(lam, *, Sigma=None, Sigma_t=None, beta=None, D=None, P=None, sigma2=None):"
        in (sources["shift"])
    )
    # the merged sum gamma = q mean(s^2 / (s + kappa)^2) appears as one sum
    assert "Sigma**2/(Sigma + kappa)**2" in sources["test"]


def test_module_runs_where_sympy_cannot_be_imported(sources, tmp_path):
    path = tmp_path / "standalone_ridge.py"
    path.write_text(sources["test"])
    code = (
        "import sys\n"
        "for blocked in ('sympy', 'scipy', 'detequiv'):\n"
        "    sys.modules[blocked] = None\n"
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('standalone', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "import numpy\n"
        "out = m.evaluate(1.0, Sigma=numpy.ones(4), beta=numpy.full(4, 0.5), D=1, P=2, sigma2=0.25)\n"
        "print(repr(float(out['total'])))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(0.6254594533, abs=1e-10)  # MATH.md 7


# ---------------------------------------------------------------------------
# curve_main (the `detequiv curve` command, detequiv.cli.curve)
# ---------------------------------------------------------------------------


def test_curve_main_prints_and_writes_the_isotropic_curve(tmp_path, capsys):
    csv = tmp_path / "curve.csv"
    argv = ["ridge", "--spectrum", "flat", "--D", "6", "--P", "3", "--target", "flat", "--noise", "0.25"]
    assert curve_main([*argv, "--lam", "0:0.1:4", "--csv", str(csv)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["lam", "kappa", "bias", "variance", "noise", "E_test", "E_train"]
    rows = np.loadtxt(csv, delimiter=",", skiprows=1)
    assert rows.shape == (4, 7)
    assert rows[0, 5] == pytest.approx(1.0, abs=1e-12)  # MATH.md 7: ridgeless q = 2, E_g = 1
    assert rows[-1, 1] == pytest.approx(1.1844288770, abs=1e-10)  # q = 2, lam = 0.1
    assert rows[-1, 5] == pytest.approx(0.9365286644, abs=1e-9)
    assert rows[-1, 6] == pytest.approx(0.0066757967, abs=1e-9)


def test_curve_main_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curve.png"
    curve_main(["ridge", "--spectrum", "powerlaw:1.2", "--D", "200", "--lam", "1e-3:1:5", "--plot", str(out)])
    capsys.readouterr()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--spectrum", "zipf:1"], "powerlaw:ALPHA"),
        (["--spectrum", "flat", "--lam", "1:0.1:5"], "LO < HI"),
        (["--spectrum", "flat", "--lam", "oops"], "LO:HI:COUNT"),
        (["--spectrum", "flat", "--D", "0"], "positive integer"),
        (["--spectrum", "flat", "--noise", "-1"], "must be >= 0"),
        (["--spectrum", "flat", "--P", "10", "--lam", "0:1:3"], "no finite ridgeless value"),
    ],
)
def test_curve_main_bad_arguments(argv, message, capsys):
    full = ["ridge", "--D", "10", *argv]
    with pytest.raises(InvalidArgument, match=message):
        curve_main(full)


def test_separate_test_noise_is_a_nonnegative_parameter(tmp_path):
    noise_t = sp.Symbol("sigma2_t", nonnegative=True)
    loss = RidgeRegression(SIGMA, X, BETA, test_covariance=SHIFT, test_noise=noise_t).test_error()
    module = _load(loss_to_module(loss, "shift_noise"), tmp_path, "shift_noise")
    prob = _problem(20, seed=4)
    values = {
        "Sigma": prob["Sigma"],
        "Sigma_t": prob["Sigma_t"],
        "beta": prob["beta"],
        "P": 10,
        "sigma2": 0.1,
    }
    out = module.evaluate(0.3, **values, sigma2_t=0.0)
    ref = loss.evaluate({**values, "D": 20, "sigma2_t": 0.0, "lam": 0.3})
    for name, value in ref.items():
        assert float(out[name]) == pytest.approx(value, rel=1e-9, abs=1e-14), name
    with pytest.raises(ValueError, match="missing sigma2_t"):
        module.evaluate(0.3, **values)


def test_negative_control_a_perturbed_module_fails_the_checks(losses, sources, tmp_path):
    """The comparisons above can fail: a kernel off by 1e-6 in kappa is caught."""
    assert sources["test"].count("_r = 1/(Sigma + kappa)") == 1
    wrong = _load(
        sources["test"].replace("_r = 1/(Sigma + kappa)", "_r = 1/(Sigma + 1.000001*kappa)"), tmp_path, "w"
    )
    prob = _problem(30)
    values = {"Sigma": prob["Sigma"], "beta": prob["beta"], "D": 30, "P": 12, "sigma2": 0.09}
    out = wrong.evaluate(0.05, **values)
    ref = losses["test"].evaluate({**values, "lam": 0.05})
    assert float(out["total"]) != pytest.approx(ref["total"], rel=1e-9)
    by_hand = _by_hand(0.05, prob["Sigma"], prob["beta"], 30 / 12, 0.09, prob["Sigma_t"])
    assert float(out["total"]) != pytest.approx(by_hand["E_g"], rel=1e-9)
