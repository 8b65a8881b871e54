"""Notebook friendliness (issue 6): results, derivations, partitions and diagrams render in
Jupyter. Every ``_repr_latex_`` compiles with a real TeX engine (inline math in an
article, as Jupyter's MathJax receives it), and the SVG views are well-formed SVG."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest
import sympy as sp

import detequiv as de
from detequiv.codegen.texdoc import compile_latex, find_tex_engine, latex_document

needs_tex = pytest.mark.skipif(
    find_tex_engine() is None and not os.environ.get("DETEQUIV_REQUIRE_TEX"),
    reason="pdflatex not installed: apt-get install texlive-latex-base (CI installs it in .ci/run)",
)

D, P, N = sp.symbols("D P N", positive=True)
LAM, LAM2 = sp.symbols("lam lam2", positive=True)
SIGMA, BETA = de.Deterministic("Sigma", D), de.DeterministicVector("beta", D)
X, F = de.Gaussian("X", (P, D)), de.Gaussian("F", (N, D))
SH = SIGMA.sqrt() @ X.T @ X @ SIGMA.sqrt() / P


@pytest.fixture(scope="module")
def objects():
    one = de.derive(LAM * de.resolvent(SH, LAM))
    two = de.derive_two_point(LAM * LAM2 * de.resolvent(SH, LAM) @ SIGMA @ de.resolvent(SH, LAM2))
    ridge = de.RidgeRegression(SIGMA, X, BETA)
    curve = de.GradientFlow(SIGMA, X, BETA).test_loss()
    return {
        "OnePoint": one,
        "TwoPoint": two,
        "LossFormula": ridge.test_error(),
        "LossCurve": curve,
        "Derivation": one.derivation,
        "Step": two.derivation[-1],
        "NCPartition": de.NCPartition([[0, 3], [1, 2], [4]]),
        "Wishart": de.Wishart(sp.Rational(1, 2)),
    }


def test_every_object_has_latex(objects):
    for name, obj in objects.items():
        tex = obj._repr_latex_()
        assert isinstance(tex, str) and tex.startswith("$") and tex.endswith("$"), name
        assert "begin" in tex or len(tex) > 4, name


def test_derivations_are_derivation_objects(objects):
    """``result.derivation`` prints numbered steps and lists its rules (not a bare tuple)."""
    deriv = objects["LossFormula"].derivation
    assert isinstance(deriv, de.derivations.onepoint.Derivation)
    assert "two_point_coincidence" in deriv.rules
    assert str(deriv).splitlines()[0].startswith("1. [error_decomposition]")
    assert deriv == tuple(deriv)  # still a tuple for code that iterates it


@needs_tex
def test_latex_reprs_compile(objects, tmp_path):
    blocks = [f"{name}: {obj._repr_latex_()}" for name, obj in objects.items()]
    pdf = compile_latex(latex_document(blocks, title="notebook views"), outdir=tmp_path)
    assert pdf.read_bytes().startswith(b"%PDF")


def test_svg_views_are_svg():
    pytest.importorskip("matplotlib")
    from detequiv.diagrams.words import Letter, TraceWord

    a, w = Letter("A"), Letter("W", free=True)
    diagram = next(iter(TraceWord([a, w, a, w]).planar_diagrams()))
    for obj in (de.NCPartition([[0, 3], [1, 2], [4]]), diagram):
        svg = obj._repr_svg_()
        assert svg is not None, type(obj).__name__
        root = ET.fromstring(svg[svg.index("<svg") :])
        assert root.tag.endswith("svg")
        assert "path" in svg or "line" in svg  # something is drawn
