"""Scalar codebooks for rotated, unit-variance weight coordinates.

After a group of G weights is normalized to unit L2 norm and rotated by a random
orthogonal matrix, each coordinate is distributed as one coordinate of a uniformly
random unit vector in dimension G.  Scaled by sqrt(G) it has unit variance, and its
exact density is

    f_G(z) = (1 - z^2/G)^((G-3)/2) / (sqrt(G) * B(1/2, (G-1)/2)),   |z| < sqrt(G),

a scaled Beta((G-1)/2, (G-1)/2) that tends to N(0, 1) as G grows.  A Lloyd-Max
codebook for that source minimises the expected squared error of a nearest-level
scalar quantizer.  Four kinds exist:

- ``gaussian``: Lloyd-Max levels for N(0, 1);
- ``beta``: Lloyd-Max levels for f_G (matters for small groups);
- ``gaussian-poly`` / ``beta-poly``: levels that are an odd polynomial of
  v = u / u_max, u = index - (2^bits - 1)/2, fitted to minimise the same expected
  error.  A kernel evaluates such a level with a short Horner chain instead of a
  table lookup.  ``poly_degree="exact"`` uses 2^(bits-1) odd terms, which
  reproduce the Lloyd-Max levels exactly.

Every expected error here is computed from exact partial moments of the source
(closed forms, no quadrature, no sampling), so a codebook's ``expected_mse`` is the
number the quantizer's measured error is tested against.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy import optimize, special, stats

MIN_BITS, MAX_BITS = 1, 8
KINDS = ("gaussian", "beta", "gaussian-poly", "beta-poly")
DEFAULT_POLY_DEGREE = 5
# The exact polynomial has 2^(bits-1) odd terms; above 5 bits its Vandermonde system
# is too ill-conditioned to reproduce the levels in float64, let alone float32.
MAX_EXACT_POLY_BITS = 5


@dataclasses.dataclass(frozen=True)
class Codebook:
    """Sorted reconstruction levels for unit-variance coordinates.

    ``levels[i]`` is the value of index ``i``.  For the polynomial kinds,
    ``poly_coefficients[j]`` multiplies ``v**(2j+1)`` with ``v = (i - u_max)/u_max`` and
    ``u_max = (2^bits - 1)/2``; ``levels`` then holds exactly those values.
    """

    kind: str
    bits: int
    levels: np.ndarray
    expected_mse: float
    dimension: int | None = None
    poly_coefficients: tuple[float, ...] | None = None

    @property
    def size(self) -> int:
        return 1 << self.bits

    @property
    def is_polynomial(self) -> bool:
        return self.poly_coefficients is not None

    @property
    def thresholds(self) -> np.ndarray:
        """Decision boundaries of the nearest-level quantizer (midpoints)."""
        return 0.5 * (self.levels[1:] + self.levels[:-1])

    def describe(self) -> str:
        if self.kind.startswith("residual"):
            src = f"residual of a first pass, G={self.dimension}"
        else:
            src = "N(0,1)" if self.dimension is None else f"unit-sphere marginal, d={self.dimension}"
        return f"{self.kind} {self.bits}-bit ({src}), expected MSE {self.expected_mse:.6g}"


# ---------------------------------------------------------------------------
# Sources: partial moments over cells [a, b] of the unit-variance source.
# ---------------------------------------------------------------------------
class _GaussianSource:
    """N(0, 1): P, E[X; cell], E[X^2; cell] in closed form."""

    dimension = None
    support = math.inf

    def moments(self, edges: np.ndarray):
        pdf = stats.norm.pdf(edges)
        cdf = stats.norm.cdf(edges)
        # x * pdf(x) -> 0 at +-inf; np.where keeps inf * 0 from producing NaN.
        with np.errstate(invalid="ignore"):
            xpdf = np.where(np.isfinite(edges), edges * pdf, 0.0)
        m0 = np.diff(cdf)
        m1 = -np.diff(pdf)
        m2 = m0 - np.diff(xpdf)
        return m0, m1, m2


class _SphereMarginalSource:
    """sqrt(d) * (one coordinate of a uniform unit vector in R^d), d >= 2.

    With Y = X / sqrt(d) on [-1, 1] and density g_m(y) = (1-y^2)^m / B_m, m = (d-3)/2:
    E[Y; cell] = [-(1-y^2)^(m+1) / (2(m+1) B_m)] and, because y^2 = 1 - (1-y^2),
    E[Y^2; cell] = P_m(cell) - (B_{m+1}/B_m) P_{m+1}(cell) with B_{m+1}/B_m = (m+1)/(m+3/2).
    P_m is the CDF of the symmetric Beta(m+1, m+1) in (y+1)/2.
    """

    def __init__(self, dimension: int):
        if dimension < 2:
            raise ValueError(f"dimension must be >= 2 for the sphere marginal, got {dimension}")
        self.dimension = int(dimension)
        self.support = math.sqrt(self.dimension)
        self._m = (self.dimension - 3) / 2.0
        self._log_b = special.betaln(0.5, self._m + 1.0)

    def _cdf(self, y: np.ndarray, m: float) -> np.ndarray:
        return stats.beta.cdf((np.clip(y, -1.0, 1.0) + 1.0) / 2.0, m + 1.0, m + 1.0)

    def moments(self, edges: np.ndarray):
        s, m = self.support, self._m
        y = np.clip(edges / s, -1.0, 1.0)
        p_m = self._cdf(y, m)
        p_m1 = self._cdf(y, m + 1.0)
        m0 = np.diff(p_m)
        # (1-y^2)^(m+1) / B_m computed in logs so that large d neither overflows nor underflows badly.
        one_minus = np.clip(1.0 - y * y, 0.0, None)
        with np.errstate(divide="ignore"):
            log_term = (m + 1.0) * np.log(one_minus) - self._log_b
        term = np.exp(log_term) / (2.0 * (m + 1.0))
        m1_y = -np.diff(term)
        m2_y = m0 - (m + 1.0) / (m + 1.5) * np.diff(p_m1)
        return m0, s * m1_y, self.dimension * m2_y


def _source(kind: str, dimension: int | None):
    if kind.startswith("gaussian"):
        return _GaussianSource()
    if dimension is None:
        raise ValueError(f"codebook kind {kind!r} needs the group size as `dimension`")
    return _SphereMarginalSource(dimension)


def _edges(levels: np.ndarray, support: float) -> np.ndarray:
    mids = 0.5 * (levels[1:] + levels[:-1])
    return np.concatenate([[-support], mids, [support]])


def expected_mse(levels: np.ndarray, source) -> float:
    """E[(X - Q(X))^2] for the nearest-level quantizer with these sorted levels."""
    levels = np.asarray(levels, dtype=np.float64)
    m0, m1, m2 = source.moments(_edges(levels, source.support))
    return float(np.sum(m2 - 2.0 * levels * m1 + levels * levels * m0))


def expected_mse_in_group(codebook: "Codebook", group_size: int) -> float:
    """Expected error of ``codebook``'s levels on the exact source of a rotated group of
    ``group_size`` coordinates (the sphere marginal), whatever source it was fitted to."""
    return expected_mse(codebook.levels, _SphereMarginalSource(group_size))


def _mse_gradient(levels: np.ndarray, source) -> np.ndarray:
    # Boundary terms cancel at midpoints (both neighbours make the same error there).
    m0, m1, _ = source.moments(_edges(levels, source.support))
    return 2.0 * (levels * m0 - m1)


# ---------------------------------------------------------------------------
# Lloyd-Max
# ---------------------------------------------------------------------------
def _lloyd_max(bits: int, source, tol: float = 1e-12, max_iter: int = 5000, start=None) -> np.ndarray:
    n = 1 << bits
    # By default start from equal-probability cell centres of N(0,1): close to optimal for the
    # closed-form sources here, whose optimum is unique.  Sources with local optima pass a start.
    if start is None:
        start = stats.norm.ppf((np.arange(n) + 0.5) / n)
    start = np.asarray(start, dtype=np.float64)
    start = np.clip(start, -0.999 * source.support, 0.999 * source.support)
    # Plain Lloyd iterations converge linearly and very slowly for 128+ levels, so first
    # descend the expected error directly (the optimum is unique for these log-concave
    # sources), then polish with Lloyd steps to the exact centroid fixed point.
    half = n // 2

    def objective(h):  # optimise the positive half; symmetry gives the rest
        levels = np.concatenate([-h[::-1], h])
        if np.any(np.diff(levels) <= 0):
            return 1e6, np.zeros_like(h)
        g = _mse_gradient(levels, source)
        return expected_mse(levels, source), g[half:] - g[:half][::-1]

    res = optimize.minimize(objective, start[half:], jac=True, method="L-BFGS-B",
                            options={"ftol": 1e-16, "gtol": 1e-13, "maxiter": 20000})
    levels = np.concatenate([-res.x[::-1], res.x]) if res.fun < 1e6 else start
    for _ in range(max_iter):
        m0, m1, _ = source.moments(_edges(levels, source.support))
        new = np.where(m0 > 0, m1 / np.maximum(m0, 1e-300), levels)
        new = 0.5 * (new - new[::-1])  # keep exact odd symmetry
        step = np.max(np.abs(new - levels))
        levels = new
        if step < tol:
            break
    return np.sort(levels)


# ---------------------------------------------------------------------------
# Odd-polynomial codebooks
# ---------------------------------------------------------------------------
def poly_basis(bits: int, n_terms: int) -> np.ndarray:
    """Matrix A with levels = A @ coefficients: A[i, j] = v_i^(2j+1), v = (i - u_max)/u_max."""
    n = 1 << bits
    u_max = (n - 1) / 2.0
    v = (np.arange(n) - u_max) / u_max
    return np.stack([v ** (2 * j + 1) for j in range(n_terms)], axis=1)


def _n_poly_terms(bits: int, degree) -> int:
    if degree == "exact":
        if bits > MAX_EXACT_POLY_BITS:
            raise ValueError(
                f"poly_degree='exact' needs 2^(bits-1) terms and is offered for bits <= {MAX_EXACT_POLY_BITS}; "
                f"got bits={bits}. Use an odd integer degree such as 5 instead."
            )
        return 1 << (bits - 1)
    if not isinstance(degree, (int, np.integer)) or isinstance(degree, bool) or degree < 1 or degree % 2 == 0:
        raise ValueError(f"poly_degree must be a positive odd integer or 'exact', got {degree!r}")
    return min((int(degree) + 1) // 2, 1 << (bits - 1))


def _fit_poly(bits: int, n_terms: int, source, lloyd_levels: np.ndarray) -> np.ndarray:
    basis = poly_basis(bits, n_terms)
    start, *_ = np.linalg.lstsq(basis, lloyd_levels, rcond=None)
    if n_terms == (1 << (bits - 1)):
        return start  # exact interpolation of the Lloyd-Max levels is already the optimum

    def objective(c):
        levels = basis @ c
        if np.any(np.diff(levels) <= 0):  # a non-monotone polynomial is not a valid codebook
            return 1e6, np.zeros_like(c)
        return expected_mse(levels, source), basis.T @ _mse_gradient(levels, source)

    res = optimize.minimize(objective, start, jac=True, method="L-BFGS-B",
                            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000})
    best = res.x if res.fun <= objective(start)[0] else start
    return best


# ---------------------------------------------------------------------------
# Public constructor (cached: every codebook is a pure function of its arguments)
# ---------------------------------------------------------------------------
def get_codebook(kind: str = "gaussian", bits: int = 4, dimension: int | None = None,
                 poly_degree=DEFAULT_POLY_DEGREE) -> Codebook:
    """Return the (cached) codebook of ``kind`` with ``2**bits`` levels.

    ``dimension`` is the group size and is required by the ``beta`` kinds (ignored by
    the ``gaussian`` kinds). ``poly_degree`` applies to the ``-poly`` kinds only.
    """
    if kind not in KINDS:
        raise ValueError(f"codebook must be one of {KINDS}, got {kind!r}")
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    if kind.startswith("gaussian"):
        dimension = None
    elif dimension is None or int(dimension) < 2:
        raise ValueError(f"codebook {kind!r} needs dimension (the group size) >= 2, got {dimension!r}")
    if not kind.endswith("-poly"):
        poly_degree = None
    else:
        _n_poly_terms(int(bits), poly_degree)  # validate early with a clear message
    return _cached_codebook(kind, int(bits), None if dimension is None else int(dimension), poly_degree)


@functools.lru_cache(maxsize=None)
def _cached_codebook(kind: str, bits: int, dimension: int | None, poly_degree) -> Codebook:
    source = _source(kind, dimension)
    lloyd = _lloyd_max(bits, source)
    coefficients = None
    levels = lloyd
    if kind.endswith("-poly"):
        c = _fit_poly(bits, _n_poly_terms(bits, poly_degree), source, lloyd)
        levels = poly_basis(bits, len(c)) @ c
        coefficients = tuple(float(x) for x in c)
    levels.setflags(write=False)
    return Codebook(kind=kind, bits=bits, levels=levels, expected_mse=expected_mse(levels, source),
                    dimension=dimension, poly_coefficients=coefficients)


def codebook_from_levels(kind: str, bits: int, levels, dimension: int | None = None,
                         poly_coefficients=None, source=None, expected=None) -> Codebook:
    """Rebuild a codebook from stored levels (used when loading a file).  ``source`` replaces the
    kind's closed-form source for ``expected_mse`` (the residual kinds' sampled one); ``expected``
    gives it outright (a stored number, no source needed)."""
    levels = np.asarray(levels, dtype=np.float64).copy()
    if levels.shape != (1 << bits,):
        raise ValueError(f"a {bits}-bit codebook needs {1 << bits} levels, got shape {levels.shape}")
    if not np.all(np.isfinite(levels)) or np.any(np.diff(levels) <= 0):
        raise ValueError("codebook levels must be finite and strictly increasing")
    coeffs = None if poly_coefficients is None else tuple(float(c) for c in poly_coefficients)
    if kind.endswith("-poly") != (coeffs is not None):
        raise ValueError(f"a {kind!r} codebook {'needs' if coeffs is None else 'has no'} polynomial coefficients")
    if coeffs is not None:
        # The kernels evaluate the coefficients, the reference reads the levels: they must agree
        # (to the float32 rounding of the stored levels), or backends would disagree silently.
        if not 1 <= len(coeffs) <= 1 << (bits - 1) or not np.all(np.isfinite(coeffs)):
            raise ValueError(f"a {bits}-bit polynomial codebook needs 1..{1 << (bits - 1)} finite coefficients, "
                             f"got {len(coeffs)}")
        poly = poly_basis(bits, len(coeffs)) @ np.asarray(coeffs)
        if np.max(np.abs(poly - levels)) > 1e-6 * np.max(np.abs(levels)):
            raise ValueError("the polynomial coefficients do not reproduce the stored levels")
    levels.setflags(write=False)
    if expected is None:
        source = _source(kind, dimension) if source is None else source
        expected = expected_mse(levels, source)
    return Codebook(kind=kind, bits=bits, levels=levels, expected_mse=float(expected),
                    dimension=dimension, poly_coefficients=coeffs)
