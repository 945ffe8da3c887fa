"""Codebooks matched to the residual pass's source.

A residual pass quantizes e = t - t_hat, the first pass's error, normalized by its own
group norm.  That source is far from Gaussian: inside each first-pass cell the error is
spread nearly uniformly, past the outer level it has the Gaussian's whole tail, and
dividing by the group's error norm (not a global sigma) couples the coordinates of a
group.  After a 4-bit Lloyd-Max pass at G = 128 its kurtosis is about 4.8 (6.1 weighted as
below): a Gaussian Lloyd-Max codebook (outer level 2.73) clips the groups whose error one
tail coordinate dominates (the optimal outer level is 6.6), and spends its inner levels on a
peak that is not there.

It has no closed form, so the source here is a fixed, seeded Monte Carlo sample of
exactly what the quantizer sees on a rotated group: G coordinates of a uniform random
unit vector scaled by sqrt(G) (the sphere marginal of codebook.py, jointly), quantized
by the parent codebook, the error renormalized to unit mean square over the group.
Each coordinate is weighted by its group's error mean square, because that is what the
residual pass's error costs in the weight (sum over groups of ||e_g||^2 / G times the
group's unit-coordinate error); unweighted, the expected error was 6-17% below the
measured one, as large-error groups are also the heavy-tailed ones.  The sample is
symmetrized, so Lloyd-Max levels stay exactly odd.  Its partial moments are weighted sums
over sorted samples, so codebook.py's Lloyd-Max and polynomial fits run on it unchanged,
and a codebook's ``expected_mse`` is E||e - e_hat||^2 / E||e||^2 on the sample.  Ignored:
the float16 rounding of the first norm (a relative 2^-11 at most, which the real quantizer
folds into the residual).
"""
from __future__ import annotations

import functools

import numpy as np

from .codebook import (DEFAULT_POLY_DEGREE, MAX_BITS, MIN_BITS, Codebook, _fit_poly, _lloyd_max,
                       _n_poly_terms, expected_mse, poly_basis)

RESIDUAL_KINDS = ("residual", "residual-poly")
# Drawn coordinates (before symmetrization).  2^20 keeps a 256-level codebook at ~4k
# samples a cell and the whole fit under a second or two.
SAMPLES = 1 << 20
SAMPLE_SEED = 0x7E51D


class _EmpiricalSource:
    """Partial moments of a weighted symmetric sample: P, E[X; cell], E[X^2; cell] over cells."""

    def __init__(self, samples: np.ndarray, weights: np.ndarray, dimension: int):
        x = np.concatenate([samples, -samples]).astype(np.float64)
        w = np.concatenate([weights, weights]).astype(np.float64)
        order = np.argsort(x, kind="stable")
        x, w = x[order], w[order] / w.sum()
        self.dimension = int(dimension)
        self.support = float(np.abs(x).max()) * (1.0 + 1e-9)
        self._x = x
        self._c0 = np.concatenate([[0.0], np.cumsum(w)])
        self._c1 = np.concatenate([[0.0], np.cumsum(w * x)])
        self._c2 = np.concatenate([[0.0], np.cumsum(w * x * x)])

    @property
    def size(self) -> int:
        return self._x.size

    def magnitude_sums(self):
        """(sorted |x| of the positive half, and its cumulative weight, weight * x, weight * x^2
        from the start of that half, each with a leading 0)."""
        h = self._x.size // 2
        return self._x[h:], *(c[h:] - c[h] for c in (self._c0, self._c1, self._c2))

    def moments(self, edges: np.ndarray):
        pos = np.searchsorted(self._x, np.asarray(edges, dtype=np.float64))
        return np.diff(self._c0[pos]), np.diff(self._c1[pos]), np.diff(self._c2[pos])


