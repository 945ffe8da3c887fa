# Program -> output block mapping shared by the tensor-core kernels (prefill.py, lutmm.py).
import triton
import triton.language as tl


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
