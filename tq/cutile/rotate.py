# Activation rotation on the GPU: x -> slice-planar copies of rotate(x), one cuTile launch.
#
# Math.  For each block of R = qw.rotation_block consecutive (zero-padded) columns,
#     x_rot = H_R (s * x) / sqrt(R),   H_R[i, j] = (-1)^popcount(i & j),  s = random_signs(K_pad, seed)
# (tq/rotation.py).  H_R is applied as an in-register fast Walsh-Hadamard transform:
# log2(R) butterfly stages, each one a reshape of the [TB, R] tile to
# [TB, R / 2h, 2, h], a split into the two halves and a + b / a - b.  That is exact
# fp32 arithmetic (unlike a tensor-core product against H, which would round to tf32)
# and R log2 R adds per row, trivial next to the matmul.
#
# Layout written.  The fused matmul (fused.py) reads a packed plane of width p in
# slices: slice s of each 32-column block holds columns s*(32/v) .. (s+1)*(32/v) - 1,
# v = 8/p (tq/packing.py).  So the rotation stores rotate(x) once per distinct slice
# count v that the weight's passes need, as out[s, b, blk * (32/v) + j] =
# x_rot[b, 32 * blk + s * (32/v) + j]: the activation tile matching byte tile kt of a
# plane is then the contiguous tile out[s, b-tile, kt] and the matmul needs no
# interleave at all.  Two outputs (V0, V1) cover every pass combination supported
# (e.g. 4-bit main + 2-bit residual: v = 2 and v = 4); V1 = 0 means "only one".
# The copies are in the matmul operand dtype (bf16 / fp16, or fp32 for fp32 x).
#
# Tiling.  One program per (TB rows of x, one rotation block).  TB * R is kept near
# 4096 elements so the tile stays in registers; padded columns beyond K load as zero.
import cuda.tile as ct

ConstInt = ct.Constant[int]


@ct.kernel
def rotate_kernel(x, signs, out0, out1, R: ConstInt, TB: ConstInt, V0: ConstInt, V1: ConstInt):
    bt = ct.bid(0)
    r = ct.bid(1)
    t = ct.load(x, (bt, r), (TB, R), padding_mode=ct.PaddingMode.ZERO).astype(ct.float32)
    sg = ct.load(signs, (r,), (R,)).reshape((1, R))
    t = butterfly(t * sg, TB, R, R) * (1.0 / (R ** 0.5))
    _store_slices(out0, t, bt, r, R, TB, V0)
    if V1 > 0:
        _store_slices(out1, t, bt, r, R, TB, V1)


@ct.function
def butterfly(t, TB: ConstInt, C: ConstInt, R: ConstInt):
    # H_R (unnormalized) on every R-column block of an fp32 [TB, C] tile, C a multiple of R:
    # log2(R) stages; stage h pairs element i with i + h inside chunks of 2h (never across blocks).
    for st in ct.static_iter(range(R.bit_length() - 1)):
        h = 1 << st
        t4 = t.reshape((TB, C // (2 * h), 2, h))
        a = ct.extract(t4, (0, 0, 0, 0), (TB, C // (2 * h), 1, h))
        b = ct.extract(t4, (0, 0, 1, 0), (TB, C // (2 * h), 1, h))
        t = ct.cat((a + b, a - b), 2).reshape((TB, C))
    return t


@ct.function
def _store_slices(out, t, bt, r, R: ConstInt, TB: ConstInt, V: ConstInt):
    # out is [V, B, K_pad / V]; slice s of every 32-column block goes to out[s].
    w = 32 // V
    t4 = t.reshape((TB, R // 32, V, w))
    for s in ct.static_iter(range(V)):
        piece = ct.extract(t4, (0, 0, s, 0), (TB, R // 32, 1, w)).reshape((1, TB, R // V))
        ct.store(out, (s, bt, r), piece.astype(out.dtype))


# Tensor-core form for bf16/fp16 x and R in dispatch.ROTATE_MMA_BLOCKS (32-128): x_rot = (s * x) @ H_R / sqrt(R).
# s * x is exact in x's dtype, H_R's entries are exact +-1 in it, and the mma accumulates
# in fp32, so this equals the butterfly up to the order of fp32 additions (both end in one
# rounding to the output dtype).  It replaces log2(R) reshape/extract/cat stages, which the
# compiler turns into register shuffles, by one mma per tile.  H_R is loaded once per program
# and the programs loop over row tiles (persistent), so it is not re-read per tile.
@ct.kernel
def rotate_mma_kernel(x, signs, hadamard, out0, out1, R: ConstInt, TB: ConstInt, V0: ConstInt, V1: ConstInt):
    r = ct.bid(1)
    h = ct.load(hadamard, (0, 0), (R, R))
    sg = ct.load(signs, (r,), (R,)).reshape((1, R)).astype(x.dtype)
    n_bt = ct.cdiv(x.shape[0], TB)
    for bt in range(ct.bid(0), n_bt, ct.num_blocks(0)):
        t = ct.load(x, (bt, r), (TB, R), padding_mode=ct.PaddingMode.ZERO)
        acc = ct.mma(t * sg, h, ct.zeros((TB, R), dtype=ct.float32))
        acc = acc * (1.0 / (R ** 0.5))
        _store_slices(out0, acc, bt, r, R, TB, V0)
        if V1 > 0:
            _store_slices(out1, acc, bt, r, R, TB, V1)
