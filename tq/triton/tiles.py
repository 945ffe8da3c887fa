# Program -> output block mapping shared by the tensor-core kernels (prefill.py, lutmm.py), the
# group scale and the split-K epilogue of the lut4 kernels (lutmm.py, lutmma.py, unrotate.py).
import triton
import triton.language as tl


@triton.jit
def group_scale(norm_ptr, rows, g, n_groups, inv_sqrt_g):
    """fp32 scale of group g of each row: its stored norm times inv_sqrt_g (1 / sqrt(group size))."""
    return tl.load(norm_ptr + rows * n_groups + g).to(tl.float32) * inv_sqrt_g


@triton.jit
def grouped_block(pid, B, N, BN: tl.constexpr, BM: tl.constexpr, GROUP_M: tl.constexpr):
    """Rows and batch columns of the [BN, BM] block of y^T that program pid computes.

    Programs run through GROUP_M batch blocks for each weight block before the next weight
    block, so a weight tile is read from HBM about once and reused from L2.  Returns
    (rows_raw, rows, bcol_raw, bcol): the raw indices (for store masks) and the same clamped
    to N - 1 / B - 1 as int64 (loads stay unmasked).
    """
    num_m = (B + BM - 1) // BM
    num_n = (N + BN - 1) // BN
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    group_m = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_m
    pid_n = (pid % per_group) // group_m
    rows_raw = pid_n * BN + tl.arange(0, BN)
    bcol_raw = pid_m * BM + tl.arange(0, BM)
    rows = tl.minimum(rows_raw, N - 1).to(tl.int64)
    bcol = tl.minimum(bcol_raw, B - 1).to(tl.int64)
    return rows_raw, rows, bcol_raw, bcol


@triton.jit
def store_split_k(acc, y_ptr, ws_ptr, lock_ptr, bias_ptr, rows_raw, rows, bcol_raw, B, N, ld_y, pid, pid_k, split,
                  PARTIAL: tl.constexpr, HAS_BIAS: tl.constexpr):
    """y[bcol_raw, rows_raw] = acc (+ bias), acc an fp32 [rows, batch columns] block.

    PARTIAL: split-K without a second launch: every program stores its fp32 partial in ws
    ([split, B, N]), and the last of the block's `split` programs to finish (a counter per
    output block, lock_ptr[pid]) sums them and writes y.  The barrier orders all threads'
    stores before the release of the acq_rel atomic; the counter is reset for the next call.
    """
    n_ok = rows_raw < N
    ok = n_ok[:, None] & (bcol_raw < B)[None, :]
    last = True
    if PARTIAL:
        part = ws_ptr + bcol_raw[None, :] * N + rows_raw[:, None]
        tl.store(part + pid_k * B * N, acc, mask=ok)
        tl.debug_barrier()
        count = tl.atomic_add(lock_ptr + pid, 1, sem="acq_rel")
        last = count == split - 1
        if last:
            acc = tl.full(acc.shape, 0.0, tl.float32)
            for s in range(0, split):
                acc += tl.load(part + s * B * N, mask=ok, other=0.0, cache_modifier=".cg")
            tl.atomic_xchg(lock_ptr + pid, 0)
    if last:
        if HAS_BIAS:
            acc += tl.load(bias_ptr + rows, mask=n_ok, other=0.0).to(tl.float32)[:, None]
        tl.store(y_ptr + bcol_raw[None, :] * ld_y + rows_raw[:, None], acc.to(y_ptr.dtype.element_ty), mask=ok)
