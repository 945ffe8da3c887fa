"""The weight formats people use today, as plain reference quantizers for comparison.

Each function takes an N x K weight (out_features x in_features) and returns

    (dequantized_weight, bits_per_weight)

where ``dequantized_weight`` is the float32 N x K weight a kernel of that format would
compute with, and ``bits_per_weight`` = 8 * (every stored byte) / (N * K), counting
the packed indices, the per-group scales / zeros / absmax and any codebook table, the
same way ``tq.QuantizedWeight.bits_per_weight`` counts TurboQuant's bytes.

- ``rtn``: round-to-nearest asymmetric integers per group of G columns with a float16
  scale and a float16 zero (torch's int4 weight-only kernel / torchao, gemlite, Marlin,
  GPTQ without calibration).
- ``nf4``: bitsandbytes' 4-bit NormalFloat with one float32 absmax per block (no double
  quantization).

Neither calibrates, searches scales or clips: they are the uncalibrated formats a user
gets by default, which is what TurboQuant (also uncalibrated) is compared against.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .quantize import check_weight

FLOAT16_MAX = torch.finfo(torch.float16).max

# The 16 values of the 4-bit NormalFloat data type, index order 0..15, as published
# with QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs",
# arXiv:2305.14314, Appendix E) and hard-coded in bitsandbytes
# (csrc/kernels.cu, the NF4 dequantization table; bitsandbytes/functional.py,
# get_4bit_type("nf4")).  They are quantiles of N(0, 1) normalized to [-1, 1] with an
# exact zero: 7 negative, 0, 8 positive.
NF4_VALUES = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)
NF4_BITS = 4
# bitsandbytes keeps the 16-entry table as a float32 tensor in each weight's quant state.
NF4_TABLE_BYTES = len(NF4_VALUES) * 4
ABSMAX_BYTES = 4      # float32 absmax per block (bitsandbytes without double quantization)
FP16_BYTES = 2


def _check_weight(weight) -> torch.Tensor:
    """The weight as float32, after the same checks tq.quantize makes (shape, dtype, values)."""
    return check_weight(weight).float()


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def rtn(weight, bits: int = 4, group_size: int = 128) -> tuple[torch.Tensor, float]:
    """Round-to-nearest asymmetric integer quantization per group, float16 scale and zero.

    For each row and group of ``group_size`` consecutive columns, with b = ``bits``:

        scale = (max - min) / (2^b - 1)                       stored as float16
        zero  = min + scale * 2^(b-1)                         stored as float16
        q     = clamp(round((w - (zero - scale * 2^(b-1))) / scale), 0, 2^b - 1)
        w_hat = (q - 2^(b-1)) * scale + zero

    This is the convention of torchao's / gpt-fast's ``get_groupwise_affine_qparams``
    and ``groupwise_affine_quantize_tensor_from_qparams`` (the layout torch's
    ``_weight_int4pack_mm`` reads): the zero is a float offset at the middle of the
    integer range, not an integer zero point.  Those store scale and zero in bfloat16 for
    that kernel; here they are float16, as in gemlite/Marlin-style kernels, which costs
    the same 32 bits per group and rounds the scale more finely.  q is computed with the
    float16-rounded scale and zero (as torchao recomputes the minimum from the stored
    qparams), so ``w_hat`` is what a kernel reconstructs from the stored values
    (evaluated here in float32).  A group whose values are all equal gets scale 0 (torchao
    clamps it to 1e-6) and is reconstructed as its float16-rounded value.

    K that ``group_size`` does not divide: the last group is shorter in value (its min
    and max come from its real columns only) but its index slots are padded up to a
    full group, as tq pads, and those padded slots are counted as stored.

    Stored bytes: ceil(N * K_pad * b / 8) packed indices + N * (K_pad / G) * (2 + 2)
    for the float16 scale and zero.  Returns (float32 N x K weight, bits per weight).
    """
    w = _check_weight(weight)
    bits = _check_positive_int("bits", bits)
    if bits > 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    g = _check_positive_int("group_size", group_size)
    n, k = w.shape
    k_pad = -(-k // g) * g
    if k_pad != k:
        # Repeat the last real column into the padding: it changes no group's min or max.
        w = torch.cat([w, w[:, -1:].expand(n, k_pad - k)], dim=1)
    groups = w.view(n, k_pad // g, g)

    levels = (1 << bits) - 1
    middle = float(1 << (bits - 1))
    lo = groups.amin(dim=-1)
    hi = groups.amax(dim=-1)
    scale = (hi - lo) / levels
    zero = lo + scale * middle
    if bool((scale.abs() > FLOAT16_MAX).any() | (zero.abs() > FLOAT16_MAX).any()):
        raise ValueError("a group's scale or zero exceeds the float16 range; rtn stores them as float16")
    scale_h = scale.half().float()
    zero_h = zero.half().float()

    offset = (zero_h - scale_h * middle).unsqueeze(-1)        # the group's minimum as the kernel sees it
    inv = torch.where(scale_h > 0, 1.0 / scale_h, torch.zeros_like(scale_h)).unsqueeze(-1)
    q = torch.round((groups - offset) * inv).clamp_(0, levels)
    w_hat = (q - middle) * scale_h.unsqueeze(-1) + zero_h.unsqueeze(-1)
    w_hat = w_hat.reshape(n, k_pad)[:, :k].contiguous()

    n_groups = n * (k_pad // g)
    nbytes = math.ceil(n * k_pad * bits / 8) + n_groups * 2 * FP16_BYTES
    return w_hat, 8.0 * nbytes / (n * k)


def nf4(weight, block_size: int = 64) -> tuple[torch.Tensor, float]:
    """bitsandbytes' NormalFloat-4 with one float32 absmax per block.

    As bitsandbytes does, the weight is flattened in row-major order and cut into blocks
    of ``block_size`` consecutive values (the last block may be shorter; for the usual
    K a multiple of the block size, a block is part of one row).  For each block:

        absmax = max |w|                                       stored as float32
        idx    = nearest of the 16 NF4_VALUES to w / absmax    4 bits
        w_hat  = NF4_VALUES[idx] * absmax

    (a block of zeros has absmax 0 and is reconstructed as zeros).

    Stored bytes: ceil(N * K / 2) packed indices + 4 * ceil(N * K / block_size) float32
    absmax + 64 for the float32 16-entry table (bitsandbytes without double
    quantization; with it the absmax would cost about 8.25 bits per block instead of 32).
    Returns (float32 N x K weight, bits per weight).
    """
    w = _check_weight(weight)
    block = _check_positive_int("block_size", block_size)
    n, k = w.shape
    flat = w.reshape(-1)
    total = flat.numel()
    n_blocks = -(-total // block)
    padded = torch.zeros(n_blocks * block, dtype=torch.float32, device=w.device)
    padded[:total] = flat                    # zero padding changes no block's absmax
    blocks = padded.view(n_blocks, block)

    absmax = blocks.abs().amax(dim=-1, keepdim=True)
    inv = torch.where(absmax > 0, 1.0 / absmax, torch.zeros_like(absmax))
    values = torch.tensor(NF4_VALUES, dtype=torch.float32, device=w.device)
    thresholds = 0.5 * (values[1:] + values[:-1])        # nearest value = midpoint decisions
    idx = torch.bucketize(blocks * inv, thresholds)
    w_hat = (values[idx] * absmax).reshape(-1)[:total].view(n, k)

    nbytes = math.ceil(total * NF4_BITS / 8) + n_blocks * ABSMAX_BYTES + NF4_TABLE_BYTES
    return w_hat, 8.0 * nbytes / total


def nmse(weight, w_hat) -> float:
    """Normalized squared error sum((w - w_hat)^2) / sum(w^2), accumulated in float64."""
    w = torch.as_tensor(weight).double()
    err = w - torch.as_tensor(w_hat).double()
    return float((err * err).sum() / (w * w).sum())
