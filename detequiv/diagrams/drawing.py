"""Drawings of partitions and trace diagrams: arcs over a line, or chords in a circle.

Drawing needs matplotlib (``pip install 'detequiv[plot]'``); the figures use the
project's style (:func:`detequiv.plotting.figure_style`). :func:`blocks_svg` is the SVG
text that notebooks show for an :class:`~detequiv.diagrams.partitions.NCPartition` or a
:class:`~detequiv.diagrams.words.Diagram` (``None`` without matplotlib).

This module reads diagrams through :class:`DrawableDiagram` and imports neither
:mod:`~detequiv.diagrams.words` nor :mod:`~detequiv.diagrams.partitions`: they import it
for their notebook pictures, so the dependency points one way.

>>> svg = blocks_svg(4, [[0, 3], [1, 2]])
>>> svg is None or svg.lstrip().startswith("<?xml")
True
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Protocol

import networkx as nx
import numpy as np

from ..errors import InvalidArgument
from ..plotting import figure_style, require_matplotlib

__all__ = ["DrawableDiagram", "draw_blocks", "draw_diagram", "blocks_svg"]


class DrawableDiagram(Protocol):
    """What :func:`draw_diagram` reads from a diagram (a :class:`~detequiv.diagrams.words.Diagram`).

    ``word`` has a length and ``letters`` with a ``name`` each, ``blocks`` lists the
    joined positions and ``str(diagram)`` is the title.
    """

    @property
    def word(self) -> Any:
        """The trace word: ``len(word)`` positions, ``word.letters[i].name`` the labels."""

    @property
    def blocks(self) -> Sequence[Sequence[int]]:
        """The blocks, as positions of the word."""


@figure_style()
def draw_blocks(
    n: int,
    blocks: Sequence[Sequence[int]],
    *,
    labels: Sequence[str] | None = None,
    style: str = "arcs",
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Draw a partition of ``0..n-1``: arcs over a line, or chords in a circle.

    Parameters
    ----------
    n : int
        Number of positions.
    blocks : sequence of sequence of int
        The blocks to draw (positions not in any block are drawn as points).
    labels : sequence of str, optional
        A label per position (the letters of a word).
    style : {'arcs', 'chords'}
    ax : matplotlib Axes, optional
        Drawn into this axes; a new figure is made otherwise.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    InvalidArgument
        For another ``style``, or without matplotlib.

    Examples
    --------
    >>> draw_blocks(4, [[0, 3], [1, 2]], style="boxes")
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: style='boxes'; use 'arcs' or 'chords'
    >>> from importlib.util import find_spec
    >>> if find_spec("matplotlib"):  # drawing needs matplotlib
    ...     ax = draw_blocks(4, [[0, 3], [1, 2]], labels=["A", "W", "W", "A"], title="{0,3}{1,2}")
    ...     assert ax.get_title() == "{0,3}{1,2}" and len(ax.texts) == 4
    ...     require_matplotlib().close(ax.figure)
    """
    if style not in ("arcs", "chords"):
        raise InvalidArgument(f"style={style!r}; use 'arcs' or 'chords'")
    plt = require_matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=(max(2.0, 0.6 * n), 2.2 if style == "arcs" else 2.6))
    labels = list(labels) if labels is not None else [str(i) for i in range(n)]
    if style == "arcs":
        xy = {i: (float(i), 0.0) for i in range(n)}
    else:
        layout = nx.circular_layout(nx.cycle_graph(n)) if n > 0 else {}
        # networkx puts node i at angle 2 pi i / n from the x axis, counter-clockwise;
        # swapping the coordinates puts position 0 on top with the word running clockwise
        xy = {i: (float(p[1]), float(p[0])) for i, p in layout.items()}
    if style == "chords" and n > 0:
        theta = np.linspace(0.0, 2 * np.pi, 200)
        ax.plot(np.sin(theta), np.cos(theta), color="0.85", lw=1.0, zorder=0)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, block in enumerate(sorted(tuple(sorted(b)) for b in blocks)):
        c = colours[k % len(colours)]
        if style == "arcs" and len(block) > 1:
            h = 0.25 + 0.18 * (block[-1] - block[0])
            ax.plot([block[0], block[-1]], [h, h], color=c, lw=1.5)
            for x in block:
                ax.plot([x, x], [0.08, h], color=c, lw=1.5)
        elif style == "chords" and len(block) > 1:
            pts = [xy[x] for x in block] + [xy[block[0]]]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=c, lw=1.5)
            if len(block) > 2:
                ax.fill([p[0] for p in pts], [p[1] for p in pts], color=c, alpha=0.15)
    for i in range(n):
        px, py = xy[i]
        ax.plot([px], [py], "o", color="black", ms=4)
        off = (0.0, -0.22) if style == "arcs" else (0.2 * px, 0.2 * py)
        ax.text(px + off[0], py + off[1], labels[i], ha="center", va="center", fontsize=9)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9, pad=14 if style == "chords" else 4)
    return ax


@figure_style()
def draw_diagram(
    diagram: DrawableDiagram, *, style: str = "arcs", ax: Any = None, path: str | None = None
) -> Any:
    """Draw a trace diagram (letters as labels); save to ``path`` (PNG/SVG) if given.

    Parameters
    ----------
    diagram : Diagram
        A :class:`~detequiv.diagrams.words.Diagram` (anything with its ``word`` and
        ``blocks``, see :class:`DrawableDiagram`); its ``str`` is the title.
    style : {'arcs', 'chords'}
    ax : matplotlib Axes, optional
        Drawn into this axes; a new figure is made otherwise.
    path : str, optional
        Save the figure there (the format follows the suffix), with the project's
        figure style.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from detequiv.diagrams.words import Letter, TraceWord
    >>> W, A = Letter("W", free=True), Letter("A")
    >>> d = next(TraceWord([A, W, A, W]).planar_diagrams())
    >>> from importlib.util import find_spec
    >>> if find_spec("matplotlib"):  # drawing needs matplotlib
    ...     ax = draw_diagram(d, style="chords")
    ...     assert ax.get_title() == str(d)
    ...     require_matplotlib().close(ax.figure)
    """
    ax = draw_blocks(
        len(diagram.word),
        diagram.blocks,
        labels=[x.name for x in diagram.word.letters],
        style=style,
        ax=ax,
        title=str(diagram),
    )
    if path is not None:
        ax.figure.savefig(path, bbox_inches="tight")
    return ax


@figure_style()
def blocks_svg(
    n: int, blocks: Sequence[Sequence[int]], *, labels: Sequence[str] | None = None, style: str = "arcs"
) -> str | None:
    """SVG text of :func:`draw_blocks` for notebooks, or None without matplotlib.

    Parameters
    ----------
    n, blocks, labels, style
        As for :func:`draw_blocks`.

    Returns
    -------
    str or None
        The SVG document; ``None`` without matplotlib (a notebook then shows the next
        representation).

    Examples
    --------
    >>> svg = blocks_svg(3, [[0, 2], [1]], labels=["W", "A", "W"], style="chords")
    >>> svg is None or "<svg" in svg
    True
    """
    try:
        plt = require_matplotlib()
    except InvalidArgument:
        return None
    ax = draw_blocks(n, blocks, labels=labels, style=style)
    buf = io.StringIO()
    ax.figure.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(ax.figure)
    return buf.getvalue()
