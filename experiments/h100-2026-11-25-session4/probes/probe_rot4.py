# Triton rotation: elements per tile x persistent programs per SM (graph replay, 4 inputs in rotation).
import os, torch
from tq.triton import rotate as trot
from tq.rotation import rotate_torch
from tq.experiments.timing import time_op
dev = torch.device("cuda")
rows = []
for b, k in ((2048, 8192), (2048, 28672), (16, 8192), (1, 8192)):
    xs = [torch.randn(b, k, device=dev).to(torch.bfloat16) for _ in range(4)]
    ref = rotate_torch(xs[0].float(), 128, 5, k)
    for tile, pps in (("4096", 1), ("4096", 2), ("4096", 4), ("8192", 1), ("8192", 2), ("16384", 1), ("16384", 2),
                      ("32768", 1)):
        os.environ["TQ_TRITON_ROTATE_TILE"] = tile
        trot.PROGRAMS_PER_SM = pps
        trot._plan.cache_clear()
        try:
            out = trot.rotate(xs[0], 128, 5, k, torch.bfloat16)
            err = float((out.float() - ref).norm() / ref.norm())
            us = time_op(lambda i: trot.rotate(xs[i], 128, 5, k, torch.bfloat16), 4, dev, graph=True, warmup=3,
                         repeats=30).median_s * 1e6
        except Exception as e:
            print("failed", tile, pps, type(e).__name__, str(e)[:150], flush=True)
            us, err = float("nan"), float("nan")
        rows.append((b, k, tile, pps, us, err))
        print(rows[-1], flush=True)
print("\n| B | K | tile elements | programs/SM | us | err |\n|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.1f} | {r[5]:.1e} |")
