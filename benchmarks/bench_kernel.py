"""Train/test relation, GCV and kernel ridge regression: timings and measured gaps.

Prints

1. the time of :func:`train_test_relation` and :func:`gcv_estimator` against the baseline
   of deriving ``test_error`` + ``training_error`` alone (same run);
2. the mean GCV over 30 data sets against the derived test error on the grid of MATH.md
   4.2 (D = 300, lam_k = k^-1.2, beta_k^2 = k^-0.9, sigma = 0.3), with the single-data-set
   scatter and the relative errors of the two wrong estimators;
3. the universality gap of the circle Fourier kernel (benchmarks/kernel_universality_circle.py
   setting) next to the same kernel with Gaussian features (the baseline, where the
   formula is exact in the limit), both simulated in the dual.

Usage: ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_kernel.py``
"""

import time

import numpy as np
import sympy as sp

import detequiv as de
from detequiv.models import kernel_mc
from detequiv.models.kernel import gcv_estimator, train_test_relation

D, P = sp.symbols("D P", positive=True)


def model():
    return de.RidgeRegression(
        de.Deterministic("Sigma", D), de.Gaussian("X", (P, D)), de.DeterministicVector("beta", D)
    )


t0 = time.perf_counter()
m = model()
m.test_error(), m.training_error()
base = time.perf_counter() - t0
t0 = time.perf_counter()
rel = train_test_relation(model())
t_rel = time.perf_counter() - t0
t0 = time.perf_counter()
gcv = gcv_estimator(model())
t_gcv = time.perf_counter() - t0
print("1. derivations (s)")
print(f"   baseline test_error + training_error: {base:.2f}")
print(f"   train_test_relation: {t_rel:.2f} ({t_rel / base:.1f}x), holds={rel.holds}, ratio={rel.ratio}")
print(f"   gcv_estimator:       {t_gcv:.2f} ({t_gcv / base:.1f}x), equals E_test={gcv.equals_test_error}")

print("\n2. mean over 30 data sets vs derived E_test (relative error; s.e.; scatter of one data set)")
print(
    f"   {'P':>4} {'lam':>7} {'E_test':>8} {'GCV':>8} {'s.e.':>7} {'scatter':>8} {'E_train':>8} {'unsq.':>8}"
)
for ratio in (0.4, 2.0):
    for lam in (1e-4, 1e-2, 0.3):
        check = kernel_mc.check_gcv(
            gcv,
            (300,),
            rng=np.random.default_rng(7),
            lam=lam,
            ratio=ratio,
            noise=0.09,
            estimators=("gcv", "E_train", "unsquared"),
        )
        rows = [r.rows[0] for r in check.reports]
        g = rows[0]
        scatter = g.se * np.sqrt(g.n_samples) / g.exact
        rels = [r.mean / r.exact - 1 for r in rows]
        print(
            f"   {round(300 * ratio):>4} {lam:>7.0e} {g.exact:>8.4f} {rels[0]:>+8.3f} {g.se / g.exact:>7.3f} "
            f"{scatter:>8.3f} {rels[1]:>+8.3f} {rels[2]:>+8.3f}"
        )

print("\n3. circle Fourier kernel, P = 0.75 (D - 1), lam = 1e-3, 30 fits: relative gap to the formula")
print(f"   {'D':>5} {'P':>5} {'formula':>9} {'circle':>8} {'s.e.':>7} {'gaussian':>9} {'s.e.':>7} {'5/P':>7}")
for d in (101, 201, 401, 801):
    krr = kernel_mc.circle_fourier_kernel(d, round(0.75 * (d - 1)))
    out = {}
    for feats in ("circle", "gaussian"):
        check = kernel_mc.check_kernel_monte_carlo(
            krr, rng=np.random.default_rng(1), lam=1e-3, features=feats, terms=("total",), n_samples=30
        )
        out[feats] = check.reports[0].rows[0]
    c, g = out["circle"], out["gaussian"]
    print(
        f"   {d:>5} {krr.samples:>5} {c.exact:>9.5f} {c.mean / c.exact - 1:>+8.4f} {c.se / c.exact:>7.4f} "
        f"{g.mean / g.exact - 1:>+9.4f} {g.se / g.exact:>7.4f} {5 / krr.samples:>7.4f}"
    )
