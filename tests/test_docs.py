"""The documentation in docs/: every example of the tutorial runs as written, and the
Sphinx site builds with warnings as errors and documents every public name.

* the tutorial's Python examples run in order as a doctest (one namespace, in a
  temporary folder); the numbers they print are closed forms of MATH.md (isotropic
  Marchenko-Pastur ridge, isotropic ridge test error, the online-SGD floor), so a wrong
  result fails here, not only a crash;
* every ``$ detequiv ...`` line of the tutorial runs through the CLI's ``main``; the
  isotropic ``curve ridge`` line must print MATH.md 7's test errors;
* the site builds (``python -m sphinx -W --keep-going -b html``, the CI command) in a
  subprocess, and each name in the ``__all__`` of ``detequiv`` and of its three stages
  has an object description (an HTML anchor) on the page of the module defining it.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
TUTORIAL = DOCS / "tutorial.rst"
GENERATED = ("mp_ridge", "ridge_error", "rf_error")  # modules the tutorial writes and imports
KEY_PAGES = ["index", "tutorial", "math", "api/index", "api/detequiv", "api/derivations.onepoint", "genindex"]
PACKAGES = [
    "detequiv",
    "detequiv.diagrams",
    "detequiv.derivations",
    "detequiv.witnesses",
    "detequiv.models",
    "detequiv.codegen",
    "detequiv.dmft",
]


def command_lines() -> list[str]:
    text = TUTORIAL.read_text()
    return [m.group(1).strip() for m in re.finditer(r"^\s*\$ (detequiv .*)$", text, re.M)]


def command_params() -> list:
    # ``curve rf`` repeats the random-feature derivation that ``codegen rf`` already runs
    # by default (about 6 s): slow
    return [
        pytest.param(line, marks=pytest.mark.slow) if line.startswith("detequiv curve rf") else line
        for line in command_lines()
    ]


def test_tutorial_has_examples():
    text = TUTORIAL.read_text()
    assert "code-block:: python" not in text, "write Python examples as doctests so they are run"
    assert len(re.findall(r"^>>> ", text, re.M)) >= 50
    joined = " ".join(command_lines())
    for command in ("derive", "codegen", "curve"):
        assert f"detequiv {command} " in joined


def test_tutorial_doctests(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the tutorial inserts "."
    test = doctest.DocTestParser().get_doctest(TUTORIAL.read_text(), {}, "tutorial", str(TUTORIAL), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = io.StringIO()
    try:
        result = runner.run(test, out=report.write)
    finally:
        for name in GENERATED:
            sys.modules.pop(name, None)
    assert result.attempted >= 50
    assert result.failed == 0, report.getvalue()
    for name in GENERATED:
        assert (tmp_path / f"{name}.py").exists()


@pytest.mark.parametrize("line", command_params())
def test_tutorial_command_lines(line, tmp_path, monkeypatch, capsys):
    from detequiv.cli import main

    monkeypatch.chdir(tmp_path)
    argv = shlex.split(line)[1:]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.strip(), line
    for flag in ("-o", "--csv", "--plot"):
        if flag in argv:
            written = tmp_path / argv[argv.index(flag) + 1]
            assert written.exists() and written.stat().st_size > 0, line
            if written.suffix == ".py":
                compile(written.read_text(), str(written), "exec")
    if argv[:2] == ["curve", "ridge"] and "flat" in argv:
        # MATH.md 7, isotropic ridge at q = 1/2, |beta|^2 = 1, sigma^2 = 1/4: E_g = 0.5 ridgeless
        # and 0.6254594533 at lam = 1 (independent closed form, not the package's output)
        rows = [r.split() for r in out.splitlines() if r and not r.startswith(("#", "lam"))]
        e_test = {float(r[0]): float(r[5]) for r in rows}
        assert e_test[0.0] == pytest.approx(0.5, abs=1e-6)
        assert e_test[1.0] == pytest.approx(0.6254594533, abs=1e-6)


def _text(page: Path) -> str:
    """The page's text without tags (highlighting splits code into spans)."""
    return re.sub(r"<[^>]+>", "", page.read_text())


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    pytest.importorskip("sphinx")
    out = tmp_path_factory.mktemp("html")
    doctrees = tmp_path_factory.mktemp("doctrees")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(doctrees)]
    proc = subprocess.run([*cmd, str(DOCS), str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr
    return out


def test_site_builds_with_key_pages(html):
    for page in KEY_PAGES:
        assert (html / f"{page}.html").exists(), page
    assert (html / "_modules/detequiv/derivations/onepoint.html").exists()  # viewcode
    index = _text(html / "index.html")
    assert "detequiv demo" in index and "python -m pytest" in index
    assert "mathjax" in (html / "math.html").read_text().lower()
    tutorial = _text(html / "tutorial.html")
    assert "check_monte_carlo" in tutorial and "RandomFeatureRidge" in tutorial


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_documented(html, package):
    pkg = importlib.import_module(package)
    missing = []
    for name in pkg.__all__:
        obj = getattr(pkg, name)
        if inspect.ismodule(obj) or name.startswith("__"):
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):  # data constants (e.g. a tuple of names)
            continue
        module = obj.__module__
        target = f"{module}.{obj.__qualname__}"
        page = html / "api" / (module.split(".", 1)[1] + ".html")  # detequiv.a.b -> api/a.b.html
        if not page.exists() or f'id="{target}"' not in page.read_text():
            missing.append(target)
    assert not missing, f"not documented in docs/api: {missing}"
