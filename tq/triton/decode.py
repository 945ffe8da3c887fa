# Decode kernel: y = x_rot @ W_rot.T for small batches (B <= DECODE_MAX_BATCH), straight from
# the packed planes.  Reference: tq/reference/matmul.py (matmul_float64).
#
# Math.  y[b, n] = sum_k x_rot[b, k] * sum_passes norms_p[n, k//G]/sqrt(G) * level_p(idx_p[n, k]);
# both passes are dequantized in the same tile and summed before the multiply, so a
# residual pass costs its bytes and its dequant, not a second reduction.
#
# Layout.  Reads the packed planes as [TN, TKB] byte tiles (TKB = TK * P / 8 driver bytes,
# see dequant.py), one contiguous run of TKB bytes per row, and the fp32 rotated
# activation (tiny) as the matching columns of each driver slice.
#
# Tiling.  Program (i, j) owns rows [i*TN, (i+1)*TN) and the j-th of SPLIT contiguous
# ranges of K tiles (split-K).  The weight is memory bound at these batch sizes, so the
# grid is sized to keep every SM streaming (N/TN * SPLIT programs, a few per SM), each
# program walks its K range tile by tile:
#   B == 1: FMA into a [TN, TKB] fp32 accumulator, one row reduction at the very end
#           (the per-group scale is folded into the weights, so no per-tile reduction);
#   B >= 2: the dequantized tile (bf16/fp16, or fp32 with exact "ieee" precision for fp32
#           activations) goes into tl.dot against x_rot^T padded to BB >= 16 columns.
# Rows past N are clamped (loads stay unmasked and vectorized; stores are masked).
# SPLIT > 1 writes fp32 partials [SPLIT, B, N] that finalize_kernel sums (+ bias).
import triton
import triton.language as tl

from .dequant import load_coefficients, pass_tile, slice_value


# Kernels here call only Triton builtins and jit functions of this package: the library's
# own jit helpers (tl.zeros, tl.sum, tl.cdiv) are bound to interpreter or compiler when
# triton is first imported, which breaks the CPU interpreter if that import came first.
@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def decode_kernel(x_ptr, y_ptr, ws_ptr, bias_ptr,
                  a_pl0, a_pl1, a_ld0, a_ld1, a_norm, a_lv, a_cf,
                  r_pl0, r_pl1, r_ld0, r_ld1, r_norm, r_lv, r_cf,
                  B, N, k_padded, n_groups, group_size, inv_sqrt_g, tiles_per_split, n_tiles, ld_x, ld_y,
                  P: tl.constexpr, BITS0: tl.constexpr, W00: tl.constexpr, W01: tl.constexpr, NT0: tl.constexpr,
                  BITS1: tl.constexpr, W10: tl.constexpr, W11: tl.constexpr, NT1: tl.constexpr,
                  TN: tl.constexpr, TK: tl.constexpr, BB: tl.constexpr, PARTIAL: tl.constexpr,
                  HAS_BIAS: tl.constexpr, SCALAR_SCALE: tl.constexpr, EVEN: tl.constexpr,
                  OPERAND_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, PREC: tl.constexpr):
    TKB: tl.constexpr = TK * P // 8
    LP: tl.constexpr = 4 * P
    NS: tl.constexpr = 8 // P
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows_raw = pid_n * TN + tl.arange(0, TN)
    rows = tl.minimum(rows_raw, N - 1).to(tl.int64)
    c = tl.arange(0, TKB)
    col_in_block = 32 * (c // LP) + c % LP
    bcol = tl.arange(0, BB)
    brow = tl.minimum(bcol, B - 1)
    e0, e1, e2, e3, e4, e5, e6, e7 = load_coefficients(a_cf, NT0)
    f0, f1, f2, f3, f4, f5, f6, f7 = load_coefficients(r_cf, NT1)
    if BB == 1:
        acc = tl.full([TN, TKB], 0.0, tl.float32)
    else:
        acc = tl.full([TN, BB], 0.0, tl.float32)
    t_begin = pid_k * tiles_per_split
    t_end = tl.minimum(t_begin + tiles_per_split, n_tiles)
    for t in range(t_begin, t_end):
        k0 = t * TK
        col_ok = (k0 + 32 * (c // LP)) < k_padded
        b0, b1, sc, a0, a1, a2, a3, a4, a5, a6, a7 = pass_tile(
            a_pl0, a_pl1, a_ld0, a_ld1, a_norm, rows, t, n_groups, group_size, inv_sqrt_g, c, col_ok,
            e0, e1, e2, e3, e4, e5, e6, e7, P, W00, W01, NT0, TK, SCALAR_SCALE, EVEN)
        if BITS1 > 0:
            q0, q1, qs, g0, g1, g2, g3, g4, g5, g6, g7 = pass_tile(
                r_pl0, r_pl1, r_ld0, r_ld1, r_norm, rows, t, n_groups, group_size, inv_sqrt_g, c, col_ok,
                f0, f1, f2, f3, f4, f5, f6, f7, P, W10, W11, NT1, TK, SCALAR_SCALE, EVEN)
        for s in tl.static_range(NS):
            w = slice_value(b0, b1, c, sc, a_lv, a0, a1, a2, a3, a4, a5, a6, a7, s,
                            P, W00, W01, BITS0, NT0, SCALAR_SCALE)
            if BITS1 > 0:
                w += slice_value(q0, q1, c, qs, r_lv, g0, g1, g2, g3, g4, g5, g6, g7, s,
                                 P, W10, W11, BITS1, NT1, SCALAR_SCALE)
            xcol = k0 + s * LP + col_in_block
            if BB == 1:
                if EVEN:
                    xv = tl.load(x_ptr + xcol)
                else:
                    xv = tl.load(x_ptr + xcol, mask=col_ok, other=0.0)
                acc += w * xv[None, :]
            else:
                xptrs = x_ptr + brow[None, :] * ld_x + xcol[:, None]
                if EVEN:
                    xt = tl.load(xptrs)
                else:
                    xt = tl.load(xptrs, mask=col_ok[:, None], other=0.0)
                acc = tl.dot(w.to(OPERAND_DTYPE).to(DOT_DTYPE), xt.to(OPERAND_DTYPE).to(DOT_DTYPE), acc,
                             input_precision=PREC)
    if BB == 1:
        out = tl.reduce(acc, 1, _add)[:, None]
    else:
        out = acc
    n_ok = rows_raw < N
    ok = n_ok[:, None] & (bcol < B)[None, :]
    if PARTIAL:
        ptrs = ws_ptr + pid_k * B * N + bcol[None, :] * N + rows_raw[:, None]
        tl.store(ptrs, out, mask=ok)
    else:
        if HAS_BIAS:
            out += tl.load(bias_ptr + rows, mask=n_ok, other=0.0).to(tl.float32)[:, None]
        ptrs = y_ptr + bcol[None, :] * ld_y + rows_raw[:, None]
        tl.store(ptrs, out.to(y_ptr.dtype.element_ty), mask=ok)


@triton.jit
def finalize_kernel(ws_ptr, y_ptr, bias_ptr, total, N, SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr,
                    BLOCK: tl.constexpr):
    """y = sum over the SPLIT fp32 partials (+ bias), in y's dtype (y is [B, N] contiguous)."""
    off = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = off < total
    acc = tl.full([BLOCK], 0.0, tl.float32)
    for s in tl.static_range(SPLIT):
        acc += tl.load(ws_ptr + s * total + off, mask=ok, other=0.0)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + off % N, mask=ok, other=0.0).to(tl.float32)
    tl.store(y_ptr + off, acc.to(y_ptr.dtype.element_ty), mask=ok)
