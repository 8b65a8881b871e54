r"""The numeric run time of the generated evaluators: physical-branch ridges and spectral sums.

This module imports numpy only (no sympy, nothing else of detequiv), so that
:mod:`detequiv.codegen.pycode` can copy its functions into a generated module, which then
runs where only numpy is installed. The copy is made with :func:`inspect.getsource`: each
generated module takes the functions it calls and the ones those call, renamed with a
leading underscore (``solve_ridge`` becomes ``_solve_ridge``, so that no name of the user's
formula can shadow it), with their docstrings cut to the summary. What is tested here is
what runs there.

Everything works in the *commuting class*: the matrices of a result are given by their
eigenvalues ``y`` in one eigenbasis, and the resolvent sums are spectral sums such as

.. math:: \mathrm{df}_1(y,\kappa)=\operatorname{mean}_k\frac{y_k}{y_k+\kappa}.

:func:`solve_ridge` is the physical-branch solver of an implicit ridge
:math:`\kappa\,g(\mathrm{df}_1(y,\kappa))=\lambda` (MATH.md 2.1): for :math:`\lambda>0`
the root with :math:`\kappa>\kappa_0`, for :math:`\lambda=0` the ridgeless
:math:`\kappa_0` (:func:`ridgeless_threshold`: the root of
:math:`\mathrm{df}_1(y,\kappa_0)=d^*`, ``d*`` the smallest positive zero of ``g``, or 0),
for a complex :math:`\lambda` the continuation along the arc from :math:`|\lambda|`. The
branch is any function ``g(df1, *params) -> (g, dg/d df1)``, vectorized over the grid. The
solver is vectorized too: :math:`\lambda(\kappa)` is tabulated exactly on a log grid of
:math:`\kappa-\kappa_0` and inverted by cubic Hermite pieces for the starting points, then
a safeguarded Newton iteration (:func:`newton`) usually needs one exact evaluation per
point.

:func:`spectral_sums` computes :math:`\operatorname{mean}\,w\,y/(y+k)` or
:math:`\operatorname{mean}\,w\,k/(k+y)` and their :math:`k`-derivatives for many ``k`` at
once: exactly, in cache-sized blocks, or for large grids by Chebyshev interpolation in
:math:`\log k` (each sum is analytic in the strip :math:`|\operatorname{Im}\log k|<\pi`,
so 24 nodes per piece of length 2 give about ``1e-15`` relative accuracy) from exact sums
at the nodes. :func:`kernel_sums` and :func:`solve_ridge_and_sums` do the same for the
sums of a loss (any kernels in ``1/(k + y)``), solving the ridge on the interpolated table.

The remaining functions check and broadcast the inputs of a generated ``evaluate``
(:func:`check_spectrum`, :func:`broadcast_grid`, ...) and its outputs
(:func:`finish_outputs`): a bad input is a ``ValueError`` that says how to fix it.

>>> import numpy
>>> lam = numpy.array([0.1, 1.0])
>>> q = numpy.full(2, 0.5)     # isotropic Marchenko-Pastur: g(d) = 1 - q d, zero at d* = 1/q
>>> kappa = solve_ridge(lambda d, q: (1 - q * d, -q), [q], lam, numpy.ones(4), 1 / q)
>>> numpy.round(kappa, 10).tolist()     # MATH.md 7: (q, lam) = (0.5, 0.1), (0.5, 1)
[0.1741657387, 1.2807764064]

References
----------
MATH.md sections 2.1-2.4 (fixed points, physical branch, ridgeless limit), 5.6
(numerical recipe).
"""

from typing import TYPE_CHECKING

import numpy

if TYPE_CHECKING:  # annotations only: a generated module imports numpy and nothing else
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

    from numpy.typing import ArrayLike

__all__ = [
    "check_spectrum",
    "broadcast_eigenvalues",
    "common_length",
    "broadcast_grid",
    "broadcast_loss_grid",
    "spectral_sums",
    "df1",
    "trace_ratio",
    "newton",
    "smallest_positive",
    "ridgeless_threshold",
    "solve_ridge",
    "finish_outputs",
    "check_ridgeless",
    "weight_vectors",
    "kernel_sums",
    "solve_ridge_and_sums",
    "follow_unknowns",
    "broyden",
    "solve_unknowns_grid",
    "check_matrix",
    "matrix_sizes",
    "pencil_ridges",
    "check_scalar",
    "psd_sqrt",
    "trace_pair",
]

_TOL = 1e-13
_QUADRATIC = 1e-7
_MAXITER = 400
_ARC = 64  # continuation steps from |lam| to a complex lam
_BLOCK = 1 << 16  # entries of a (grid, D) block: small enough for a fast cache
_COLUMNS = 8192  # eigenvalues per block
# the loss kernels allocate temporaries: blocks below glibc's mmap threshold (128 KiB)
# avoid a fresh mmap per temporary, 10x slower on large blocks
_KERNEL_BLOCK = 1 << 13
_KERNEL_COLUMNS = 1024
_NODES = 24  # Chebyshev points (second kind) per piece of log k
_PIECE = 2.0  # length of a piece in log k
_CHEB = numpy.cos(numpy.pi * numpy.arange(_NODES) / (_NODES - 1))
_BARY = numpy.where(numpy.arange(_NODES) % 2, -1.0, 1.0)
_BARY[[0, -1]] *= 0.5


# ---------------------------------------------------------------------------
# inputs and outputs of a generated evaluate
# ---------------------------------------------------------------------------


