"""Dequant-on-the-fly matmul, the readable way: y = x @ W_hat.T (+ bias).

Because the rotation is orthogonal, x @ W_hat.T = rotate(x) @ W_rot.T, so x is
rotated once (B x K, cheap) and the weight is never un-rotated.  W_rot is rebuilt
chunk by chunk of columns,

    W_rot[:, k0:k1] = sum over passes  norms[:, k // G] / sqrt(G) * levels[idx[:, k0:k1]]

and each chunk is multiplied in at once, so peak memory is N x chunk, never N x K.
``matmul`` runs with torch on the weight's device in float32 (float64 for float64 x);
``matmul_float64`` is the NumPy float64 ground truth every backend is tested against.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import contract, packing
from ..format import QuantizedWeight
from ..rotation import rotate_np, rotate_torch

# Columns per chunk are chosen so that one dequantized chunk takes about this many bytes.
CHUNK_BYTES = 32 << 20


def availability() -> tuple[bool, str]:
    return True, "always available (torch on CPU or CUDA)"


def supports(x, qw: QuantizedWeight) -> str | None:
    return None


def chunk_columns(qw: QuantizedWeight, bytes_per_value: int = 4) -> int:
    cols = CHUNK_BYTES // (bytes_per_value * qw.out_features)
    cols = max(packing.PACK_BLOCK, cols // packing.PACK_BLOCK * packing.PACK_BLOCK)
    return min(cols, qw.k_padded)


def dequantize_columns(qw: QuantizedWeight, k0: int, k1: int, dtype=torch.float32) -> torch.Tensor:
    """W_rot[:, k0:k1] (k0, k1 multiples of 32) straight from the packed planes."""
    g = qw.group_size
    group_of_column = torch.arange(k0, k1, device=qw.device) // g
    out = None
    for p in qw.passes:
        planes = [pl[:, k0 * w // 8: k1 * w // 8] for pl, w in zip(p.planes, packing.plane_widths(p.bits))]
        idx = packing.unpack_indices(planes, p.bits, k1 - k0).long()
        scale = p.norms.to(dtype)[:, group_of_column] * (g ** -0.5)
        vals = p.levels.to(dtype)[idx] * scale
        out = vals if out is None else out + vals
    return out


def matmul(x: torch.Tensor, qw: QuantizedWeight, *, bias: torch.Tensor | None = None) -> torch.Tensor:
    x2, out_shape = contract.prepare(x, qw, bias, dtypes=contract.ALL_DTYPES)
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    x_rot = rotate_torch(x2.to(compute), qw.rotation_block, qw.seed, qw.k_padded)
    y = torch.zeros((x2.shape[0], qw.out_features), dtype=compute, device=x.device)
    step = chunk_columns(qw, torch.finfo(compute).bits // 8)
    for k0 in range(0, qw.k_padded, step):
        k1 = min(qw.k_padded, k0 + step)
        y += x_rot[:, k0:k1] @ dequantize_columns(qw, k0, k1, compute).T
    if bias is not None:
        y += bias.to(compute)
    return y.to(x.dtype).reshape(out_shape)


def matmul_float64(x, qw: QuantizedWeight, *, bias=None) -> np.ndarray:
    """NumPy float64 ground truth: rotate x, rebuild W_rot in float64, one product."""
    x = np.asarray(x.detach().cpu().double() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if x.shape[-1] != qw.in_features:
        raise ValueError(f"x has last dimension {x.shape[-1]}, expected K={qw.in_features}")
    x2 = x.reshape(-1, qw.in_features)
    cpu = qw.to("cpu")
    w_rot = dequantize_columns(cpu, 0, cpu.k_padded, torch.float64).numpy()
    y = rotate_np(x2, qw.rotation_block, qw.seed, qw.k_padded) @ w_rot.T
    if bias is not None:
        y = y + np.asarray(bias.detach().cpu().double() if isinstance(bias, torch.Tensor) else bias)
    return y.reshape(*x.shape[:-1], qw.out_features)
