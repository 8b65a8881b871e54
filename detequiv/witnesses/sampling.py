"""Seeded Monte Carlo samplers and empirical normalized traces (numpy only).

The Monte Carlo witness of the project: random matrices drawn with an explicit
:class:`numpy.random.Generator` (never a global seed), and estimates of normalized
traces ``tr = Tr / N`` of products of them, with their standard errors.

Conventions (MATH.md section 1.1 and 1.4):

- :func:`white_wishart` is ``W = Z^T Z / P`` with ``Z`` of shape ``(P, N)`` and iid
  ``N(0, 1)`` entries, so ``E W = I_N``; its ratio is ``q = N / P``.
- :func:`goe` is ``sqrt(variance) (G + G^T) / sqrt(2 N)``, the semicircle of that
  variance in the limit.
- :func:`haar_orthogonal` is Haar distributed on ``O(N)``;
  :func:`rotated_spectrum` puts a deterministic spectrum in a Haar-random basis,
  which is how two deterministic-spectrum matrices are made (asymptotically) free.

A *sampler* is any callable ``f(N, rng) -> ndarray`` of shape ``(N, N)``; the
factories (:func:`wishart_sampler`, :func:`goe_sampler`, :func:`spectrum_sampler`,
:func:`fixed_matrix_sampler`) build the common ones. :func:`trace_moment` estimates
``E tr(X_1 X_2 ... X_k)`` for a word of letter keys, the same key meaning the same
matrix within one sample:

>>> import numpy as np
>>> from detequiv.witnesses.sampling import trace_moment, wishart_sampler
>>> rng = np.random.default_rng(0)
>>> est = trace_moment("WW", {"W": wishart_sampler(0.5)}, 40, 50, rng)
>>> est.N, est.n_samples
(40, 50)
>>> abs(est.mean - (1 + 0.5 + 1 / 80)) < 4 * est.se  # E tr W^2 = 1 + q + 1/P
True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument, InvalidWord

__all__ = [
    "Sampler",
    "MCEstimate",
    "gaussian",
    "white_wishart",
    "wishart_size",
    "goe",
    "haar_orthogonal",
    "rotated_spectrum",
    "quantile_spectrum",
    "wishart_sampler",
    "goe_sampler",
    "spectrum_sampler",
    "fixed_matrix_sampler",
    "sample_matrices",
    "trace_moment",
    "trace_moments",
    "mc_estimate",
]

Sampler = Callable[[int, np.random.Generator], np.ndarray]
"""A callable ``f(N, rng) -> ndarray`` returning an ``N x N`` matrix."""


# --- checks ---


def check_rng(rng: Any) -> np.random.Generator:
    """``rng`` itself if it is a :class:`numpy.random.Generator`; else :class:`InvalidArgument`
    saying how to make one (every seeded witness calls this)."""
    if not isinstance(rng, np.random.Generator):
        raise InvalidArgument(
            f"rng={rng!r} is not a numpy.random.Generator; pass one explicitly, "
            "e.g. rng=np.random.default_rng(1234)"
        )
    return rng


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgument(f"{name}={value!r} is not an integer; pass an int >= {minimum}")
    if value < minimum:
        raise InvalidArgument(f"{name}={value!r} is too small; pass an int >= {minimum}")
    return int(value)


def _check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(f"{name}={value!r} is not a real number; pass a float > 0")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgument(f"{name}={value!r} must be finite and > 0")
    return value


# --- matrices ---


def gaussian(rows: int, cols: int, rng: np.random.Generator, *, variance: float = 1.0) -> np.ndarray:
    """A ``rows x cols`` matrix of iid ``N(0, variance)`` entries.

    >>> gaussian(2, 3, np.random.default_rng(0)).shape
    (2, 3)
    """
    rows = _check_int(rows, "rows", 1)
    cols = _check_int(cols, "cols", 1)
    variance = _check_positive(variance, "variance")
    z = check_rng(rng).standard_normal((rows, cols))
    return z if variance == 1.0 else math.sqrt(variance) * z


def wishart_size(N: int, ratio: float) -> int:
    """The number of samples ``P = round(N / ratio)`` used by :func:`white_wishart`.

    Python's ``round`` is used (nearest integer, ties to even). The realised ratio is
    ``N / P``, which equals ``ratio`` exactly when ``N / ratio`` is an integer.

    >>> wishart_size(100, 0.5), wishart_size(100, 3.0)
    (200, 33)

    Raises
    ------
    InvalidArgument
        If ``ratio <= 0`` or ``P < 1`` (ratio larger than ``2 N``).
    """
    N = _check_int(N, "N", 1)
    ratio = _check_positive(ratio, "ratio")
    P = round(N / ratio)
    if P < 1:
        raise InvalidArgument(
            f"ratio={ratio!r} at N={N} gives P=round(N/ratio)={P} samples; use a ratio <= 2 N so that P >= 1"
        )
    return P


def white_wishart(N: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """White Wishart matrix ``W = Z^T Z / P``, ``Z`` of shape ``(P, N)``, ``E W = I``.

    Parameters
    ----------
    N : int
        Dimension of ``W``.
    ratio : float
        Aspect ratio ``q = N / P > 0``; ``P = round(N / ratio)`` (see
        :func:`wishart_size`), so the realised ratio is ``N / P``.
    rng : numpy.random.Generator

    Examples
    --------
    >>> W = white_wishart(4, 0.5, np.random.default_rng(1))
    >>> W.shape, bool(np.allclose(W, W.T))
    ((4, 4), True)
    """
    P = wishart_size(N, ratio)
    z = check_rng(rng).standard_normal((P, N))
    return (z.T @ z) / P


def goe(N: int, rng: np.random.Generator, *, variance: float = 1.0) -> np.ndarray:
    """GOE matrix ``sqrt(variance) (G + G^T) / sqrt(2 N)``, ``G`` iid ``N(0, 1)``.

    Off-diagonal entries have variance ``variance / N`` and diagonal ones
    ``2 variance / N``; the limit law is the semicircle of variance ``variance``.

    >>> H = goe(5, np.random.default_rng(2))
    >>> bool(np.array_equal(H, H.T))
    True
    """
    N = _check_int(N, "N", 1)
    variance = _check_positive(variance, "variance")
    g = check_rng(rng).standard_normal((N, N))
    return (g + g.T) * math.sqrt(variance / (2.0 * N))


def haar_orthogonal(N: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed orthogonal ``N x N`` matrix.

    QR of a Gaussian matrix, with each column of ``Q`` multiplied by the sign of the
    matching diagonal entry of ``R`` (without that correction ``Q`` is not Haar:
    LAPACK fixes the signs of ``R``, which biases ``Q``).

    >>> O = haar_orthogonal(5, np.random.default_rng(3))
    >>> bool(np.allclose(O.T @ O, np.eye(5)))
    True
    """
    N = _check_int(N, "N", 1)
    z = check_rng(rng).standard_normal((N, N))
    q, r = np.linalg.qr(z)
    d = np.sign(np.diagonal(r))
    d[d == 0] = 1.0
    return q * d


