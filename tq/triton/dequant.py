# Dequantization helpers shared by the decode and prefill kernels (inlined by Triton).
#
# Math (tq/reference/matmul.py, dequantize_columns):
#     W_rot[n, k] = sum over passes  norms[n, k // G] / sqrt(G) * level(idx[n, k])
#
# Packed layout read (tq/packing.py): every plane of width q stores, per 32-column block,
# 4q bytes; byte j of a block holds columns s * 4q + j in bit field [s*q, (s+1)*q),
# s = 0 .. 8/q - 1.  A weight whose passes use several plane widths is walked in the
# coordinates of the WIDEST plane, P ("driver" plane): a tile of TK columns is TKB =
# TK*P/8 driver bytes per row, and driver slice s of byte c is column
#     32 * (c // 4P) + s * 4P + c % 4P.
# A plane of width q == P gives slice s by one shift (by s*P, a constant) and one mask.
# A narrower plane (q < P: the 1-bit plane of 3-bit indices, or a 2-bit residual under a
# 4-bit main pass) is loaded with its bytes repeated to line up with the driver bytes
# (byte (c // 4P) * 4q + c % 4q; the repeats hit L1) and shifted by a per-column amount.
#
# Levels.  Lookup codebooks load levels[idx] from a 2^bits fp32 table (L1 resident).
# Polynomial codebooks never touch memory: with i2 = 2*idx, the magic-number trick
#     w = bitcast(i2 | 0x4B000000) - (2^23 + 2^bits - 1) = 2*idx - (2^bits - 1) = 2u
# turns the bit field into the float 2u exactly (two integer ops that fold into one LOP3,
# plus one FADD), and level = w * sum_j d_j (w^2)^j with d_j = c_j / (2^bits - 1)^(2j+1)
# (the stored c_j multiply v^(2j+1), v = u / u_max = w / (2^bits - 1)).  The doubled
# index costs nothing: the field is cut out one bit lower ((b >> (sP-1)) & (mask << 1)).
# When the tile lies in one group the per-row scale norms/sqrt(G) is folded into the d_j
# (a [TN, 1] vector per tile), so the scale costs no per-weight instruction.
import triton
import triton.language as tl

MAGIC_EXPONENT = 0x4B000000  # bit pattern of 2^23: its low mantissa bits are an integer
MAX_POLY_TERMS = 8


