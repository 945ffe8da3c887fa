# Chunked prefill without rotating the activation: dequantize W_rot rows AND rotate them back.
# Reference: tq/reference/matmul.py (y = rotate(x) @ W_rot_hat^T); tq/rotation.py (the rotation).
#
# Math.  Per rotation block of R columns, rotate(x) = H (s * x) / sqrt(R) with H symmetric, so
#     rotate(x) . w_rot = sum_k x_k * (s_k / sqrt(R)) * (w_rot @ H)_k,
# i.e. y = x @ W_hat^T with W_hat[n, blk] = (W_rot_hat[n, blk] @ H) * s[blk] / sqrt(R).  When a
# K tile is one rotation block (TK == R), that is one small product per tile, done here on the
# tensor cores: the levels (fp16 table values) times H's +-1 entries are exact products, summed
# in one fp32 accumulation, then the group scale (one per row: TK divides G) and s / sqrt(R) per column are applied in
# fp32 and W_hat is rounded once to the output dtype.  cuBLAS then multiplies the caller's x
# itself: the prefill has no activation rotation at all (49 us of the Triton backend's 424 us at
# B = 2048, K = 8192, and 160 us at K = 28672, on the H100), for 2 * TK flops per weight on tensor
# cores that this memory-bound kernel otherwise leaves idle.
#
# Layout.  Byte c of a 4-bit tile holds columns col_lo(c) = 32 (c // 16) + c % 16 (low nibble)
# and col_lo(c) + 16 (high): so W_rot_tile @ H = lo @ H[col_lo, :] + hi @ H[col_lo + 16, :].
# Those row-permuted halves of H are one [TK, TK] table per tile width (`hadamard_halves`),
# loaded once per program; programs loop over K tiles (persistent along K).
import functools

import numpy as np
import torch
import triton
import triton.language as tl

from ..rotation import hadamard_matrix_np
from .lut4 import lut4
from .tiles import group_scale


@triton.jit
def _levels_times_h(pl, norm_ptr, lv_ptr, t_lp, t_ln, t_hp, t_hn, src, t, g, n_groups, inv_sqrt_g, ld_pl, cb,
                    h_lo, h_hi, TKB: tl.constexpr, OUT: tl.constexpr, USE_ASM: tl.constexpr, PREC: tl.constexpr):
    b = tl.load(pl + src[:, None] * ld_pl + t * TKB + cb[None, :])
    sc = group_scale(norm_ptr, src, g, n_groups, inv_sqrt_g)
    lo, hi = lut4(b, t_lp, t_ln, t_hp, t_hn, lv_ptr, OUT, USE_ASM)
    acc = tl.dot(lo, h_lo, input_precision=PREC)
    acc = tl.dot(hi, h_hi, acc, input_precision=PREC)
    return acc * sc[:, None]


@triton.jit
def lut4_unrotate_kernel(out_ptr, sign_ptr, h_ptr,
                         a_pl, a_norm, a_lv, a_lp, a_ln, a_hp, a_hn,
                         r_pl, r_norm, r_lv, r_lp, r_ln, r_hp, r_hn,
                         row0, rows, n_groups, inv_sqrt_g, inv_sqrt_r, tiles_per_group, n_tiles, ld_pl, ld_out,
                         BR: tl.constexpr, TK: tl.constexpr, RESIDUAL: tl.constexpr, OUT: tl.constexpr,
                         USE_ASM: tl.constexpr, PREC: tl.constexpr):
    """W_hat rows [row0, row0 + rows), all K_pad columns in x's basis -> out[rows, K_pad].

    Program (i, j): BR rows, K tiles j, j + P, j + 2P, ... (P = programs along K)."""
    TKB: tl.constexpr = TK // 2
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    ok = r < rows
    src = (row0 + tl.minimum(r, rows - 1)).to(tl.int64)
    cb = tl.arange(0, TKB)
    kk = tl.arange(0, TK)
    h_lo = tl.load(h_ptr + cb[:, None] * TK + kk[None, :])
    h_hi = tl.load(h_ptr + (TKB + cb)[:, None] * TK + kk[None, :])
    for t in range(tl.program_id(1), n_tiles, tl.num_programs(1)):
        g = t // tiles_per_group
        acc = _levels_times_h(a_pl, a_norm, a_lv, a_lp, a_ln, a_hp, a_hn, src, t, g, n_groups, inv_sqrt_g, ld_pl, cb,
                              h_lo, h_hi, TKB, OUT, USE_ASM, PREC)
        if RESIDUAL:
            acc += _levels_times_h(r_pl, r_norm, r_lv, r_lp, r_ln, r_hp, r_hn, src, t, g, n_groups, inv_sqrt_g,
                                   ld_pl, cb, h_lo, h_hi, TKB, OUT, USE_ASM, PREC)
        col = t * TK + kk
        acc = acc * (tl.load(sign_ptr + col) * inv_sqrt_r)[None, :]
        dst = out_ptr + r[:, None].to(tl.int64) * ld_out + col[None, :]
        tl.store(dst, acc.to(out_ptr.dtype.element_ty), mask=ok[:, None])


@functools.lru_cache(maxsize=16)
def hadamard_halves(tk: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[TK, TK]: rows 0..TK/2-1 are H's rows col_lo(c), rows TK/2.. are H's rows col_lo(c) + 16."""
    c = np.arange(tk // 2)
    col_lo = 32 * (c // 16) + c % 16
    h = hadamard_matrix_np(tk)
    return torch.as_tensor(np.concatenate([h[col_lo], h[col_lo + 16]]), dtype=dtype, device=device).contiguous()