def rotated_spectrum(eigenvalues: Any, rng: np.random.Generator) -> np.ndarray:
    """``O diag(eigenvalues) O^T`` with ``O`` Haar orthogonal.

    A deterministic spectrum in a uniformly random basis; two such matrices with
    independent rotations are asymptotically free.

    >>> M = rotated_spectrum([1.0, 2.0, 3.0], np.random.default_rng(4))
    >>> bool(np.allclose(np.linalg.eigvalsh(M), [1, 2, 3]))
    True
    """
    e = np.asarray(eigenvalues)
    if e.ndim != 1 or e.size < 1:
        raise InvalidArgument(
            f"eigenvalues of shape {e.shape} are not a non-empty 1-d array; pass one eigenvalue per dimension"
        )
    o = haar_orthogonal(e.size, rng)
    return (o * e) @ o.T


def quantile_spectrum(quantile: Callable[[np.ndarray], Any], N: int) -> np.ndarray:
    """``N`` eigenvalues ``quantile((k - 1/2) / N)``, ``k = 1..N``: a discretised law.

    ``quantile`` is the inverse distribution function of the target density,
    applied to an array (e.g. ``lambda u: 0.5 + 1.5 * u`` for uniform[0.5, 2]).

    >>> quantile_spectrum(lambda u: 2 * u, 4).tolist()
    [0.25, 0.75, 1.25, 1.75]
    """
    N = _check_int(N, "N", 1)
    u = (np.arange(N) + 0.5) / N
    e = np.asarray(quantile(u), dtype=float)
    if e.shape != (N,):
        raise InvalidArgument(
            f"quantile returned shape {e.shape} for {N} points; it must map an array "
            "of probabilities to an array of the same shape"
        )
    return e


