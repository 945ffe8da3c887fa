# Prefill kernel: y = x_rot @ W_rot.T for large batches, on the tensor cores.
# Reference: tq/reference/matmul.py (matmul_float64).
#
# Math.  As in decode.py: every K tile of W_rot is rebuilt in registers from the packed
# planes (all passes summed, per-group scale folded in), then multiplied in.
#
# Layout.  Reads [BN, TKB] byte tiles of every plane (dequant.py explains the driver
# slices) and, per driver slice s, the [TKB, BM] block of x_rot^T whose columns are the
# slice's columns (runs of 4P consecutive activations: full 32-byte sectors).
#
# Tiling.  One program computes a [BN, BM] block of y^T (BN output features x BM batch
# rows): the dequantized weight tile is the A operand of tl.dot, straight from registers,
# and x_rot^T the B operand ("swap AB": the operand built in registers is the one the
# tensor cores can take from registers).  Accumulation is fp32; operands are the
# activation's dtype (bf16/fp16), or fp32 with input_precision "ieee" for fp32
# activations.  The dequant of a weight tile is paid once per BM batch rows, so BM is
# large (64-256); programs are ordered in groups of GROUP_M batch blocks that share
# weight tiles, so a weight tile is read from HBM about once and reused from L2.
import triton
import triton.language as tl

from .dequant import load_coefficients, pass_tile, slice_value
from .tiles import grouped_block


@triton.jit
def prefill_kernel(x_ptr, y_ptr, bias_ptr,
                   a_pl0, a_pl1, a_ld0, a_ld1, a_norm, a_lv, a_cf,
                   r_pl0, r_pl1, r_ld0, r_ld1, r_norm, r_lv, r_cf,
                   B, N, k_padded, n_groups, group_size, inv_sqrt_g, n_tiles, ld_x, ld_y,
                   P: tl.constexpr, BITS0: tl.constexpr, W00: tl.constexpr, W01: tl.constexpr, NT0: tl.constexpr,
                   BITS1: tl.constexpr, W10: tl.constexpr, W11: tl.constexpr, NT1: tl.constexpr,
                   BN: tl.constexpr, BM: tl.constexpr, TK: tl.constexpr, GROUP_M: tl.constexpr,
                   HAS_BIAS: tl.constexpr, SCALAR_SCALE: tl.constexpr, EVEN: tl.constexpr,
                   OPERAND_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, PREC: tl.constexpr):
    TKB: tl.constexpr = TK * P // 8
    LP: tl.constexpr = 4 * P
    NS: tl.constexpr = 8 // P
    pid = tl.program_id(0)
    rows_raw, rows, bcol_raw, bcol = grouped_block(pid, B, N, BN, BM, GROUP_M)
    c = tl.arange(0, TKB)
    col_in_block = 32 * (c // LP) + c % LP
    e0, e1, e2, e3, e4, e5, e6, e7 = load_coefficients(a_cf, NT0)
    f0, f1, f2, f3, f4, f5, f6, f7 = load_coefficients(r_cf, NT1)
    acc = tl.full([BN, BM], 0.0, tl.float32)
    for t in range(0, n_tiles):
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
            xptrs = x_ptr + bcol[None, :] * ld_x + xcol[:, None]
            if EVEN:
                xt = tl.load(xptrs)
            else:
                xt = tl.load(xptrs, mask=col_ok[:, None], other=0.0)
            acc = tl.dot(w.to(OPERAND_DTYPE).to(DOT_DTYPE), xt.to(OPERAND_DTYPE).to(DOT_DTYPE), acc,
                             input_precision=PREC)
    n_ok = rows_raw < N
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rows, mask=n_ok, other=0.0).to(tl.float32)[:, None]
    ptrs = y_ptr + bcol_raw[None, :] * ld_y + rows_raw[:, None]
    tl.store(ptrs, acc.to(y_ptr.dtype.element_ty), mask=n_ok[:, None] & (bcol_raw < B)[None, :])
