"""Monte Carlo evidence for engine results: seeded sampling, N-scaled acceptance, and the
one-point, two-point, layered and sandwich witnesses.

>>> import numpy as np
>>> from detequiv.witnesses import white_wishart
>>> white_wishart(4, 0.5, rng=np.random.default_rng(0)).shape
(4, 4)
"""

from .acceptance import VerificationReport as VerificationReport
from .acceptance import check_mc as check_mc
from .acceptance import is_consistent_mc as is_consistent_mc
from .acceptance import verify as verify
from .moments import evaluate_traces as evaluate_traces
from .moments import sampler_for_law as sampler_for_law
from .moments import verify_mixed_moment as verify_mixed_moment
from .onepoint import check_monte_carlo as check_monte_carlo
from .sampling import MCEstimate as MCEstimate
from .sampling import gaussian as gaussian
from .sampling import goe as goe
from .sampling import goe_sampler as goe_sampler
from .sampling import haar_orthogonal as haar_orthogonal
from .sampling import mc_estimate as mc_estimate
from .sampling import rotated_spectrum as rotated_spectrum
from .sampling import spectrum_sampler as spectrum_sampler
from .sampling import trace_moment as trace_moment
from .sampling import trace_moments as trace_moments
from .sampling import white_wishart as white_wishart
from .sampling import wishart_sampler as wishart_sampler

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
    "check_monte_carlo",
]
