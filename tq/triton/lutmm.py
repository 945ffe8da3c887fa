# The 4-bit fast path: y = x_rot @ W_rot.T on the tensor cores with the register-table
# dequant of lut4.py, for every batch size (decode and prefill are the same kernel).
# Reference: tq/reference/matmul.py (matmul_float64).
#
# Taken when every pass is 4-bit (4, 4+4) and x is bf16/fp16 (dispatch.lut4_reason).
#
# Math.  y[b, n] = sum_passes sum_g  norms_p[n, g]/sqrt(G) * sum_{k in g} level_p(idx[n, k]) x_rot[b, k]
# A K tile of TK columns lies inside one group (TK divides G), so per tile and pass
#     partial = lo @ x_lo^T + hi @ x_hi^T          ([BN, BM], fp32 accumulate)
# where lo/hi are the levels of the low/high nibbles (columns 32c + j and 32c + 16 + j of
# block c) and x_lo/x_hi the matching activation columns.  The group scale is applied
#   SCALE_W = False: to the fp32 partial (one FMA per output per tile: cheap when BM is 16),
#   SCALE_W = True:  to the levels, in the operand dtype, inside the lookup (cheaper than the
#                    accumulator when BM >= TK/2, i.e. prefill).
#
# Tiling.  Program (p, s): output block p = [BN rows of N] x [BM batch rows] (GROUP_M
# batch blocks in a row share weight tiles through L2), K range s of SPLIT (split-K only
# at decode; the last program of each output block sums the partials).  Batch rows past B are clamped on load
# and masked on store, weight rows past N likewise.
import triton
import triton.language as tl

from .decode import _add
from .lut4 import lut4, lut4_scaled
from .tiles import group_scale, grouped_block, store_split_k


@triton.jit
def _pass_accumulate(acc, pl, norm_ptr, lv_ptr, t_lp, t_ln, t_hp, t_hn, rows, t, g, n_groups, inv_sqrt_g, ld_pl,
                  cb, x_lo, x_hi, BN: tl.constexpr, BM: tl.constexpr, TKB: tl.constexpr, SCALE_W: tl.constexpr,
                  OUT: tl.constexpr, USE_ASM: tl.constexpr):
    b = tl.load(pl + rows[:, None] * ld_pl + t * TKB + cb[None, :])
    sc = group_scale(norm_ptr, rows, g, n_groups, inv_sqrt_g)
    if BM == 1:
        # GEMV on the FMA pipe: x_lo/x_hi are fp32 [TKB] vectors, acc is [BN, TKB].
        lo, hi = lut4(b, t_lp, t_ln, t_hp, t_hn, lv_ptr, OUT, USE_ASM)
        acc += (lo.to(tl.float32) * x_lo[None, :] + hi.to(tl.float32) * x_hi[None, :]) * sc[:, None]
    elif SCALE_W:
        lo, hi = lut4_scaled(b, t_lp, t_ln, t_hp, t_hn, sc.to(OUT)[:, None], lv_ptr, OUT, USE_ASM)
        acc = tl.dot(lo, x_lo, acc)
        acc = tl.dot(hi, x_hi, acc)
    else:
        lo, hi = lut4(b, t_lp, t_ln, t_hp, t_hn, lv_ptr, OUT, USE_ASM)
        part = tl.dot(lo, x_lo)
        part = tl.dot(hi, x_hi, part)
        acc += part * sc[:, None]
    return acc


