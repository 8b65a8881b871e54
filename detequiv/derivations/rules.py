r"""The table of the engine's rules: one :class:`~detequiv.derivations.derivation.Rule` each.

Every :class:`~detequiv.derivations.derivation.Step` of a derivation holds one of these
(or a rule of :mod:`detequiv.models.rules`, or one a user defines). Each rule states the
identity or approximation it applies and where it is proved; the functions that apply
them live with the equivalents they build (:mod:`~detequiv.derivations.onepoint`,
:mod:`~detequiv.derivations.additive`, :mod:`~detequiv.derivations.twopoint`,
:mod:`~detequiv.derivations.layered`, :mod:`~detequiv.derivations.sandwich`,
:mod:`~detequiv.derivations.laplace`).

References cite the project's pages (*docs*, "The mathematics in brief", by section) and
the literature:

* [NS] A. Nica and R. Speicher, *Lectures on the Combinatorics of Free Probability*
  (2006): Lectures 11-12 (R-transform), 14 and 18 (S-transform), 22 (Wishart);
* [MS] J. Mingo and R. Speicher, *Free Probability and Random Matrices* (2017), ch. 9
  (operator-valued subordination);
* [Bi] P. Biane, Processes with free increments, Math. Z. 227 (1998) (subordination);
* [BS] Z. Bai and J. Silverstein, *Spectral Analysis of Large Dimensional Random
  Matrices* (2010), ch. 3-4 (Marchenko-Pastur equation for the sample covariance);
* [WT] J. A. C. Weideman and L. N. Trefethen, Parabolic and hyperbolic contours for
  computing the Bromwich integral, Math. Comp. 76 (2007);
* [AP] B. Adlam and J. Pennington, Understanding double descent requires a fine-grained
  bias-variance decomposition, NeurIPS 2020 (arXiv:2011.03321).

>>> ENGINE_RULES["free_factor_renormalization"].reference.startswith("docs")
True
>>> all(name == rule.name for name, rule in ENGINE_RULES.items())
True
"""

from __future__ import annotations

from collections.abc import Mapping

from .derivation import Rule, rule_table

__all__ = [
    "ENGINE_RULES",
    "GAUSSIAN_GRAM_TO_WISHART",
    "RIDGE_RESCALING",
    "MERGE_SQUARE_ROOTS",
    "FREE_FACTOR_RENORMALIZATION",
    "TRACE_INVARIANCE",
    "LAYER_COMPOSITION",
    "OUTER_ISOTROPY",
    "TRACE_OF_EQUIVALENCE",
    "ADDITIVE_SUBORDINATION",
    "CONTRACT_EQUIVALENCE",
    "ONE_POINT_RENORMALIZATION",
    "OPERATOR_VALUED_SUBORDINATION",
    "CONJUGATION_EXPONENT",
    "LINEAR_DIVIDED_DIFFERENCE",
    "SIMILARITY_CONJUGATION",
    "ONE_POINT_CHAIN",
    "LAYERED_CHAIN",
    "TWO_POINT_SINGLE_LAYER",
    "RESOLVENT_ABSORPTION",
    "RESOLVENT_IDENTITY",
    "COLLECT_TERMS",
    "TWO_POINT_EQUIVALENT",
    "ONE_POINT_EQUIVALENTS",
    "TWO_POINT_COINCIDENCE",
    "IMPLICIT_DIFFERENTIATION",
    "CONDITIONAL_EQUIVALENT",
    "TRACE_CONCENTRATION",
    "SPECTRAL_PARAMETER_SUBSTITUTION",
    "REPLICA_DECOMPOSITION",
    "REPLICA_FACTORIZATION",
    "LAPLACE_REPRESENTATION",
    "INVERSE_LAPLACE",
    "LINEARIZE",
    "COVARIANCE_MAP",
    "DYSON_EQUATION",
    "SCALARIZE",
    "ELIMINATE",
    "RIDGE_FORM",
    "GENERAL_ENGINE",
]

_ONE = "docs, One-point equivalents"
_TWO = "docs, Two-point equivalents"
_DYN = "docs, Dynamics"

