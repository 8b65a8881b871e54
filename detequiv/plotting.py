"""Figures: matplotlib on demand, and the one style every figure of the project uses.

matplotlib is optional (``pip install 'detequiv[plot]'``). This module is at the base
of the package: it imports only :mod:`detequiv.errors`, and matplotlib itself only when
a figure is made, so importing it never needs matplotlib.

* :func:`require_matplotlib` imports pyplot with the non-interactive ``Agg`` backend,
  or raises :class:`~detequiv.errors.InvalidArgument` saying how to install it;
* :func:`figure_style` applies :data:`FIGURE_STYLE` (readable font sizes, 200 dpi and a
  tight bounding box when saved) while a figure is made and saved, as a ``with`` block
  or as a decorator of the function that draws.

>>> with figure_style() as rc:
...     rc["savefig.dpi"], rc["savefig.bbox"]
(200, 'tight')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, cast

from .errors import InvalidArgument

__all__ = ["FIGURE_STYLE", "figure_style", "require_matplotlib"]

#: The matplotlib rcParams of the project's figures: font sizes readable on a slide or
#: a page, 200 dpi when saved (a 6.4-inch wide figure is about 1280 pixels wide) and a
#: tight bounding box (no empty margins). Explicit sizes in a drawing still win.
FIGURE_STYLE: Mapping[str, Any] = MappingProxyType(
    {
        "font.size": 11.0,
        "axes.titlesize": 12.0,
        "axes.labelsize": 11.0,
        "xtick.labelsize": 10.0,
        "ytick.labelsize": 10.0,
        "legend.fontsize": 10.0,
        "figure.titlesize": 13.0,
        "savefig.dpi": 200,
        "savefig.bbox": "tight",
    }
)


def require_matplotlib() -> Any:
    """Import matplotlib with a non-interactive backend, or say how to install it.

    Returns
    -------
    module
        ``matplotlib.pyplot``, with the ``Agg`` backend selected (figures are written
        to files, never shown in a window).

    Raises
    ------
    InvalidArgument
        If matplotlib is not installed; the message gives the ``pip install`` line.

    Examples
    --------
    >>> try:
    ...     plt = require_matplotlib()
    ... except InvalidArgument as exc:  # without matplotlib: how to install it
    ...     plt = None
    ...     assert "pip install" in str(exc)
    >>> plt is None or plt.get_backend().lower() == "agg"
    True
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InvalidArgument(
            "drawing needs matplotlib: pip install 'detequiv[plot]' (or pip install matplotlib)"
        ) from exc
    return plt


@contextmanager
def figure_style(rc: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Apply the project's figure style while a figure is made and saved.

    A ``with`` block (or a decorator: ``@figure_style()``) around the code that creates,
    draws and saves a figure. Inside, matplotlib's rcParams are :data:`FIGURE_STYLE`
    updated by ``rc``; they are restored on exit. Without matplotlib it changes nothing
    (the drawing code reports the missing package itself).

    Parameters
    ----------
    rc : mapping of str to value, optional
        rcParams that replace or extend the shared style for this block.

    Yields
    ------
    dict
        The rcParams applied (the style with ``rc``).

    Examples
    --------
    >>> with figure_style({"savefig.dpi": 300}) as rc:
    ...     rc["savefig.dpi"], rc["font.size"]
    (300, 11.0)
    >>> @figure_style()
    ... def draw(path):
    ...     ...  # make the figure and save it to path here
    """
    params = {**FIGURE_STYLE, **(rc or {})}
    try:
        import matplotlib
    except ImportError:
        yield params
        return
    # cast: matplotlib types the keys as a closed set of literals
    with matplotlib.rc_context(cast(Any, params)):
        yield params