@triton.jit
def lut4_matmul_kernel(x_ptr, y_ptr, ws_ptr, lock_ptr, bias_ptr,
                       a_pl, a_norm, a_lv, a_lp, a_ln, a_hp, a_hn,
                       r_pl, r_norm, r_lv, r_lp, r_ln, r_hp, r_hn,
                       B, N, n_groups, inv_sqrt_g, tiles_per_group, tiles_per_split, n_tiles, split,
                       ld_pl, ld_x, ld_y,
                       BN: tl.constexpr, BM: tl.constexpr, TK: tl.constexpr, GROUP_M: tl.constexpr,
                       RESIDUAL: tl.constexpr, PARTIAL: tl.constexpr, HAS_BIAS: tl.constexpr,
                       SCALE_W: tl.constexpr, OUT: tl.constexpr, USE_ASM: tl.constexpr,
                       UNROLL: tl.constexpr):
    TKB: tl.constexpr = TK // 2
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows_raw, rows, bcol_raw, bcol = grouped_block(pid, B, N, BN, BM, GROUP_M)
    cb = tl.arange(0, TKB)
    # Byte c of a tile: low nibble = column 32*(c // 16) + c % 16 of the tile, high = that + 16.
    col_lo = 32 * (cb // 16) + cb % 16
    if BM == 1:
        acc = tl.full([BN, TKB], 0.0, tl.float32)
    else:
        acc = tl.full([BN, BM], 0.0, tl.float32)
    t_begin = pid_k * tiles_per_split
    t_end = tl.minimum(t_begin + tiles_per_split, n_tiles)
    for t in tl.range(t_begin, t_end, loop_unroll_factor=UNROLL):
        if BM == 1:
            xp = x_ptr + t * TK + col_lo
            x_lo = tl.load(xp).to(tl.float32)
            x_hi = tl.load(xp + 16).to(tl.float32)
        else:
            xp = x_ptr + bcol[None, :] * ld_x + (t * TK + col_lo)[:, None]
            x_lo = tl.load(xp)
            x_hi = tl.load(xp + 16)
        g = t // tiles_per_group
        acc = _pass_accumulate(acc, a_pl, a_norm, a_lv, a_lp, a_ln, a_hp, a_hn, rows, t, g, n_groups, inv_sqrt_g,
                             ld_pl, cb, x_lo, x_hi, BN, BM, TKB, SCALE_W, OUT, USE_ASM)
        if RESIDUAL:
            acc = _pass_accumulate(acc, r_pl, r_norm, r_lv, r_lp, r_ln, r_hp, r_hn, rows, t, g, n_groups,
                                 inv_sqrt_g, ld_pl, cb, x_lo, x_hi, BN, BM, TKB, SCALE_W, OUT, USE_ASM)
    if BM == 1:
        acc = tl.reduce(acc, 1, _add)[:, None]
    store_split_k(acc, y_ptr, ws_ptr, lock_ptr, bias_ptr, rows_raw, rows, bcol_raw, B, N, ld_y, pid, pid_k, split,
                  PARTIAL, HAS_BIAS)


@triton.jit
def lut4_dequant_kernel(out_ptr, a_pl, a_norm, a_lv, a_lp, a_ln, a_hp, a_hn,
                        r_pl, r_norm, r_lv, r_lp, r_ln, r_hp, r_hn,
                        row0, rows, n_groups, inv_sqrt_g, tiles_per_group, ld_pl, ld_out,
                        BR: tl.constexpr, TK: tl.constexpr, RESIDUAL: tl.constexpr, OUT: tl.constexpr,
                        USE_ASM: tl.constexpr):
    """W_rot rows [row0, row0 + rows) -> out[rows, K_pad] (the chunked prefill's workspace).

    Program (i, t): BR rows, K tile t.  The tables hold fp16 levels (OUT = fp16, exact enough
    that the level times the group scale, formed in fp32 and summed over both passes of 4+4,
    is rounded to out's dtype once).
    """
    TKB: tl.constexpr = TK // 2
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    t = tl.program_id(1)
    ok = r < rows
    src = (row0 + tl.minimum(r, rows - 1)).to(tl.int64)
    cb = tl.arange(0, TKB)
    col_lo = t * TK + 32 * (cb // 16) + cb % 16
    g = t // tiles_per_group
    b = tl.load(a_pl + src[:, None] * ld_pl + t * TKB + cb[None, :])
    sc = group_scale(a_norm, src, g, n_groups, inv_sqrt_g)[:, None]
    lo, hi = lut4(b, a_lp, a_ln, a_hp, a_hn, a_lv, OUT, USE_ASM)
    lo = lo.to(tl.float32) * sc
    hi = hi.to(tl.float32) * sc
    if RESIDUAL:
        b = tl.load(r_pl + src[:, None] * ld_pl + t * TKB + cb[None, :])
        sc = group_scale(r_norm, src, g, n_groups, inv_sqrt_g)[:, None]
        lo2, hi2 = lut4(b, r_lp, r_ln, r_hp, r_hn, r_lv, OUT, USE_ASM)
        lo += lo2.to(tl.float32) * sc
        hi += hi2.to(tl.float32) * sc
    dst = out_ptr + r[:, None].to(tl.int64) * ld_out + col_lo[None, :]
    tl.store(dst, lo.to(out_ptr.dtype.element_ty), mask=ok[:, None])
    tl.store(dst + 16, hi.to(out_ptr.dtype.element_ty), mask=ok[:, None])
