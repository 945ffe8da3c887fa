# The fused dequant-on-the-fly matmul: y = x_rot @ W_rot.T (+ bias), W never materialized.
#
# Math (tq/reference/matmul.py).  For up to two passes (main + residual), with G the
# group size,
#     W_rot[n, k] = sum_passes norms[n, k // G] / sqrt(G) * level(idx[n, k]),
# and y[b, n] = sum_k x_rot[b, k] W_rot[n, k].  Inside one K tile of TK columns (TK
# divides G, so the tile lies in one group) the norm is a per-row constant, so each
# pass computes part = level_tile @ x_tile^T on the tensor cores and adds
# part * norm[n] to the fp32 accumulator: one multiply per output, not per weight.
# level(i) is either a table lookup (lookup codebooks; the table is pre-scaled by
# 1/sqrt(G)) or, for polynomial codebooks, an odd polynomial evaluated in registers:
#     w = i - u_max (int -> float by the magic-number trick: bits(i | 0x4B000000) - 2^23 - u_max),
#     level = w * (c0' + w^2 (c1' + w^2 (c2' + ...)))   (Horner in w^2),
# with c_j' = c_j / u_max^(2j+1) / sqrt(G) folded on the host, so no table and no
# extra scaling per weight.
#
# Packed layout read (tq/packing.py).  A plane of width p stores v = 8/p slices of
# each 32-column block in the bit fields of 32/v bytes.  The byte tile of K tile kt is
# the contiguous [TN, TK*p/8] tile (kt) of the plane: one wide load.  Slice s is
# (bytes >> s*p) & (2^p - 1), one shift and one mask, and its activation partner is the
# contiguous tile xs[s, b-tile, kt] of the slice-planar activation copy that rotate.py
# wrote, so the product over the K tile is v tensor-core products of K = TK*p/8
# without any interleave.  A 3-bit index is a 2-bit plane (low bits) plus a 1-bit
# plane (high bit); in the 2-bit plane's slice s (columns 8s..8s+7 of each block) the
# high bits are bits 2s (columns 8s..8s+3) and 2s+1 (8s+4..8s+7) of the 1-bit plane's
# 4 bytes per block, joined with one concatenate per slice.
#
# Tiling.  Program (nt, sk, bt) computes rows [nt*TN, +TN) of W against batch rows
# [bt*TB, +TB) over its share of the K tiles (split-K, sk < SPLIT).  Decode (B <= 16):
# TB = 16 (x^T padded to 16 columns for the mma), TN = 128, SPLIT 2-8 chosen so that
# there are >= 2 programs per SM, partials written to an fp32 workspace and summed by
# reduce.py.  Prefill: TB = 64-128, SPLIT = 1, the epilogue adds bias and casts.
import cuda.tile as ct

from .reduce import split_range
from .levels import FP16_TERMS, levels, levels16, pair_f32, pair_halves, slice_index

ConstInt = ct.Constant[int]
ConstBool = ct.Constant[bool]


def _x_tile(xs, s, bt, kt, TB: ConstInt, TKB: ConstInt, CB: ConstBool):
    # activation tile [TB, TKB] of slice s; rows past the batch load as zero when B % TB != 0
    # (a padding mode needs the bounds check, and the check costs wide loads: only when needed)
    if CB:
        t = ct.load(xs, (s, bt, kt), (1, TB, TKB), padding_mode=ct.PaddingMode.ZERO)
    else:
        t = ct.load(xs, (s, bt, kt), (1, TB, TKB), check_bounds=False)
    return t.reshape((TB, TKB))