@triton.jit
def load_plane(ptr, ld, rows, t, c, col_ok, W: tl.constexpr, P: tl.constexpr, TK: tl.constexpr,
               EVEN: tl.constexpr):
    """Bytes of one plane for the [R, TKB] driver tile of K tile t, as int32 (rows already clamped).

    ld (bytes per row) is its own argument so that Triton sees it divisible by 16 and,
    with t * (TK*W/8), proves 16-byte alignment: one 16-byte load per thread, not 16 byte loads.
    """
    if W == P:
        off = c
    else:
        off = (c // (4 * P)) * (4 * W) + c % (4 * W)
    ptrs = ptr + rows[:, None] * ld + t * (TK * W // 8) + off[None, :]
    if EVEN:
        b = tl.load(ptrs)
    else:
        b = tl.load(ptrs, mask=col_ok[None, :], other=0)
    return b.to(tl.int32)


@triton.jit
def _field(b, c, s: tl.constexpr, W: tl.constexpr, P: tl.constexpr, UP: tl.constexpr):
    """Bit field of driver slice s in a plane of width W, shifted up by UP bits."""
    m = (1 << W) - 1
    if W == P:
        sh = s * P
        if UP == 0:
            f = (b >> sh) & m
        elif sh >= UP:
            f = (b >> (sh - UP)) & (m << UP)
        else:
            f = (b << (UP - sh)) & (m << UP)
    else:
        sh = (s * (P // W) + (c % (4 * P)) // (4 * W)) * W
        f = ((b >> sh[None, :]) & m) << UP
    return f


@triton.jit
def load_scale(norm_ptr, rows, k0, n_groups, group_size, inv_sqrt_g, c, col_ok,
               P: tl.constexpr, SCALAR_SCALE: tl.constexpr, EVEN: tl.constexpr):
    """norms/sqrt(G): [R, 1] when the tile lies in one group, else [R, TKB]."""
    if SCALAR_SCALE:
        sc = tl.load(norm_ptr + rows * n_groups + k0 // group_size).to(tl.float32) * inv_sqrt_g
        return sc[:, None]
    else:
        g = (k0 + 32 * (c // (4 * P))) // group_size
        ptrs = norm_ptr + rows[:, None] * n_groups + g[None, :]
        if EVEN:
            sc = tl.load(ptrs)
        else:
            sc = tl.load(ptrs, mask=col_ok[None, :], other=0.0)
        return sc.to(tl.float32) * inv_sqrt_g


@triton.jit
def load_coefficients(cf_ptr, NT: tl.constexpr):
    """The 8 (zero-padded) Horner coefficients d_j of a pass, as scalars."""
    d0 = tl.load(cf_ptr + 0)
    d1 = tl.load(cf_ptr + 1)
    d2 = tl.load(cf_ptr + 2)
    d3 = tl.load(cf_ptr + 3)
    d4 = tl.load(cf_ptr + 4)
    d5 = tl.load(cf_ptr + 5)
    d6 = tl.load(cf_ptr + 6)
    d7 = tl.load(cf_ptr + 7)
    return d0, d1, d2, d3, d4, d5, d6, d7


@triton.jit
def _horner(w, a0, a1, a2, a3, a4, a5, a6, a7, NT: tl.constexpr):
    """w * sum_j a_j (w^2)^j for the first NT coefficients (NT is a compile-time constant)."""
    v2 = w * w
    p = a7
    if NT < 8:
        p = a6
    if NT < 7:
        p = a5
    if NT < 6:
        p = a4
    if NT < 5:
        p = a3
    if NT < 4:
        p = a2
    if NT < 3:
        p = a1
    if NT < 2:
        p = a0
    if NT > 7:
        p = p * v2 + a6
    if NT > 6:
        p = p * v2 + a5
    if NT > 5:
        p = p * v2 + a4
    if NT > 4:
        p = p * v2 + a3
    if NT > 3:
        p = p * v2 + a2
    if NT > 2:
        p = p * v2 + a1
    if NT > 1:
        p = p * v2 + a0
    return p * w


@triton.jit
def slice_value(b0, b1, c, sc, lv_ptr, a0, a1, a2, a3, a4, a5, a6, a7, s: tl.constexpr,
                P: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr, BITS: tl.constexpr,
                NT: tl.constexpr, FOLDED: tl.constexpr):
    """Scaled weights of driver slice s for one pass, fp32 [R, TKB].

    b0/b1: plane bytes (b1 unused when W1 == 0); sc: the scale ([R, 1] or [R, TKB]);
    a0..a7: Horner coefficients, already multiplied by sc when FOLDED.
    """
    if NT > 0:
        i2 = _field(b0, c, s, W0, P, 1)
        if W1 > 0:
            i2 = i2 | _field(b1, c, s, W1, P, W0 + 1)
        w = (i2 | 0x4B000000).to(tl.float32, bitcast=True) - (8388608.0 + ((1 << BITS) - 1))
        val = _horner(w, a0, a1, a2, a3, a4, a5, a6, a7, NT)
        if not FOLDED:
            val = val * sc
    else:
        idx = _field(b0, c, s, W0, P, 0)
        if W1 > 0:
            idx = idx | _field(b1, c, s, W1, P, W0)
        val = tl.load(lv_ptr + idx) * sc
    return val


@triton.jit
def pass_tile(pl0, pl1, ld0, ld1, norm_ptr, rows, t, n_groups, group_size, inv_sqrt_g, c, col_ok,
              d0, d1, d2, d3, d4, d5, d6, d7,
              P: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr, NT: tl.constexpr, TK: tl.constexpr,
              SCALAR_SCALE: tl.constexpr, EVEN: tl.constexpr):
    """Everything one pass needs for K tile t: plane bytes, scale, (scaled) coefficients."""
    k0 = t * TK
    b0 = load_plane(pl0, ld0, rows, t, c, col_ok, W0, P, TK, EVEN)
    if W1 > 0:
        b1 = load_plane(pl1, ld1, rows, t, c, col_ok, W1, P, TK, EVEN)
    else:
        b1 = b0
    sc = load_scale(norm_ptr, rows, k0, n_groups, group_size, inv_sqrt_g, c, col_ok, P, SCALAR_SCALE, EVEN)
    if NT > 0 and SCALAR_SCALE:
        return b0, b1, sc, d0 * sc, d1 * sc, d2 * sc, d3 * sc, d4 * sc, d5 * sc, d6 * sc, d7 * sc
    else:
        return b0, b1, sc, d0, d1, d2, d3, d4, d5, d6, d7
