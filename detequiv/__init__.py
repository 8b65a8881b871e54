"""detequiv: deterministic equivalents of random-matrix resolvents.

Three stages, one import package, dependencies pointing one way
(``codegen -> derivations -> diagrams``):

- :mod:`detequiv.diagrams`: non-crossing partitions, trace words, planar diagrams;
- :mod:`detequiv.derivations`: free cumulants, laws, mixed moments, transforms;
- :mod:`detequiv.codegen`: Monte Carlo samplers and the verification witness.

>>> import sympy as sp, detequiv as de
>>> A, W = sp.symbols("A W", commutative=False)
>>> q = sp.Symbol("q", positive=True)
>>> de.mixed_moment(A * W * A * W, {W: de.Wishart(q)})
q*tr(A)**2 + tr(A**2)
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import codegen as codegen
from . import derivations as derivations
from . import diagrams as diagrams
from . import dmft as dmft
from . import models as models
from . import witnesses as witnesses
from .codegen import loss_to_module as loss_to_module
from .codegen import to_module as to_module
from .codegen.latex import to_latex as to_latex
from .derivations import Combination as Combination
from .derivations import CumulantLaw as CumulantLaw
from .derivations import Deterministic as Deterministic
from .derivations import DeterministicVector as DeterministicVector
from .derivations import FreeMatrix as FreeMatrix
from .derivations import Gaussian as Gaussian
from .derivations import LayeredTwoPoint as LayeredTwoPoint
from .derivations import LossCurve as LossCurve
from .derivations import LossFormula as LossFormula
from .derivations import OnePoint as OnePoint
from .derivations import Rectangular as Rectangular
from .derivations import Semicircle as Semicircle
from .derivations import STransformLaw as STransformLaw
from .derivations import TwoPoint as TwoPoint
from .derivations import Wishart as Wishart
from .derivations import cumulants_from_moments as cumulants_from_moments
from .derivations import derive as derive
from .derivations import derive_sandwich as derive_sandwich
from .derivations import derive_two_point as derive_two_point
from .derivations import diagram_sum as diagram_sum
from .derivations import mixed_moment as mixed_moment
from .derivations import moments_from_cumulants as moments_from_cumulants
from .derivations import resolvent as resolvent
from .derivations import trace as trace
from .diagrams import NCPartition as NCPartition
from .diagrams import TraceWord as TraceWord
from .diagrams import noncrossing_partitions as noncrossing_partitions
from .errors import DetEquivError as DetEquivError
from .models import GCVEstimator as GCVEstimator
from .models import GradientFlow as GradientFlow
from .models import KernelRegression as KernelRegression
from .models import MultiPassSGD as MultiPassSGD
from .models import OnlineSGD as OnlineSGD
from .models import RandomFeatureGradientFlow as RandomFeatureGradientFlow
from .models import RandomFeatureRidge as RandomFeatureRidge
from .models import RidgeRegression as RidgeRegression
from .models import derive_online_sgd as derive_online_sgd
from .models import gcv_estimator as gcv_estimator
from .models import train_test_relation as train_test_relation
from .models.gradient_flow_mc import check_monte_carlo as _check_dynamics  # noqa: F401 - registers the witness
from .models.kernel_mc import check_kernel_monte_carlo as _check_kernel  # noqa: F401 - registers the witnesses
from .models.ridge_mc import check_monte_carlo as _check_learning  # noqa: F401 - registers the witness
from .witnesses import verify as verify
from .witnesses import verify_mixed_moment as verify_mixed_moment
from .witnesses.layered import check_monte_carlo as _check_layered  # noqa: F401 - registers the witness
from .witnesses.onepoint import check_monte_carlo as check_monte_carlo  # registers the witness
from .witnesses.sandwich import check_monte_carlo as _check_sandwich  # noqa: F401 - registers the witness
from .witnesses.twopoint import check_monte_carlo as _check_two_point  # noqa: F401 - registers the witness

#: Every rule of the engine and of the models, by name (:mod:`detequiv.derivations.rules`,
#: :mod:`detequiv.models.rules`, and the strategies of :mod:`detequiv.derivations.strategies`).
RULES = {
    **derivations.ENGINE_RULES,
    **models.MODEL_RULES,
    **{r.name: r for r in (*derivations.STRATEGIES, derivations.LINEAR_PENCIL)},
}

__all__ = [
    "__version__",
    "codegen",
    "derivations",
    "diagrams",
    "dmft",
    "models",
    "witnesses",
    "DetEquivError",
    "RULES",
    "NCPartition",
    "TraceWord",
    "noncrossing_partitions",
    "moments_from_cumulants",
    "cumulants_from_moments",
    "mixed_moment",
    "diagram_sum",
    "Wishart",
    "Semicircle",
    "CumulantLaw",
    "GradientFlow",
    "RandomFeatureGradientFlow",
    "RandomFeatureRidge",
    "KernelRegression",
    "GCVEstimator",
    "gcv_estimator",
    "train_test_relation",
    "LossCurve",
    "OnlineSGD",
    "MultiPassSGD",
    "derive_online_sgd",
    "LayeredTwoPoint",
    "to_module",
    "loss_to_module",
    "Combination",
    "LossFormula",
    "RidgeRegression",
    "derive_sandwich",
    "STransformLaw",
    "verify",
    "verify_mixed_moment",
    "Deterministic",
    "DeterministicVector",
    "Gaussian",
    "Rectangular",
    "FreeMatrix",
    "resolvent",
    "trace",
    "derive",
    "OnePoint",
    "check_monte_carlo",
    "to_latex",
    "TwoPoint",
    "derive_two_point",
]