# --- samplers ---


@dataclass(frozen=True, slots=True)
class _WishartSampler:
    ratio: float

    def __call__(self, N: int, rng: np.random.Generator) -> np.ndarray:
        return white_wishart(N, self.ratio, rng)


@dataclass(frozen=True, slots=True)
class _GOESampler:
    variance: float

    def __call__(self, N: int, rng: np.random.Generator) -> np.ndarray:
        return goe(N, rng, variance=self.variance)


@dataclass(frozen=True, slots=True)
class _SpectrumSampler:
    spectrum: Any
    rotate: bool

    def __call__(self, N: int, rng: np.random.Generator) -> np.ndarray:
        e = self.spectrum(N) if callable(self.spectrum) else self.spectrum
        e = np.asarray(e)
        if e.shape != (N,):
            raise InvalidArgument(
                f"the spectrum has shape {e.shape} at N={N}; give N eigenvalues "
                "(pass a callable N -> eigenvalues to use several sizes)"
            )
        if self.rotate:
            return rotated_spectrum(e, rng)
        return np.diag(e)


@dataclass(frozen=True, slots=True)
class _FixedMatrixSampler:
    matrix: Callable[[int], Any]

    def __call__(self, N: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.matrix(N))


def wishart_sampler(ratio: float) -> Sampler:
    """Sampler of white Wishart matrices of ratio ``ratio`` (see :func:`white_wishart`).

    >>> wishart_sampler(0.5)(3, np.random.default_rng(0)).shape
    (3, 3)
    """
    return _WishartSampler(_check_positive(ratio, "ratio"))


def goe_sampler(variance: float = 1.0) -> Sampler:
    """Sampler of GOE matrices of the given semicircle variance (see :func:`goe`)."""
    return _GOESampler(_check_positive(variance, "variance"))


def spectrum_sampler(spectrum: Any, *, rotate: bool = True) -> Sampler:
    """Sampler of a deterministic spectrum, Haar rotated unless ``rotate=False``.

    Parameters
    ----------
    spectrum : callable or array_like
        Either ``N -> eigenvalues`` (length ``N``; e.g. built with
        :func:`quantile_spectrum`) or a fixed array of eigenvalues (then only that
        ``N`` can be sampled).
    rotate : bool
        ``True``: ``O diag(e) O^T`` with a fresh Haar ``O`` at every call.
        ``False``: the deterministic matrix ``diag(e)``.

    Examples
    --------
    >>> s = spectrum_sampler(lambda N: np.arange(1.0, N + 1), rotate=False)
    >>> s(3, np.random.default_rng(0)).diagonal().tolist()
    [1.0, 2.0, 3.0]
    """
    if not callable(spectrum):
        spectrum = np.asarray(spectrum).copy()
        spectrum.setflags(write=False)
    return _SpectrumSampler(spectrum, bool(rotate))


