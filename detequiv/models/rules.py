r"""The rules that learning problems add to the engine's (:mod:`detequiv.derivations.rules`).

They write a loss as random functionals of resolvents (exact algebra, or exact identities
in expectation) before the engine replaces the resolvents by their equivalents.
References cite the project's pages (*docs*, "The mathematics in brief") and:

* [Bach] F. Bach, High-dimensional analysis of double descent for linear regression with
  random projections, SIAM J. Math. Data Sci. (2024) (GCV and the S-transform);
* [AP] B. Adlam and J. Pennington, NeurIPS 2020 (arXiv:2011.03321) (random-feature split);
* [PP] C. Paquette, E. Paquette et al., SGD in the large: average-case analysis,
  asymptotics and stepsize criticality, COLT 2021 (arXiv:2102.04396) (Volterra equation).

>>> sorted(MODEL_RULES)[:3]
['batch_gradient_noise', 'derive_test_error', 'derive_training_error']
"""

from __future__ import annotations

from collections.abc import Mapping

from ..derivations.derivation import Rule, rule_table

__all__ = [
    "MODEL_RULES",
    "ERROR_DECOMPOSITION",
    "TRAINING_DECOMPOSITION",
    "DERIVE_TEST_ERROR",
    "DERIVE_TRAINING_ERROR",
    "TRACE_BASIS",
    "FIXED_POINT_FOR_RIDGE",
    "S_TRANSFORM_OF_WISHART",
    "TRAIN_TEST_RELATION",
    "GCV_DEFINITION",
    "EFFECTIVE_DEGREES_OF_FREEDOM",
    "RATIO_OF_CONCENTRATED",
    "GCV_IS_TEST_ERROR",
    "SECOND_MOMENT_RECURSION",
    "BATCH_GRADIENT_NOISE",
    "GAUSSIAN_FOURTH_MOMENT",
    "EIGENBASIS_PROJECTION",
    "FORCING_TERM",
    "SGD_KERNEL",
    "VOLTERRA_EQUATION",
    "NOISE_FLOOR",
    "STABILITY",
]

_LOSS = "docs, Learning-theory losses"
_DYN = "docs, Dynamics"

