"""detequiv: deterministic equivalents of random-matrix resolvents.

Three stages, one import package:

- :mod:`detequiv.diagrams`: non-crossing partitions, trace words, planar diagrams;
- :mod:`detequiv.derivations`: free cumulants, mixed moments, transforms;
- :mod:`detequiv.codegen`: Monte Carlo witnesses, printers and generated code.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import codegen as codegen
from . import derivations as derivations
from . import diagrams as diagrams
from .errors import DetEquivError as DetEquivError

__all__ = ["__version__", "codegen", "derivations", "diagrams", "DetEquivError"]