def check_spectrum(name: str, value: "ArrayLike | None", nonnegative: bool) -> numpy.ndarray:
    """A 1-D float array of eigenvalues (or eigen-weights), checked.

    Parameters
    ----------
    name : str
        The argument's name, for the messages.
    value : array_like or None
        The eigenvalues (``None``: the argument was not passed).
    nonnegative : bool
        Whether the matrix must be positive semidefinite (a covariance).

    Returns
    -------
    numpy.ndarray
        A contiguous 1-D float array.

    Raises
    ------
    ValueError
        If the value is missing, not real, not a non-empty 1-D array, not finite, or
        negative where it must not be.

    Examples
    --------
    >>> check_spectrum("Sigma", [1, 2], True)
    array([1., 2.])
    >>> check_spectrum("Sigma", [1, -2], True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Sigma has the negative eigenvalue -2; it must be positive semidefinite ...
    """
    if value is None:
        raise ValueError(f"missing {name}: pass its eigenvalues as a 1-D array, {name}=...")
    a = numpy.asarray(value)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers (a 1-D float array), got dtype {a.dtype}")
    a = numpy.ascontiguousarray(a, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of eigenvalues, got shape {a.shape}")
    if not numpy.all(numpy.isfinite(a)):
        raise ValueError(f"{name} has non-finite entries (nan or inf); pass finite eigenvalues")
    if nonnegative and a.min() < 0:
        raise ValueError(
            f"{name} has the negative eigenvalue {a.min():.6g}; it must be positive semidefinite "
            "(a covariance), so pass eigenvalues >= 0"
        )
    return a


def broadcast_eigenvalues(value: "ArrayLike", n: int) -> numpy.ndarray:
    """The eigenvalues of a matrix of the result as a contiguous float array of length ``n``.

    >>> broadcast_eigenvalues(2, 3)
    array([2., 2., 2.])
    """
    return numpy.ascontiguousarray(numpy.broadcast_to(numpy.asarray(value, dtype=float), (n,)))


def common_length(spectra: dict[str, numpy.ndarray]) -> int:
    """The common length of the spectra (1 if there is none); a ``ValueError`` if they differ.

    >>> import numpy
    >>> common_length({"Sigma": numpy.ones(3), "T": numpy.zeros(3)}), common_length({})
    (3, 1)
    """
    sizes = {name: a.shape[0] for name, a in spectra.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"the spectra have different lengths {sizes}; give every matrix by its eigenvalues "
            "in one common eigenbasis (same length)"
        )
    return sizes.popitem()[1] if sizes else 1


def broadcast_grid(
    lam_name: str, lam: "ArrayLike", params: "Sequence[tuple[str, Any]]"
) -> tuple[tuple[int, ...], list[numpy.ndarray]]:
    """Check and broadcast the ridge grid and the positive parameters.

    Parameters
    ----------
    lam_name : str
        The name of the ridge, for the messages.
    lam : array_like
        Real ``>= 0`` (0 is the ridgeless limit) or complex off the negative real axis.
    params : sequence of (str, array_like)
        Named parameters, each ``> 0`` (dimensions, ratios).

    Returns
    -------
    shape : tuple of int
        The broadcast shape.
    arrays : list of numpy.ndarray
        ``lam`` then the parameters, flat (1-D) and contiguous; ``lam`` is complex only
        where a value is off the real axis.

    Raises
    ------
    ValueError
        For a missing, non-finite or out-of-range value, or shapes that do not broadcast.

    Examples
    --------
    >>> shape, (lam, p) = broadcast_grid("lam", [[0.0], [1.0]], [("P", [2, 3])])
    >>> shape, lam, p
    ((2, 2), array([0., 0., 1., 1.]), array([2., 3., 2., 3.]))
    """
    arrays = []
    for name, value in [(lam_name, lam), *params]:
        if name == lam_name and value is not None and numpy.asarray(value).dtype.kind == "c":
            arrays.append(_complex_ridges(name, numpy.asarray(value)))
            continue
        a = _real_values(name, value, "a positive number or array")
        if name == lam_name and a.size and a.min() < 0:
            raise ValueError(
                f"{name} = {a.min():.6g} < 0: the physical branch is defined for {name} > 0 and the "
                f"ridgeless limit {name} = 0; pass {name} >= 0"
            )
        if name != lam_name and a.size and a.min() <= 0:
            raise ValueError(f"{name} = {a.min():.6g} must be > 0 (a dimension or a ratio)")
        arrays.append(a)
    try:
        broadcast = numpy.broadcast_arrays(*arrays)
    except ValueError:
        raise _no_broadcast([(lam_name, lam), *params]) from None
    shape = broadcast[0].shape
    return shape, [numpy.ascontiguousarray(a).reshape(-1) for a in broadcast]


def _real_values(name: str, value: "ArrayLike | None", what: str) -> numpy.ndarray:
    """A given, real and finite number or array, as floats."""
    if value is None:
        raise ValueError(f"missing {name}: pass {name}=... ({what})")
    a = numpy.asarray(value)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real number or array, got dtype {a.dtype}")
    a = a.astype(float)
    if not numpy.all(numpy.isfinite(a)):
        raise ValueError(f"{name} has non-finite values (nan or inf); pass finite numbers")
    return a


def _complex_ridges(name: str, a: numpy.ndarray) -> numpy.ndarray:
    """Complex ridges off the negative real axis (real where they all are)."""
    if not numpy.all(numpy.isfinite(a)):
        raise ValueError(f"{name} has non-finite values (nan or inf); pass finite numbers")
    bad = (a.imag == 0) & (a.real < 0)
    if bad.any():
        raise ValueError(
            f"{name} = {a.real[bad].min():.6g} < 0 on the real axis: the physical branch is "
            f"defined for {name} > 0, {name} = 0 (ridgeless) and complex {name} off the "
            "negative axis; pass one of those"
        )
    return a.astype(complex) if numpy.any(a.imag != 0) else a.real.astype(float)


def _no_broadcast(named: "Sequence[tuple[str, Any]]") -> ValueError:
    shapes = {n: numpy.shape(v) for n, v in named}
    return ValueError(f"the shapes {shapes} do not broadcast together; use scalars or matching grids")


def broadcast_loss_grid(
    lam_name: str,
    lam: "ArrayLike",
    positive: "Sequence[tuple[str, Any]]",
    nonnegative: "Sequence[tuple[str, Any]]",
) -> tuple[tuple[int, ...], list[numpy.ndarray]]:
    """Broadcast the real grid lam >= 0, the positive parameters and the nonnegative ones.

    As :func:`broadcast_grid` (which checks ``lam`` and the positive parameters), for a
    loss: ``lam`` must be real, and the ``nonnegative`` parameters (noise variances) may be 0.

    >>> shape, (lam, p, s2) = broadcast_loss_grid("lam", [0.0, 1.0], [("P", 2)], [("sigma2", 0)])
    >>> shape, lam, p, s2
    ((2,), array([0., 1.]), array([2., 2.]), array([0., 0.]))
    """
    if numpy.iscomplexobj(numpy.asarray(lam)):
        raise ValueError(f"{lam_name} must be real (>= 0): a loss is evaluated at real ridges")
    checked = []
    for name, value in nonnegative:
        a = _real_values(name, value, "a number or array >= 0")
        if a.size and a.min() < 0:
            raise ValueError(f"{name} = {a.min():.6g} must be >= 0 (a noise variance)")
        checked.append(a)
    try:
        shape = numpy.broadcast_shapes(
            numpy.shape(lam), *[numpy.shape(v) for _, v in positive], *[a.shape for a in checked]
        )
    except ValueError:
        raise _no_broadcast([(lam_name, lam), *positive, *nonnegative]) from None
    lam = numpy.broadcast_to(numpy.asarray(lam), shape)
    positive = [(n, numpy.broadcast_to(numpy.asarray(v), shape)) for n, v in positive if v is not None] + [
        (n, v) for n, v in positive if v is None
    ]
    shape, flat = broadcast_grid(lam_name, lam, positive)
    rest = [numpy.ascontiguousarray(numpy.broadcast_to(a, shape)).reshape(-1) for a in checked]
    return shape, flat + rest


def finish_outputs(
    shape: tuple[int, ...], lam: numpy.ndarray, outputs: "dict[str, ArrayLike]"
) -> dict[str, numpy.ndarray]:
    """Reshape to the grid; a non-finite output is an error, never a silent nan.

    >>> import numpy
    >>> finish_outputs((2,), numpy.array([0.5, 1.0]), {"kappa": numpy.array([1.0, 2.0]), "c": 3})
    {'kappa': array([1., 2.]), 'c': array([3., 3.])}
    """
    result = {}
    for name, value in outputs.items():
        value = numpy.broadcast_to(numpy.asarray(value), lam.shape)
        bad = ~numpy.isfinite(value)
        if bad.any():
            where = lam[bad][:3]
            raise ValueError(
                f"{name} is not finite at lam = {where} (0/0 or a pole, e.g. the ridgeless limit of "
                "a quantity that diverges there); use lam > 0"
            )
        result[name] = numpy.array(value, dtype=numpy.result_type(value, float)).reshape(shape)
    return result


# ---------------------------------------------------------------------------
# spectral sums: exact in blocks, or interpolated in log k
# ---------------------------------------------------------------------------


def _blocks(k: numpy.ndarray, n: int) -> "Iterator[tuple[slice, slice]]":
    """(row slice, column slice) blocks of a (len(k), n) array that fit in a fast cache."""
    cols = min(n, _COLUMNS)
    rows = max(1, _BLOCK // cols)
    for c0 in range(0, n, cols):
        for r0 in range(0, k.shape[0], rows):
            yield slice(r0, r0 + rows), slice(c0, c0 + cols)


def _exact_sums(
    y: numpy.ndarray, w: numpy.ndarray | None, k: numpy.ndarray, ridge: bool, derivative: bool
) -> "tuple[numpy.ndarray, Any]":
    """mean(w f) and mean(w df/dk) over the eigenvalues y, f = k/(k+y) or y/(y+k), k not <= 0.

    ``w = None`` means unit weights.
    """
    n = y.shape[0]
    wy = y if w is None else w * y  # d/dk: +- w y/(y+k)^2
    wf = wy if not ridge else (numpy.ones(n) if w is None else w)  # f = w y/(y+k) or k w/(k+y)
    dtype = numpy.result_type(k, float)
    value = numpy.zeros(k.shape, dtype)
    slope = numpy.zeros(k.shape, dtype) if derivative else None
    buffer = numpy.empty(min(_BLOCK, max(k.shape[0], 1) * min(n, _COLUMNS)), dtype)
    for rows, cols in _blocks(k, n):
        kk, yy = k[rows], y[cols]
        block = buffer[: kk.shape[0] * yy.shape[0]].reshape(kk.shape[0], yy.shape[0])
        numpy.add(kk[:, None], yy, out=block)
        numpy.divide(1.0, block, out=block)
        value[rows] += block @ wf[cols]
        if slope is not None:
            numpy.multiply(block, block, out=block)
            slope[rows] += block @ wy[cols]
    if ridge:
        value *= k
    value /= n
    if slope is not None:
        slope /= n if ridge else -n
    return value, slope


def _pieces(low: float, high: float) -> tuple[numpy.ndarray, float]:
    """Chebyshev pieces of log k covering [low, high]: (centers, half-length)."""
    pieces = max(1, int(numpy.ceil((high - low) / _PIECE)))
    half = max((high - low) / pieces, 1e-12) / 2
    return low + half * (2 * numpy.arange(pieces) + 1), half


def _nodes(centers: numpy.ndarray, half: float) -> numpy.ndarray:
    """The Chebyshev nodes of all the pieces, in log k, piece by piece."""
    return (centers[:, None] + half * _CHEB[None, :]).reshape(-1)


def _barycentric(
    tables: "Sequence[numpy.ndarray]", centers: numpy.ndarray, half: float, low: float, logs: numpy.ndarray
) -> list[numpy.ndarray]:
    """Each table (values at the nodes, shape (pieces, _NODES)) interpolated at the points log k.

    ``low`` is the left end of the first piece (the point is assigned to its piece from it).
    """
    piece = numpy.clip(((logs - low) / (2 * half)).astype(int), 0, centers.shape[0] - 1)
    x = (logs - centers[piece]) / half
    diff = x[:, None] - _CHEB[None, :]
    diff[diff == 0] = 1e-300  # a node: its term dominates the others
    terms = _BARY[None, :] / diff
    den = terms.sum(axis=1)
    return [(terms * table[piece]).sum(axis=1) / den for table in tables]


def spectral_sums(
    y: numpy.ndarray, w: "ArrayLike | None", k: "ArrayLike", ridge: bool, derivative: bool = False
) -> "Any":
    r"""``mean(w f(y, k))`` for each ``k``, with ``f = k / (k + y)`` (ridge) or ``y / (y + k)``.

    For many ``k`` the sums are interpolated in :math:`\log k`: each is analytic in the
    strip :math:`|\operatorname{Im}\log k|<\pi` (its poles are at ``k = -y``), so Chebyshev
    interpolation on pieces of length 2 with 24 points is accurate to ~1e-16 relative to
    the local size of the sum (the Bernstein ellipse of the pieces stays in 0.9 of the
    strip). Each piece's nodes are summed exactly; few ``k`` (at most 96, or fewer than
    two per node) and complex ``k`` are summed exactly.

    Parameters
    ----------
    y : numpy.ndarray
        The eigenvalues, a 1-D float array (``>= 0``).
    w : array_like or None
        Weights broadcasting to ``y`` (eigen-weights of a test matrix); ``None`` for unit
        weights.
    k : array_like
        1-D array of ridges, real ``>= 0`` or complex (not 0 and off the negative axis).
    ridge : bool
        ``True`` for ``k / (k + y)``, ``False`` for ``y / (y + k)``.
    derivative : bool
        Also return the ``k``-derivative of the sums.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        The sums at each ``k`` (and their derivatives). At ``k = 0`` the sum is the limit,
        ``mean(w [y == 0])`` (ridge) or ``mean(w [y > 0])``, with an infinite derivative.

    Examples
    --------
    >>> import numpy
    >>> y = numpy.array([0.0, 1.0, 3.0])
    >>> spectral_sums(y, None, numpy.array([1.0, 0.0]), ridge=False)   # df1: (1/2 + 3/4) / 3, 2/3
    array([0.41666667, 0.66666667])
    >>> value, slope = spectral_sums(y, numpy.array([1, 2, 3]), numpy.array([1.0]), True, True)
    >>> value, slope                   # (1 + 2/2 + 3/4) / 3, (0 + 2/4 + 9/16) / 3
    (array([0.91666667]), array([0.35416667]))

    Many ``k`` are interpolated, to rounding:

    >>> y = numpy.arange(1, 201) ** -1.5
    >>> k = numpy.geomspace(1e-4, 1e4, 1000)
    >>> exact = numpy.mean(y / (y + k[:, None]), axis=1)
    >>> float(numpy.max(numpy.abs(spectral_sums(y, None, k, False) / exact - 1))) < 1e-13
    True
    """
    n = y.shape[0]
    if w is not None:
        w = numpy.ascontiguousarray(numpy.broadcast_to(w, (n,)), dtype=float)
    k = numpy.asarray(k)
    complex_k = k.dtype.kind == "c"
    if not complex_k and k.dtype != float:
        k = k.astype(float)
    positive = (k != 0) if complex_k else (k > 0)
    if positive.all():
        positive, kp = None, k
    else:
        kp = k[positive]
    if complex_k or kp.size <= 4 * _NODES:
        v, d = _exact_sums(y, w, kp, ridge, derivative)
    else:
        v, d = _interpolated_sums(y, w, kp, ridge, derivative)
    if positive is None:
        return (v, d) if derivative else v
    value = numpy.empty(k.shape, v.dtype)
    value[positive] = v
    zero = ~positive  # k = 0: f -> [y == 0] (ridge) or [y > 0]
    mask = (y == 0) if ridge else (y > 0)
    value[zero] = numpy.mean(mask if w is None else w * mask)
    if not derivative:
        return value
    slope = numpy.empty(k.shape, v.dtype)
    slope[positive] = d
    slope[zero] = numpy.inf if ridge else -numpy.inf
    return value, slope


def _interpolated_sums(
    y: numpy.ndarray, w: numpy.ndarray | None, kp: numpy.ndarray, ridge: bool, derivative: bool
) -> "tuple[numpy.ndarray, Any]":
    """The sums at many positive k by Chebyshev interpolation in log k (exact if that is not cheaper)."""
    logs = numpy.log(kp)
    low, high = logs.min(), logs.max()
    centers, half = _pieces(low, high)
    pieces = centers.shape[0]
    if 2 * pieces * _NODES > kp.size:
        return _exact_sums(y, w, kp, ridge, derivative)
    fv, fd = _exact_sums(y, w, numpy.exp(_nodes(centers, half)), ridge, derivative)
    tables = [fv.reshape(pieces, _NODES)]
    if derivative:
        tables.append(fd.reshape(pieces, _NODES))
    values = _barycentric(tables, centers, half, low, logs)
    return values[0], (values[1] if derivative else None)


def df1(y: "ArrayLike", k: "ArrayLike", derivative: bool = False) -> "Any":
    """``mean(y / (y + k))`` over the eigenvalues ``y``, for each ``k`` (and its ``k``-derivative).

    :func:`spectral_sums` with unit weights.

    >>> import numpy
    >>> df1(numpy.ones(4), numpy.array([0.0, 1.0, 3.0]))
    array([1.  , 0.5 , 0.25])
    """
    return spectral_sums(numpy.atleast_1d(numpy.asarray(y, dtype=float)), None, k, False, derivative)


def trace_ratio(r: "ArrayLike", y: "ArrayLike", w: "ArrayLike") -> numpy.ndarray:
    """``mean(w r / (r + y))`` over the eigenvalues ``y``, for each ``r`` (0/0 -> 1: the kernel projector).

    The normalized trace ``tr(T r (r + Y)^-1)`` with ``T`` given by its eigen-weights ``w``
    (``w = 1``: the identity); ``r`` any array of ridges (its shape is kept).

    >>> import numpy
    >>> trace_ratio(numpy.array([1.0, 0.0]), numpy.array([0.0, 1.0]), 1)
    array([0.75, 0.5 ])
    """
    y = numpy.asarray(y, dtype=float)
    n = max(y.size, numpy.size(w))
    y = numpy.ascontiguousarray(numpy.broadcast_to(y, (n,)))
    weights = None if numpy.ndim(w) == 0 and w == 1 else w
    r = numpy.asarray(r)
    value = spectral_sums(y, weights, numpy.atleast_1d(r), True)
    return value.reshape(r.shape)


# ---------------------------------------------------------------------------
# the physical branch
# ---------------------------------------------------------------------------


def newton(
    fun: "Callable[[numpy.ndarray, numpy.ndarray], tuple[numpy.ndarray, numpy.ndarray]]",
    lo: numpy.ndarray,
    hi: numpy.ndarray,
    x: numpy.ndarray,
    what: str,
    floor: numpy.ndarray | None = None,
    tol: float = _TOL,
    atol: float = 0.0,
) -> numpy.ndarray:
    """Vectorized safeguarded Newton for an increasing ``F`` with ``F(lo) <= 0 <= F(hi)``.

    ``fun(x, idx)`` returns ``F`` and ``F'`` at the points ``idx`` (the indices of the
    entries of ``x`` still iterating); a step that leaves the bracket is replaced by
    bisection (geometric when the bracket spans decades and ``floor`` is given). ``hi``
    may be infinite. With ``floor`` (a point per entry where ``F`` is smooth and
    increasing up to the root, ``kappa_0``), a Newton step below ``1e-7 (x - floor)`` is
    accepted without another evaluation: the error left after it is of order its square.
    Otherwise an entry stops when its step is below ``tol |x| + atol``.

    Raises
    ------
    RuntimeError
        If an entry has not converged after 400 steps (``what`` names it).

    Examples
    --------
    >>> import numpy
    >>> target = numpy.array([2.0, 9.0])
    >>> def fun(x, idx):
    ...     return x * x - target[idx], 2 * x
    >>> newton(fun, numpy.zeros(2), numpy.full(2, numpy.inf), numpy.ones(2), "the square root")
    array([1.41421356, 3.        ])
    """
    lo, hi, x = lo.copy(), hi.copy(), x.copy()
    idx = numpy.arange(x.shape[0])
    for _ in range(_MAXITER):
        if idx.size == 0:
            return x
        xa = x[idx]
        f, df = fun(xa, idx)
        positive = f > 0
        h = numpy.where(positive, numpy.minimum(hi[idx], xa), hi[idx])
        lw = numpy.where(positive, lo[idx], numpy.maximum(lo[idx], xa))
        hi[idx], lo[idx] = h, lw
        with numpy.errstate(all="ignore"):
            new = xa - f / df
            geometric = (lw > 0) & (h > 4 * lw) & (floor is not None)
            middle = numpy.where(geometric, numpy.sqrt(lw * h), 0.5 * (lw + h))
            fallback = numpy.where(numpy.isfinite(h), middle, 4 * numpy.maximum(xa, lw))
        inside = numpy.isfinite(new) & (new >= lw) & (new <= h)
        small = numpy.abs(new - xa) <= tol * numpy.abs(xa) + atol
        new = numpy.where(inside, new, fallback)
        with numpy.errstate(invalid="ignore"):  # inf - inf when hi = inf
            collapsed = numpy.isfinite(h) & (h - lw <= tol * numpy.abs(h) + atol)
        if floor is not None:
            small |= numpy.abs(new - xa) <= _QUADRATIC * (new - floor[idx])
        done = collapsed | (inside & small) | (f == 0)
        x[idx] = new
        idx = idx[~done]
    raise RuntimeError(f"the Newton iteration for {what} did not converge in {_MAXITER} steps")


def smallest_positive(candidates: "Sequence[ArrayLike]", size: int) -> numpy.ndarray:
    """The smallest real positive candidate root at each grid point (inf if none).

    Each candidate is a number or an array of ``size`` values (complex allowed: a root
    whose imaginary part is below ``1e-12`` of its real part counts as real).

    >>> import numpy
    >>> smallest_positive([2.0, numpy.array([-1.0, 1.0]), 3j], 2)
    array([2., 1.])
    """
    best = numpy.full(size, numpy.inf)
    for c in candidates:
        c = numpy.broadcast_to(numpy.asarray(c), (size,))
        real = numpy.real(c).astype(float)
        ok = numpy.isfinite(real) & (numpy.abs(numpy.imag(c)) <= 1e-12 * numpy.abs(real)) & (real > 0)
        best = numpy.where(ok & (real < best), real, best)
    return best


def ridgeless_threshold(y: numpy.ndarray, dstar: numpy.ndarray) -> numpy.ndarray:
    """``kappa_0``: the root of ``df1(y, k) = dstar`` where ``dstar < df1(y, 0)``, else 0 (per point).

    ``dstar`` is the smallest positive zero of the branch ``g`` at each grid point (``inf``
    if it has none): the ridgeless limit of the physical branch (MATH.md 2.1).

    >>> import numpy
    >>> ridgeless_threshold(numpy.ones(4), numpy.array([0.5, 2.0, numpy.inf]))  # 1/(1 + k) = 1/2
    array([1., 0., 0.])
    """
    kappa0 = numpy.zeros(dstar.shape)
    positive = numpy.mean(y > 0)
    values, inverse = numpy.unique(dstar, return_inverse=True)
    todo = values < positive
    if todo.any():
        target = values[todo]
        # df1(k) <= max(y) / (max(y) + k) and df1(k) >= positive - k mean(1/y, y > 0) bracket the root
        hi = numpy.max(y) / target
        with numpy.errstate(divide="ignore"):
            inverse_mean = numpy.mean(numpy.where(y > 0, 1 / y, 0.0))
        lo = (positive - target) / (2 * inverse_mean)

        def fun(s, idx):  # in s = log k, where df1 is a smooth monotone step
            k = numpy.exp(s)
            d, dd = df1(y, k, True)
            return target[idx] - d, -dd * k

        roots = numpy.zeros(values.shape)
        s_lo, s_hi = numpy.log(lo), numpy.log(hi)
        s = newton(fun, s_lo, s_hi, 0.5 * (s_lo + s_hi), "the ridgeless ridge kappa_0", tol=0.0, atol=_TOL)
        roots[todo] = numpy.exp(s)
        kappa0 = roots[inverse.reshape(-1)]
    return kappa0


def _invert_table(branch, params, targets, y, kappa0, size):
    """Guesses of k(lam) from an exact table of lam(k) = k g(df1(y, k)) on k = kappa0 + t.

    t is log-spaced over the range the targets need; log t is interpolated as a function
    of log lam by cubic Hermite pieces with the exact slopes lam / (t lam'(k)).
    """

    def table(t):
        k = kappa0 + t
        d, dd = df1(y, k, True)
        g, dg = branch(d, *[numpy.full(t.shape, p) for p in params])
        return k * g, g + k * dg * dd

    scale = max(float(numpy.max(y)), kappa0, float(numpy.max(targets)), 1e-300)
    t_hi = numpy.array([4 * scale])
    for _ in range(60):
        if table(t_hi)[0][0] >= targets.max():
            break
        t_hi = 4 * t_hi
    t_lo = numpy.array([min(float(numpy.min(targets)), scale) * 1e-3])
    for _ in range(60):
        if table(t_lo)[0][0] <= targets.min():
            break
        t_lo = 1e-3 * t_lo
    t = numpy.geomspace(t_lo[0], t_hi[0], size)
    h, dh = table(t)
    ok = numpy.isfinite(h) & numpy.isfinite(dh) & (h > 0) & (dh > 0)
    t, h, dh = t[ok], h[ok], dh[ok]
    v = numpy.log(h)
    if t.size < 4 or numpy.any(numpy.diff(v) <= 0):
        return numpy.full(targets.shape, numpy.nan)
    u = numpy.log(t)
    slope = h / (t * dh)
    w = numpy.log(targets)
    i = numpy.clip(numpy.searchsorted(v, w) - 1, 0, v.size - 2)
    step = v[i + 1] - v[i]
    s = numpy.clip((w - v[i]) / step, 0.0, 1.0)
    s2, s3 = s * s, s * s * s
    u_w = (
        (2 * s3 - 3 * s2 + 1) * u[i]
        + (s3 - 2 * s2 + s) * step * slope[i]
        + (3 * s2 - 2 * s3) * u[i + 1]
        + (s3 - s2) * step * slope[i + 1]
    )
    inside = (w >= v[0]) & (w <= v[-1])
    return numpy.where(inside, kappa0 + numpy.exp(u_w), numpy.nan)


def _warm_start(branch, args, lam, y, kappa0, size=160):
    """Tabulated guesses for each distinct (kappa0, parameters) group when that is cheap."""
    guess = numpy.full(lam.shape, numpy.nan)
    keys = numpy.stack([kappa0, *args], axis=1)
    if numpy.all(keys == keys[:1]):  # one group (scalar parameters): no sorting needed
        rows, inverse = keys[:1], numpy.zeros(lam.shape[0], dtype=int)
    else:
        rows, inverse = numpy.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    if rows.shape[0] * size > lam.shape[0]:
        return guess
    for j in range(rows.shape[0]):
        members = numpy.flatnonzero(inverse == j)
        guess[members] = _invert_table(branch, rows[j, 1:], lam[members], y, rows[j, 0], size)
    return guess


def _continue_ridge(branch, args, lam, y, dstar, what):
    """Complex lam: Newton continuation along the arc from |lam| (MATH.md 2.1, complex lam)."""
    radius, angle = numpy.abs(lam), numpy.angle(lam)
    z = solve_ridge(branch, args, radius, y, dstar, what).astype(complex)
    for j in range(1, _ARC + 1):
        target = radius * numpy.exp(1j * angle * (j / _ARC))
        for _ in range(_MAXITER):
            d, dd = df1(y, z, True)
            g, dg = branch(d, *args)
            step = (z * g - target) / (g + z * dg * dd)
            z = z - step
            if numpy.all(numpy.abs(step) <= _TOL * numpy.abs(z)):
                break
        else:
            raise RuntimeError(f"the Newton continuation for {what} did not converge on the arc")
    return z


def solve_ridge(
    branch: "Callable[..., tuple[object, object]]",
    args: "Sequence[numpy.ndarray]",
    lam: numpy.ndarray,
    y: numpy.ndarray,
    dstar: numpy.ndarray,
    what: str = "the ridge",
) -> numpy.ndarray:
    r"""The physical root of ``k g(df1(y, k)) = lam`` above ``kappa_0`` (``kappa_0`` at ``lam = 0``).

    The one physical-branch solver (MATH.md 2.1): for :math:`\lambda>0` the root above the
    ridgeless :math:`\kappa_0` (:func:`ridgeless_threshold`), for :math:`\lambda=0`
    :math:`\kappa_0` itself, for a complex :math:`\lambda` (off the negative axis) the
    Newton continuation along the arc from :math:`|\lambda|`, whose imaginary part has
    the sign of :math:`\operatorname{Im}\lambda`.

    Parameters
    ----------
    branch : callable
        ``branch(d, *args) -> (g, dg)``: the function ``g`` of ``df1`` and its derivative
        ``dg/dd``, vectorized (``d`` and each parameter are arrays of one length; ``dg`` may
        be anything that broadcasts with ``d``). ``lam = k g(df1(k))`` must increase with
        ``k`` on the branch (``g(df1) > 0`` there), as for the products of ``1 - r df1``
        of Gram and Wishart layers.
    args : sequence of numpy.ndarray
        The parameters of ``g`` at each grid point (1-D arrays of the length of ``lam``).
    lam : numpy.ndarray
        1-D grid of ridges: real ``>= 0`` or complex (then real entries are solved on the
        real axis).
    y : numpy.ndarray
        The eigenvalues in ``df1(y, k) = mean(y / (y + k))``, a 1-D float array ``>= 0``.
    dstar : numpy.ndarray
        The smallest positive zero of ``g`` at each grid point (``inf`` if it has none;
        :func:`smallest_positive` of its candidate zeros), which fixes :math:`\kappa_0`.
    what : str
        The name of the ridge in the error messages.

    Returns
    -------
    numpy.ndarray
        :math:`\kappa` at each point (complex if ``lam`` is).

    Raises
    ------
    RuntimeError
        If the iteration does not converge (``g`` not of the class above).

    Examples
    --------
    Isotropic Marchenko-Pastur (``Sigma = I``, ``q = D / P``): ``g(d) = 1 - q d``, zero at
    ``d* = 1 / q``; MATH.md 7 gives ``kappa = 0.1741657387`` at ``q = 0.5, lam = 0.1``,
    ``1.2807764064`` at ``lam = 1``, and the ridgeless ``kappa_0 = 1`` at ``q = 2``
    (``df1 = 1 / (1 + kappa_0) = 1 / q``):

    >>> import numpy
    >>> def branch(d, q):
    ...     return 1 - q * d, -q
    >>> q = numpy.array([0.5, 0.5, 2.0])
    >>> lam = numpy.array([0.1, 1.0, 0.0])
    >>> numpy.round(solve_ridge(branch, [q], lam, numpy.ones(8), 1 / q), 10).tolist()
    [0.1741657387, 1.2807764064, 1.0]

    A complex ridge solves the same equation, on the branch with ``Im kappa > 0``:

    >>> z = solve_ridge(branch, [q[:1]], numpy.array([0.3 + 0.4j]), numpy.ones(8), 1 / q[:1])
    >>> bool(abs(z[0] * (1 - 0.5 / (1 + z[0])) - (0.3 + 0.4j)) < 1e-12), bool(z[0].imag > 0)
    (True, True)
    """
    if numpy.iscomplexobj(lam):
        return _solve_complex(branch, args, lam, y, dstar, what)
    kappa0 = ridgeless_threshold(y, dstar)
    kappa = kappa0.copy()
    todo = numpy.flatnonzero(lam > 0)
    if todo.size:
        sub_args = [a[todo] for a in args]
        kappa[todo] = _solve_above(branch, sub_args, lam[todo], y, dstar[todo], kappa0[todo], what)
    return kappa


def _solve_complex(branch, args, lam, y, dstar, what):
    """solve_ridge on a complex grid: its real points on the real axis, the others by continuation."""
    kappa = numpy.empty(lam.shape, complex)
    real = lam.imag == 0
    for part, solve, values in ((real, solve_ridge, lam.real), (~real, _continue_ridge, lam)):
        where = numpy.flatnonzero(part)
        if where.size:
            kappa[where] = solve(branch, [a[where] for a in args], values[where], y, dstar[where], what)
    return kappa


def _solve_above(branch, args, target, y, dstar, floor, what):
    """The roots above kappa_0 (``floor``) for lam = target > 0: tabulated starting points,
    then the safeguarded Newton iteration."""
    guess = _warm_start(branch, args, target, y, floor)
    missing = ~(guess > floor)
    if missing.any() and y.shape[0] > 4096:  # solve on a subsampled spectrum, polish on the full one
        stride = -(-y.shape[0] // 2048)
        coarse = numpy.sort(y)[stride // 2 :: stride]
        where = numpy.flatnonzero(missing)
        guess[where] = solve_ridge(
            branch, [a[where] for a in args], target[where], coarse, dstar[where], what
        )
    start = numpy.where(guess > floor, guess, floor + target)

    def fun(k, idx):
        d, dd = df1(y, k, True)
        g, dg = branch(d, *[a[idx] for a in args])
        return k * g - target[idx], g + k * dg * dd

    hi = numpy.full(target.shape, numpy.inf)
    return newton(fun, floor, hi, start, what, floor)


# ---------------------------------------------------------------------------
# the spectral sums of a loss
# ---------------------------------------------------------------------------


def check_ridgeless(lam: numpy.ndarray, names: "Sequence[str]", denominators: "Sequence[ArrayLike]") -> None:
    """A term whose denominator vanishes (to rounding) at lam = 0 has a divergent ridgeless limit.

    ``denominators`` holds, for each term of ``names``, its denominator and the scale it is
    compared with (the sum of the absolute values of its monomials): a ``ValueError`` where
    ``lam = 0`` and the first is below ``1e-12`` times the second.

    >>> import numpy
    >>> check_ridgeless(numpy.array([0.0, 1.0]), ("bias",), (numpy.array([0.5, 0.0]), 1.0))
    >>> check_ridgeless(numpy.array([0.0]), ("bias",), (numpy.array([1e-17]), 1.0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: bias has no finite ridgeless value here: its denominator vanishes at lam = 0 ...
    """
    for j, name in enumerate(names):
        value, scale = denominators[2 * j], denominators[2 * j + 1]
        bad = (lam == 0) & (numpy.abs(value) <= 1e-12 * numpy.abs(scale))
        if numpy.any(bad):
            raise ValueError(
                f"{name} has no finite ridgeless value here: its denominator vanishes at lam = 0 (the "
                "interpolation threshold, e.g. P = D, where the limit diverges or is 0/0); use lam > 0"
            )


def weight_vectors(
    weights: "Callable[..., object]", kinds: "Sequence[bool]", spectra: "Sequence[numpy.ndarray]", n: int
) -> list[numpy.ndarray]:
    """The kappa-free factor of each summand as a length-n array (divided by n for a mean).

    ``weights(*spectra)`` returns the factors (a tuple, or one value); ``kinds`` says which
    sums are means (``True``) and which plain sums (quadratic forms, ``False``).

    >>> import numpy
    >>> s = numpy.array([1.0, 3.0])
    >>> weight_vectors(lambda s: (s, 2.0), (True, False), (s,), 2)
    [array([0.5, 1.5]), array([2., 2.])]
    """
    values = weights(*spectra)
    if not isinstance(values, tuple):
        values = (values,)
    return [
        numpy.ascontiguousarray(numpy.broadcast_to(numpy.asarray(w, dtype=float), (n,))) / (n if mean else 1)
        for w, mean in zip(values, kinds, strict=False)
    ]


def _exact_kernel_sums(kernels, which, weights, k, spectra):
    """Row j: sum_i weights[j][i] K_which[j](k, spectra_i) for each k, in cache-sized blocks
    (one matrix product per kernel with the weights of all its sums)."""
    n = spectra[0].shape[0]
    groups = {}
    for j, i in enumerate(which):
        groups.setdefault(i, []).append(j)
    stacked = {i: numpy.stack([weights[j] for j in rows], axis=1) for i, rows in groups.items()}
    sums = {i: numpy.zeros((k.shape[0], len(rows))) for i, rows in groups.items()}
    cols_per = min(n, _KERNEL_COLUMNS)
    rows_per = max(1, _KERNEL_BLOCK // cols_per)
    for c0 in range(0, n, cols_per):
        cols = slice(c0, c0 + cols_per)
        parts = [s[None, cols] for s in spectra]
        width = parts[0].shape[1]
        for r0 in range(0, k.shape[0], rows_per):
            rows = slice(r0, r0 + rows_per)
            kk = k[rows][:, None]
            blocks = kernels(kk, *parts)
            if not isinstance(blocks, tuple):
                blocks = (blocks,)
            for i, total in sums.items():
                b = blocks[i]
                if numpy.shape(b) != (kk.shape[0], width):
                    b = numpy.broadcast_to(b, (kk.shape[0], width))
                total[rows] += b @ stacked[i][cols]
    out = numpy.empty((len(which), k.shape[0]))
    for i, rows in groups.items():
        out[rows] = sums[i].T
    return out


def _table(kernels, which, weights, spectra, centers, half):
    """Exact sums at the Chebyshev nodes of the pieces: (atoms, pieces, _NODES)."""
    values = _exact_kernel_sums(kernels, which, weights, numpy.exp(_nodes(centers, half)), spectra)
    return values.reshape(len(which), centers.shape[0], _NODES)


def _interpolate(table, centers, half, logs, rows=None):
    """Barycentric interpolation of the tabulated sums at the points log k (rows: atoms)."""
    rows = range(table.shape[0]) if rows is None else rows
    return numpy.array(_barycentric([table[j] for j in rows], centers, half, centers[0] - half, logs))


def kernel_sums(
    kernels: "Callable[..., object]",
    which: "Sequence[int]",
    weights: "Sequence[numpy.ndarray]",
    k: numpy.ndarray,
    spectra: "Sequence[numpy.ndarray]",
) -> numpy.ndarray:
    r"""The spectral sums of every atom of a loss at each ridge ``k >= 0`` (rows: atoms).

    Row ``j`` is :math:`\sum_i w_{j,i}\,K_{c_j}(k, s_i)` with ``w = weights[j]`` (from
    :func:`weight_vectors`) and the kernel ``c_j = which[j]`` of ``kernels(k, *spectra)``
    (a tuple of kernels, or one, functions of ``k`` and the eigenvalues whose poles are at
    ``k = -s_i``). Each sum is then a rational function of ``k``, analytic in
    :math:`\log k` in the strip :math:`|\operatorname{Im}\log k|<\pi`: many ``k`` are
    served by Chebyshev interpolation in :math:`\log k` from exact sums at the nodes (as
    in :func:`spectral_sums`), few ``k`` and ``k = 0`` exactly.

    >>> import numpy
    >>> s = numpy.array([1.0, 3.0])
    >>> w = weight_vectors(lambda s: (s, s), (True, False), (s,), 2)
    >>> kernel_sums(lambda k, s: (1 / (s + k), 1 / (s + k) ** 2), (0, 1), w, numpy.array([1.0]), (s,))
    array([[0.625 ],
           [0.4375]])
    """
    positive = k > 0
    out = numpy.empty((len(which), k.shape[0]))
    zero = numpy.flatnonzero(~positive)
    if zero.size:
        out[:, zero] = _exact_kernel_sums(kernels, which, weights, numpy.zeros(1), spectra)
    kp = k[positive]
    if kp.size == 0:
        return out
    logs = numpy.log(kp)
    centers, half = _pieces(logs.min(), logs.max())
    if kp.size <= 4 * _NODES or 2 * centers.shape[0] * _NODES > kp.size:
        out[:, positive] = _exact_kernel_sums(kernels, which, weights, kp, spectra)
    else:
        table = _table(kernels, which, weights, spectra, centers, half)
        out[:, positive] = _interpolate(table, centers, half, logs)
    return out


def solve_ridge_and_sums(
    branch: "Callable[..., tuple[object, object]]",
    args: "Sequence[numpy.ndarray]",
    lam: numpy.ndarray,
    y: numpy.ndarray,
    dstar: numpy.ndarray,
    what: str,
    kernels: "Callable[..., object]",
    which: "Sequence[int]",
    weights: "Sequence[numpy.ndarray]",
    spectra: "Sequence[numpy.ndarray]",
    rows: "Sequence[int]",
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """``kappa`` on the physical branch (:func:`solve_ridge`) and the sums at it (:func:`kernel_sums`).

    ``rows`` are the atoms ``df1 = mean(y / (y + k))`` and ``mean(y / (y + k)^2)`` among
    the sums. Many points with one parameter set: ``kappa`` increases with ``lam`` on the
    branch, so the sums are tabulated once on Chebyshev nodes of ``log k`` over
    ``[kappa(min lam), kappa(max lam)]`` (``kappa_0`` included; the two ends by
    :func:`solve_ridge`) and ``kappa`` is the root of the interpolated equation by
    :func:`newton`: no other sum over the spectrum. Otherwise :func:`solve_ridge` at every
    point, then :func:`kernel_sums`.

    >>> import numpy
    >>> s, q = numpy.ones(4), numpy.full(2, 0.5)
    >>> w = weight_vectors(lambda s: (s, s), (True, True), (s,), 4)
    >>> kappa, sums = solve_ridge_and_sums(
    ...     lambda d, q: (1 - q * d, -q), [q], numpy.array([0.1, 1.0]), s, 1 / q, "kappa",
    ...     lambda k, s: (1 / (s + k), 1 / (s + k) ** 2), (0, 1), w, (s,), (0, 1))
    >>> numpy.round(kappa, 10).tolist(), bool(numpy.allclose(sums[0], 1 / (1 + kappa)))
    ([0.1741657387, 1.2807764064], True)
    """
    positive = numpy.flatnonzero(lam > 0)
    same = all(numpy.all(a == a[:1]) for a in [dstar, *args])
    if same and positive.size > 4 * _NODES:
        solved = _tabulated_ridge_and_sums(
            branch, args, lam, y, dstar, what, (kernels, which, weights, spectra), rows, positive
        )
        if solved is not None:
            return solved
    kappa = solve_ridge(branch, args, lam, y, dstar, what)
    return kappa, kernel_sums(kernels, which, weights, kappa, spectra)


def _tabulated_ridge_and_sums(branch, args, lam, y, dstar, what, sums, rows, positive):
    """:func:`solve_ridge_and_sums` on one table of the sums (``None`` where that is not cheaper)."""
    kernels, which, weights, spectra = sums
    kappa0 = ridgeless_threshold(y, dstar[:1])[0]
    target = lam[positive]
    ends = numpy.array([target.min(), target.max()])
    k_ends = solve_ridge(branch, [a[:2] for a in args], ends, y, dstar[:2], what)
    low = numpy.log(min(k_ends[0], kappa0) if kappa0 > 0 else k_ends[0])
    centers, half = _pieces(low, numpy.log(k_ends[1]))
    if 2 * centers.shape[0] * _NODES > positive.size:
        return None
    table = _table(kernels, which, weights, spectra, centers, half)
    params = [a[:1] for a in args]
    nodes = _nodes(centers, half)
    lam_nodes = numpy.exp(nodes) * branch(table[rows[0]].reshape(-1), *params)[0]
    ok = lam_nodes > 0
    order = numpy.argsort(lam_nodes[ok])
    guess = numpy.exp(numpy.interp(numpy.log(target), numpy.log(lam_nodes[ok][order]), nodes[ok][order]))

    def fun(k, idx):
        d, slope = _interpolate(table, centers, half, numpy.log(k), rows)
        g, dg = branch(d, *params)
        return k * g - target[idx], g - k * dg * slope  # d df1 / dk = -mean(y / (y + k)^2)

    lo = numpy.full(target.shape, max(kappa0, k_ends[0] * (1 - 1e-12)))
    hi = numpy.full(target.shape, k_ends[1] * (1 + 1e-12))
    guess = numpy.clip(guess, lo, hi)
    kappa = numpy.full(lam.shape, kappa0)
    kappa[positive] = newton(fun, lo, hi, guess, what)
    out = numpy.empty((len(which), lam.shape[0]))
    if kappa0 > 0 or positive.size == lam.shape[0]:
        out[:] = _interpolate(table, centers, half, numpy.log(kappa))
    else:
        out[:, positive] = _interpolate(table, centers, half, numpy.log(kappa[positive]))
        out[:, lam <= 0] = _exact_kernel_sums(kernels, which, weights, numpy.zeros(1), spectra)
    return kappa, out


# ---------------------------------------------------------------------------
# systems of unknowns (the general engine): g = F(g, lam) on the physical branch
# ---------------------------------------------------------------------------


def follow_unknowns(
    residual: "Callable[[numpy.ndarray, complex], numpy.ndarray]",
    jacobian: "Callable[[numpy.ndarray, complex], numpy.ndarray]",
    size: int,
    lam: complex,
    scale: float,
    what: str = "the unknowns",
    start: "tuple[float, numpy.ndarray] | None" = None,
    guess: "numpy.ndarray | None" = None,
) -> numpy.ndarray:
    """The physical root of ``g = F(g, lam + s)`` at ``s = 0``.

    ``residual(g, s)`` is ``F(g, lam + s) - g`` and ``jacobian(g, s)`` is ``dF/dg`` there. The
    root is found at a large shift ``s0 = 10 max(scale, |lam|)``, where the branch connected to
    ``lam -> infinity`` is the only one near ``g = 0`` (or taken from ``start = (s0, g0)``, a
    root already on that branch; ``guess`` then predicts the first step), and followed down to
    ``s = 0`` along a geometric path (horizontal: it never crosses the real axis for complex
    ``lam``). Each step is predicted linearly in ``u = 1/(|lam| + s)`` (exact for the ``1/z``
    decay of traces of resolvents) and corrected by :func:`broyden`; a step is accepted when
    the corrector converges in a few iterations (a predictor in the basin of the followed
    root), else it is halved. Once the
    shift is below ``|lam| / 4`` the last step goes to ``s = 0`` and is solved to rounding.

    Examples
    --------
    >>> import numpy
    >>> def residual(g, s):   # isotropic sample covariance, D/P = 1/2: g = 1 / (z + 1 / (1 + g / 2))
    ...     return 1 / (0.5 + s + 1 / (1 + 0.5 * g)) - g
    >>> def jacobian(g, s):
    ...     return numpy.array([[0.5 / (1 + 0.5 * g[0]) ** 2 / (0.5 + s + 1 / (1 + 0.5 * g[0])) ** 2]])
    >>> g = follow_unknowns(residual, jacobian, 1, 0.5, 1.0)
    >>> bool(abs(residual(g, 0.0)[0]) < 1e-14), round(float(g[0].real), 10)   # 2 (sqrt(2) - 1)
    (True, 0.8284271247)
    """
    with numpy.errstate(all="ignore"):
        if start is None:
            shift = 10.0 * max(scale, abs(lam), 1e-12)
            g, _ = broyden(residual, jacobian, numpy.zeros(size, dtype=complex), shift, 1e-6, 30, what, lam)
        else:
            shift, g = float(start[0]), numpy.asarray(start[1], dtype=complex)
        floor = 0.25 * abs(lam)
        step = 1.0  # in decades of the shift
        prev = None
        while shift > 0:
            target = shift * 10.0**-step
            target = 0.0 if target < floor else target
            final = target == 0.0
            predicted = g
            if prev is not None:
                u0, u1, u2 = (1 / (abs(lam) + x) for x in (prev[0], shift, target))
                predicted = g + (g - prev[1]) * (u2 - u1) / (u1 - u0)
            elif guess is not None and final:
                predicted = guess
            try:
                new, _ = broyden(
                    residual,
                    jacobian,
                    predicted,
                    target,
                    1e-13 if final else 1e-5,
                    25 if final else 5,
                    what,
                    lam,
                )
            except ArithmeticError:
                step /= 2
                if step < 1e-3:
                    raise ArithmeticError(
                        f"could not follow {what} down to lam = {lam:.6g} on the physical branch; "
                        "try a larger or complex lam"
                    ) from None
                continue
            prev, g, shift = (shift, g), new, target
            step = min(step * 1.5, 2.0)
    return g


def broyden(
    residual: "Callable[[numpy.ndarray, complex], numpy.ndarray]",
    jacobian: "Callable[[numpy.ndarray, complex], numpy.ndarray]",
    g: numpy.ndarray,
    shift: float,
    tol: float,
    limit: int,
    what: str,
    lam: complex,
) -> "tuple[numpy.ndarray, int]":
    """Broyden's method for ``residual(g, shift) = 0`` from the analytic Jacobian at ``g``: one
    evaluation of the residual per iteration. Its first step is Newton's: one below
    ``1e-7 |g|`` leaves an error of order its square, and is accepted without another
    evaluation when ``tol`` asks for rounding (``1e-13``). Raises ``ArithmeticError`` when it leaves the
    finite numbers, stalls (a short run, ``limit <= 8``, must halve the residual at each step)
    or needs more than ``limit`` iterations."""
    at = lam + shift
    r = residual(g, shift)
    jac = jacobian(g, shift) - numpy.eye(g.size)
    for k in range(limit):
        if not (numpy.all(numpy.isfinite(r)) and numpy.all(numpy.isfinite(jac))):
            raise ArithmeticError(f"{what} left the physical branch near lam = {at:.6g}")
        if numpy.max(numpy.abs(r)) <= tol * max(1e-300, numpy.max(numpy.abs(g))):
            return g, k
        try:
            step = numpy.linalg.solve(jac, -r)
        except numpy.linalg.LinAlgError:
            raise ArithmeticError(f"the Jacobian of {what} is singular near lam = {at:.6g}") from None
        g = g + step
        size = max(1e-300, numpy.max(numpy.abs(g)))
        if k == 0 and tol <= 1e-12 and numpy.max(numpy.abs(step)) <= 1e-7 * size:
            return g, 1  # Newton's step: the error left is of order its square
        new = residual(g, shift)
        if numpy.max(numpy.abs(step)) <= 0.01 * tol * size:
            return g, k + 1
        if limit <= 8 and numpy.max(numpy.abs(new)) > 0.5 * numpy.max(numpy.abs(r)):
            raise ArithmeticError(f"the corrector for {what} stalls near lam = {at:.6g}")
        jac = jac + numpy.outer(new - r - jac @ step, step.conj()) / numpy.vdot(step, step)
        r = new
    raise ArithmeticError(f"the corrector for {what} did not converge near lam = {at:.6g}")


def solve_unknowns_grid(
    residual: "Callable[[numpy.ndarray, complex, int], numpy.ndarray]",
    jacobian: "Callable[[numpy.ndarray, complex, int], numpy.ndarray]",
    size: int,
    ridges: numpy.ndarray,
    scale: float,
    what: str = "the unknowns",
) -> numpy.ndarray:
    """The physical roots at every grid point (shape ``(len(ridges), size)``); ``ridges`` holds one
    row per point (one column per ridge of the result), and ``residual(g, s, i)`` and
    ``jacobian(g, s, i)`` evaluate the system at the ridges of point ``i`` shifted by ``s``.

    The points are visited by decreasing real part of their first ridge; a point whose ridges
    all differ from the previous point's by one positive real shift (a real grid, or complex
    points on one horizontal line) starts from the previous root (:func:`follow_unknowns` with
    ``start``), usually a single corrector solve; the others are followed from a large shift.

    >>> import numpy
    >>> def residual(g, s, i):   # g = 1 / (z + 1 / (1 + g / 2)) at z = ridges[i] + s
    ...     return 1 / (ridges[i, 0] + s + 1 / (1 + 0.5 * g)) - g
    >>> def jacobian(g, s, i):
    ...     h = 1 + 0.5 * g[0]
    ...     return numpy.array([[0.5 / h**2 / (ridges[i, 0] + s + 1 / h) ** 2]])
    >>> ridges = numpy.array([[0.1], [0.5], [2.0]])
    >>> g = solve_unknowns_grid(residual, jacobian, 1, ridges, 1.0)
    >>> float(abs(g[1, 0] - 2 * (2 ** 0.5 - 1)))  < 1e-14
    True
    """
    ridges = numpy.asarray(ridges, dtype=complex).reshape(len(ridges), -1)
    out = numpy.zeros((ridges.shape[0], size), dtype=complex)
    order = numpy.argsort(-ridges[:, 0].real, kind="stable")
    previous = None
    before = None  # the point visited before the previous one, for a secant predictor
    for i in order:

        def res(g: numpy.ndarray, s: complex, i: int = i) -> numpy.ndarray:
            return residual(g, s, i)

        def jac(g: numpy.ndarray, s: complex, i: int = i) -> numpy.ndarray:
            return jacobian(g, s, i)

        start, guess = None, None
        if previous is not None:
            gaps = ridges[previous[0]] - ridges[i]
            if numpy.all(gaps.imag == 0) and numpy.all(gaps.real == gaps[0].real) and gaps[0].real >= 0:
                start = (gaps[0].real, previous[1])
                if before is not None:  # linear in 1/lam through the two previous roots
                    u0, u1, u2 = (1 / abs(ridges[j, 0]) for j in (before[0], previous[0], i))
                    guess = previous[1] + (previous[1] - before[1]) * (u2 - u1) / (u1 - u0)
        z = complex(numpy.mean(ridges[i]))
        out[i] = follow_unknowns(res, jac, size, z, scale, what, start, guess)
        before, previous = (previous if start is not None else None), (i, out[i])
    return out


def check_matrix(name: str, value: "ArrayLike | None") -> numpy.ndarray:
    """A deterministic matrix of a general-engine result: its eigenvalues (1-D, in a basis shared
    with the other matrices of its space) or the matrix itself (2-D), finite numbers.

    >>> check_matrix("Sigma", [1, 2])
    array([1., 2.])
    >>> check_matrix("Sigma", [[1, 0], [0, float("nan")]])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Sigma has non-finite entries (nan or inf); ...
    """
    if value is None:
        raise ValueError(f"missing {name}: pass its eigenvalues (1-D) or the matrix (2-D), {name}=...")
    a = numpy.asarray(value)
    if a.dtype.kind not in "biufc":
        raise ValueError(f"{name} must be numbers (a 1-D or 2-D array), got dtype {a.dtype}")
    if a.ndim not in (1, 2) or a.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D (eigenvalues) or 2-D (matrix) array, got shape {a.shape}"
        )
    if not numpy.all(numpy.isfinite(a)):
        raise ValueError(f"{name} has non-finite entries (nan or inf); pass finite numbers")
    return numpy.ascontiguousarray(a, dtype=complex if a.dtype.kind == "c" else float)


def matrix_sizes(
    sizes: "dict[str, Any]", matrices: "dict[str, numpy.ndarray]", shapes: "dict[str, tuple[str, str]]"
) -> "tuple[dict[str, float], bool]":
    """The sizes of a general-engine result, checked against the matrices, and the mode.

    ``shapes`` names the row and column size of each matrix. A size not given is read off a
    matrix; a given one must match every matrix of that size. The mode is dense (``True``) when
    a matrix is 2-D; 1-D matrices are then made diagonal. All 1-D is the spectral mode (the
    matrices of one size commute, given by their eigenvalues in one basis).

    >>> m = {"Sigma": numpy.ones(3)}
    >>> matrix_sizes({"D": None, "P": 6}, m, {"Sigma": ("D", "D")})
    ({'D': 3.0, 'P': 6.0}, False)
    """
    dense = any(a.ndim == 2 and shapes[name][1] != "1" for name, a in matrices.items())
    found: dict[str, float] = {}
    for name, (rows, cols) in shapes.items():
        a = matrices[name]
        if cols == "1":  # a vector: its coordinates (in the common eigenbasis when the rest is 1-D)
            if a.ndim == 2 and a.shape[1] != 1:
                raise ValueError(f"the vector {name} has shape {a.shape}; pass its {rows} coordinates")
            a = matrices[name] = a.reshape(-1)
            got: tuple[int, ...] = (a.shape[0],)
            rows_cols: tuple[str, ...] = (rows,)
        elif a.ndim == 1 and rows != cols:
            raise ValueError(f"{name} is rectangular ({rows} x {cols}): pass it as a 2-D array")
        else:
            got = (a.shape[0], a.shape[0]) if a.ndim == 1 else a.shape
            rows_cols = (rows, cols)
        for size, n in zip(rows_cols, got, strict=True):
            if size in found and found[size] != n:
                raise ValueError(
                    f"{name} has {n} rows or columns where {size} = {found[size]:g}; use one {size}"
                )
            found[size] = float(n)
    out = {}
    for size, value in sizes.items():
        if value is None:
            if size not in found:
                raise ValueError(f"missing {size}: pass {size}=... (a positive number)")
            out[size] = found[size]
            continue
        v = numpy.asarray(value)
        if v.ndim != 0 or v.dtype.kind not in "biuf" or not numpy.isfinite(v) or float(v) <= 0:
            raise ValueError(f"{size} = {value!r} must be one positive number")
        if size in found and float(v) != found[size]:
            raise ValueError(f"{size} = {float(v):g} but the matrices of that size have {found[size]:g} rows")
        out[size] = float(v)
    if dense:
        for name, a in list(matrices.items()):
            if a.ndim == 1:
                matrices[name] = a.reshape(-1, 1) if shapes[name][1] == "1" else numpy.diag(a)
    return out, dense


def check_scalar(name: str, value: "Any") -> "complex | float":
    """A scalar coefficient of a result: one finite real or complex number.

    >>> check_scalar("c", 2)
    2.0
    """
    if value is None:
        raise ValueError(f"missing {name}: pass {name}=... (a number)")
    v = numpy.asarray(value)
    if v.ndim != 0 or v.dtype.kind not in "biufc" or not numpy.isfinite(v):
        raise ValueError(f"{name} = {value!r} must be one finite number")
    return complex(v) if v.dtype.kind == "c" else float(v)


def pencil_ridges(ridges: "dict[str, Any]") -> "tuple[tuple[int, ...], list[numpy.ndarray]]":
    """The ridges of a general-engine result broadcast together (shape, flat complex arrays):
    each real ``> 0`` or complex off the real axis.

    >>> pencil_ridges({"lam": [0.1, 1.0], "lam2": 0.5})
    ((2,), [array([0.1+0.j, 1. +0.j]), array([0.5+0.j, 0.5+0.j])])
    """
    arrays = []
    for name, value in ridges.items():
        if value is None:
            raise ValueError(f"missing {name}: pass {name}=... (> 0, or complex)")
        a = numpy.asarray(value)
        if a.dtype.kind not in "biufc" or not numpy.all(numpy.isfinite(a)):
            raise ValueError(f"{name} must be finite numbers, got {value!r}")
        a = a.astype(complex)
        bad = (a.imag == 0) & (a.real <= 0)
        if bad.any():
            raise ValueError(
                f"{name} = {a.real[bad].min():.6g}: the physical branch is defined for {name} > 0 and "
                f"complex {name}; pass one of those"
            )
        arrays.append(a)
    try:
        broadcast = numpy.broadcast_arrays(*arrays)
    except ValueError:
        raise _no_broadcast(list(ridges.items())) from None
    return broadcast[0].shape, [numpy.ascontiguousarray(b).reshape(-1) for b in broadcast]


def psd_sqrt(a: numpy.ndarray) -> numpy.ndarray:
    """The square root of a positive semidefinite matrix (eigenvalues for a 1-D array).

    >>> psd_sqrt(numpy.array([4.0, 9.0]))
    array([2., 3.])
    """
    if a.ndim == 1:
        if numpy.any(a.real < -1e-12 * max(1.0, numpy.abs(a).max())):
            raise ValueError("a matrix under a square root has a negative eigenvalue")
        return numpy.sqrt(numpy.clip(a.real, 0, None))
    w, v = numpy.linalg.eigh((a + a.conj().T) / 2)
    if w.min() < -1e-10 * max(1.0, numpy.abs(w).max()):
        raise ValueError(f"a matrix under a square root has the negative eigenvalue {w.min():.3g}")
    return (v * numpy.sqrt(numpy.clip(w, 0, None))) @ v.conj().T


def trace_pair(left: numpy.ndarray, right: numpy.ndarray) -> complex:
    """``Tr(left @ right) / n`` without the product (``n`` the rows of ``left``).

    >>> float(trace_pair(numpy.eye(2), numpy.array([[1.0, 2.0], [3.0, 4.0]])))
    2.5
    """
    return numpy.einsum("ij,ji->", left, right) / left.shape[0]
