"""What detequiv prints as LaTeX compiles with a real TeX engine."""

import os

import pytest
import sympy as sp

from detequiv.codegen.texdoc import LatexCompileError, compile_latex, find_tex_engine, latex_document
from detequiv.derivations.laws import Wishart
from detequiv.derivations.mixed import mixed_moment
from detequiv.diagrams.partitions import NCPartition

needs_tex = pytest.mark.skipif(
    find_tex_engine() is None and not os.environ.get("DETEQUIV_REQUIRE_TEX"),
    reason="pdflatex not installed: apt-get install texlive-latex-base (CI installs it in .ci/run)",
)


@needs_tex
def test_printed_results_compile(tmp_path):
    S, W = sp.symbols("S W", commutative=False)
    q = sp.Symbol("q", positive=True)
    moment = mixed_moment((S * W) ** 3, {W: Wishart(q)})
    blocks = [
        r"\begin{align*}\operatorname{tr}\big((SW)^3\big) &= " + sp.latex(moment) + r"\end{align*}",
        NCPartition([[0, 3], [1, 2]])._repr_latex_(),
        "Law: " + Wishart(q)._repr_latex_(),
    ]
    pdf = compile_latex(latex_document(blocks, title="detequiv export"), outdir=tmp_path)
    assert pdf.read_bytes().startswith(b"%PDF")


@needs_tex
def test_broken_latex_is_reported(tmp_path):
    with pytest.raises(LatexCompileError, match="Undefined control sequence"):
        compile_latex(latex_document([r"$\notacommand{x}$"]), outdir=tmp_path)


@needs_tex
def test_loss_formula_and_combination_compile():
    import detequiv as de

    D, P = sp.symbols("D P", positive=True)
    ridge = de.RidgeRegression(
        de.Deterministic("Sigma", D), de.Gaussian("X", (P, D)), de.DeterministicVector("b", D)
    )
    tex = de.to_latex(ridge.test_error())
    assert r"E_{\mathrm{test}} &= \mathrm{bias} + \mathrm{variance} + \mathrm{noise}" in tex
    assert "implicit" in tex and "two\\_point\\_coincidence" in tex
    assert compile_latex(latex_document(tex)).exists()
    lam, lam2 = sp.symbols("lam lam2", positive=True)
    s, x = de.Deterministic("Sigma", D), de.Gaussian("X", (P, D))
    sh = s.sqrt() @ x.T @ x @ s.sqrt() / P
    comb = de.derive_sandwich(lam * lam2 * de.resolvent(sh, lam) @ sh @ de.resolvent(sh, lam2))
    assert compile_latex(latex_document([de.to_latex(comb)])).exists()