def _pass_part(xs, pl0, pl1, coef, cb, nt, bt, kt, P0: ConstInt, P1: ConstInt, T: ConstInt,
               TN: ConstInt, TK: ConstInt, TB: ConstInt, CN: ConstBool, CB: ConstBool):
    # One pass over one K tile: sum over slices of level_tile(s) @ x_tile(s)^T, fp32 [TN, TB].
    V = 8 // P0
    TKB = TK * P0 // 8
    byt = ct.load(pl0, (nt, kt), (TN, TKB), check_bounds=CN).astype(ct.int32)
    part = ct.zeros((TN, TB), ct.float32)
    if T < 0:  # 4-bit byte-pair table: both slices from one gather (levels.py)
        lo, hi = pair_halves(ct.gather(cb, byt, check_bounds=False), T)
        x0 = _x_tile(xs, 0, bt, kt, TB, TKB, CB)
        x1 = _x_tile(xs, 1, bt, kt, TB, TKB, CB)
        part = ct.mma(lo.astype(xs.dtype), ct.transpose(x0), part)
        return ct.mma(hi.astype(xs.dtype), ct.transpose(x1), part)
    hi_bytes = byt
    if P1 > 0:
        hi_bytes = ct.load(pl1, (nt, kt), (TN, TK // 8), check_bounds=CN).astype(ct.int32).reshape((TN, TK // 32, 4))
    for s in ct.static_iter(range(V)):
        idx = slice_index(byt, hi_bytes, s, P0, P1, TN, TKB)
        lev = levels(idx, coef, cb, P0 + P1, T)
        xt = _x_tile(xs, s, bt, kt, TB, TKB, CB)
        part = ct.mma(lev.astype(xs.dtype), ct.transpose(xt), part)
    return part


@ct.kernel
def fused_matmul_kernel(out, bias, xa, a0, a1, na, ca, qa, xb, b0, b1, nb, cb_, qb,
                        k_tiles, tiles_per_group,
                        A0: ConstInt, A1: ConstInt, AT: ConstInt,
                        B0: ConstInt, B1: ConstInt, BT: ConstInt,
                        TN: ConstInt, TK: ConstInt, TB: ConstInt, SPLIT: ConstInt, HAS_BIAS: ConstBool,
                        CN: ConstBool, CB: ConstBool):
    # out: [B, N] in x's dtype when SPLIT == 1, else the fp32 workspace [SPLIT, B, N].
    # x*: slice-planar activation [V, B, K_pad / V]; *0/*1: planes; n*: norms [N, K_pad / G];
    # c*: Horner coefficients (poly), q*: level table (lookup); B0 == 0: no residual pass.
    nt = ct.bid(0)
    sk = ct.bid(1)
    bt = ct.bid(2)
    k_begin, k_end = split_range(k_tiles, sk, SPLIT)
    acc = ct.zeros((TN, TB), ct.float32)
    for kt in range(k_begin, k_end):
        g = kt // tiles_per_group
        part = _pass_part(xa, a0, a1, ca, qa, nt, bt, kt, A0, A1, AT, TN, TK, TB, CN, CB)
        acc = acc + part * ct.load(na, (nt, g), (TN, 1), check_bounds=CN).astype(ct.float32)
        if B0 > 0:
            part = _pass_part(xb, b0, b1, cb_, qb, nt, bt, kt, B0, B1, BT, TN, TK, TB, CN, CB)
            acc = acc + part * ct.load(nb, (nt, g), (TN, 1), check_bounds=CN).astype(ct.float32)
    res = ct.transpose(acc)
    if SPLIT == 1:
        if HAS_BIAS:
            res = res + ct.load(bias, (0, nt), (1, TN), check_bounds=CN).astype(ct.float32)
        ct.store(out, (bt, nt), res.astype(out.dtype), check_bounds=CN or CB)
    else:
        ct.store(out, (sk, bt, nt), res.reshape((1, TB, TN)), check_bounds=CN or CB)


# ---------------------------------------------------------------------------
# Batch-1 decode (GEMV) variant.
# With one activation row the tensor cores would multiply a 16-column x^T that is 15/16
# padding, and the per-tile [TN, TB] partials cost as much as the dequant.  Instead each
# pass keeps a 2-D fp32 accumulator [TN, TK*p/8] (one FMA per weight, no reduction inside
# the K loop; a single row sum at the end).  For polynomial codebooks the group norm is
# folded into the per-row Horner coefficients (c_j' * norm[n], a [TN, 1] column per
# term, once per K tile), so a weight costs shift, mask, magic-number convert, the
# Horner chain and one FMA, with no table and no norm multiply.  Lookup codebooks
# gather the level and multiply by the norm column.
# ---------------------------------------------------------------------------
def _gemv_pass(acc, xs, pl0, pl1, coef, cb, nrm, nt, kt, P0: ConstInt, P1: ConstInt, T: ConstInt,
               TN: ConstInt, TK: ConstInt, CN: ConstBool):
    V = 8 // P0
    TKB = TK * P0 // 8
    BITS = P0 + P1
    byt = ct.load(pl0, (nt, kt), (TN, TKB), check_bounds=CN).astype(ct.int32)
    if T < 0:
        # Byte-pair table: per byte one gather, the two slices' FMAs, one norm multiply.
        lo, hi = pair_f32(ct.gather(cb, byt, check_bounds=False), T)
        x0 = ct.load(xs, (0, 0, kt), (1, 1, TKB), check_bounds=False).reshape((1, TKB)).astype(ct.float32)
        x1 = ct.load(xs, (1, 0, kt), (1, 1, TKB), check_bounds=False).reshape((1, TKB)).astype(ct.float32)
        return acc + (lo * x0 + hi * x1) * nrm
    hi_bytes = byt
    if P1 > 0:
        hi_bytes = ct.load(pl1, (nt, kt), (TN, TK // 8), check_bounds=CN).astype(ct.int32).reshape((TN, TK // 32, 4))
    for s in ct.static_iter(range(V)):
        idx = slice_index(byt, hi_bytes, s, P0, P1, TN, TKB)
        xt = ct.load(xs, (s, 0, kt), (1, 1, TKB), check_bounds=False).reshape((1, TKB)).astype(ct.float32)
        if T == 0:
            lev = ct.gather(cb, idx, check_bounds=False) * nrm
        elif T > FP16_TERMS:
            lev = levels16(idx, coef, BITS, T - FP16_TERMS).astype(ct.float32) * nrm
        else:
            u_max = ((1 << BITS) - 1) * 0.5
            w = (ct.bitcast(idx | 0x4B000000, ct.float32) - 8388608.0) - u_max
            w2 = w * w
            h = ct.load(coef, (T - 1,), ()) * nrm
            for j in ct.static_iter(range(T - 2, -1, -1)):
                h = h * w2 + ct.load(coef, (j,), ()) * nrm
            lev = h * w
        acc = acc + lev * xt
    return acc


@ct.kernel
def fused_gemv_kernel(out, bias, xa, a0, a1, na, ca, qa, xb, b0, b1, nb, cb_, qb,
                      k_tiles, tiles_per_group,
                      A0: ConstInt, A1: ConstInt, AT: ConstInt,
                      B0: ConstInt, B1: ConstInt, BT: ConstInt,
                      TN: ConstInt, TK: ConstInt, SPLIT: ConstInt, HAS_BIAS: ConstBool, CN: ConstBool):
    # Same arguments as fused_matmul_kernel (x has one row); out: [1, N] or fp32 [SPLIT, 1, N].
    nt = ct.bid(0)
    sk = ct.bid(1)
    k_begin, k_end = split_range(k_tiles, sk, SPLIT)
    acc_a = ct.zeros((TN, TK * A0 // 8), ct.float32)
    acc_b = ct.zeros((TN, TK * max(B0, 1) // 8), ct.float32)
    for kt in range(k_begin, k_end):
        g = kt // tiles_per_group
        nrm = ct.load(na, (nt, g), (TN, 1), check_bounds=CN).astype(ct.float32)
        acc_a = _gemv_pass(acc_a, xa, a0, a1, ca, qa, nrm, nt, kt, A0, A1, AT, TN, TK, CN)
        if B0 > 0:
            nrm_b = ct.load(nb, (nt, g), (TN, 1), check_bounds=CN).astype(ct.float32)
            acc_b = _gemv_pass(acc_b, xb, b0, b1, cb_, qb, nrm_b, nt, kt, B0, B1, BT, TN, TK, CN)
    res = ct.sum(acc_a, 1).reshape((1, TN))
    if B0 > 0:
        res = res + ct.sum(acc_b, 1).reshape((1, TN))
    if SPLIT == 1:
        if HAS_BIAS:
            res = res + ct.load(bias, (0, nt), (1, TN), check_bounds=CN).astype(ct.float32)
        ct.store(out, (0, nt), res.astype(out.dtype), check_bounds=CN)
    else:
        ct.store(out, (sk, 0, nt), res.reshape((1, 1, TN)), check_bounds=CN)
