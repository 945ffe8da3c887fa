# Split-K epilogue: y[b, n] = cast(sum_s ws[s, b, n] + bias[n]) in x's dtype.
#
# Math.  fused.py with SPLIT > 1 leaves SPLIT fp32 partial products of disjoint K
# ranges in the workspace ws [SPLIT, B, N]; their sum is y before bias.
# Layout.  ws is C-contiguous fp32; the output is [B, N] in the caller's dtype; the
# bias, when present, is a [1, N] view of any float dtype.
# Tiling.  One program per (TB rows, TN columns); the whole split axis (a power of
# two, at most 8) is loaded as one [SPLIT, TB, TN] tile and summed in registers, so the
# workspace is read exactly once.  A separate launch (instead of atomics into an fp32
# output) keeps the result deterministic and needs no zero-fill launch.
import cuda.tile as ct

ConstInt = ct.Constant[int]
ConstBool = ct.Constant[bool]


def split_range(k_tiles, sk, SPLIT: ConstInt):
    # the K tiles [begin, end) of split sk (the last share may be short or empty)
    per = (k_tiles + SPLIT - 1) // SPLIT
    begin = sk * per
    return begin, min(begin + per, k_tiles)


@ct.kernel
def splitk_reduce_kernel(ws, bias, out, SPLIT: ConstInt, TB: ConstInt, TN: ConstInt, HAS_BIAS: ConstBool):
    bt = ct.bid(0)
    nt = ct.bid(1)
    # (after the word decode's matmul it is a programmatic dependent launch: wait for the
    # partials; a no-op in an ordinary launch)
    ct.grid_dependency_control_wait()
    t = ct.load(ws, (0, bt, nt), (SPLIT, TB, TN))
    res = ct.sum(t, 0)
    if HAS_BIAS:
        res = res + ct.load(bias, (0, nt), (1, TN)).astype(ct.float32)
    ct.store(out, (bt, nt), res.astype(out.dtype))