ERROR_DECOMPOSITION = Rule(
    "error_decomposition",
    "beta_hat - beta = -lam G beta + G X.T eps / P: averaging the label noise splits the error into "
    "bias, variance and noise (exact)",
    f"exact algebra; {_LOSS}",
)
TRAINING_DECOMPOSITION = Rule(
    "training_decomposition",
    "y - X beta_hat = lam (K + lam)^-1 y with K = X X.T / P; push-through "
    "X.T (K + lam)^-2 X / P = G Sigma_hat G (exact)",
    f"exact algebra; {_LOSS}",
)
DERIVE_TEST_ERROR = Rule("derive_test_error", "the ridge test error, derived by the engine", _LOSS)
DERIVE_TRAINING_ERROR = Rule(
    "derive_training_error", "the ridge training error, derived by the engine", _LOSS
)
TRACE_BASIS = Rule(
    "trace_basis",
    "Sigma (kappa + Sigma)^-1 = I - kappa (kappa + Sigma)^-1 reduces every trace atom to tr R^j and "
    "b.R^j.b, algebraically independent",
    "exact algebra",
)
FIXED_POINT_FOR_RIDGE = Rule(
    "fixed_point_for_ridge", "the engine's fixed point solved for lam (it is linear in lam)", _LOSS
)
S_TRANSFORM_OF_WISHART = Rule(
    "s_transform_of_wishart",
    "kappa / lam = S_W(-df1) with S_W the S-transform of the Wishart law of ratio D / P",
    f"{_LOSS}; Bach, SIAM J. Math. Data Sci. (2024)",
)
TRAIN_TEST_RELATION = Rule(
    "train_test_relation",
    "E_test = S^2 E_train with S = kappa / lam, decided by rational cancellation in the trace basis",
    f"{_LOSS}; Bach, SIAM J. Math. Data Sci. (2024)",
)
GCV_DEFINITION = Rule(
    "gcv_definition",
    "GCV = E_train / (1 - df_hat / P)^2, df_hat = Tr Sigma_hat (Sigma_hat + lam)^-1 = D - Tr lam G",
    f"{_LOSS}; Bach, SIAM J. Math. Data Sci. (2024)",
)
EFFECTIVE_DEGREES_OF_FREEDOM = Rule(
    "effective_degrees_of_freedom",
    "df_hat = D - D tr(lam G) with tr(lam G) ~ tr(kappa R)",
    _LOSS,
)
RATIO_OF_CONCENTRATED = Rule(
    "ratio_of_concentrated",
    "E_train and df_hat / P concentrate: the equivalent of their ratio is the ratio of equivalents",
    _LOSS,
)
GCV_IS_TEST_ERROR = Rule(
    "gcv_is_test_error",
    "GCV - E_test = 0 after the engine's fixed point is substituted (trace basis, rational cancellation)",
    f"{_LOSS}; Bach, SIAM J. Math. Data Sci. (2024)",
)
SECOND_MOMENT_RECURSION = Rule(
    "second_moment_recursion",
    "e_(t+1) = (I - eta Sigma) e_t - eta (g - Sigma e_t); averaging the outer product over the batch "
    "and e_t gives C_(t+1) in terms of C_t; L_t = Tr(Sigma C_t) + sigma2",
    f"{_DYN}; Paquette et al., arXiv:2102.04396",
)
BATCH_GRADIENT_NOISE = Rule(
    "batch_gradient_noise",
    "g = (1/B) sum_b x_b (x_b.e - eps_b): B independent terms of covariance "
    "E[x x.T e e.T x x.T] + sigma2 Sigma - Sigma e e.T Sigma",
    f"{_DYN}; Paquette et al., arXiv:2102.04396",
)
GAUSSIAN_FOURTH_MOMENT = Rule(
    "gaussian_fourth_moment",
    "E[x x.T C x x.T] = 2 Sigma C Sigma + Tr(Sigma C) Sigma for x ~ N(0, Sigma), C symmetric (Isserlis)",
    "Isserlis' theorem",
)
EIGENBASIS_PROJECTION = Rule(
    "eigenbasis_projection",
    "the diagonal of the second-moment recursion in the eigenbasis of Sigma closes on the modes",
    f"{_DYN}; Paquette et al., arXiv:2102.04396",
)
FORCING_TERM = Rule(
    "forcing_term",
    "unrolled c_k(t) = a_k^t v_k^2 + sum_(s<t) a_k^(t-1-s) b_k L_s; the homogeneous part of L_t",
    f"{_DYN}; Paquette et al., arXiv:2102.04396",
)
SGD_KERNEL = Rule(
    "sgd_kernel",
    "the driven part of the unrolled recursion: K_tau = sum_k lambda_k b_k a_k^tau",
    f"{_DYN}; Paquette et al., arXiv:2102.04396",
)
VOLTERRA_EQUATION = Rule(
    "volterra_equation",
    "L_t = F_t + sum_(s<t) K_(t-1-s) L_s, exact in expectation for Gaussian x at any D; "
    "L(z) = F(z) / (1 - z K(z))",
    f"{_DYN}; Paquette et al., arXiv:2102.04396",
)
NOISE_FLOOR = Rule(
    "noise_floor",
    "final value theorem: L_inf = lim (1 - z) L(z) at z -> 1",
    f"{_DYN}; Paquette et al., arXiv:2102.04396",
)
STABILITY = Rule(
    "stability",
    "every mode contracts (a_k < 1) and the renewal equation is subcritical (sum_tau K_tau < 1)",
    f"{_DYN}; Paquette et al., arXiv:2102.04396",
)

#: Every model rule by name.
MODEL_RULES: Mapping[str, Rule] = rule_table(
    ERROR_DECOMPOSITION,
    TRAINING_DECOMPOSITION,
    DERIVE_TEST_ERROR,
    DERIVE_TRAINING_ERROR,
    TRACE_BASIS,
    FIXED_POINT_FOR_RIDGE,
    S_TRANSFORM_OF_WISHART,
    TRAIN_TEST_RELATION,
    GCV_DEFINITION,
    EFFECTIVE_DEGREES_OF_FREEDOM,
    RATIO_OF_CONCENTRATED,
    GCV_IS_TEST_ERROR,
    SECOND_MOMENT_RECURSION,
    BATCH_GRADIENT_NOISE,
    GAUSSIAN_FOURTH_MOMENT,
    EIGENBASIS_PROJECTION,
    FORCING_TERM,
    SGD_KERNEL,
    VOLTERRA_EQUATION,
    NOISE_FLOOR,
    STABILITY,
)