# -- one-point equivalents -----------------------------------------------------------
GAUSSIAN_GRAM_TO_WISHART = Rule(
    "gaussian_gram_to_wishart",
    "X.T X = r W for X (r x c) with iid N(0, 1) entries, W white Wishart of ratio c / r, "
    "rotation invariant and free from deterministic matrices",
    f"{_ONE}; Nica-Speicher (2006) Lecture 22",
)
RIDGE_RESCALING = Rule(
    "ridge_rescaling",
    "lam (lam + c Y)^-1 = lam' (lam' + Y)^-1 with lam' = lam / c (exact)",
    "exact algebra",
)
MERGE_SQUARE_ROOTS = Rule("merge_square_roots", "A^(1/2) A^(1/2) = A (exact)", "exact algebra")
FREE_FACTOR_RENORMALIZATION = Rule(
    "free_factor_renormalization",
    "r (r + L B R)^-1 ~ kappa (kappa + L R)^-1 with kappa = r S_B(-df1(R L, kappa)), B rotation "
    "invariant and free from L, R (multiplicative subordination)",
    f"{_ONE}; Nica-Speicher (2006) Lectures 14, 18 (S-transform); Biane, Math. Z. 227 (1998)",
)
TRACE_INVARIANCE = Rule(
    "trace_invariance",
    "tr of an equivalence: 1 - df1(Y_i, kappa_i) = 1 - df1(Y_L, kappa_L), and "
    "df1(R L, k) = df1(L R, k) by cyclicity (normalized traces in different spaces scale by "
    "their dimensions)",
    f"{_ONE}; Bai-Silverstein (2010) ch. 3",
)
LAYER_COMPOSITION = Rule(
    "layer_composition",
    "kappa_i = kappa_(i-1) S_i(-delta) with one delta: kappa_L = lam prod_i S_i(-delta) is one "
    "implicit equation, the intermediate ridges explicit (S_AB = S_A S_B)",
    f"{_ONE}; Nica-Speicher (2006) Lecture 18",
)
OUTER_ISOTROPY = Rule(
    "outer_isotropy",
    "lam (lam + c Z Y Z.T)^-1 ~ tau I_N with tau = 1 - (D/N)(1 - tr_D lam (lam + c Y Z.T Z)^-1): "
    "Z and O Z have the same law for Haar O, and Z Y Z.T, Y Z.T Z share their nonzero spectrum",
    f"{_ONE} (feature space)",
)
TRACE_OF_EQUIVALENCE = Rule(
    "trace_of_equivalence",
    "tr kappa (kappa + Y)^-1 = 1 - df1(Y, kappa); equivalences hold under deterministic "
    "contractions and traces of random pieces concentrate",
    f"{_ONE}; {_TWO}",
)
ADDITIVE_SUBORDINATION = Rule(
    "additive_subordination",
    "r (r + A + c B)^-1 ~ (r / r~) r~ (r~ + A)^-1 with r~ = r + R_cB(-(1 - df1(A, r~)) / r~), B "
    "rotation invariant and free from A",
    f"{_ONE} (additive layers); Biane, Math. Z. 227 (1998); "
    "Nica-Speicher (2006) Lectures 11-12 (R-transform)",
)
CONTRACT_EQUIVALENCE = Rule(
    "contract_equivalence",
    "A ~ E means tr(T A) -> tr(T E) and u.T A v -> u.T E v for deterministic T, u, v of bounded "
    "norm (the definition of the equivalence)",
    _ONE,
)

