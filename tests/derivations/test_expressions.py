"""The expression layer: shapes, normal forms, printing and errors."""

from __future__ import annotations

import pytest
import sympy as sp

from detequiv.derivations.expressions import (
    Deterministic,
    FreeMatrix,
    Gaussian,
    Identity,
    Product,
    Sqrt,
    Sum,
    Transpose,
    resolvent,
    trace,
)
from detequiv.derivations.laws import Wishart
from detequiv.errors import InvalidArgument

D, P, N = sp.symbols("D P N", positive=True)
lam = sp.Symbol("lam", positive=True)
Sigma = Deterministic("Sigma", D)
X = Gaussian("X", (P, D))


def test_shapes_of_products_and_transposes():
    assert X.shape == (P, D)
    assert X.T.shape == (D, P)
    assert (X.T @ X).shape == (D, D)
    assert (X @ X.T).shape == (P, P)
    assert (Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P).shape == (D, D)


def test_products_are_flat_with_one_coefficient():
    e = 2 * (Sigma @ (X.T @ X)) / P
    assert isinstance(e, Product)
    assert e.coeff == 2 / P
    assert e.factors == (Sigma, Transpose(X), X)


def test_transpose_is_pushed_to_the_leaves():
    e = (Sigma.sqrt() @ X.T @ X).T
    assert e.factors == (Transpose(X), X, Sqrt(Sigma))
    assert Sigma.T is Sigma
    assert X.T.T == X
    W = FreeMatrix("W", D, Wishart(sp.Rational(1, 2)))
    assert W.T is W


def test_sums_and_identity():
    e = Sigma + Identity(D)
    assert isinstance(e, Sum) and e.shape == (D, D)
    assert isinstance(Sigma - Sigma, Sum)


def test_values_are_immutable_and_hashable():
    with pytest.raises(AttributeError):
        Sigma.name = "other"  # type: ignore[misc]
    assert hash(Sigma.sqrt() @ Sigma) == hash(Sigma.sqrt() @ Sigma)


def test_printing_uses_sympy():
    e = lam * resolvent(Sigma @ X.T @ X / P, lam)
    text = str(e)
    assert "Sigma" in text and "X.T" in text and "lam" in text
    latex = e._repr_latex_()
    assert latex.startswith("$") and r"\Sigma" in latex and r"\mathbb{I}" in latex
    assert r"\operatorname{tr}" in trace(Sigma)._repr_latex_()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Sigma @ X, "shape mismatch"),
        (lambda: X + Sigma, "shape mismatch"),
        (lambda: resolvent(X, lam), "non-square"),
        (lambda: trace(X), "square"),
        (lambda: Deterministic("Sigma", -3), "positive integer"),
        (lambda: Deterministic("Sigma", 2.5), "positive integer"),
        (lambda: Deterministic("1bad", D), "identifier"),
        (lambda: Gaussian("X", (P,)), "shape"),
        (lambda: FreeMatrix("B", D, "wishart"), "Law"),
        (lambda: Sigma * Sigma, "use @"),
        (lambda: Sigma / 0, "zero"),
        (lambda: Sigma @ 3, "not a matrix"),
        (lambda: Sigma + 1, "Identity"),
    ],
)
def test_bad_input_raises_with_a_hint(build, message):
    with pytest.raises(InvalidArgument, match=message):
        build()
