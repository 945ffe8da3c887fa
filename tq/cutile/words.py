# Word decode: batch 1-16 matmul with codebook levels made from 32-bit words in packed fp16.
#
# Why.  cuTile Python has no byte permute or register table (the Triton backend looks
# levels up with PTX prmt), so the decode evaluates the codebook as an odd polynomial.  The
# older kernels (fused.py) widen every byte to int32, build fp16 values one weight at a time
# and convert them to bf16 for the mma: about 22 SASS instructions per pair of weights.
# Here a weight costs about half of that:
#   * the plane is read as int32 words; one shift of a word puts field i of BOTH of its
#     16-bit halves at mantissa bits [m, m+p), m >= 1 (wordlevels.field); the shifted word
#     carries the OR of its fields' fp16 exponents, so one AND with one constant (one LOP3, no
#     MOV) turns both halves into the fp16 numbers 2^e + lambda * idx, lambda = 2^(1-p);
#   * reinterpreting the int32 tile as twice as many fp16 values (pack_to_bytes /
#     unpack_from_bytes) costs no instruction;
#   * u = that - (2^e + lambda * u_max) is exact, and level = u * sum_j d_j (u^2)^j runs in
#     packed fp16 (one HADD2, two HMUL2 and T - 1 HFMA2 per two weights);
#   * the activation is fp16 too, so the levels feed the mma without any conversion.
# Measured on the H100 (kernel alone, graph replay, 4-bit g128, 8192x8192 / 28672x8192 /
# 8192x28672): B = 16 29 / 89 / 89 us against 57 / 182 / 162 for the whole fused.py call.
#
# Activation.  rotate_words_kernel writes rotate(x) in fp16, scaled per (row, K tile) by a
# power of two 2^s so that the tile's largest magnitude lies in [2^14, 2^15): fp16's range
# holds any bf16 input that way, and fp16 keeps 3 more mantissa bits than bf16.  The kernel
# multiplies each K tile's [TN, TB] partial by norm[n] * 2^-s[b] (fp32), once per output.
# x's padding rows (B < TB, TB = 8 or 16) are zeros.
#
# Layouts.  Weights: plane [N, K_pad*p/8] bytes viewed as int32 [N, K_pad*p/32]; the K tile kt
# is the contiguous [TN, TK*p/32] word tile.  Field i of the halves of that tile ("slice" i)
# are the columns wordlevels.word_columns gives; rotate_words_kernel writes slice i of
# rotate(x) to out[i, b, :] in that order (for each plane width the passes use), so the mma
# partner of slice i is the contiguous tile out[i, 0:TB, kt].  Scales: xinv [K_pad/TK, TB]
# fp32 holds 2^-s.  Norms: a K tile holds part of one group (TK divides G; NG = 1) or two
# whole groups (TK = 2G at G = 128; NG = 2): one norm per row and group the tile touches, read
# from the transposed copy [K_pad/G, N] (dispatch keeps it with the words) as an [NG, TN] tile:
# rows of 2*TN bytes go through TMA and are prefetched with the word tile, where the [TN, NG]
# tile of the [N, K_pad/G] norms (2- or 4-byte rows) was a cp.async that the compute warps
# waited for in every K tile (Nsight, fifteenth session: 6-7% of their stall samples; the
# call 4-5% faster without it).
#
# 3-bit passes (P = 3) read two planes: the 2-bit plane's [TN, TK/16] word tile and the 1-bit
# plane's [TN, TK/32] one.  _combine3 merges them into words whose nibbles hold the 3-bit indices
# (bits 0-2; wordlevels.combine3 derives it), which then decode as 4-bit words with 3-bit fields.
# Their slices are the 2-bit plane's, permuted (wordlevels.THREE_BIT_SLICES), so the activation
# copy is the 2-bit order.
#
# Tiling.  Program (nt, sk): rows [nt*TN, +TN) over the sk-th share of the K tiles; fp32
# partials to a [SPLIT, TB, N] workspace summed by reduce.py (SPLIT > 1) or bias + cast in
# the epilogue (SPLIT == 1).  K tiles of 256 columns hold two norm groups at G = 128 (two
# partials, NG = 2): the fixed cost of a tile in the K loop (warpgroup fences, pipeline
# barriers, address arithmetic) is then paid once per 256 columns (SASS: 703 instead of 846
# instructions per 128 columns; H200 B = 1: 114 -> 97 us at 28672x8192).  Summing the shares
# in this kernel instead (the last share by an acq_rel atomic ticket) measured 19-53% slower:
# the release made the compiler re-pipeline the whole K loop (eighth session, probe_splitk).
# The matmul is a programmatic dependent launch of the rotation, so its launch and preamble
# overlap the rotation's tail (1-2 us).  occupancy=2 caps registers at 128 so two programs
# share an SM: one warpgroup computes per program, and the Horner chains leave it stalled half
# the time alone (measured: 28672x8192 B = 16 128 -> 100 us with the hint).
import cuda.tile as ct