def _optimal_start(source: _EmpiricalSource, bits: int, grid_points: int = 1024) -> np.ndarray:
    """Near-globally optimal odd levels: exact dynamic programming over cell boundaries on a grid.

    The residual source is heavy-tailed and lumpy, and Lloyd-Max from a Gaussian start stalls
    in local optima that differ in how many levels the tail gets (83% worse at 4+8 with
    G = 128, 4% at 4+4 with G = 4096).  With odd levels 0 is a cell boundary, so the positive half is
    a 1-D k-means of |x| into 2^(bits-1) cells, which dynamic programming solves exactly for
    boundaries restricted to a grid (quantiles and uniform points of |x|); Lloyd-Max then
    polishes off the grid.
    """
    a, s0, s1, s2 = source.magnitude_sums()
    n_half = 1 << (bits - 1)
    half = grid_points // 2 + 1
    grid = np.unique(np.concatenate([np.quantile(a, np.linspace(0.0, 1.0, half)),
                                     np.linspace(0.0, a[-1], half)]))
    grid[0], grid[-1] = 0.0, np.nextafter(a[-1], np.inf)
    pos = np.searchsorted(a, grid)
    c0, c1, c2 = s0[pos], s1[pos], s2[pos]
    mass = c0[None, :] - c0[:, None]
    m1 = c1[None, :] - c1[:, None]
    # cost[i, j]: weighted squared error of one cell [grid_i, grid_j) at its centroid; empty
    # or backwards cells are forbidden so that every level keeps a non-empty cell.
    filled = (pos[None, :] - pos[:, None]) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = np.where(filled, (c2[None, :] - c2[:, None]) - m1 * m1 / mass, np.inf)
    best = cost[0].copy()
    back = []
    cols = np.arange(grid.size)
    for _ in range(n_half - 1):
        total = best[:, None] + cost
        arg = np.argmin(total, axis=0)
        back.append(arg)
        best = total[arg, cols]
    cuts = [grid.size - 1]
    for arg in reversed(back):
        cuts.append(int(arg[cuts[-1]]))
    cuts = [0] + cuts[::-1]
    levels = np.array([(c1[j] - c1[i]) / (c0[j] - c0[i]) for i, j in zip(cuts[:-1], cuts[1:])])
    return np.concatenate([-levels[::-1], levels])


def residual_samples(parent_levels, group_size: int, samples: int = SAMPLES,
                     seed: int = SAMPLE_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(unit-mean-square residual coordinates of a parent pass on random rotated groups, and
    each coordinate's weight: its group's residual mean square)."""
    levels = np.asarray(parent_levels, dtype=np.float64)
    g = int(group_size)
    rng = np.random.default_rng(seed)
    n_groups = max(8, -(-samples // g))
    out = np.empty((n_groups, g))
    weight = np.empty((n_groups, g))
    mids = 0.5 * (levels[1:] + levels[:-1])
    step = max(1, (1 << 18) // g)  # bounded temporaries for any G
    for r0 in range(0, n_groups, step):
        z = rng.standard_normal((min(step, n_groups - r0), g))
        t = z * (np.sqrt(g) / np.linalg.norm(z, axis=1, keepdims=True))
        e = t - levels[np.searchsorted(mids, t)]
        ms = np.mean(e * e, axis=1, keepdims=True)
        out[r0:r0 + z.shape[0]] = e / np.sqrt(ms)
        weight[r0:r0 + z.shape[0]] = ms
    return out.ravel(), weight.ravel()


def parent_key(levels) -> tuple:
    """The parent's levels as the quantizer applies them (float32, like QuantizedPass.levels), so a
    loaded weight's residual codebook sees the very source it was fitted on."""
    return tuple(float(v) for v in np.asarray(levels, dtype=np.float32))


@functools.lru_cache(maxsize=2)   # (67 MB each; the fitted codebooks have their own cache)
def residual_source(parent_levels: tuple, group_size: int) -> _EmpiricalSource:
    """The (cached) residual source of a parent codebook's levels at group size G."""
    return _EmpiricalSource(*residual_samples(parent_levels, group_size), group_size)


def _check(parent: Codebook, bits, group_size):
    if not isinstance(parent, Codebook):
        raise TypeError(f"parent must be the first pass's Codebook, got {type(parent).__name__}")
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 2:
        raise ValueError(f"group_size must be an integer >= 2 (the residual's group), got {group_size!r}")


def get_residual_codebook(parent: Codebook, bits: int, group_size: int, polynomial: bool = True,
                          poly_degree=DEFAULT_POLY_DEGREE) -> Codebook:
    """Odd-polynomial (``residual-poly``, the quantizer's default) or, with ``polynomial=False``,
    Lloyd-Max (``residual``) levels for the residual of ``parent`` on groups of ``group_size``
    coordinates."""
    _check(parent, bits, group_size)
    if polynomial:
        _n_poly_terms(int(bits), poly_degree)
    return _cached(parent_key(parent.levels), int(bits), int(group_size),
                   poly_degree if polynomial else None)


@functools.lru_cache(maxsize=None)
def _cached(parent_levels: tuple, bits: int, group_size: int, poly_degree) -> Codebook:
    source = residual_source(parent_levels, group_size)
    levels = _lloyd_max(bits, source, start=_optimal_start(source, bits))
    coefficients = None
    if poly_degree is not None:
        c = _fit_poly(bits, _n_poly_terms(bits, poly_degree), source, levels)
        levels = poly_basis(bits, len(c)) @ c
        coefficients = tuple(float(x) for x in c)
    levels.setflags(write=False)
    return Codebook(kind="residual-poly" if coefficients else "residual", bits=bits, levels=levels,
                    expected_mse=expected_mse(levels, source), dimension=group_size,
                    poly_coefficients=coefficients)
