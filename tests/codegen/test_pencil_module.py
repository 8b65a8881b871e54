"""Generated numpy evaluators of general-engine (linear pencil) results.

The module must agree with ``PencilEquivalent.evaluate`` (the library's own numbers, a separate
implementation: sympy-walked matrix numbers) in both of its printings (spectral: 1-D
eigenvalues; dense: rotated, non-commuting 2-D matrices), at real and complex ridges, and with
an independent fixed-point iteration written here (the sum of two sample covariances).
"""

import ast

import numpy as np
import pytest
import sympy as sp

import detequiv as de
from detequiv.codegen.pencil_module import pencil_to_module
from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent, trace
from detequiv.derivations.general import PencilEquivalent

lam, lam2, lam3 = sp.symbols("lam lam2 lam3", positive=True)
D, P, P1, P2 = sp.symbols("D P P1 P2", positive=True)
S, S1, S2 = Deterministic("Sigma", D), Deterministic("Sigma1", D), Deterministic("Sigma2", D)
M, N = Deterministic("M", D), Deterministic("N", D)
K, Om = Deterministic("K", P), Deterministic("Omega", D)
X, X1, X2 = Gaussian("X", (P, D)), Gaussian("X1", (P1, D)), Gaussian("X2", (P2, D))
SH = S.sqrt() @ X.T @ X @ S.sqrt() / P

EXPRESSIONS = {
    "sum_of_covariances": lam
    * resolvent(S1.sqrt() @ X1.T @ X1 @ S1.sqrt() / P1 + S2.sqrt() @ X2.T @ X2 @ S2.sqrt() / P2, lam),
    "correlated_samples": lam * resolvent(S.sqrt() @ X.T @ K @ X @ S.sqrt() / P, lam),
    "generalized_ridge": lam * resolvent(Om + SH, lam),
    "two_point": trace(
        M
        @ resolvent(S1.sqrt() @ X.T @ X @ S1.sqrt() / P, lam)
        @ N
        @ resolvent(S2.sqrt() @ X.T @ X @ S2.sqrt() / P, lam2)
    ),
    "three_resolvents": trace(resolvent(SH, lam) @ M @ resolvent(SH, lam2) @ N @ resolvent(SH, lam3)),
    "square": lam**2 * resolvent(SH, lam) @ resolvent(SH, lam),
}


def _rotated(rng, eigenvalues):
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (q * eigenvalues) @ q.T


def _values(dense, n=40, seed=3):
    rng = np.random.default_rng(seed)
    spectra = {
        "Sigma": np.geomspace(0.05, 4.0, n),
        "Sigma1": np.linspace(0.2, 2.0, n),
        "Sigma2": np.geomspace(0.1, 5.0, n)[::-1],
        "M": np.linspace(-1.0, 1.0, n),
        "N": np.linspace(0.0, 2.0, n),
        "Omega": np.linspace(0.0, 1.0, n),
        "K": np.linspace(0.5, 1.5, 2 * n),
    }
    mats = {k: _rotated(rng, v) for k, v in spectra.items()} if dense else spectra
    return mats, {"P": 2 * n, "P1": n, "P2": 3 * n // 2}


@pytest.fixture(scope="module")
def modules():
    out = {}
    for name, expr in EXPRESSIONS.items():
        eq = de.derive(expr)
        assert isinstance(eq, PencilEquivalent), name
        namespace: dict = {}
        exec(compile(pencil_to_module(eq, name), f"{name}.py", "exec"), namespace)  # noqa: S102
        out[name] = (eq, namespace["evaluate"])
    return out


@pytest.mark.parametrize("dense", [False, True], ids=["spectral", "dense"])
@pytest.mark.parametrize("name", list(EXPRESSIONS))
def test_module_agrees_with_evaluate(modules, name, dense):
    eq, evaluate = modules[name]
    mats, sizes = _values(dense)
    used = {m.name for m in eq.deterministic.atoms(sp.MatrixSymbol)} | {
        m.name for fp in eq.fixed_points for m in fp.rhs.atoms(sp.MatrixSymbol)
    }
    mats = {k: v for k, v in mats.items() if k in used}
    scalars = {
        k: v for k, v in sizes.items() if sp.Symbol(k, positive=True) in eq.random.to_sympy().free_symbols
    }
    ridges = {"lam": np.array([0.05, 0.3, 1.5, 0.2 + 0.4j])}
    for extra, shift in (("lam2", 0.1), ("lam3", 0.25)):
        if sp.Symbol(extra, positive=True) in eq.lams:
            ridges[extra] = ridges["lam"] + shift
    out = evaluate(ridges["lam"], **{k: v for k, v in ridges.items() if k != "lam"}, **mats, **scalars)
    n = next(iter(mats.values())).shape[0]
    for i in range(4):
        values = {**mats, **scalars, "D": n, **{k: v[i] for k, v in ridges.items()}}
        got = eq.evaluate(values)
        want = got.value if eq.is_scalar else got.trace()
        assert abs(out["value"][i] - want) <= 1e-10 * max(1.0, abs(want)), (name, i)
        for symbol, v in got.unknowns:
            assert abs(out[str(symbol)][i] - v) <= 1e-10 * max(1.0, abs(v)), (name, symbol)


def test_dense_module_against_an_independent_iteration(modules):
    """The sum of two sample covariances (Couillet-Debbah): e_i = tr S_i (lam + sum_j S_j / (1 + (D/P_j)
    e_j))^-1, iterated here with damping, rotated non-commuting S_1, S_2."""
    _, evaluate = modules["sum_of_covariances"]
    mats, sizes = _values(True, n=60, seed=8)
    s1, s2 = mats["Sigma1"], mats["Sigma2"]
    n, p1, p2 = 60, sizes["P1"], sizes["P2"]
    for z in (0.1, 0.05 + 0.2j):
        e = np.zeros(2, dtype=complex)
        for _ in range(20000):
            r = np.linalg.inv(z * np.eye(n) + s1 / (1 + n / p1 * e[0]) + s2 / (1 + n / p2 * e[1]))
            new = np.array([np.trace(r @ s1), np.trace(r @ s2)]) / n
            if np.max(abs(new - e)) < 1e-15:
                break
            e = 0.5 * e + 0.5 * new
        want = z * np.trace(r) / n
        got = evaluate(z, Sigma1=s1, Sigma2=s2, P1=p1, P2=p2)["value"]
        assert abs(got - want) < 1e-12 * abs(want)


def test_a_test_matrix_weights_the_trace(modules):
    eq, evaluate = modules["square"]
    mats, sizes = _values(False)
    t = np.linspace(0.0, 3.0, 40)
    got = evaluate(0.4, Sigma=mats["Sigma"], test=t, P=sizes["P"])["value"]
    want = eq.evaluate({"Sigma": mats["Sigma"], "D": 40, "P": sizes["P"], "lam": 0.4}).trace(t)
    assert abs(got - want) < 1e-12 * abs(want)


def test_module_imports_numpy_only_and_parses(modules):
    eq, _ = modules["two_point"]
    tree = ast.parse(pencil_to_module(eq, "m"))
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"numpy"}


