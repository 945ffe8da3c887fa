# Index extraction and codebook levels, shared by the cuTile kernels (fused.py, dequant.py).
#
# Packed layout (tq/packing.py).  A plane of width p stores v = 8/p slices of each
# 32-column block in the bit fields of 32/v bytes; slice s of a byte tile is
# (bytes >> s*p) & (2^p - 1).  A 3-bit index is a 2-bit plane (low bits) plus a 1-bit
# plane (high bit): in the 2-bit plane's slice s (columns 8s..8s+7 of each block) the
# high bits are bits 2s (columns 8s..8s+3) and 2s+1 (8s+4..8s+7) of the 1-bit plane's
# 4 bytes per block, joined with one concatenate per slice.
#
# Level modes, by the constant T of a pass:
#   T > 0   polynomial codebook: odd polynomial with T terms, Horner in registers
#           (magic-number int -> float, no table);
#   T == 0  lookup codebook: one gather per weight from the fp32 table of levels / sqrt(G);
#   T < 0   4-bit lookup codebook through a byte-PAIR table: entry b (256 int32) holds
#           level[b & 15] in its low 16 bits and level[b >> 4] in its high 16 bits, as
#           bf16 (T == -1) or fp16 (T == -2).  Byte j of a 4-bit block holds column j
#           (low nibble, slice 0) and column j + 16 (high nibble, slice 1), so one gather
#           per byte yields both slices' levels: half the gathers, no nibble arithmetic.
#           cuTile has no byte-permute or register-table primitive (the Triton backend
#           uses PTX prmt); on the H100 this table was 2-3x faster than a gather per weight.
import cuda.tile as ct

ConstInt = ct.Constant[int]


def slice_index(byt, hi_bytes, s, P0: ConstInt, P1: ConstInt, TN: ConstInt, TKB: ConstInt):
    # int32 indices of slice s of a [TN, TKB] byte tile (plus the high-bit plane when P1 > 0).
    if 8 // P0 == 1:
        idx = byt
    else:
        idx = (byt >> (s * P0)) & ((1 << P0) - 1)
    if P1 > 0:
        hi = ct.cat(((hi_bytes >> (2 * s)) & 1, (hi_bytes >> (2 * s + 1)) & 1), 2).reshape((TN, TKB))
        idx = idx | (hi << P0)
    return idx


def levels(idx, coef, cb, BITS: ConstInt, T: ConstInt):
    # idx: int32 tile of codebook indices -> levels (already scaled by 1/sqrt(G)); T >= 0:
    # fp32, or fp16 for the packed-fp16 Horner chain (T > FP16_TERMS).
    if T == 0:
        return ct.gather(cb, idx, check_bounds=False)
    if T > FP16_TERMS:
        return levels16(idx, coef, BITS, T - FP16_TERMS)
    u_max = ((1 << BITS) - 1) * 0.5
    # 2^23 + u_max is not representable in fp32 (u_max has a .5), so two exact subtractions.
    w = (ct.bitcast(idx | 0x4B000000, ct.float32) - 8388608.0) - u_max
    w2 = w * w
    h = ct.load(coef, (T - 1,), ())
    for j in ct.static_iter(range(T - 2, -1, -1)):
        h = h * w2 + ct.load(coef, (j,), ())
    return h * w


# T = FP16_TERMS + t: the same odd polynomial with t terms, evaluated in fp16, two weights per
# instruction (cuTile compiles fp16 tile arithmetic to HFMA2/HMUL2/HADD2).  In u = idx - u_max
# (exact) and s = u^2 / u_max^2 (one rounding), level = u * sum_j b_j s^j; the coefficients
# b_j = c'_j u_max^(2j) keep every intermediate in fp16's normal range.  The host emulates
# this exact sequence (dispatch.fp16_levels) and takes the mode only where every level lands
# within FIT16_TOL of the exact one.
FP16_TERMS = 16


def levels16(idx, coef, BITS: ConstInt, T: ConstInt):
    u_max = ((1 << BITS) - 1) * 0.5
    f = ct.bitcast((idx | 0x6400).astype(ct.int16), ct.float16)   # 1024 + idx, exact
    u = (f - 1024.0) - u_max                                      # exact half-integers
    s = (u * u) * (1.0 / (u_max * u_max))
    h = ct.load(coef, (T - 1,), ()).astype(ct.float16)
    for j in ct.static_iter(range(T - 2, -1, -1)):
        h = h * s + ct.load(coef, (j,), ()).astype(ct.float16)
    return h * u


def pair_f32(v, T: ConstInt):
    # v: int32 tile of byte-pair table entries -> (slice 0, slice 1) levels in fp32.
    if T == -1:
        # bf16 bits are the top half of an fp32: one shift or one mask, no conversion.
        return ct.bitcast(v << 16, ct.float32), ct.bitcast(v & -65536, ct.float32)
    lo, hi = pair_halves(v, T)
    return lo.astype(ct.float32), hi.astype(ct.float32)


def pair_halves(v, T: ConstInt):
    # v -> (slice 0, slice 1) levels as 16-bit tiles (bf16 for T == -1, fp16 for T == -2).
    lo = (v & 0xFFFF).astype(ct.uint16)
    hi = ((v >> 16) & 0xFFFF).astype(ct.uint16)
    if T == -1:
        return ct.bitcast(lo, ct.bfloat16), ct.bitcast(hi, ct.bfloat16)
    return ct.bitcast(lo, ct.float16), ct.bitcast(hi, ct.float16)
