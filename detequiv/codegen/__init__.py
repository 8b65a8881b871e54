"""Stage 3, codegen: the numeric side. Seeded Monte Carlo samplers and the witness that
compares exact results with simulation at several sizes; LaTeX export; standalone numpy
evaluators of derived results (:func:`to_module`).
"""

from .dynamics_mc import simulate_random_feature_flow as simulate_random_feature_flow
from .kernel_mc import check_gcv as check_gcv
from .kernel_mc import check_kernel_monte_carlo as check_kernel_monte_carlo
from .kernel_mc import circle_fourier_kernel as circle_fourier_kernel
from .kernel_mc import simulate_gcv as simulate_gcv
from .kernel_mc import simulate_kernel_ridge as simulate_kernel_ridge
from .loss_module import loss_to_module as loss_to_module
from .montecarlo import MCEstimate as MCEstimate
from .montecarlo import gaussian as gaussian
from .montecarlo import goe as goe
from .montecarlo import goe_sampler as goe_sampler
from .montecarlo import haar_orthogonal as haar_orthogonal
from .montecarlo import mc_estimate as mc_estimate
from .montecarlo import rotated_spectrum as rotated_spectrum
from .montecarlo import spectrum_sampler as spectrum_sampler
from .montecarlo import trace_moment as trace_moment
from .montecarlo import trace_moments as trace_moments
from .montecarlo import white_wishart as white_wishart
from .montecarlo import wishart_sampler as wishart_sampler
from .numpy_module import numpy_function as numpy_function
from .numpy_module import to_module as to_module
from .sgd_mc import check_online_sgd as check_online_sgd
from .sgd_mc import run_online_sgd as run_online_sgd
from .verify import VerificationReport as VerificationReport
from .verify import check_mc as check_mc
from .verify import is_consistent_mc as is_consistent_mc
from .verify import verify as verify
from .witness import evaluate_traces as evaluate_traces
from .witness import sampler_for_law as sampler_for_law
from .witness import verify_mixed_moment as verify_mixed_moment

__all__ = [
    "MCEstimate",
    "gaussian",
    "goe",
    "goe_sampler",
    "haar_orthogonal",
    "mc_estimate",
    "rotated_spectrum",
    "spectrum_sampler",
    "trace_moment",
    "trace_moments",
    "white_wishart",
    "wishart_sampler",
    "VerificationReport",
    "check_mc",
    "is_consistent_mc",
    "verify",
    "evaluate_traces",
    "sampler_for_law",
    "verify_mixed_moment",
    "to_module",
    "numpy_function",
    "loss_to_module",
    "check_online_sgd",
    "run_online_sgd",
    "simulate_random_feature_flow",
    "check_gcv",
    "check_kernel_monte_carlo",
    "circle_fourier_kernel",
    "simulate_gcv",
    "simulate_kernel_ridge",
]
