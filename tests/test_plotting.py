"""The shared figure style and the optional matplotlib import (detequiv.plotting)."""

from __future__ import annotations

import struct
import sys

import pytest

from detequiv.errors import InvalidArgument
from detequiv.plotting import FIGURE_STYLE, figure_style, require_matplotlib


def _png_size(path):
    """(width, height) in pixels, read from the PNG header (IHDR chunk)."""
    head = path.read_bytes()[:24]
    assert head.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", head[16:24])


def test_style_applies_inside_and_is_restored_after():
    mpl = pytest.importorskip("matplotlib")
    before = {key: mpl.rcParams[key] for key in FIGURE_STYLE}
    with figure_style({"lines.linewidth": 3.0}) as rc:
        for key, value in FIGURE_STYLE.items():
            assert mpl.rcParams[key] == value
        assert mpl.rcParams["lines.linewidth"] == 3.0
        assert rc["lines.linewidth"] == 3.0 and rc["savefig.bbox"] == "tight"
    assert {key: mpl.rcParams[key] for key in FIGURE_STYLE} == before


def test_style_as_a_decorator():
    mpl = pytest.importorskip("matplotlib")

    @figure_style()
    def inside() -> float:
        """Docstring kept."""
        return mpl.rcParams["font.size"]

    assert inside() == FIGURE_STYLE["font.size"]
    assert inside.__doc__ == "Docstring kept." and inside.__name__ == "inside"


def test_saved_figures_are_at_least_1000_pixels_wide(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    path = tmp_path / "curve.png"
    with figure_style():
        fig = Figure(figsize=(6.4, 4.4))
        ax = fig.add_subplot()
        ax.plot([0, 1, 2], [1, 0, 1], label="curve")
        ax.set_xlabel("x")
        ax.legend()
        fig.savefig(path)
    width, height = _png_size(path)
    assert width >= 1000 and height >= 600


def test_diagram_drawing_uses_the_style(tmp_path):
    pytest.importorskip("matplotlib")
    from detequiv.diagrams.drawing import draw_diagram
    from detequiv.diagrams.words import Letter, TraceWord

    d = next(TraceWord([Letter("A"), Letter("W", free=True)] * 3).planar_diagrams())
    styled = tmp_path / "styled.png"
    ax = draw_diagram(d, style="chords", path=str(styled))
    low = tmp_path / "low.png"
    ax.figure.savefig(low, dpi=50, bbox_inches="tight")
    require_matplotlib().close(ax.figure)
    ratio = FIGURE_STYLE["savefig.dpi"] / 50
    assert _png_size(styled)[0] == pytest.approx(ratio * _png_size(low)[0], rel=0.05)


def test_require_matplotlib_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the import raises ImportError
    with pytest.raises(InvalidArgument, match=r"drawing needs matplotlib: pip install 'detequiv\[plot\]'"):
        require_matplotlib()


def test_style_without_matplotlib_changes_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with figure_style() as rc:
        assert rc == dict(FIGURE_STYLE)


def test_draw_without_matplotlib_is_a_clear_error(monkeypatch):
    from detequiv.diagrams.drawing import blocks_svg, draw_blocks

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(InvalidArgument, match="pip install"):
        draw_blocks(3, [[0, 2]])
    assert blocks_svg(3, [[0, 2]]) is None


def test_plotting_is_at_the_base_of_the_package():
    # detequiv.plotting may import only detequiv.errors, numpy, matplotlib and the standard library
    import ast
    from pathlib import Path

    import detequiv.plotting

    tree = ast.parse(Path(detequiv.plotting.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add("detequiv." + (node.module or "") if node.level else node.module or "")
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    third_party = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names}
    assert third_party <= {"detequiv.errors", "numpy", "matplotlib", "matplotlib.pyplot"}, third_party