from .reduce import split_range
from .rotate import butterfly

ConstInt = ct.Constant[int]
ConstBool = ct.Constant[bool]


def _spacing(P: ConstInt):
    # bits between a word's fields: P, or 4 for 3-bit indices (combined words, _combine3)
    return 4 if P == 3 else P


def _exponents(P: ConstInt):
    # OR of the fp16 exponent fields of every slice taken from one shifted word (m = 1, 1 + S, ...)
    u = 0
    for m in ct.static_iter(range(1, 9, _spacing(P))):
        u = u | ((26 - m - P) << 10)
    return u * 0x00010001


def _field_levels(shl, shr, coef, i: ConstInt, P: ConstInt, T: ConstInt, TN: ConstInt, W: ConstInt):
    # slice i of a [TN, W] word tile -> fp16 levels [TN, 2W] (wordlevels.field has the same numbers);
    # shl / shr already carry the OR of all their slices' exponents (_exponents), so one AND with
    # one constant (the field's mask and its own exponent bits) makes the fp16 number: a LOP3 of
    # (src & mask) | exponent takes two constants, and ptxas re-materialized one of them by a MOV
    # before every LOP3 (117 of 126 MOVs in a 1397-instruction K loop at 4-bit g128; one constant: 1344,
    # measured 1.6-4.4% faster on the H200, ninth session, probes/probe_lop3.log).
    o = i * _spacing(P)
    if o + _spacing(P) <= 8:
        src = shl
        m = o + 1
    else:
        src = shr
        m = o - 7
    e = 11 - m - P
    q = src & (((((1 << P) - 1) << m) | ((e + 15) << 10)) * 0x00010001)
    f = ct.unpack_from_bytes(ct.pack_to_bytes(q), ct.float16).reshape((TN, 2 * W))
    u = f - (2.0 ** e + 2.0 ** (1 - P) * ((1 << P) - 1) * 0.5)
    t = u * u
    h = ct.load(coef, (T - 1,), ()).astype(ct.float16)
    for j in ct.static_iter(range(T - 2, -1, -1)):
        h = h * t + ct.load(coef, (j,), ()).astype(ct.float16)
    return h * u


