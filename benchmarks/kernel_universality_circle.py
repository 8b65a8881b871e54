"""Kernel ridge regression on the circle against the Gaussian-equivalent ridge formula.

Features: the finite-rank Fourier kernel on x ~ U[0, 2 pi) with eigenvalues m^-1.5 (cos and
sin, each once), target coefficients m^-0.5 / 3, label noise 0.05, ridge 1e-3 (kernel ridge
K (K + P lam)^-1 y). The theory is ``RidgeRegression(...).test_error()`` with Sigma = the
kernel spectrum (exact for Gaussian features). Prints, per size, the theory, the mean test
error of 60 simulated kernel fits, its standard error and the relative gap: the Fourier
features are not Gaussian, and the gap (-21 % at D = 101 down to -1.7 % at D = 801 when this
was written) is much larger than the O(1/N) allowance used for Gaussian data.

Usage: ``python benchmarks/kernel_universality_circle.py``
"""

import numpy as np
import sympy as sp

import detequiv as de

D, P = sp.symbols("D P", positive=True)
r = de.RidgeRegression(
    de.Deterministic("Sigma", D), de.Gaussian("X", (P, D)), de.DeterministicVector("beta", D)
).test_error()
for D_, P_ in ((101, 75), (201, 150), (401, 300), (801, 600)):
    m = np.arange(1, (D_ - 1) // 2 + 1)
    eig = np.concatenate([[1.0], np.repeat(m**-1.5, 2)])
    beta = np.concatenate([[0.0], np.repeat(m**-0.5, 2)]) / 3
    noise, lam = 0.05, 1e-3
    th = r.evaluate({"Sigma": eig, "beta": beta, "lam": lam, "D": D_, "P": P_, "sigma2": noise})["total"]
    rng = np.random.default_rng(1)
    errs = []
    for _ in range(60):
        x = rng.uniform(0, 2 * np.pi, P_)
        e = np.empty((P_, D_))
        e[:, 0] = 1
        e[:, 1::2] = np.cos(np.outer(x, m)) * np.sqrt(2)
        e[:, 2::2] = np.sin(np.outer(x, m)) * np.sqrt(2)
        phi = e * np.sqrt(eig)
        y = phi @ beta + np.sqrt(noise) * rng.standard_normal(P_)
        alpha = np.linalg.solve(phi @ phi.T + P_ * lam * np.eye(P_), y)
        d = phi.T @ alpha - beta
        errs.append(d @ (eig * d) + noise)
    errs = np.array(errs)
    print(
        D_,
        P_,
        round(th, 5),
        round(errs.mean(), 5),
        round(errs.std() / np.sqrt(errs.size), 5),
        round(errs.mean() / th - 1, 4),
        flush=True,
    )
