"""The command-line expression parser: builds the same objects as the Python API, safely."""

import builtins

import pytest
import sympy as sp

from detequiv.derivations.expressions import Deterministic, FreeMatrix, Gaussian, Trace, resolvent, trace
from detequiv.derivations.laws import Wishart
from detequiv.derivations.parser import ParseError, parse_expression, tokenize
from detequiv.errors import InvalidArgument

D, P, N = sp.symbols("D P N", positive=True)
lam = sp.Symbol("lam", positive=True)
Sigma = Deterministic("Sigma", D)
M = Deterministic("M", D)
X = Gaussian("X", (P, D))
F = Gaussian("F", (N, D))
B = FreeMatrix("B", D, Wishart(sp.Rational(1, 2)))
MATS = {"Sigma": Sigma, "M": M, "X": X, "F": F, "B": B}


def parse(text):
    return parse_expression(text, MATS)


def test_sample_covariance_resolvent_matches_python_api():
    want = lam * resolvent(Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P, lam)
    for text in (
        "lam * resolvent(Sigma^(1/2) @ X.T @ X @ Sigma^(1/2) / P, lam)",
        "lam*resolvent(sqrt(Sigma) * X' * X * sqrt(Sigma) / P, lam)",
        "lam * resolvent(Sigma**(1/2) @ X^T @ X @ Sigma**(1/2) / P, lam)",
    ):
        assert parse(text) == want, text


def test_traces_powers_sums_and_scalars():
    assert parse("tr(M @ resolvent(Sigma @ B, lam))") == trace(M @ resolvent(Sigma @ B, lam))
    assert isinstance(parse("trace(Sigma)"), Trace)
    assert parse("Sigma^2") == Sigma @ Sigma
    assert parse("Sigma + 2 * B - M / 3") == Sigma + 2 * B - M / 3
    assert parse("-lam^2 / (P + 1)") == -(lam**2) / (P + 1)
    assert parse("0.5 * Sigma") == sp.Rational(1, 2) * Sigma
    # feature-space random-feature Gram: F X^T X F^T / P is N x N
    assert parse("F @ X.T @ X @ F.T / P").shape == (N, N)


@pytest.mark.parametrize(
    "text, column, fragment",
    [
        ("resolvent(Sigma X, lam)", 17, "write * or @"),
        ("Sigma @ (B + ", 14, "expected a number, a name or '('"),
        ("Sigma # B", 7, "unexpected character '#'"),
        ("Sigma @ X", 7, "shape mismatch"),
        ("Sigma + 1", 7, "cannot add a matrix and a scalar"),
        ("resolvent(X, lam)", 1, "non-square"),
        ("exp(Sigma)", 1, "unknown function 'exp'"),
        ("B^(1/2)", 2, "deterministic"),
        ("Sigma^(-1)", 6, "resolvent(M, lam)"),
        ("lam / Sigma", 5, "divide by scalars"),
        ("", 1, "empty expression"),
        ("tr(Sigma) * M", 11, "trace can only stand alone"),
        ("__import__('os')", 1, "unexpected character '_'"),
    ],
)
def test_errors_point_at_the_column(text, column, fragment):
    with pytest.raises(ParseError) as info:
        parse(text)
    msg = str(info.value)
    assert f"column {column}:" in msg and fragment in msg, msg
    # the caret line marks that column
    assert msg.splitlines()[-1].index("^") == column + 1


def test_never_evaluates(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("eval/sympify must not be called on user text")

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(sp, "sympify", boom)
    monkeypatch.setattr(sp, "parse_expr", boom, raising=False)
    tokens = tokenize("lam * resolvent(Sigma^(1/2) @ X.T @ X @ Sigma^(1/2) / P, lam)")
    assert [t.kind for t in tokens][:3] == ["name", "op", "name"]


def test_bad_declarations_and_inputs():
    with pytest.raises(InvalidArgument, match="identifier"):
        parse_expression("A", {"tr": Sigma})
    with pytest.raises(InvalidArgument, match="string"):
        parse_expression(3, MATS)
    with pytest.raises(ParseError, match="longer than"):
        parse_expression("a+" * 2000, MATS)
