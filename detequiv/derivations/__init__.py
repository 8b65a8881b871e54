"""Stage 2, derivations: free cumulants, laws, mixed moments and transforms, in sympy.

>>> import sympy as sp
>>> from detequiv.derivations import Wishart, mixed_moment
>>> A, W = sp.symbols("A W", commutative=False)
>>> mixed_moment(A * W * A * W, {W: Wishart(sp.Rational(1, 2))})
tr(A)**2/2 + tr(A**2)
"""

from .contraction import Contracted as Contracted
from .cumulants import cumulant_symbols as cumulant_symbols
from .cumulants import cumulants_from_moments as cumulants_from_moments
from .cumulants import moment_symbols as moment_symbols
from .cumulants import moments_from_cumulants as moments_from_cumulants
from .derivation import Derivation as Derivation
from .derivation import FixedPoint as FixedPoint
from .derivation import Rule as Rule
from .derivation import Step as Step
from .derive import derive as derive
from .expressions import Deterministic as Deterministic
from .expressions import DeterministicVector as DeterministicVector
from .expressions import FreeMatrix as FreeMatrix
from .expressions import Gaussian as Gaussian
from .expressions import Identity as Identity
from .expressions import Rectangular as Rectangular
from .expressions import resolvent as resolvent
from .expressions import trace as trace
from .formula import LossFormula as LossFormula
from .formula import LossModel as LossModel
from .laplace import CurveModel as CurveModel
from .laplace import LossCurve as LossCurve
from .laplace import hyperbolic_nodes as hyperbolic_nodes
from .laplace import inverse_laplace as inverse_laplace
from .laplace import time_windows as time_windows
from .laws import Constant as Constant
from .laws import CumulantLaw as CumulantLaw
from .laws import DeterministicLaw as DeterministicLaw
from .laws import FreePoisson as FreePoisson
from .laws import Law as Law
from .laws import Semicircle as Semicircle
from .laws import STransformLaw as STransformLaw
from .laws import Wishart as Wishart
from .laws import parse_law as parse_law
from .layered import LayeredTwoPoint as LayeredTwoPoint
from .layered import derive_layered_two_point as derive_layered_two_point
from .mixed import diagram_sum as diagram_sum
from .mixed import mixed_moment as mixed_moment
from .onepoint import OnePoint as OnePoint
from .quantities import tr as tr
from .results import Evidence as Evidence
from .results import Result as Result
from .rules import ENGINE_RULES as ENGINE_RULES
from .sandwich import Combination as Combination
from .sandwich import derive_sandwich as derive_sandwich
from .sandwich import derive_two_point as derive_two_point
from .strategies import LINEAR_PENCIL as LINEAR_PENCIL
from .strategies import STRATEGIES as STRATEGIES
from .traces import mtr as mtr
from .transforms import r_series as r_series
from .transforms import s_from_cumulants as s_from_cumulants
from .transforms import s_series as s_series
from .twopoint import TwoPoint as TwoPoint

__all__ = [
    "Derivation",
    "Rule",
    "STRATEGIES",
    "LINEAR_PENCIL",
    "ENGINE_RULES",
    "LossFormula",
    "LossModel",
    "CurveModel",
    "LossCurve",
    "hyperbolic_nodes",
    "inverse_laplace",
    "time_windows",
    "Evidence",
    "Result",
    "mtr",
    "DeterministicVector",
    "Contracted",
    "moments_from_cumulants",
    "cumulants_from_moments",
    "cumulant_symbols",
    "moment_symbols",
    "Law",
    "Wishart",
    "FreePoisson",
    "Semicircle",
    "Constant",
    "CumulantLaw",
    "LayeredTwoPoint",
    "derive_layered_two_point",
    "Combination",
    "derive_sandwich",
    "STransformLaw",
    "DeterministicLaw",
    "parse_law",
    "mixed_moment",
    "diagram_sum",
    "tr",
    "r_series",
    "s_series",
    "s_from_cumulants",
    "Deterministic",
    "Gaussian",
    "Rectangular",
    "FreeMatrix",
    "Identity",
    "resolvent",
    "trace",
    "derive",
    "OnePoint",
    "FixedPoint",
    "Step",
    "TwoPoint",
    "derive_two_point",
]
