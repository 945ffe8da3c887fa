"""The baseline quantizers (tq/baselines.py): byte accounting, exactness, NF4 by hand, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tq import baselines


# ---------------------------------------------------------------------------
# Bits per weight: every stored byte
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bits, group_size, expected", [
    (4, 128, 4 + 32 / 128),    # 4-bit indices + fp16 scale + fp16 zero per 128
    (4, 64, 4 + 32 / 64),
    (3, 128, 3 + 32 / 128),
    (2, 32, 2 + 32 / 32),
])
def test_rtn_bits_per_weight(gen, bits, group_size, expected):
    w = torch.randn(64, 512, generator=gen)
    _, bpw = baselines.rtn(w, bits=bits, group_size=group_size)
    assert bpw == pytest.approx(expected, abs=1e-12)


def test_rtn_bits_per_weight_counts_the_padded_last_group(gen):
    n, k, g = 8, 100, 32                       # K_pad = 128: 4 groups, the last one 4 columns wide
    _, bpw = baselines.rtn(torch.randn(n, k, generator=gen), bits=4, group_size=g)
    stored_bytes = n * 128 * 4 // 8 + n * 4 * (2 + 2)
    assert bpw == pytest.approx(8 * stored_bytes / (n * k), abs=1e-12)


@pytest.mark.parametrize("block_size", [32, 64, 128])
def test_nf4_bits_per_weight(gen, block_size):
    n, k = 64, 512
    _, bpw = baselines.nf4(torch.randn(n, k, generator=gen), block_size=block_size)
    stored_bytes = n * k // 2 + 4 * (n * k // block_size) + 16 * 4   # indices, fp32 absmax, fp32 table
    assert bpw == pytest.approx(8 * stored_bytes / (n * k), abs=1e-12)


# ---------------------------------------------------------------------------
# RTN
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("k, group_size", [(256, 64), (384, 128), (100, 32)])
def test_rtn_is_exact_on_weights_it_represents(gen, bits, k, group_size):
    """Integers 0..2^b-1 times a power-of-two scale plus an offset, per group: zero error."""
    n, top = 16, (1 << bits) - 1
    n_groups = -(-k // group_size)
    q = torch.randint(0, top + 1, (n, n_groups * group_size), generator=gen).float()
    q[:, 0::group_size] = 0                    # every group holds both ends of the range
    q[:, 1::group_size] = top
    scale = 2.0 ** -torch.randint(2, 8, (n, n_groups, 1), generator=gen).float()
    offset = torch.randint(-32, 32, (n, n_groups, 1), generator=gen).float() / 32   # zero stays fp16-exact
    w = (q.view(n, n_groups, group_size) * scale + offset).view(n, -1)[:, :k]
    w_hat, _ = baselines.rtn(w, bits=bits, group_size=group_size)
    assert torch.equal(w_hat, w)


def test_rtn_matches_a_loop_over_groups(gen):
    """The vectorized code against the formula applied one group at a time with NumPy float16."""
    w = torch.randn(6, 96, generator=gen) * 0.05 + 0.01
    w_hat, _ = baselines.rtn(w, bits=3, group_size=32)
    expected = np.empty((6, 96), dtype=np.float32)
    for r in range(6):
        for c in range(0, 96, 32):
            x = w[r, c:c + 32].numpy()
            scale = np.float32(np.float16((x.max() - x.min()) / 7))
            zero = np.float32(np.float16(x.min() + (x.max() - x.min()) / 7 * 4))
            q = np.clip(np.round((x - (zero - scale * 4)) / scale), 0, 7)
            expected[r, c:c + 32] = (q - 4) * scale + zero
    np.testing.assert_allclose(w_hat.numpy(), expected, rtol=0, atol=1e-7)


def test_rtn_constant_group_is_exact():
    w = torch.full((2, 64), 0.25)
    w_hat, _ = baselines.rtn(w, bits=4, group_size=32)
    assert torch.equal(w_hat, w)


def test_rtn_error_falls_with_bits_and_smaller_groups(gen):
    w = torch.randn(128, 512, generator=gen)
    err = {(b, g): baselines.nmse(w, baselines.rtn(w, bits=b, group_size=g)[0])
           for b in (2, 3, 4) for g in (32, 128)}
    assert err[2, 128] > err[3, 128] > err[4, 128]
    assert err[4, 128] > err[4, 32]
    # Uniform 4-bit on a Gaussian group of 128: about 0.01 (measured 0.00995 on 384x1536).
    assert 0.008 < err[4, 128] < 0.012


# ---------------------------------------------------------------------------
# NF4
# ---------------------------------------------------------------------------
def test_nf4_hand_checked_example():
    """Two blocks of 4, worked by hand from the published table (midpoint decisions).

    Block 1: absmax 2;  w/absmax = [0.5, -1, 0.1, 0.3]
        0.5  lies above the midpoint of 0.4407 and 0.5626 (0.5017)? no  -> 0.44070982933044434
        -1   -> -1.0
        0.1  below the midpoint of 0.0796 and 0.1609 (0.1203)           -> 0.07958029955625534
        0.3  above the midpoint of 0.2461 and 0.3379 (0.2920)           -> 0.33791524171829224
    Block 2: absmax 0.07;  w/absmax = [0, 1, -0.7143, 0.1429]
        -0.7143 lies between -1 and -0.6962, above their midpoint (-0.8481) -> -0.6961928009986877
        0.1429  above 0.1203                                               -> 0.16093020141124725
    """
    w = torch.tensor([[1.0, -2.0, 0.2, 0.6],
                      [0.0, 0.07, -0.05, 0.01]])
    w_hat, bpw = baselines.nf4(w, block_size=4)
    expected = torch.tensor([
        [0.44070982933044434 * 2, -2.0, 0.07958029955625534 * 2, 0.33791524171829224 * 2],
        [0.0, 0.07, -0.6961928009986877 * 0.07, 0.16093020141124725 * 0.07],
    ])
    torch.testing.assert_close(w_hat, expected, rtol=1e-6, atol=1e-7)
    assert bpw == pytest.approx(8 * (4 + 2 * 4 + 64) / 8)


def test_nf4_table_is_the_published_one():
    v = np.array(baselines.NF4_VALUES)
    assert len(v) == 16 and v[0] == -1.0 and v[7] == 0.0 and v[-1] == 1.0
    assert np.all(np.diff(v) > 0)


def test_nf4_blocks_run_across_rows_like_bitsandbytes(gen):
    """Blocks are cut from the flattened weight, so a 3 x 96 weight with block 64 has 5 blocks."""
    w = torch.randn(3, 96, generator=gen)
    w_hat, bpw = baselines.nf4(w, block_size=64)
    flat_hat, _ = baselines.nf4(w.reshape(1, -1), block_size=64)
    assert torch.equal(w_hat.reshape(1, -1), flat_hat)
    assert bpw == pytest.approx(8 * (288 // 2 + 5 * 4 + 64) / 288)


def test_nf4_zero_block_and_gaussian_error(gen):
    w = torch.randn(128, 512, generator=gen)
    w[0, :64] = 0
    w_hat, _ = baselines.nf4(w, block_size=64)
    assert torch.equal(w_hat[0, :64], torch.zeros(64))
    assert 0.007 < baselines.nmse(w, w_hat) < 0.010     # 0.00845 measured on 384x1536


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [baselines.rtn, baselines.nf4])
def test_bad_weights_are_refused(fn):
    with pytest.raises(ValueError, match="2-D"):
        fn(torch.randn(64))
    bad = torch.randn(4, 64)
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN/Inf"):
        fn(bad)
    bad[1, 3] = float("inf")
    with pytest.raises(ValueError, match="NaN/Inf"):
        fn(bad)
    with pytest.raises(TypeError, match="dtype"):
        fn(torch.ones(4, 64, dtype=torch.int32))


def test_bad_parameters_are_refused():
    w = torch.randn(4, 64)
    for kwargs in ({"bits": 0}, {"bits": 9}, {"group_size": 0}, {"group_size": 2.5}):
        with pytest.raises(ValueError):
            baselines.rtn(w, **kwargs)
    with pytest.raises(ValueError, match="block_size"):
        baselines.nf4(w, block_size=0)
    with pytest.raises(ValueError, match="float16"):
        baselines.rtn(torch.tensor([[0.0, 1e6]]), group_size=2)
