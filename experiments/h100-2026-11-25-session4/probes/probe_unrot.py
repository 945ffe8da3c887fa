# The chunk kernels alone: dequant (W_rot) vs unrotate (W_hat), 2048 rows of 8192x8192 and 1152 of 8192x28672.
import torch, tq, itertools
from tq.triton import dispatch as td
from tq.cutile import dispatch as cd
from tq.experiments.timing import time_op
dev = torch.device("cuda")
for n, k, rows in ((8192, 8192, 2048), (8192, 28672, 1152)):
    qw = tq.quantize(torch.randn(n, k, device=dev) * 0.02, bits=4, group_size=128, seed=3)
    prep = td.prepare_weight(qw)
    buf = torch.empty(rows, k, device=dev, dtype=torch.bfloat16)
    mb = (rows * k * 2 + rows * k // 2) / 1e6
    def t(fn):
        fn(0); torch.cuda.synchronize()
        return time_op(fn, 1, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
    us = t(lambda i: td._launch_dequant(qw, prep, buf, 2048, rows))
    print(f"{n}x{k} rows {rows}: triton dequant {us:.1f} us {mb / us:.2f} TB/s", flush=True)
    for br, pps, w in itertools.product((32, 64, 128), (1, 2, 4, 8), (4, 8)):
        td.UNROTATE_ROWS, td.UNROTATE_PROGRAMS_PER_SM, td.UNROTATE_WARPS = br, pps, w
        try:
            us = t(lambda i: td._launch_unrotate(qw, prep, buf, 2048, rows))
            print(f"  triton unrotate BR={br} pps={pps} warps={w}: {us:.1f} us {mb / us:.2f} TB/s", flush=True)
        except Exception as e:
            print(f"  triton unrotate BR={br} pps={pps} warps={w}: failed {type(e).__name__} {str(e)[:100]}", flush=True)
    td.UNROTATE_ROWS, td.UNROTATE_PROGRAMS_PER_SM, td.UNROTATE_WARPS = 64, 4, 4
    # cuTile: through a chunked call with one chunk's kernel timed via the plan's dequant closure is awkward;
    # time the whole B = 2048 call instead with each setting of the programs per SM
    import os
    x = torch.randn(2048, k, device=dev).to(torch.bfloat16)
    for unrot, pps in (("0", 4), ("1", 2), ("1", 4), ("1", 8)):
        os.environ["TQ_PREFILL_UNROTATE"] = unrot
        cd.UNROTATE_PROGRAMS_PER_SM = pps
        us = t(lambda i: tq.matmul(x, qw, backend="cutile"))
        print(f"  cutile B=2048 call unrotate={unrot} pps={pps}: {us:.1f} us", flush=True)
    os.environ["TQ_PREFILL_UNROTATE"] = "0"
    us = t(lambda i: tq.matmul(x, qw, backend="triton"))
    print(f"  triton B=2048 call unrotate=0 (rotation pps=1): {us:.1f} us", flush=True)