def test_to_module_dispatches_to_the_pencil_generator(modules):
    eq, _ = modules["sum_of_covariances"]
    assert de.to_module(eq, "m") == pencil_to_module(eq, "m")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"Sigma1": None}, "missing Sigma1"),
        ({"D": 5}, "D = 5 but"),
        ({"Sigma2": np.ones(7)}, "rows"),
        ({"lam": -1.0}, "physical branch"),
        ({"P1": -3}, "positive"),
        ({"Sigma1": np.array([1.0, np.nan, 1.0, 1.0])}, "non-finite"),
    ],
)
def test_bad_inputs_are_refused(modules, change, message):
    _, evaluate = modules["sum_of_covariances"]
    kwargs = {"lam": 0.5, "Sigma1": np.ones(4), "Sigma2": np.ones(4), "P1": 8, "P2": 8, **change}
    with pytest.raises(ValueError, match=message):
        evaluate(kwargs.pop("lam"), **kwargs)


def test_a_real_grid_is_solved_point_to_point():
    """A fine real grid: every point after the first starts from its neighbour (the values agree with
    single-point solves)."""
    eq = de.derive(EXPRESSIONS["sum_of_covariances"])
    namespace: dict = {}
    exec(compile(pencil_to_module(eq, "m"), "m.py", "exec"), namespace)  # noqa: S102
    s1, s2 = np.geomspace(1e-3, 1.0, 500), np.linspace(0.1, 1.0, 500)
    grid = np.logspace(-4, 1, 60)
    out = namespace["evaluate"](grid, Sigma1=s1, Sigma2=s2, P1=300, P2=900)["value"]
    for i in (0, 17, 59):
        single = namespace["evaluate"](grid[i], Sigma1=s1, Sigma2=s2, P1=300, P2=900)["value"]
        assert abs(out[i] - single) < 1e-12 * abs(single)


def test_a_quadratic_form_and_its_module():
    """u.T E v of the sum of two covariances: evaluate (spectral and dense) equals u.T E v of the matrix
    result, the exact witness checks the contracted matrix (a wrong one fails), the module agrees."""
    from detequiv.derivations.expressions import DeterministicVector

    u, v = DeterministicVector("u", D), DeterministicVector("v", D)
    matrix = de.derive(EXPRESSIONS["sum_of_covariances"])
    form = de.derive(u.T @ EXPRESSIONS["sum_of_covariances"] @ v)
    assert isinstance(form, PencilEquivalent) and form.check_series(5).passed
    wrong = PencilEquivalent(
        random=form.random,
        deterministic=form.deterministic.subs(form.unknowns[0], 0),
        fixed_points=form.fixed_points,
        derivation=(),
        lams=form.lams,
        pencil=form.pencil,
    )
    assert not wrong.check_series(3).passed
    namespace: dict = {}
    exec(compile(pencil_to_module(form, "quadratic"), "quadratic.py", "exec"), namespace)  # noqa: S102
    rng = np.random.default_rng(5)
    uu, vv = rng.standard_normal(30), rng.standard_normal(30)
    for dense in (False, True):
        mats, sizes = _values(dense, n=30)
        values = {"Sigma1": mats["Sigma1"], "Sigma2": mats["Sigma2"], "P1": sizes["P1"], "P2": sizes["P2"]}
        for z in (0.3, 0.1 + 0.2j):
            full = np.asarray(matrix.evaluate({**values, "D": 30, "lam": z}).matrix)
            want = uu @ full @ vv
            got = form.evaluate({**values, "D": 30, "lam": z, "u": uu, "v": vv}).value
            module = namespace["evaluate"](z, u=uu, v=vv, **values)["value"]
            assert abs(got - want) < 1e-12 * abs(want) and abs(module - want) < 1e-10 * abs(want)
