"""K that the group size does not divide (SmolLM2's 576, SmolLM2-360M's 960 at G = 128).

tq.quantize zero-pads the last group; the padding must be invisible: the dequantized
weight has K columns, and the reference matmul equals x @ dequantize(qw).T in float64.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tq
from tq.reference import matmul_float64

SHAPES = [(96, 576), (80, 960)]          # N x K with K % 128 != 0


@pytest.mark.parametrize("n, k", SHAPES)
@pytest.mark.parametrize("bits, residual_bits", [(4, None), (3, 2)])
def test_padded_round_trip(gen, n, k, bits, residual_bits):
    w = torch.randn(n, k, generator=gen) * 0.02
    x = torch.randn(5, k, generator=gen)
    qw = tq.quantize(w, bits, 128, residual_bits, seed=7)
    assert qw.in_features == k and qw.k_padded == -(-k // 128) * 128 and qw.k_padded > k

    w_hat = tq.dequantize(qw, torch.float64)
    assert w_hat.shape == (n, k)
    # The padded columns carry no weight: a padded group's error is no worse than a full one's.
    err = float(((w_hat - w.double()) ** 2).sum() / (w.double() ** 2).sum())
    expected = {(4, None): 0.0093, (3, 2): 0.0055}[(bits, residual_bits)]
    assert err < 1.25 * expected

    # Reference float64 ground truth (rotated basis) == x @ W_hat.T in the original basis.
    y64 = matmul_float64(x, qw)
    direct = x.double().numpy() @ w_hat.numpy().T
    np.testing.assert_allclose(y64, direct, rtol=1e-10, atol=1e-12 * np.abs(direct).max())

    # tq.matmul in float32 against the float64 truth, within a few times torch's own float32 error.
    y = tq.matmul(x, qw).double().numpy()
    torch_err = np.abs((x @ w_hat.float().T).double().numpy() - y64).max()
    assert np.abs(y - y64).max() <= 8 * torch_err + 1e-6 * np.abs(y64).max()


@pytest.mark.parametrize("n, k", SHAPES)
def test_padded_bytes_are_counted(gen, n, k):
    qw = tq.quantize(torch.randn(n, k, generator=gen), 4, 128)
    k_pad = qw.k_padded
    stored = n * k_pad * 4 // 8 + n * (k_pad // 128) * 2 + 16 * 4     # indices, fp16 norms, levels
    assert qw.nbytes == stored
    assert qw.bits_per_weight == pytest.approx(8 * stored / (n * k))


@pytest.mark.parametrize("n, k", SHAPES)
def test_padded_weight_survives_save_and_load(tmp_path, gen, n, k):
    w = torch.randn(n, k, generator=gen)
    qw = tq.quantize(w, 4, 128, seed=3)
    tq.save(qw, tmp_path / "w.safetensors")
    again = tq.load(tmp_path / "w.safetensors")
    assert again.k_padded == qw.k_padded
    assert torch.equal(tq.dequantize(again), tq.dequantize(qw))


def test_padding_can_be_refused(gen):
    with pytest.raises(ValueError, match="does not divide"):
        tq.quantize(torch.randn(8, 576, generator=gen), 4, 128, pad=False)
