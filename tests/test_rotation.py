import numpy as np
import pytest
import torch

from tq.rotation import (fwht_np, hadamard_matrix_np, random_signs, rotate_np, rotate_torch, unrotate_np,
                         unrotate_torch)


@pytest.mark.parametrize("size", [2, 32, 128, 512, 4096])
def test_fwht_matches_dense_hadamard(size, gen):
    x = torch.randn(3, size, generator=gen, dtype=torch.float64).numpy()
    np.testing.assert_allclose(fwht_np(x), x @ hadamard_matrix_np(size), atol=1e-9)


@pytest.mark.parametrize("block,k_pad", [(32, 96), (128, 640), (1024, 7168), (4096, 8192)])
def test_rotation_is_orthogonal_and_invertible(block, k_pad, gen):
    x = torch.randn(5, k_pad, generator=gen, dtype=torch.float64)
    y = rotate_torch(x, block, seed=7)
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1))
    torch.testing.assert_close(unrotate_torch(y, block, seed=7), x)
    # inner products are preserved: this is what makes x W^T = rot(x) rot(W)^T
    w = torch.randn(4, k_pad, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(y @ rotate_torch(w, block, 7).T, x @ w.T)


def test_numpy_and_torch_agree_and_seed_reproduces(gen):
    x = torch.randn(3, 200, generator=gen, dtype=torch.float64)
    a = rotate_torch(x, 128, seed=3, k_padded=256)
    np.testing.assert_allclose(a.numpy(), rotate_np(x.numpy(), 128, 3, 256), atol=1e-12)
    np.testing.assert_allclose(unrotate_np(a.numpy(), 128, 3, width=200), x.numpy(), atol=1e-12)
    assert torch.equal(a, rotate_torch(x, 128, seed=3, k_padded=256))
    assert not torch.allclose(a, rotate_torch(x, 128, seed=4, k_padded=256))
    np.testing.assert_array_equal(random_signs(10, 5), random_signs(10, 5))


def test_float32_rotation_close_to_float64(gen):
    x = torch.randn(4, 1024, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(rotate_torch(x.float(), 256, 1).double(), rotate_torch(x, 256, 1),
                               atol=1e-5, rtol=1e-5)


def test_bad_blocks():
    with pytest.raises(ValueError, match="power of two"):
        rotate_torch(torch.zeros(1, 96), 96, 0)
    with pytest.raises(ValueError, match="multiple"):
        rotate_torch(torch.zeros(1, 96), 64, 0)
