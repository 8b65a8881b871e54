"""Dynamical mean-field theory (DMFT) of first-order training in high dimensions (DMFT.md).

A numeric core with a thin symbolic layer:

* :mod:`detequiv.dmft.system` describes a DMFT system on a discrete time grid;
* :mod:`detequiv.dmft.linear` solves the Gaussian-linear case exactly (no sampling);
* :mod:`detequiv.dmft.montecarlo` samples the single-site processes with response
  propagation (causal marcher, damped Picard) for nonlinear losses;
* :mod:`detequiv.dmft.multi_index` treats k-index models (a soft committee machine) with
  k x k blocks of C and R;
* :mod:`detequiv.dmft.replicas` splits the error into that of the predictor averaged over
  private noise sources and the variance (replicas sharing the data, not the SGD noise);
* :mod:`detequiv.dmft.simulate` runs the finite system itself.

:func:`solve_system` picks the route; ``detequiv dmft ...`` is the command line
(:mod:`detequiv.cli.dmft`).

>>> from detequiv.dmft import DMFTSystem, Grid, SampleSide, Square, LinearTeacher, Ridge, solve_system
>>> system = DMFTSystem(2.0, Grid(0.1, 20), SampleSide(Square(), LinearTeacher(0.0)), Ridge(0.0))
>>> sol = solve_system(system)            # linear: the exact route
>>> type(sol).__name__, bool(sol.test_loss[-1] < sol.test_loss[0])
('DMFTSolution', True)
"""

from __future__ import annotations

from typing import Any

from .linear import DMFTSolution, solve, to_math_conventions
from .montecarlo import MCSolution, mc_relative_error, population_loss, solve_montecarlo
from .multi_index import (
    Committee,
    MultiIndexSimulation,
    MultiIndexSolution,
    MultiIndexSystem,
    SeparableSquare,
    simulate_multi_index,
    solve_multi_index,
)
from .replicas import REPLICA_SOURCES, ReplicaSolution, solve_replicas
from .simulate import SimulationResult, simulate
from .system import (
    GD,
    SGF,
    BernoulliVisits,
    CustomLoss,
    DMFTSystem,
    GaussianInit,
    Grid,
    HeavyBall,
    LinearTeacher,
    Logistic,
    LogisticTeacher,
    Loss,
    Ridge,
    SampleSide,
    SignTeacher,
    Square,
    ZeroInit,
)

__all__ = [
    "solve_system",
    "MultiIndexSystem",
    "Committee",
    "SeparableSquare",
    "solve_multi_index",
    "MultiIndexSolution",
    "simulate_multi_index",
    "MultiIndexSimulation",
    "solve_replicas",
    "ReplicaSolution",
    "REPLICA_SOURCES",
    "solve_montecarlo",
    "MCSolution",
    "mc_relative_error",
    "population_loss",
    "simulate",
    "SimulationResult",
    "DMFTSolution",
    "solve",
    "to_math_conventions",
    "GD",
    "SGF",
    "BernoulliVisits",
    "CustomLoss",
    "DMFTSystem",
    "GaussianInit",
    "Grid",
    "HeavyBall",
    "LinearTeacher",
    "Logistic",
    "LogisticTeacher",
    "Loss",
    "Ridge",
    "SampleSide",
    "SignTeacher",
    "Square",
    "ZeroInit",
]


def solve_system(system: DMFTSystem, **kwargs: Any) -> DMFTSolution | MCSolution:
    """Solve a DMFT system by the exact Gaussian route when both sides are linear
    (:func:`detequiv.dmft.linear.solve`), by Monte Carlo otherwise
    (:func:`detequiv.dmft.montecarlo.solve_montecarlo`; ``kwargs`` go there: ``paths``,
    ``method``, ``seed``, ``progress``)."""
    if system.is_linear:
        if kwargs:
            raise _invalid(f"the exact linear route takes no options; got {sorted(kwargs)}")
        return solve(system)
    return solve_montecarlo(system, **kwargs)


def _invalid(message: str) -> Exception:
    from ..errors import InvalidArgument

    return InvalidArgument(message)
