"""Free laws: moments against closed forms, closed-form transforms against their series.

Expected values: Narayana / Catalan numbers from binomials, MATH.md sections 1.4 and 7,
free cumulants of a deterministic matrix written out by hand, and sympy's own ``series``
of the closed forms (compared with series computed from the law's cumulants/moments).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from math import comb

import pytest
import sympy as sp

from detequiv.derivations.laws import (
    KNOWN_LAWS,
    Constant,
    CumulantLaw,
    DeterministicLaw,
    FreePoisson,
    Law,
    Semicircle,
    Wishart,
    parse_law,
)
from detequiv.derivations.quantities import tr
from detequiv.derivations.transforms import r_series, s_series
from detequiv.errors import InvalidArgument, UndefinedTransform, UnknownLaw

q = sp.Symbol("q", positive=True)
w, t = sp.symbols("w t")


def catalan(n):
    return comb(2 * n, n) // (n + 1)


def narayana_polynomial(k, x):
    return sum(comb(k, j) * comb(k, j - 1) // k * x ** (j - 1) for j in range(1, k + 1))


# --------------------------------------------------------------------------- moments


def test_wishart_symbolic_moments_are_narayana_polynomials():
    for k, m in enumerate(Wishart(q).moments(12), start=1):
        assert sp.expand(m - narayana_polynomial(k, q)) == 0


def test_wishart_numbers_from_math_md():
    want = [1, 1.5, 2.75, 5.625, 12.3125, 28.21875, 66.859375]
    for ratio in (sp.Rational(1, 2), Fraction(1, 2), 0.5):
        assert [float(m) for m in Wishart(ratio).moments(7)] == want
    assert [float(m) for m in Wishart(Fraction(5, 2)).moments(5)] == [
        1,
        3.5,
        14.75,
        69.125,
        346.3125,
    ]
    assert Wishart(1).moments(10) == tuple(catalan(n) for n in range(1, 11))


def test_wishart_cumulants_and_ratio_above_one():
    assert Wishart(q).cumulants(4) == (1, q, q**2, q**3)
    assert Wishart(3).moments(3) == (1, 4, 1 + 3 * 3 + 9)  # m3 = 1 + 3q + q^2


def test_free_poisson():
    r, a = sp.symbols("r a", positive=True)
    law = FreePoisson(r, a)
    assert law.cumulants(3) == (r * a, r * a**2, r * a**3)
    for n, m in enumerate(law.moments(8), start=1):
        # sum over k blocks: N(n, k) r^k a^n
        want = sum(comb(n, k) * comb(n, k - 1) // n * r**k * a**n for k in range(1, n + 1))
        assert sp.expand(m - want) == 0
    # MATH.md 1.4: MP(q) is free Poisson with rate 1/q and jump q
    assert [
        sp.simplify(x - y)
        for x, y in zip(FreePoisson(1 / q, q).moments(6), Wishart(q).moments(6), strict=True)
    ] == [0] * 6


def test_semicircle():
    got = Semicircle().moments(12)
    assert got[1::2] == tuple(catalan(k) for k in range(1, 7))
    assert got[0::2] == (0,) * 6
    v = sp.Symbol("v", positive=True)
    assert Semicircle(v).moments(6)[1::2] == (v, 2 * v**2, 5 * v**3)


def test_constant():
    c = sp.Symbol("c")
    assert Constant(c).moments(4) == (c, c**2, c**3, c**4)
    assert Constant(-2).moments(3) == (-2, 4, -8)


def test_cumulant_law():
    law = CumulantLaw("B")
    k1, k2, k3 = (sp.Symbol(f"kappa_B,{n}") for n in (1, 2, 3))
    assert law.cumulants(3) == (k1, k2, k3)
    assert law.cumulant(2) == k2
    # m3 over NC(3): {123}, three of type {2,1}, {1}{2}{3}
    assert law.moments(3)[-1] == sp.expand(k3 + 3 * k1 * k2 + k1**3)
    assert CumulantLaw("B", [1, 1, 1]).moments(3) == (1, 2, 5)
    assert CumulantLaw("B", lambda n: 1).moments(4) == (1, 2, 5, 14)
    with pytest.raises(InvalidArgument, match="has 3 cumulants, so kappa_4 is unknown"):
        CumulantLaw("B", [1, 1, 1]).cumulant(4)
    assert sp.latex(law.cumulant(2)) == r"\kappa_{B,2}"


def test_deterministic_law():
    law = DeterministicLaw("A")
    A = sp.Symbol("A", commutative=False)
    assert law.moments(3) == (tr(A), tr(A**2), tr(A**3))
    a1, a2, a3, a4 = (tr(A**n) for n in range(1, 5))
    # free cumulants written out by hand (Moebius inversion on NC(n))
    assert law.cumulants(4) == tuple(
        sp.expand(e)
        for e in (
            a1,
            a2 - a1**2,
            a3 - 3 * a1 * a2 + 2 * a1**3,
            a4 - 4 * a1 * a3 - 2 * a2**2 + 10 * a1**2 * a2 - 5 * a1**4,
        )
    )
    assert law.cumulant(3) == sp.expand(a3 - 3 * a1 * a2 + 2 * a1**3)
    # the moment-cumulant round trip gives the traces back
    assert Law.moments(law, 8) == law.moments(8)


# --------------------------------------------------------------------------- transforms


def _laws_with_r():
    r, a, v, c = sp.symbols("r a v c", positive=True)
    return [
        Wishart(q),
        Wishart(sp.Rational(3, 2)),
        FreePoisson(r, a),
        Semicircle(v),
        Semicircle(),
        Constant(c),
        Constant(-3),
    ]


@pytest.mark.parametrize("law", _laws_with_r(), ids=str)
def test_closed_r_transform_equals_series(law):
    order = 7
    closed = sp.series(law.r_transform(w), w, 0, order).removeO()
    diff = sp.expand(closed - r_series(law.cumulants(order), order, w))
    assert sp.simplify(diff) == 0


def _laws_with_s():
    r, a, c = sp.symbols("r a c", positive=True)
    return [
        Wishart(q),
        Wishart(2),
        FreePoisson(r, a),
        FreePoisson(3, sp.Rational(1, 2)),
        Constant(c),
        Constant(sp.Rational(-2, 3)),
    ]


@pytest.mark.parametrize("law", _laws_with_s(), ids=str)
def test_closed_s_transform_equals_series(law):
    order = 6
    closed = sp.series(law.s_transform(t), t, 0, order).removeO()
    diff = sp.expand(closed - s_series(law.moments(order), order, t))
    assert all(sp.simplify(diff.coeff(t, j)) == 0 for j in range(order))


def test_math_md_closed_forms():
    assert sp.simplify(Wishart(q).s_transform(t) - 1 / (1 + q * t)) == 0
    assert sp.simplify(Wishart(q).r_transform(w) - 1 / (1 - q * w)) == 0
    r, a = sp.symbols("r a", positive=True)
    assert sp.simplify(FreePoisson(r, a).r_transform(w) - r * a / (1 - a * w)) == 0
    assert sp.simplify(FreePoisson(r, a).s_transform(t) - 1 / (a * (t + r))) == 0
    assert Semicircle(2).r_transform(w) == 2 * w
    assert Constant(4).r_transform(w) == 4 and Constant(4).s_transform(t) == sp.Rational(1, 4)


def test_undefined_transforms():
    with pytest.raises(UndefinedTransform, match="m1 = 0"):
        Semicircle().s_transform(t)
    with pytest.raises(UndefinedTransform, match="m1 = 0"):
        Constant(0).s_transform(t)
    for law in (CumulantLaw("B"), DeterministicLaw("A")):
        with pytest.raises(UndefinedTransform, match="r_series"):
            law.r_transform(w)
        with pytest.raises(UndefinedTransform, match="s_series"):
            law.s_transform(t)


# --------------------------------------------------------------------------- values


def test_laws_are_values():
    assert Wishart(Fraction(1, 2)) == Wishart(0.5) == Wishart(sp.Rational(1, 2))
    assert hash(Wishart(Fraction(1, 2))) == hash(Wishart(sp.Rational(1, 2)))
    assert Wishart(1) != Wishart(2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Wishart(1).ratio = 2  # type: ignore[misc]
    assert Wishart(q).subs(q, 2) == Wishart(2)
    assert FreePoisson(q, 2).subs(q, 3) == FreePoisson(3, 2)
    k = sp.Symbol("k")
    assert CumulantLaw("B", [k, k**2]).subs(k, 2).cumulants(2) == (2, 4)
    assert CumulantLaw("B").subs(sp.Symbol("kappa_B,1"), 1).cumulants(2) == (
        1,
        sp.Symbol("kappa_B,2"),
    )


def test_printing():
    assert str(Wishart(q)) == "Wishart(q)" == Wishart(q).name
    assert str(Semicircle()) == "Semicircle(1)"
    assert str(CumulantLaw("B")) == "CumulantLaw(B)"
    assert repr(CumulantLaw("B")) == "CumulantLaw('B')"
    assert Wishart(sp.Rational(1, 2))._repr_latex_() == (r"$\operatorname{Wishart}\left(\frac{1}{2}\right)$")
    assert sp.latex(Wishart(q)) == r"\operatorname{Wishart}\left(q\right)"
    assert FreePoisson(2, 3)._repr_latex_().startswith("$")


def test_symbolic_ratio_not_declared_positive_is_accepted():
    x = sp.Symbol("x")
    assert Wishart(x).moments(2) == (1, x + 1)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: Wishart(-1), InvalidArgument, "ratio q = N/P must be > 0, got -1"),
        (lambda: Wishart(0), InvalidArgument, "must be > 0, got 0"),
        (lambda: Wishart(-q), InvalidArgument, "must be > 0"),
        (lambda: Wishart(sp.I), InvalidArgument, "must be real"),
        (lambda: Wishart("0.5"), InvalidArgument, "text"),
        (lambda: FreePoisson(-1, 1), InvalidArgument, "rate must be > 0"),
        (lambda: FreePoisson(1, 0), InvalidArgument, "jump must be nonzero"),
        (lambda: Semicircle(0), InvalidArgument, "variance must be > 0"),
        (lambda: CumulantLaw("1B"), InvalidArgument, "name"),
        (lambda: CumulantLaw("B", []), InvalidArgument, "empty"),
        (lambda: CumulantLaw("B", 3), InvalidArgument, "sequence or a callable"),
        (lambda: DeterministicLaw("A B"), InvalidArgument, "name"),
        (lambda: Wishart(q).cumulant(0), InvalidArgument, "n must be an integer >= 1"),
        (lambda: Wishart(q).moments(2.5), InvalidArgument, "got 2.5"),
        (lambda: Semicircle().cumulants(0), InvalidArgument, "got 0"),
    ],
)
def test_bad_parameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


# --------------------------------------------------------------------------- parse_law


@pytest.mark.parametrize(
    ("text", "law"),
    [
        ("wishart:0.5", Wishart(sp.Rational(1, 2))),
        ("wishart:1/2", Wishart(sp.Rational(1, 2))),
        (" Wishart : 2 ", Wishart(2)),
        ("mp:3", Wishart(3)),
        ("wishart:q", Wishart(q)),
        ("semicircle", Semicircle()),
        ("semicircle:2", Semicircle(2)),
        ("poisson:2:1/2", FreePoisson(2, sp.Rational(1, 2))),
        ("constant:-3", Constant(-3)),
        ("symbolic", CumulantLaw("B")),
        ("symbolic:X", CumulantLaw("X")),
        ("deterministic:Sigma", DeterministicLaw("Sigma")),
    ],
)
def test_parse_law(text, law):
    assert parse_law(text) == law


def test_parse_law_symbols_are_positive_plain_symbols():
    law = parse_law("wishart:I")
    assert law.ratio.is_positive and law.ratio.name == "I" and law.ratio != sp.I
    assert parse_law("wishart:q").moments(3)[-1] == q**2 + 3 * q + 1


def test_parse_law_unknown():
    with pytest.raises(UnknownLaw, match="unknown law 'cauchy'; known laws:") as info:
        parse_law("cauchy:1")
    for name in KNOWN_LAWS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("wishart:__import__('os')", r"bad ratio \"__import__\('os'\)\""),
        ("wishart:1+1", "bad ratio"),
        ("wishart:q.evalf", "bad ratio"),
        ("wishart:-1", "must be > 0"),
        ("wishart:0", "must be > 0"),
        ("wishart:1..2", "bad ratio"),
        ("wishart:1/0", "bad ratio"),
        ("wishart", "has 0 parameter"),
        ("wishart:1:2", "has 2 parameter"),
        ("semicircle:", "bad variance"),
        ("poisson:1", "poisson:RATE:JUMP"),
        ("poisson:1:0", "jump must be nonzero"),
        ("symbolic:x y", "bad name"),
        ("deterministic", "has 0 parameter"),
    ],
)
def test_parse_law_bad_input(text, match):
    with pytest.raises(InvalidArgument, match=match):
        parse_law(text)


def test_parse_law_never_evaluates(monkeypatch):
    # neither sympify nor eval may see the text
    def forbidden(*args, **kwargs):
        raise AssertionError("text was evaluated")

    monkeypatch.setattr(sp, "sympify", forbidden)
    monkeypatch.setattr("builtins.eval", forbidden)
    for text in ("wishart:q", "wishart:0.25", "poisson:r:2", "semicircle:v"):
        assert isinstance(parse_law(text), Law)
    with pytest.raises(InvalidArgument):
        parse_law("wishart:__import__('os').system('true')")


def test_parse_law_not_a_string():
    with pytest.raises(InvalidArgument, match="needs a string"):
        parse_law(0.5)  # type: ignore[arg-type]


def test_every_known_law_parses():
    examples = {
        "wishart": "wishart:2",
        "mp": "mp:2",
        "poisson": "poisson:1:2",
        "semicircle": "semicircle",
        "constant": "constant:2",
        "symbolic": "symbolic",
        "deterministic": "deterministic:A",
    }
    assert set(examples) == set(KNOWN_LAWS)
    for text in examples.values():
        law = parse_law(text)
        assert len(law.moments(3)) == 3
