import numpy as np
import pytest

from tq.codebook import KINDS, codebook_from_levels, expected_mse, get_codebook, _SphereMarginalSource

# Published Lloyd-Max MSE for N(0,1) (Max 1960): 1..4 bits.
KNOWN_GAUSSIAN_MSE = {1: 0.3634, 2: 0.1175, 3: 0.03454, 4: 0.009497}


@pytest.mark.parametrize("bits", sorted(KNOWN_GAUSSIAN_MSE))
def test_gaussian_lloyd_max_matches_published_mse(bits):
    got = get_codebook("gaussian", bits).expected_mse
    assert f"{got:.3g}" == f"{KNOWN_GAUSSIAN_MSE[bits]:.3g}"


@pytest.mark.parametrize("bits", range(1, 9))
def test_levels_sorted_symmetric_and_centroids(bits):
    cb = get_codebook("gaussian", bits)
    assert cb.levels.shape == (1 << bits,)
    assert np.all(np.diff(cb.levels) > 0)
    np.testing.assert_allclose(cb.levels, -cb.levels[::-1], atol=1e-12)
    # More bits, less error, roughly 4x per bit at high rate.
    if bits > 1:
        assert cb.expected_mse < get_codebook("gaussian", bits - 1).expected_mse / 3


def test_expected_mse_matches_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(2_000_000)
    for kind, bits in [("gaussian", 3), ("gaussian-poly", 4)]:
        cb = get_codebook(kind, bits)
        idx = np.searchsorted(cb.thresholds, z)
        mc = np.mean((z - cb.levels[idx]) ** 2)
        assert abs(mc / cb.expected_mse - 1) < 0.01, (kind, bits, mc, cb.expected_mse)


def test_sphere_marginal_mse_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    d = 32
    v = rng.standard_normal((200_000, d))
    z = (v / np.linalg.norm(v, axis=1, keepdims=True) * np.sqrt(d)).ravel()
    cb = get_codebook("beta", 3, dimension=d)
    mc = np.mean((z - cb.levels[np.searchsorted(cb.thresholds, z)]) ** 2)
    assert abs(mc / cb.expected_mse - 1) < 0.01
    # The exact source is lighter-tailed than N(0,1): its own codebook does better on it.
    gauss_levels = get_codebook("gaussian", 3).levels
    assert cb.expected_mse < expected_mse(gauss_levels, _SphereMarginalSource(d))


def test_beta_tends_to_gaussian_for_large_groups():
    assert get_codebook("beta", 4, dimension=8192).expected_mse == pytest.approx(
        get_codebook("gaussian", 4).expected_mse, rel=1e-3)


def test_poly_quintic_within_half_percent_of_lloyd_max_at_4_bits():
    ratio = get_codebook("gaussian-poly", 4).expected_mse / get_codebook("gaussian", 4).expected_mse
    assert 1.0 <= ratio < 1.005


@pytest.mark.parametrize("bits", range(1, 6))
@pytest.mark.parametrize("kind", ["gaussian", "beta"])
def test_exact_poly_reproduces_lloyd_max(bits, kind):
    dim = None if kind == "gaussian" else 64
    exact = get_codebook(kind + "-poly", bits, dimension=dim, poly_degree="exact")
    np.testing.assert_allclose(exact.levels, get_codebook(kind, bits, dimension=dim).levels, atol=1e-5)
    # Evaluated in float32 from its coefficients, as a kernel would.
    u_max = ((1 << bits) - 1) / 2
    v = ((np.arange(1 << bits) - u_max) / u_max).astype(np.float32)
    acc = np.zeros_like(v)
    for c in reversed(exact.poly_coefficients):
        acc = acc * v * v + np.float32(c)
    np.testing.assert_allclose(acc * v, exact.levels, atol=1e-5)


def test_poly_levels_are_their_polynomial():
    cb = get_codebook("gaussian-poly", 3, poly_degree=3)
    v = (np.arange(8) - 3.5) / 3.5
    np.testing.assert_allclose(cb.levels, sum(c * v ** (2 * j + 1) for j, c in enumerate(cb.poly_coefficients)))


@pytest.mark.parametrize("bad", [0, 9, 2.0, True, None])
def test_bad_bits(bad):
    with pytest.raises(ValueError, match="bits"):
        get_codebook("gaussian", bad)


def test_bad_kind_and_degree():
    with pytest.raises(ValueError, match="codebook must be one of"):
        get_codebook("uniform", 4)
    with pytest.raises(ValueError, match="poly_degree"):
        get_codebook("gaussian-poly", 4, poly_degree=4)
    with pytest.raises(ValueError, match="exact"):
        get_codebook("gaussian-poly", 8, poly_degree="exact")
    with pytest.raises(ValueError, match="dimension"):
        get_codebook("beta", 4)


def test_codebook_from_levels_validates():
    with pytest.raises(ValueError, match="increasing"):
        codebook_from_levels("gaussian", 1, [1.0, -1.0])
    with pytest.raises(ValueError, match="levels"):
        codebook_from_levels("gaussian", 2, [0.0, 1.0])
    assert set(KINDS) == {"gaussian", "beta", "gaussian-poly", "beta-poly"}