def fixed_matrix_sampler(matrix: Callable[[int], Any]) -> Sampler:
    """Sampler of the deterministic matrix ``matrix(N)`` (no randomness, no rotation).

    >>> fixed_matrix_sampler(np.eye)(2, np.random.default_rng(0)).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    if not callable(matrix):
        raise InvalidArgument(
            f"matrix={matrix!r} is not callable; pass a function N -> (N x N) array, "
            "e.g. lambda N: np.diag(np.linspace(0.5, 2, N))"
        )
    return _FixedMatrixSampler(matrix)


def sample_matrices(
    samplers: Mapping[Hashable, Sampler],
    N: int,
    rng: np.random.Generator,
    keys: Sequence[Hashable] | None = None,
) -> dict[Hashable, np.ndarray]:
    """Draw one matrix per key, in the order of ``samplers`` (restricted to ``keys``).

    Each returned matrix is checked to be an ``N x N`` array.
    """
    N = _check_int(N, "N", 1)
    rng = check_rng(rng)
    wanted = samplers.keys() if keys is None else set(keys)
    out: dict[Hashable, np.ndarray] = {}
    for key, sampler in samplers.items():
        if key not in wanted:
            continue
        m = np.asarray(sampler(N, rng))
        if m.shape != (N, N):
            raise InvalidArgument(
                f"the sampler of {key!r} returned shape {m.shape} at N={N}; "
                f"a sampler must return an ({N}, {N}) array"
            )
        out[key] = m
    return out


# --- estimates ---


@dataclass(frozen=True, slots=True)
class MCEstimate:
    """A Monte Carlo mean with its standard error.

    Attributes
    ----------
    mean : float or complex
        Sample mean.
    se : float
        Standard error ``std(ddof=1) / sqrt(n_samples)``.
    n_samples : int
        Number of independent samples.
    N : int
        Matrix dimension.
    """

    mean: float | complex
    se: float
    n_samples: int
    N: int

    def z_score(self, value: complex) -> float:
        """``|mean - value| / se`` (``inf`` if ``se == 0`` and they differ).

        >>> MCEstimate(1.0, 0.1, 10, 5).z_score(1.25)
        2.5
        """
        diff = abs(self.mean - value)
        if self.se == 0:
            return 0.0 if diff == 0 else math.inf
        return diff / self.se

    def __str__(self) -> str:
        return f"{self.mean:.6g} ± {self.se:.2g} (N={self.N}, {self.n_samples} samples)"


def _estimate(values: np.ndarray, N: int) -> MCEstimate:
    n = values.size
    mean = values.mean()
    se = float(values.std(ddof=1) / math.sqrt(n))
    m: float | complex = complex(mean) if np.iscomplexobj(values) else float(mean)
    return MCEstimate(m, se, n, N)


def _check_word(word: Any, samplers: Mapping[Hashable, Sampler]) -> tuple[Hashable, ...]:
    try:
        letters = tuple(word)
    except TypeError:
        raise InvalidWord(f"word={word!r} is not a sequence of letter keys; pass e.g. ('A', 'W')") from None
    if not letters:
        raise InvalidWord("the word is empty; a trace word needs at least one letter")
    for letter in letters:
        if letter not in samplers:
            raise InvalidWord(
                f"letter {letter!r} of word {letters!r} has no sampler; "
                f"add it to samplers (known keys: {list(samplers)!r})"
            )
    return letters


def _word_traces(words: Sequence[tuple[Hashable, ...]], mats: Mapping[Hashable, np.ndarray]) -> list[Any]:
    """Normalized traces of several words of one sample, sharing prefix products."""
    prefix: dict[tuple[Hashable, ...], np.ndarray] = {}

    def product(p: tuple[Hashable, ...]) -> np.ndarray:
        if len(p) == 1:
            return mats[p[0]]
        got = prefix.get(p)
        if got is None:
            got = product(p[:-1]) @ mats[p[-1]]
            prefix[p] = got
        return got

    out = []
    for w in words:
        n = mats[w[0]].shape[0]
        if len(w) == 1:
            out.append(np.trace(mats[w[0]]) / n)
        else:
            # tr(X Y) = sum(X * Y^T): saves the last matrix product
            out.append(np.sum(product(w[:-1]) * mats[w[-1]].T) / n)
    return out


def trace_moments(
    words: Sequence[Sequence[Hashable]],
    samplers: Mapping[Hashable, Sampler],
    N: int,
    n_samples: int,
    rng: np.random.Generator,
) -> tuple[MCEstimate, ...]:
    """Estimates of ``E tr(word)`` for several words from the same samples.

    Each sample draws every letter that occurs in some word once (in the order of
    ``samplers``), then evaluates all words on those matrices, reusing common
    prefix products. The estimates are therefore correlated across words.

    >>> rng = np.random.default_rng(0)
    >>> m2, m3 = trace_moments(["WW", "WWW"], {"W": wishart_sampler(1.0)}, 30, 20, rng)
    >>> m2.n_samples, m3.N
    (20, 30)
    """
    N = _check_int(N, "N", 1)
    n_samples = _check_int(n_samples, "n_samples", 2)
    rng = check_rng(rng)
    checked = [_check_word(w, samplers) for w in words]
    if not checked:
        raise InvalidArgument("words is empty; pass at least one word")
    used = {letter for w in checked for letter in w}
    rows = []
    for _ in range(n_samples):
        mats = sample_matrices(samplers, N, rng, keys=list(used))
        rows.append(_word_traces(checked, mats))
    values = np.array(rows)
    return tuple(_estimate(values[:, j], N) for j in range(len(checked)))


def trace_moment(
    word: Sequence[Hashable],
    samplers: Mapping[Hashable, Sampler],
    N: int,
    n_samples: int,
    rng: np.random.Generator,
) -> MCEstimate:
    """Estimate ``E tr(X_{w_1} X_{w_2} ... X_{w_k})``, ``tr = Tr / N``.

    Parameters
    ----------
    word : sequence of hashable
        Letter keys in product order, e.g. ``("A", "W", "A", "W")`` or ``"AWAW"``.
        Within one sample the same key is the same matrix.
    samplers : mapping
        Letter key -> sampler ``f(N, rng) -> (N, N) array``. Letters are drawn once
        per sample in the order of this mapping (only those in the word).
    N : int
        Matrix dimension.
    n_samples : int
        Number of independent samples (>= 2).
    rng : numpy.random.Generator

    Returns
    -------
    MCEstimate
        Complex mean if the samplers return complex matrices.

    Raises
    ------
    InvalidWord
        Empty word, or a letter without a sampler.
    InvalidArgument
        Bad ``N``, ``n_samples``, ``rng`` or sampler output shape.

    Examples
    --------
    >>> A = fixed_matrix_sampler(lambda N: np.diag(np.arange(1.0, N + 1)))
    >>> trace_moment("AA", {"A": A}, 3, 2, np.random.default_rng(0)).mean  # (1+4+9)/3
    4.666666666666667
    """
    return trace_moments([word], samplers, N, n_samples, rng)[0]


def mc_estimate(
    functional: Callable[[dict[Hashable, np.ndarray]], Any],
    samplers: Mapping[Hashable, Sampler],
    N: int,
    n_samples: int,
    rng: np.random.Generator,
) -> MCEstimate:
    """Estimate ``E functional(matrices)`` for an arbitrary scalar functional.

    Each sample draws one matrix per key of ``samplers`` (in mapping order) and
    passes the dict ``{key: matrix}`` to ``functional``, which returns a real or
    complex scalar (e.g. a normalized resolvent trace).

    >>> f = lambda m: np.trace(np.linalg.inv(np.eye(20) + m["W"])) / 20
    >>> rng = np.random.default_rng(0)
    >>> est = mc_estimate(f, {"W": wishart_sampler(0.5)}, 20, 10, rng)
    >>> 0 < est.mean < 1
    True
    """
    N = _check_int(N, "N", 1)
    n_samples = _check_int(n_samples, "n_samples", 2)
    rng = check_rng(rng)
    if not callable(functional):
        raise InvalidArgument(
            f"functional={functional!r} is not callable; pass a function of the dict "
            "of sampled matrices (or use trace_moment for a word)"
        )
    values = []
    for _ in range(n_samples):
        v = np.asarray(functional(sample_matrices(samplers, N, rng)))
        if v.shape != ():
            raise InvalidArgument(f"functional returned shape {v.shape}; it must return one scalar")
        values.append(v[()])
    return _estimate(np.array(values), N)
