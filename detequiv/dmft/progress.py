"""Progress bars of the long DMFT loops (the Monte Carlo march, Picard sweeps, simulations).

tqdm is optional: without it, or when the caller turns progress off, the bar is silent.

>>> bar = ProgressBar(3, "march", enabled=False)
>>> bar.update(); bar.update(residual="1e-3"); bar.close()
"""

from __future__ import annotations

from typing import Any

__all__ = ["ProgressBar"]


class ProgressBar:
    """A tqdm bar on stderr when tqdm is installed and ``enabled``; silent otherwise.

    Parameters
    ----------
    total : int
        Number of :meth:`update` steps expected.
    desc : str
        Label shown left of the bar.
    enabled : bool
        False makes every method a no-op (the ``progress=False`` of the solvers).

    Examples
    --------
    >>> bar = ProgressBar(2, "DMFT march", enabled=False)
    >>> bar.bar is None
    True
    """

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            try:
                import sys

                from tqdm import tqdm  # type: ignore[import-untyped]

                self.bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr, ncols=80)
            except ImportError:
                self.bar = None

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advance by ``n`` steps, first showing ``postfix`` (e.g. the Picard residual) if given."""
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(**postfix)
            self.bar.update(n)

    def close(self) -> None:
        """Remove the bar (``leave=False``)."""
        if self.bar is not None:
            self.bar.close()
