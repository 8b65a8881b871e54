"""Dynamical mean-field theory (DMFT) of first-order training in high dimensions (DMFT.md).

A numeric core with a thin symbolic layer: :mod:`detequiv.dmft.system` describes a DMFT
system on a discrete time grid; :mod:`detequiv.dmft.linear` solves the Gaussian-linear case
exactly (no sampling).
"""

from __future__ import annotations

from .linear import DMFTSolution, solve, to_math_conventions
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
