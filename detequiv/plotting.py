"""Figures: matplotlib on demand.

matplotlib is optional (``pip install 'detequiv[plot]'``). This module is at the base
of the package: it imports only :mod:`detequiv.errors`, and matplotlib itself only when
a figure is made, so importing it never needs matplotlib.
:func:`require_matplotlib` imports pyplot with the non-interactive ``Agg`` backend, or
raises :class:`~detequiv.errors.InvalidArgument` saying how to install it.
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidArgument

__all__ = ["require_matplotlib"]


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
