"""Seeded randomized Hadamard rotation applied per block of R columns along K.

For a block x of R = 2^r consecutive columns (padded K split into K_pad / R blocks):

    rotate(x) = H_R (s * x) / sqrt(R)

with s a +-1 sign vector of length K_pad drawn from ``numpy.random.default_rng(seed)``
(the same seed gives the same signs on every device and in every backend) and H_R the
Sylvester-Hadamard matrix, H_R[i, j] = (-1)^popcount(i & j), which is symmetric.  The
map is orthogonal, so y = x W^T = rotate(x) rotate(W)^T: the weight is rotated offline
once, the activation once per call.

R equals the group size G when G is a power of two.  A full-row group whose padded
length is not a power of two (K = 28672, 576, 960, ...) is rotated in blocks of the
largest power of two that divides it: still orthogonal, only the coordinates are mixed
within each block instead of across the whole row (documented in the README).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

# Blocks up to this size are rotated with one dense product against H_R; larger blocks
# are factored as H_R = H_a (x) H_b and done as two smaller products.
DENSE_HADAMARD_MAX = 256


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def largest_power_of_two_divisor(n: int) -> int:
    return n & -n


def random_signs(length: int, seed: int) -> np.ndarray:
    """+-1 float64 vector, a pure function of (length, seed)."""
    rng = np.random.default_rng(seed)
    return np.where(rng.integers(0, 2, size=length, dtype=np.int8) == 1, 1.0, -1.0)


@functools.lru_cache(maxsize=None)
def hadamard_matrix_np(size: int) -> np.ndarray:
    """Unnormalized Sylvester-Hadamard matrix (entries +-1), float64."""
    if not is_power_of_two(size):
        raise ValueError(f"Hadamard size must be a power of two, got {size}")
    idx = np.arange(size)
    parity = np.zeros((size, size), dtype=np.int64)
    anded = idx[:, None] & idx[None, :]
    while np.any(anded):
        parity ^= anded & 1
        anded >>= 1
    h = 1.0 - 2.0 * parity
    h.setflags(write=False)
    return h


@functools.lru_cache(maxsize=32)
def hadamard_torch(size: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """H_size (entries +-1, exact in every float dtype) on device, kept per (size, dtype, device)."""
    return torch.tensor(hadamard_matrix_np(size), dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _signs_torch(length: int, seed: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    return torch.as_tensor(random_signs(length, seed), dtype=dtype, device=device)


def _split(size: int) -> tuple[int, int]:
    a = 1
    while a * a < size:
        a *= 2
    return a, size // a


def fwht_np(x: np.ndarray) -> np.ndarray:
    """Unnormalized Walsh-Hadamard transform along the last axis (float64 numpy)."""
    size = x.shape[-1]
    if size <= DENSE_HADAMARD_MAX:
        return x @ hadamard_matrix_np(size)
    a, b = _split(size)
    y = x.reshape(*x.shape[:-1], a, b)
    y = fwht_np(y)  # along b
    y = np.swapaxes(fwht_np(np.swapaxes(y, -1, -2)), -1, -2)  # along a
    return y.reshape(x.shape)


def fwht_torch(x: torch.Tensor) -> torch.Tensor:
    """Unnormalized Walsh-Hadamard transform along the last dim, any device/float dtype."""
    size = x.shape[-1]
    if size <= DENSE_HADAMARD_MAX:
        return x @ hadamard_torch(size, x.dtype, str(x.device))
    a, b = _split(size)
    y = x.reshape(*x.shape[:-1], a, b)
    y = fwht_torch(y)
    y = fwht_torch(y.transpose(-1, -2)).transpose(-1, -2)
    return y.reshape(x.shape)


def _check(k_padded: int, block: int, width: int):
    if not is_power_of_two(block):
        raise ValueError(f"rotation block must be a power of two, got {block}")
    if k_padded % block:
        raise ValueError(f"padded K ({k_padded}) must be a multiple of the rotation block ({block})")
    if width > k_padded:
        raise ValueError(f"input has {width} columns, more than the padded K ({k_padded})")


def rotate_torch(x: torch.Tensor, block: int, seed: int, k_padded: int | None = None) -> torch.Tensor:
    """Rotate the last dim of x per block; zero-pads it to ``k_padded`` first.

    Works in x's dtype (use float32/float64 for accuracy).  Returns shape (..., k_padded).
    """
    width = x.shape[-1]
    k_padded = width if k_padded is None else k_padded
    _check(k_padded, block, width)
    if width < k_padded:
        x = torch.nn.functional.pad(x, (0, k_padded - width))
    signs = _signs_torch(k_padded, int(seed), x.dtype, str(x.device))
    y = (x * signs).reshape(*x.shape[:-1], k_padded // block, block)
    y = fwht_torch(y) * (block ** -0.5)
    return y.reshape(*x.shape[:-1], k_padded)


def unrotate_torch(y: torch.Tensor, block: int, seed: int, width: int | None = None) -> torch.Tensor:
    """Inverse of rotate_torch (H is symmetric and orthogonal up to 1/sqrt(R)); crops to width."""
    k_padded = y.shape[-1]
    _check(k_padded, block, 0)
    signs = _signs_torch(k_padded, int(seed), y.dtype, str(y.device))
    x = fwht_torch(y.reshape(*y.shape[:-1], k_padded // block, block)) * (block ** -0.5)
    x = x.reshape(y.shape) * signs
    return x if width is None else x[..., :width]


def rotate_np(x: np.ndarray, block: int, seed: int, k_padded: int | None = None) -> np.ndarray:
    """float64 numpy twin of rotate_torch (the ground truth)."""
    x = np.asarray(x, dtype=np.float64)
    width = x.shape[-1]
    k_padded = width if k_padded is None else k_padded
    _check(k_padded, block, width)
    if width < k_padded:
        x = np.concatenate([x, np.zeros((*x.shape[:-1], k_padded - width))], axis=-1)
    y = (x * random_signs(k_padded, seed)).reshape(*x.shape[:-1], k_padded // block, block)
    return (fwht_np(y) / np.sqrt(block)).reshape(*x.shape[:-1], k_padded)


def unrotate_np(y: np.ndarray, block: int, seed: int, width: int | None = None) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    k_padded = y.shape[-1]
    x = fwht_np(y.reshape(*y.shape[:-1], k_padded // block, block)) / np.sqrt(block)
    x = x.reshape(y.shape) * random_signs(k_padded, seed)
    return x if width is None else x[..., :width]
