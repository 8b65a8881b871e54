"""to_latex: the result and derivation as an align* that a real TeX engine compiles."""

from __future__ import annotations

import pytest
import sympy as sp

import detequiv as de
from detequiv.codegen.latex import symbol_names, to_latex
from detequiv.codegen.texdoc import compile_latex, find_tex_engine, latex_document
from detequiv.errors import InvalidArgument

lam = sp.Symbol("lam", positive=True)
D, P, N = sp.symbols("D P N", positive=True)
Sigma = de.Deterministic("Sigma", D)
X = de.Gaussian("X", (P, D))
F = de.Gaussian("F", (N, D))


def _layered():
    B = de.FreeMatrix("B", D, de.CumulantLaw("B"))
    return de.derive(lam * de.resolvent(Sigma.sqrt() @ F.T @ F @ B @ X.T @ X @ Sigma.sqrt() / (P * N), lam))


def test_structure_of_the_align_block():
    eq = de.derive(lam * de.resolvent(Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P, lam))
    tex = to_latex(eq)
    assert tex.startswith("\\begin{align*}") and tex.endswith("\\end{align*}")
    assert r"&\simeq \kappa \left(\kappa \mathbb{I} + \Sigma\right)^{-1}" in tex
    for step in eq.derivation:
        assert step.rule.name.replace("_", r"\_") in tex
    assert r"\intertext{Derivation:}" in tex
    # one row per line break: result, one fixed point, then the steps (+1 for "with" lines)
    assert tex.count("\\\\\n") == 1 + len(eq.fixed_points) + len(eq.derivation) - 1
    short = to_latex(eq, derivation=False)
    assert "Derivation" not in short and short.count("\\\\\n") == len(eq.fixed_points)


def test_symbol_names():
    names = symbol_names(sp.Symbol("lam") * sp.Symbol("kappa") + sp.Symbol("kappa_12") + sp.Symbol("q"))
    assert names == {
        sp.Symbol("kappa"): r"\kappa",
        sp.Symbol("kappa_12"): r"\kappa_{12}",
        sp.Symbol("lam"): r"\lambda",
    }


def test_to_latex_rejects_other_objects():
    with pytest.raises(InvalidArgument, match="derived result"):
        to_latex(Sigma)  # type: ignore[arg-type]


def test_layered_derivation_compiles_with_pdflatex(tmp_path):
    if find_tex_engine() is None:
        pytest.skip("pdflatex not installed; install Debian's texlive-latex-base to run this test")
    pdf = compile_latex(latex_document([to_latex(_layered())], title="Derivation"), outdir=tmp_path)
    assert pdf.exists() and pdf.stat().st_size > 0


def test_two_point_latex_compiles(tmp_path):
    import detequiv as de
    from detequiv.codegen.texdoc import compile_latex, find_tex_engine, latex_document
    from detequiv.derivations.sandwich import derive_two_point

    lam, lam2 = sp.symbols("lam lam2", positive=True)
    D, P = sp.symbols("D P", positive=True)
    S, M = de.Deterministic("Sigma", D), de.Deterministic("M", D)
    X = de.Gaussian("X", (P, D))
    sh = S.sqrt() @ X.T @ X @ S.sqrt() / P
    tex = de.to_latex(derive_two_point(lam * lam2 * de.resolvent(sh, lam) @ M @ de.resolvent(sh, lam2)))
    assert r"\kappa'" in tex and r"\lambda'" in tex and "operator" in tex.replace("\\_", "_")
    if find_tex_engine() is None:
        pytest.skip("pdflatex not installed; install Debian's texlive-latex-base to compile")
    assert compile_latex(latex_document([tex]), outdir=tmp_path).exists()


def test_contracted_results_latex():
    import detequiv as de

    lam = sp.Symbol("lam", positive=True)
    D, P = sp.symbols("D P", positive=True)
    S, T = de.Deterministic("Sigma", D), de.Deterministic("T", D)
    X, u = de.Gaussian("X", (P, D)), de.DeterministicVector("u", D)
    r = lam * de.resolvent(S.sqrt() @ X.T @ X @ S.sqrt() / P, lam)
    for expr in (de.trace(T @ r), u.T @ r @ u):
        tex = de.to_latex(de.derive(expr))
        assert "contract" in tex.replace("\\_", "_") and r"\kappa" in tex