# -- two-point equivalents ------------------------------------------------------------
ONE_POINT_RENORMALIZATION = Rule(
    "one_point_renormalization",
    "each resolvent of a two-point function is renormalized by its one-point equivalent",
    _ONE,
)
OPERATOR_VALUED_SUBORDINATION = Rule(
    "operator_valued_subordination",
    "lam lam' G M G' from the upper-triangular 2x2 block resolvent, subordinated over M_2(C) "
    "with B free from A and M",
    f"{_TWO}; Mingo-Speicher (2017) ch. 9",
)
CONJUGATION_EXPONENT = Rule(
    "conjugation_exponent",
    "(lam + A^l B A^(1-l))^-1 = A^(l-1/2) (lam + A^(1/2) B A^(1/2))^-1 A^(1/2-l) (exact)",
    f"exact algebra; {_TWO}",
)
LINEAR_DIVIDED_DIFFERENCE = Rule(
    "linear_divided_difference",
    "when the ridge is linear in df1 (Wishart), the df2 denominators are divided differences "
    "(lam' kappa - lam kappa') / (lam' - lam) of kappa(lam)",
    _TWO,
)
SIMILARITY_CONJUGATION = Rule(
    "similarity_conjugation",
    "(r + L B R)^-1 = L (r + B R L)^-1 L^-1 = R^-1 (r + R L B)^-1 R (exact)",
    "exact algebra",
)
ONE_POINT_CHAIN = Rule(
    "one_point_chain",
    "the one-point equivalent of the inner matrix of a layer, derived by the engine",
    _ONE,
)
LAYERED_CHAIN = Rule(
    "layered_chain",
    "one renormalized ridge per free factor, at both spectral parameters",
    f"{_ONE}; {_TWO}",
)
TWO_POINT_SINGLE_LAYER = Rule(
    "two_point_single_layer",
    "a layer with one free factor is the single-layer two-point equivalent",
    _TWO,
)
RESOLVENT_ABSORPTION = Rule(
    "resolvent_absorption",
    "A (k + A)^-1 = I - k (k + A)^-1 and G^2 = -dG/dlam (exact): products of a resolvent with its "
    "own matrix become one- and two-point functions",
    f"exact algebra; {_TWO}",
)
RESOLVENT_IDENTITY = Rule(
    "resolvent_identity",
    "G(lam) G(lam') = (G(lam) - G(lam')) / (lam' - lam) for resolvents of one matrix, and "
    "I - k (k + Y)^-1 = Y (k + Y)^-1 (exact)",
    "exact algebra",
)
COLLECT_TERMS = Rule(
    "collect_terms",
    "each term normalized as lam G (one-point) or lam lam' G1 M G2 (two-point)",
    "exact algebra",
)
TWO_POINT_EQUIVALENT = Rule(
    "two_point_equivalent",
    "lam lam' G1 M G2 replaced by its two-point equivalent",
    _TWO,
)
ONE_POINT_EQUIVALENTS = Rule(
    "one_point_equivalents",
    "lam G ~ kappa R and traces of it by the one-point engine (with Sigma_hat G = I - lam G exact)",
    _ONE,
)
TWO_POINT_COINCIDENCE = Rule(
    "two_point_coincidence",
    "the two-point equivalent is regular at lam' = lam: set the primed ridges to the unprimed",
    _TWO,
)
IMPLICIT_DIFFERENTIATION = Rule(
    "implicit_differentiation",
    "dkappa/dlam = -(dPhi/dlam) / (dPhi/dkappa) on the fixed point Phi(kappa, lam) = 0 (implicit "
    "function theorem)",
    "implicit function theorem",
)
CONDITIONAL_EQUIVALENT = Rule(
    "conditional_equivalent",
    "the equivalent with a shared random factor held fixed as a deterministic placeholder; "
    "independent copies on the two sides factorize",
    f"{_TWO}; Adlam-Pennington, arXiv:2011.03321",
)
TRACE_CONCENTRATION = Rule(
    "trace_concentration",
    "traces of the held factor concentrate: each is replaced by its equivalent with the factor "
    "random, derived by the engine",
    f"{_TWO}; Adlam-Pennington, arXiv:2011.03321",
)
SPECTRAL_PARAMETER_SUBSTITUTION = Rule(
    "spectral_parameter_substitution",
    "an equivalent at spectral parameter k holds for every k off the spectrum, so k may be the "
    "concentrated conditional ridge",
    _ONE,
)
REPLICA_DECOMPOSITION = Rule(
    "replica_decomposition",
    "law of total variance with independent copies X', F': bias and each variance part is a "
    "two-point function of resolvents sharing some random factors",
    "Adlam-Pennington, arXiv:2011.03321",
)
REPLICA_FACTORIZATION = Rule(
    "replica_factorization",
    "independent copies: E[A(X, F) M B(X', F')] = E[A] M E[B]",
    "Adlam-Pennington, arXiv:2011.03321",
)

# -- dynamics -------------------------------------------------------------------------
LAPLACE_REPRESENTATION = Rule(
    "laplace_representation",
    "e^(-tA) = L^-1_t[(lam + A)^-1] and g_s(A) = (1 - e^(-sA))/A = L^-1_s[(lam + A)^-1 / lam]",
    f"{_DYN}",
)
INVERSE_LAPLACE = Rule(
    "inverse_laplace",
    "L^-1[F](t) = 2 Re sum_j w_j exp(lam_j t) F(lam_j) on a hyperbolic contour shared by the "
    "times of a window [t0, 10 t0] (or one Talbot contour per time)",
    f"{_DYN}; Weideman-Trefethen, Math. Comp. 76 (2007)",
)

