"""Learning problems built on the engine, each module beside its simulation.

- :mod:`~detequiv.models.ridge`: ridge regression (test and training error, covariate shift);
- :mod:`~detequiv.models.kernel`: kernel ridge, the train/test S-transform relation and GCV;
- :mod:`~detequiv.models.random_features`: random-feature ridge with the fine-grained split;
- :mod:`~detequiv.models.gradient_flow`: gradient flow with and without random features;
- :mod:`~detequiv.models.sgd`: online and multi-pass SGD.

The ``*_mc`` module beside each is its simulation: the Monte Carlo witness of its losses;
:mod:`~detequiv.models.simulation` holds the bookkeeping they share (seeded draws, one
report per term, the acceptance rule for samples a witness draws itself).
"""

from .gradient_flow import GradientFlow as GradientFlow
from .gradient_flow import RandomFeatureGradientFlow as RandomFeatureGradientFlow
from .gradient_flow_mc import simulate_random_feature_flow as simulate_random_feature_flow
from .kernel import GCVEstimator as GCVEstimator
from .kernel import KernelRegression as KernelRegression
from .kernel import TrainTestRelation as TrainTestRelation
from .kernel import canonical_traces as canonical_traces
from .kernel import gcv_estimator as gcv_estimator
from .kernel import train_test_relation as train_test_relation
from .kernel_mc import check_gcv as check_gcv
from .kernel_mc import check_kernel_monte_carlo as check_kernel_monte_carlo
from .kernel_mc import circle_fourier_kernel as circle_fourier_kernel
from .kernel_mc import simulate_gcv as simulate_gcv
from .kernel_mc import simulate_kernel_ridge as simulate_kernel_ridge
from .random_features import RandomFeatureRidge as RandomFeatureRidge
from .ridge import RidgeRegression as RidgeRegression
from .rules import MODEL_RULES as MODEL_RULES
from .sgd import MultiPassSGD as MultiPassSGD
from .sgd import OnlineSGD as OnlineSGD
from .sgd import derive_online_sgd as derive_online_sgd
from .sgd import online_sgd_floor as online_sgd_floor
from .sgd_mc import check_online_sgd as check_online_sgd
from .sgd_mc import run_online_sgd as run_online_sgd

__all__ = [
    "MODEL_RULES",
    "RidgeRegression",
    "KernelRegression",
    "TrainTestRelation",
    "train_test_relation",
    "GCVEstimator",
    "gcv_estimator",
    "canonical_traces",
    "RandomFeatureRidge",
    "GradientFlow",
    "RandomFeatureGradientFlow",
    "OnlineSGD",
    "MultiPassSGD",
    "derive_online_sgd",
    "online_sgd_floor",
    "simulate_random_feature_flow",
    "check_gcv",
    "check_kernel_monte_carlo",
    "circle_fourier_kernel",
    "simulate_gcv",
    "simulate_kernel_ridge",
    "check_online_sgd",
    "run_online_sgd",
]
