"""Stage 3, codegen: emitters only. LaTeX for papers (:func:`to_latex`, complete
documents in :mod:`~detequiv.codegen.texdoc`) and standalone numpy evaluators of derived
results (:func:`to_module`, :func:`loss_to_module`, :func:`numpy_function`).
"""

from . import pencil_module as pencil_module  # registers to_module for the general engine's results
from .latex import to_latex as to_latex
from .pycode import loss_to_module as loss_to_module
from .pycode import numpy_function as numpy_function
from .pycode import to_module as to_module

__all__ = ["to_latex", "to_module", "numpy_function", "loss_to_module"]
