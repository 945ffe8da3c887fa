# Row-chunk dequantization for the chunked prefill (tq/chunked.py): out = W_rot[rows], natural order.
#
# Math.  out[r, k] = sum_passes norms[row0 + r, k // G] * level(idx[row0 + r, k]), with the
# levels already scaled by 1/sqrt(G) (levels.py), computed in fp32 and rounded once to
# out's dtype (bf16 / fp16).  cuBLAS then multiplies x_rot by this chunk, so the chunk
# must be in x_rot's natural column order.
#
# Layout.  A pass's byte tile [TN, TK*p/8] yields v = 8/p slice tiles of [TN, TK/v];
# slice s covers columns 32*blk + s*(32/v) + j.  Reshaped to [TN, TK/32, 1, 32/v] and
# concatenated along the third axis, they form the natural [TN, TK] tile, which is
# stored with one wide store.
#
# Tiling.  One program per (TN rows of the chunk, one K tile of TK <= G columns), so the
# norm is one value per row.  The kernel is memory bound (it reads p/8 bytes and writes 2
# bytes per weight); it runs on a side stream, overlapped with cuBLAS.
import cuda.tile as ct

from .levels import levels, pair_f32, slice_index

ConstInt = ct.Constant[int]
ConstBool = ct.Constant[bool]


def _cols(t, TN: ConstInt, TK: ConstInt, V: ConstInt):
    # slice tile [TN, TK/V] -> [TN, TK/32, 1, 32/V], ready to be joined along axis 2
    return t.reshape((TN, TK // 32, 1, 32 // V))


def _pass_tile(pl0, pl1, coef, cb, nt, kt, P0: ConstInt, P1: ConstInt, T: ConstInt,
               TN: ConstInt, TK: ConstInt, CN: ConstBool):
    # fp32 levels of one pass's [TN, TK] tile in natural column order (V = 8 / P0 in 1, 2, 4).
    V = 8 // P0
    TKB = TK * P0 // 8
    byt = ct.load(pl0, (nt, kt), (TN, TKB), check_bounds=CN).astype(ct.int32)
    if T < 0:
        lo, hi = pair_f32(ct.gather(cb, byt, check_bounds=False), T)
        return ct.cat((_cols(lo, TN, TK, 2), _cols(hi, TN, TK, 2)), 2).reshape((TN, TK))
    if V == 1:
        return levels(byt, coef, cb, P0 + P1, T).astype(ct.float32)
    hi_bytes = byt
    if P1 > 0:
        hi_bytes = ct.load(pl1, (nt, kt), (TN, TK // 8), check_bounds=CN).astype(ct.int32).reshape((TN, TK // 32, 4))
    l0 = _cols(levels(slice_index(byt, hi_bytes, 0, P0, P1, TN, TKB), coef, cb, P0 + P1, T).astype(ct.float32),
               TN, TK, V)
    l1 = _cols(levels(slice_index(byt, hi_bytes, 1, P0, P1, TN, TKB), coef, cb, P0 + P1, T).astype(ct.float32),
               TN, TK, V)
    if V == 2:
        return ct.cat((l0, l1), 2).reshape((TN, TK))
    l2 = _cols(levels(slice_index(byt, hi_bytes, 2, P0, P1, TN, TKB), coef, cb, P0 + P1, T).astype(ct.float32),
               TN, TK, V)
    l3 = _cols(levels(slice_index(byt, hi_bytes, 3, P0, P1, TN, TKB), coef, cb, P0 + P1, T).astype(ct.float32),
               TN, TK, V)
    return ct.cat((ct.cat((l0, l1), 2), ct.cat((l2, l3), 2)), 2).reshape((TN, TK))


@ct.kernel
def dequant_kernel(out, a0, a1, na, ca, qa, b0, b1, nb, cb_, qb, row_tile0, tiles_per_group,
                   A0: ConstInt, A1: ConstInt, AT: ConstInt, B0: ConstInt, B1: ConstInt, BT: ConstInt,
                   TN: ConstInt, TK: ConstInt, CN: ConstBool):
    # out: chunk buffer [>= rows, K_pad]; the chunk starts at weight row row_tile0 * TN.
    # Pass arguments as in fused.py (B0 == 0: no residual pass).
    nt = ct.bid(0)
    kt = ct.bid(1)
    rt = row_tile0 + nt
    g = kt // tiles_per_group
    w = _pass_tile(a0, a1, ca, qa, rt, kt, A0, A1, AT, TN, TK, CN) * ct.load(na, (rt, g), (TN, 1), check_bounds=CN).astype(ct.float32)
    if B0 > 0:
        w = w + _pass_tile(b0, b1, cb_, qb, rt, kt, B0, B1, BT, TN, TK, CN) * ct.load(nb, (rt, g), (TN, 1), check_bounds=CN).astype(ct.float32)
    # (the chunk buffer has a multiple of 128 >= TN rows and K_pad columns: never out of bounds)
    ct.store(out, (nt, kt), w.astype(out.dtype), check_bounds=False)


# The weight-basis form (TQ_PREFILL_UNROTATE=1, where a K tile is one rotation block, TK == R): each tile of
# W_rot is rotated back, W_hat = (W_rot @ H_R) * s / sqrt(R) (tq/triton/unrotate.py has the
# derivation), so cuBLAS multiplies the caller's x and the prefill has no activation rotation.
# Per pass the levels (rounded to fp16: tables are fp16 already) go through one mma against
# H_R (exact +-1 in fp16, fp32 accumulation); the norm (one per row: TK divides G) and
# s / sqrt(R) per column are applied in fp32, and W_hat is rounded once.  H_R is loaded once
# per program; programs loop over K tiles.
@ct.kernel
def unrotate_kernel(out, signs, hadamard, a0, a1, na, ca, qa, b0, b1, nb, cb_, qb, row_tile0, tiles_per_group,
                    A0: ConstInt, A1: ConstInt, AT: ConstInt, B0: ConstInt, B1: ConstInt, BT: ConstInt,
                    TN: ConstInt, TK: ConstInt, CN: ConstBool):
    nt = ct.bid(0)
    rt = row_tile0 + nt
    h = ct.load(hadamard, (0, 0), (TK, TK))
    for kt in range(ct.bid(1), ct.cdiv(out.shape[1], TK), ct.num_blocks(1)):
        g = kt // tiles_per_group
        la = _pass_tile(a0, a1, ca, qa, rt, kt, A0, A1, AT, TN, TK, CN).astype(ct.float16)
        w = ct.mma(la, h, ct.zeros((TN, TK), dtype=ct.float32)) * \
            ct.load(na, (rt, g), (TN, 1), check_bounds=CN).astype(ct.float32)
        if B0 > 0:
            lb = _pass_tile(b0, b1, cb_, qb, rt, kt, B0, B1, BT, TN, TK, CN).astype(ct.float16)
            w = w + ct.mma(lb, h, ct.zeros((TN, TK), dtype=ct.float32)) * \
                ct.load(nb, (rt, g), (TN, 1), check_bounds=CN).astype(ct.float32)
        sg = ct.load(signs, (kt,), (TK,)).reshape((1, TK)) * (1.0 / (TK ** 0.5))
        ct.store(out, (nt, kt), (w * sg).astype(out.dtype), check_bounds=False)