def _combine3(w, v, TN: ConstInt, W: ConstInt):
    # 3-bit indices: the 2-bit plane's words w [TN, W] and the 1-bit plane's v [TN, W/2] -> the
    # words Z_e, Z_o [TN, W] with every index in bits 0-2 of a nibble (wordlevels.combine3 has the
    # derivation): word 2b pairs with v[b] << 2 (even fields) and v[b] (odd), word 2b + 1 with
    # v[b] << 1 and v[b] >> 1; one LOP3 of (a & N) | (b & ~N) each
    vr = ct.broadcast_to(ct.expand_dims(v, 2), (TN, W // 2, 2)).reshape((TN, W))
    odd = (ct.arange(W, dtype=ct.int32) & 1).reshape((1, W))
    ze = (w & 0x33333333) | ((vr << (2 - odd)) & -0x33333334)        # (-0x33333334: ~0x33333333 as int32)
    zo = ((w >> 2) & 0x33333333) | ((vr >> odd) & -0x33333334)
    return ze, zo


def _slice_mma(lev, xw, s, kt, p0, p1, TN: ConstInt, TB: ConstInt, W: ConstInt, NG: ConstInt):
    # one slice's levels [TN, 2W] times activation slice s: into p0 (and p1, the K tile's second group)
    if NG == 1:
        xt = ct.load(xw, (s, 0, kt), (1, TB, 2 * W), check_bounds=False).reshape((TB, 2 * W))
        p0 = ct.mma(lev, ct.transpose(xt), p0)
    else:
        x0 = ct.load(xw, (s, 0, 2 * kt), (1, TB, W), check_bounds=False).reshape((TB, W))
        x1 = ct.load(xw, (s, 0, 2 * kt + 1), (1, TB, W), check_bounds=False).reshape((TB, W))
        p0 = ct.mma(ct.extract(lev, (0, 0), (TN, W)), ct.transpose(x0), p0)
        p1 = ct.mma(ct.extract(lev, (0, 1), (TN, W)), ct.transpose(x1), p1)
    return p0, p1


def _pass_part(xw, words, ones, coef, nt, kt, P: ConstInt, T: ConstInt, TN: ConstInt, TK: ConstInt, TB: ConstInt,
               NG: ConstInt, CN: ConstBool):
    # sum over slices of level_tile(i) @ x_tile(i)^T for one pass and K tile: NG fp32 [TN, TB]
    # partials, one per norm group the K tile covers (NG = 1 or 2: half h of the word tile holds
    # columns [h*TK/2, (h+1)*TK/2), and so do elements [h*W, (h+1)*W) of each activation slice)
    p0 = ct.zeros((TN, TB), ct.float32)
    p1 = ct.zeros((TN, TB), ct.float32)
    if P == 3:
        # (the 2-bit plane's tile and activation slices; `ones` holds the 1-bit plane's words)
        W = TK // 16
        ze, zo = _combine3(ct.load(words, (nt, kt), (TN, W), check_bounds=CN),
                           ct.load(ones, (nt, kt), (TN, W // 2), check_bounds=CN), TN, W)
        for z in ct.static_iter(range(2)):
            zw = ze if z == 0 else zo
            shl = (zw << 1) | _exponents(P)
            shr = (zw >> 7) | _exponents(P)
            for i in ct.static_iter(range(4)):
                lev = _field_levels(shl, shr, coef, i, P, T, TN, W)
                p0, p1 = _slice_mma(lev, xw, (i // 2) * 4 + 2 * (i % 2) + z, kt, p0, p1, TN, TB, W, NG)
        return p0, p1
    W = TK * P // 32
    w = ct.load(words, (nt, kt), (TN, W), check_bounds=CN)
    shl = (w << 1) | _exponents(P)
    shr = (w >> 7) | _exponents(P)
    for i in ct.static_iter(range(16 // P)):
        lev = _field_levels(shl, shr, coef, i, P, T, TN, W)
        p0, p1 = _slice_mma(lev, xw, i, kt, p0, p1, TN, TB, W, NG)
    return p0, p1


def _scaled_part(xw, words, ones, coef, norms, nt, kt, tiles_per_group, P: ConstInt, T: ConstInt, TN: ConstInt,
                 TK: ConstInt, TB: ConstInt, NG: ConstInt, CN: ConstBool):
    # one pass's K tile times its norms: fp32 [TN, TB]
    p0, p1 = _pass_part(xw, words, ones, coef, nt, kt, P, T, TN, TK, TB, NG, CN)
    if NG == 1:
        nrm = ct.load(norms, (kt // tiles_per_group, nt), (1, TN), check_bounds=CN)
        return p0 * ct.transpose(nrm.astype(ct.float32))
    nn = ct.transpose(ct.load(norms, (kt, nt), (2, TN), check_bounds=CN).astype(ct.float32))
    return p0 * ct.extract(nn, (0, 0), (TN, 1)) + p1 * ct.extract(nn, (0, 1), (TN, 1))


@ct.kernel(occupancy=2)
def words_matmul_kernel(out, bias, xinv, xa, wa, va, na, ca, xb, wb, vb, nb, cb_, k_tiles, tiles_per_group,
                        PA: ConstInt, TA: ConstInt, PB: ConstInt, TBT: ConstInt,
                        TN: ConstInt, TK: ConstInt, TB: ConstInt, NG: ConstInt, SPLIT: ConstInt,
                        HAS_BIAS: ConstBool, CN: ConstBool):
    # out: [B, N] in x's dtype (SPLIT == 1) or the fp32 workspace [SPLIT, TB, N]; x*: fp16
    # [16/P, TB, K_pad*P/16] (P = 3: the 2-bit plane's order); w*: int32 words (P = 3: of the 2-bit
    # plane); v*: the 1-bit plane's int32 words where P = 3 (else any int32 array, never read);
    # n*: norms transposed [K_pad/G, N]; c*: fp16-exact coefficients (fp32 array); PB == 0: no
    # residual pass.
    nt = ct.bid(0)
    sk = ct.bid(1)
    k_begin, k_end = split_range(k_tiles, sk, SPLIT)
    # (launched as a programmatic dependent of the rotation: everything above overlaps its tail;
    # a no-op in an ordinary launch)
    ct.grid_dependency_control_wait()
    # The split-K reduction, a programmatic dependent of this kernel, may launch now and wait for
    # its results (griddepcontrol.wait) instead of for this grid's end plus a launch: 0.7-0.9 us a
    # call (fifteenth session).  Released at the kernel's end instead, ptxas re-pipelined the K loop
    # (1332 -> 1418 SASS instructions) and the call ran 40-73% slower.
    ct.grid_dependency_control_launch_dependents()
    acc = ct.zeros((TN, TB), ct.float32)
    for kt in range(k_begin, k_end):
        s = _scaled_part(xa, wa, va, ca, na, nt, kt, tiles_per_group, PA, TA, TN, TK, TB, NG, CN)
        if PB > 0:
            s = s + _scaled_part(xb, wb, vb, cb_, nb, nt, kt, tiles_per_group, PB, TBT, TN, TK, TB, NG, CN)
        acc = acc + s * ct.load(xinv, (kt, 0), (1, TB), check_bounds=False)
    res = ct.transpose(acc)
    if SPLIT == 1:
        if HAS_BIAS:
            res = res + ct.load(bias, (0, nt), (1, TN), check_bounds=CN).astype(ct.float32)
        ct.store(out, (0, nt), res.astype(out.dtype))   # (checked: out has B <= TB rows)
    else:
        ct.store(out, (sk, 0, nt), res.reshape((1, TB, TN)), check_bounds=CN)


@ct.kernel
def rotate_words_kernel(x, signs, xinv, out0, out1, R: ConstInt, C: ConstInt, TK: ConstInt, TB: ConstInt,
                        P0: ConstInt, P1: ConstInt):
    # One program per C = max(R, TK) columns of all TB (padded) rows: sign flip, butterfly
    # within each R block (exact fp32, as rotate.rotate_kernel), per-(row, K tile) power-of-two
    # scale, then the slices of every plane width in fp16.  P1 == 0: one width only.
    c = ct.bid(0)
    # (lets the matmul, a programmatic dependent launch, start its preamble now; it waits for
    # this kernel's results before it reads them)
    ct.grid_dependency_control_launch_dependents()
    t = ct.load(x, (0, c), (TB, C), padding_mode=ct.PaddingMode.ZERO).astype(ct.float32)
    t = butterfly(t * ct.load(signs, (c,), (C,)).reshape((1, C)), TB, C, R)
    t3 = t.reshape((TB, C // TK, TK)) * (1.0 / (R ** 0.5))
    # 2^s with s = 14 - floor(log2(max |t|)) from the max's exponent bits; clamped so that both
    # 2^s and 2^-s are normal fp32 (all-zero tiles, i.e. padding rows, get 2^126)
    eb = (ct.bitcast(ct.max(ct.abs(t3), 2), ct.int32) >> 23) & 255
    se = ct.minimum(ct.maximum(268 - eb, 1), 253)
    scale = ct.bitcast(se << 23, ct.float32)
    ct.store(xinv, (c, 0), ct.transpose(ct.bitcast((254 - se) << 23, ct.float32)))
    ts = (t3 * scale.reshape((TB, C // TK, 1))).reshape((TB, C))
    _store_words(out0, ts, c, C, TB, P0)
    if P1 > 0:
        _store_words(out1, ts, c, C, TB, P1)


@ct.function
def _store_words(out, t, c, C: ConstInt, TB: ConstInt, P: ConstInt):
    # column 32*blk + f*4P + 2e + q goes to slice i = q*(8/P) + f, element blk*2P + e
    v = 8 // P
    t5 = t.reshape((TB, C // 32, v, 2 * P, 2))
    for i in ct.static_iter(range(16 // P)):
        piece = ct.extract(t5, (0, 0, i % v, 0, i // v), (TB, C // 32, 1, 2 * P, 1))
        ct.store(out, (i, 0, c), piece.reshape((1, TB, C * P // 16)).astype(ct.float16))
