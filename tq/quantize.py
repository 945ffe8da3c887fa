"""TurboQuant for weights: quantize a 2-D weight offline, and reconstruct it.

For each row n and group g of G consecutive (padded) columns:

    t      = rotate(w)[n, group g]                 (randomized Hadamard, rotation.py)
    norm   = ||t||_2                               (stored, float16 by default)
    idx    = nearest level of codebook to t * sqrt(G) / norm   (unit-variance coordinates)
    t_hat  = norm / sqrt(G) * levels[idx]

With ``residual_bits`` the error t - t_hat is quantized again the same way, with its
own norms and codebook, in the same rotated basis (so one rotated activation serves
both passes at inference).  All of it runs with torch ops on the weight's device.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import packing
from .codebook import DEFAULT_POLY_DEGREE, KINDS, get_codebook
from .format import NORM_DTYPES, QuantizedPass, QuantizedWeight, validate
from .residual import get_residual_codebook
from .rotation import is_power_of_two, largest_power_of_two_divisor, rotate_torch, unrotate_torch

MIN_GROUP_SIZE = packing.PACK_BLOCK
RESIDUAL_CHOICES = ("residual-poly", "residual", "gaussian")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# Rows are quantized in chunks of about this many elements so that the float32
# temporaries stay around 64 MB whatever the weight's size.
CHUNK_ELEMENTS = 1 << 24


def resolve_group(in_features: int, group_size, pad: bool = True) -> tuple[int, int, int, bool]:
    """(G, K_pad, rotation block R, full_row) for a layer with ``in_features`` columns.

    ``group_size`` is a power of two >= 32, or None / "row" for one group per row.  A K
    that G does not divide is zero-padded up to the next multiple of G (``pad=False``
    makes that an error instead).  A full-row group is K rounded up to a multiple of 32,
    rotated in blocks of the largest power of two dividing it.
    """
    k = in_features
    if group_size is None or group_size == "row":
        g = -(-k // packing.PACK_BLOCK) * packing.PACK_BLOCK
        if g != k and not pad:
            raise ValueError(f"group_size=None (full row) needs K to be a multiple of {packing.PACK_BLOCK}, "
                             f"got K={k}; pass pad=True to zero-pad")
        return g, g, largest_power_of_two_divisor(g), True
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
        raise TypeError(f"group_size must be an int power of two or None (full row), got {group_size!r}")
    g = int(group_size)
    if g < MIN_GROUP_SIZE or not is_power_of_two(g):
        raise ValueError(f"group_size must be a power of two >= {MIN_GROUP_SIZE} or None (one group per row), "
                         f"got {group_size}")
    k_pad = -(-k // g) * g
    if k_pad != k and not pad:
        raise ValueError(f"group_size={g} does not divide K={k}: choose a group size that divides K, "
                         f"or pass pad=True to zero-pad the last group")
    return g, k_pad, g, False


def check_weight(weight) -> torch.Tensor:
    """The weight as a 2-D float tensor (NumPy arrays converted), or a clear error: shape, dtype, NaN/Inf."""
    if isinstance(weight, np.ndarray):
        weight = torch.from_numpy(weight)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor or numpy array, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features x in_features), got shape {tuple(weight.shape)}")
    if weight.dtype not in FLOAT_DTYPES:
        raise TypeError(f"weight dtype must be one of float32/float16/bfloat16/float64, got {weight.dtype}")
    if weight.numel() == 0:
        raise ValueError(f"weight is empty (shape {tuple(weight.shape)})")
    if not bool(torch.isfinite(weight).all()):
        bad = int((~torch.isfinite(weight)).sum())
        raise ValueError(f"weight contains {bad} NaN/Inf values; clean the weight before quantizing")
    return weight


def _check_bits(name: str, bits, allow_none=False):
    if bits is None and allow_none:
        return
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"{name} must be an integer in 1..8{' or None' if allow_none else ''}, got {bits!r}")


def _quantize_pass(target: torch.Tensor, codebook, norm_dtype, g: int):
    """target: float32 [rows, n_groups, G] -> (indices int32, stored norms, reconstruction)."""
    norms = target.norm(dim=-1)
    if norm_dtype == torch.float16 and bool((norms > torch.finfo(torch.float16).max).any()):
        raise ValueError("a group norm exceeds the float16 range; quantize with norm_dtype=torch.float32")
    stored = norms.to(norm_dtype)
    scale = stored.float()
    # Normalize by the norm that will be stored, so its rounding is part of the residual.
    inv = torch.where(scale > 0, math.sqrt(g) / scale, torch.zeros_like(scale))
    unit = target * inv.unsqueeze(-1)
    thresholds = torch.tensor(codebook.thresholds, dtype=torch.float32, device=target.device)
    idx = torch.bucketize(unit, thresholds, out_int32=True)
    levels = torch.tensor(codebook.levels, dtype=torch.float32, device=target.device)
    recon = levels[idx] * (scale / math.sqrt(g)).unsqueeze(-1)
    return idx, stored, recon


def _residual_codebook(parent, bits: int, g: int, choice: str, poly_degree):
    if choice != "gaussian":
        return get_residual_codebook(parent, bits, g, polynomial=choice == "residual-poly",
                                     poly_degree=poly_degree)
    # The first pass's error is not a rotated unit vector, so the sphere marginal does not
    # describe it and the legacy choice is the Gaussian counterpart of the kind.  Measured on
    # experiments/quality's weights with a beta first pass: 3-11% better at 4+4 than a beta one.
    return get_codebook(parent.kind.replace("beta", "gaussian"), bits, poly_degree=poly_degree)


def quantize(weight, bits: int = 4, group_size=128, residual_bits: int | None = None, seed: int = 0,
             codebook: str = "gaussian", *, residual_codebook: str = "residual-poly", poly_degree=DEFAULT_POLY_DEGREE,
             norm_dtype: torch.dtype = torch.float16, pad: bool = True) -> QuantizedWeight:
    """Quantize an N x K weight (out_features x in_features) with TurboQuant.

    bits / residual_bits: 1..8 bits per index for the main and the optional residual pass.
    group_size: power of two >= 32 or None for one group per row; K that G does not
        divide is zero-padded (``pad=False`` refuses instead).
    codebook: "gaussian", "beta" (exact unit-sphere marginal for dimension G),
        "gaussian-poly" or "beta-poly" (odd polynomial levels of ``poly_degree``, which also
        sets the degree of a "residual-poly" residual pass, whatever the first kind).
    residual_codebook: levels for the residual pass.  "residual-poly" (default): an odd
        polynomial of ``poly_degree`` fitted to the residual's own source (residual.py);
        "residual": Lloyd-Max levels for that source (a few % lower error, but no short
        polynomial reproduces them, so the cuTile word decode cannot take them);
        "gaussian": the Gaussian counterpart of ``codebook`` (the only choice before).
    norm_dtype: torch.float16 (default, 16 bits per group) or torch.float32.
    """
    weight = check_weight(weight)
    _check_bits("bits", bits)
    _check_bits("residual_bits", residual_bits, allow_none=True)
    if codebook not in KINDS:
        raise ValueError(f"codebook must be one of {KINDS}, got {codebook!r}")
    if residual_codebook not in RESIDUAL_CHOICES:
        raise ValueError(f"residual_codebook must be one of {RESIDUAL_CHOICES}, got {residual_codebook!r}")
    if norm_dtype not in NORM_DTYPES.values():
        raise ValueError(f"norm_dtype must be torch.float16 or torch.float32, got {norm_dtype}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    n, k = weight.shape
    g, k_pad, block, full_row = resolve_group(k, group_size, pad)
    bit_list = [int(bits)] + ([int(residual_bits)] if residual_bits else [])
    codebooks = [get_codebook(codebook, bit_list[0], dimension=g, poly_degree=poly_degree)]
    if residual_bits:
        codebooks.append(_residual_codebook(codebooks[0], bit_list[1], g, residual_codebook, poly_degree))

    n_groups = k_pad // g
    indices = [torch.empty((n, k_pad), dtype=torch.int32, device=weight.device) for _ in bit_list]
    norms = [torch.empty((n, n_groups), dtype=norm_dtype, device=weight.device) for _ in bit_list]
    rows = max(1, CHUNK_ELEMENTS // k_pad)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        target = rotate_torch(weight[r0:r1].float(), block, seed, k_pad).view(r1 - r0, n_groups, g)
        for i, cb in enumerate(codebooks):
            idx, stored, recon = _quantize_pass(target, cb, norm_dtype, g)
            indices[i][r0:r1] = idx.view(r1 - r0, k_pad)
            norms[i][r0:r1] = stored
            target = target - recon

    passes = [QuantizedPass(bits=b, codebook=cb, planes=packing.pack_indices(idx, b), norms=nm,
                            levels=torch.tensor(cb.levels, dtype=torch.float32, device=weight.device))
              for b, cb, idx, nm in zip(bit_list, codebooks, indices, norms)]
    qw = QuantizedWeight(out_features=n, in_features=k, group_size=g, k_padded=k_pad, rotation_block=block,
                         seed=int(seed), dtype=weight.dtype, passes=passes, full_row=full_row)
    return validate(qw)


def dequantize_rotated(qw: QuantizedWeight, rows: slice = slice(None), dtype=torch.float32) -> torch.Tensor:
    """W_rot for the given rows: [rows, K_pad] in the rotated basis (no un-rotation)."""
    g = qw.group_size
    out = None
    for p in qw.passes:
        planes = [pl[rows] for pl in p.planes]
        idx = packing.unpack_indices(planes, p.bits, qw.k_padded).long()
        scale = p.norms[rows].to(dtype) * (g ** -0.5)
        vals = p.levels.to(dtype)[idx].view(idx.shape[0], qw.n_groups, g) * scale.unsqueeze(-1)
        out = vals if out is None else out + vals
    return out.reshape(-1, qw.k_padded)


def dequantize(qw: QuantizedWeight, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Reconstruct W_hat [N, K] in the original basis (in ``dtype``, default the weight's dtype)."""
    w_rot = dequantize_rotated(qw, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    w = unrotate_torch(w_rot, qw.rotation_block, qw.seed, width=qw.in_features)
    return w.to(qw.dtype if dtype is None else dtype)
