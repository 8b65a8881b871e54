"""The optional matplotlib import (detequiv.plotting)."""

from __future__ import annotations

import sys

import pytest

from detequiv.errors import InvalidArgument
from detequiv.plotting import require_matplotlib


def test_require_matplotlib_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the import raises ImportError
    with pytest.raises(InvalidArgument, match=r"drawing needs matplotlib: pip install 'detequiv\[plot\]'"):
        require_matplotlib()


def test_draw_without_matplotlib_is_a_clear_error(monkeypatch):
    from detequiv.diagrams.drawing import blocks_svg, draw_blocks

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(InvalidArgument, match="pip install"):
        draw_blocks(3, [[0, 2]])
    assert blocks_svg(3, [[0, 2]]) is None
