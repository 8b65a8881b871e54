"""Complete LaTeX documents, and compiling them with a real TeX engine.

:func:`latex_document` wraps LaTeX produced by sympy's printers (equations,
``align*`` blocks) into a document with the packages detequiv's notation needs;
:func:`compile_latex` runs ``pdflatex`` on it and raises with the log's error lines if
TeX rejects it, so a test can prove that what users paste into a paper compiles.

>>> import sympy as sp
>>> from detequiv.codegen.texdoc import latex_document
>>> doc = latex_document([r"\\begin{equation*}" + sp.latex(sp.Symbol("kappa")) + r"\\end{equation*}"])
>>> doc.splitlines()[0]
'\\\\documentclass{article}'
>>> r"\\usepackage{amsmath}" in doc
True
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import DetEquivError

__all__ = ["latex_document", "compile_latex", "find_tex_engine", "LatexCompileError", "MissingTexEngine"]

#: Packages loaded by :func:`latex_document`: amsmath for ``align*`` and
#: ``\operatorname``, amssymb for the blackboard letters.
PACKAGES = ("amsmath", "amssymb")


class LatexCompileError(DetEquivError, RuntimeError):
    """TeX rejected a document; the message carries the error lines of its log."""


class MissingTexEngine(DetEquivError, RuntimeError):
    """No TeX engine on this machine; the message says what to install."""


def latex_document(blocks: str | Sequence[str], *, title: str | None = None) -> str:
    """A complete ``article`` document holding the given LaTeX blocks, one per paragraph.

    Parameters
    ----------
    blocks : str or sequence of str
        Display math (``equation*``, ``align*`` environments) or text; one string is one
        block.
    title : str, optional
        Printed as an unnumbered section heading.
    """
    if isinstance(blocks, str):
        blocks = [blocks]
    lines = [r"\documentclass{article}"]
    lines += [rf"\usepackage{{{p}}}" for p in PACKAGES]
    lines += [r"\begin{document}"]
    if title:
        lines.append(rf"\section*{{{title}}}")
    for block in blocks:
        lines += [block, ""]
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


def find_tex_engine(engine: str = "pdflatex") -> str | None:
    """Path of the TeX engine, or None if it is not installed."""
    return shutil.which(engine)


def compile_latex(source: str, *, outdir: str | Path | None = None, engine: str = "pdflatex") -> Path:
    """Compile a LaTeX document to PDF; returns the PDF's path.

    Raises
    ------
    MissingTexEngine
        If ``engine`` is not on the PATH (install Debian's ``texlive-latex-base``).
    LatexCompileError
        If TeX stops with an error; the message quotes the log's ``!`` lines.
    """
    exe = find_tex_engine(engine)
    if exe is None:
        raise MissingTexEngine(
            f"{engine} was not found; install a TeX engine, e.g. "
            "'apt-get install texlive-latex-base' (Debian/Ubuntu), to compile LaTeX exports"
        )
    out = Path(outdir) if outdir is not None else Path(tempfile.mkdtemp(prefix="detequiv-tex-"))
    out.mkdir(parents=True, exist_ok=True)
    tex = out / "document.tex"
    tex.write_text(source)
    proc = subprocess.run(
        [exe, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", tex.name],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
    )
    pdf = out / "document.pdf"
    if proc.returncode != 0 or not pdf.exists():
        log = (
            (out / "document.log").read_text(errors="replace")
            if (out / "document.log").exists()
            else proc.stdout
        )
        errors = [line for line in log.splitlines() if line.startswith("!")] or log.splitlines()[-15:]
        raise LatexCompileError(f"{engine} failed on {tex}:\n" + "\n".join(errors[:10]))
    return pdf