# -- the general engine: linear pencils and the matrix Dyson equation ---------------------
_PENCIL = "docs, The general engine (linear pencils)"
LINEARIZE = Rule(
    "linearize",
    "the expression is a block of L^-1 for a block matrix L affine in the Gaussian matrices (Schur "
    "complements: [[a, b], [c, S]]^-1_11 = (a - b S^-1 c)^-1), pruned of trivial blocks (exact)",
    f"{_PENCIL}; Helton-Mai-Speicher, J. Funct. Anal. 274 (2018)",
)
COVARIANCE_MAP = Rule(
    "covariance_map",
    "E[L1 Z R1 G L2 Z^T R2] = s^2 Tr(R1 G L2) L1 R2 for the planar pairings of Z with Z^T; crossing "
    "and Z-Z pairings are O(1/n) and dropped",
    f"{_PENCIL}; Mingo-Speicher (2017) ch. 9",
)
DYSON_EQUATION = Rule(
    "dyson_equation",
    "the planar resummation of E[L^-1]: G = (L_0 - eta(G))^-1 (matrix Dyson equation)",
    f"{_PENCIL}; Helton-Rashidi Far-Speicher, IMRN 2007; Alt-Erdos-Kruger (2020)",
)
SCALARIZE = Rule(
    "scalarize",
    "eta sees G only through finitely many traces g_i = tr(G_cd M_i): with them as unknowns, "
    "L_0 - eta is inverted block by block (ordered products) and the traces close the system",
    _PENCIL,
)
ELIMINATE = Rule(
    "eliminate",
    "an unknown whose closure has no trace left is explicit: it is substituted into the others",
    "exact algebra",
)
RIDGE_FORM = Rule(
    "ridge_form",
    "(lam + g M)^-1 = (1/g) (kappa + M)^-1 with kappa = lam / g, and tr M^j (lam + g M)^-1 in df1(M, "
    "kappa): one renormalized ridge",
    f"exact algebra; {_ONE}",
)
GENERAL_ENGINE = Rule(
    "general_engine",
    "an expression no shape rule derives is derived by its linear pencil (linearize, covariance_map, "
    "dyson_equation, scalarize, eliminate); the shape rule's reason is kept in the step",
    _PENCIL,
)

#: Every engine rule by name.
ENGINE_RULES: Mapping[str, Rule] = rule_table(
    GAUSSIAN_GRAM_TO_WISHART,
    RIDGE_RESCALING,
    MERGE_SQUARE_ROOTS,
    FREE_FACTOR_RENORMALIZATION,
    TRACE_INVARIANCE,
    LAYER_COMPOSITION,
    OUTER_ISOTROPY,
    TRACE_OF_EQUIVALENCE,
    ADDITIVE_SUBORDINATION,
    CONTRACT_EQUIVALENCE,
    ONE_POINT_RENORMALIZATION,
    OPERATOR_VALUED_SUBORDINATION,
    CONJUGATION_EXPONENT,
    LINEAR_DIVIDED_DIFFERENCE,
    SIMILARITY_CONJUGATION,
    ONE_POINT_CHAIN,
    LAYERED_CHAIN,
    TWO_POINT_SINGLE_LAYER,
    RESOLVENT_ABSORPTION,
    RESOLVENT_IDENTITY,
    COLLECT_TERMS,
    TWO_POINT_EQUIVALENT,
    ONE_POINT_EQUIVALENTS,
    TWO_POINT_COINCIDENCE,
    IMPLICIT_DIFFERENTIATION,
    CONDITIONAL_EQUIVALENT,
    TRACE_CONCENTRATION,
    SPECTRAL_PARAMETER_SUBSTITUTION,
    REPLICA_DECOMPOSITION,
    REPLICA_FACTORIZATION,
    LAPLACE_REPRESENTATION,
    INVERSE_LAPLACE,
    LINEARIZE,
    COVARIANCE_MAP,
    DYSON_EQUATION,
    SCALARIZE,
    ELIMINATE,
    RIDGE_FORM,
    GENERAL_ENGINE,
)
