import os, torch, tq
from tq.triton import rotate as trot
from tq.experiments.timing import time_op
dev, bf = "cuda", torch.bfloat16
for tile in ("8192", "16384", "32768"):
    os.environ["TQ_TRITON_ROTATE_TILE"] = tile
    trot._plan.cache_clear()
    for b, k in ((2048, 8192), (2048, 28672), (16, 8192), (1, 8192)):
        x = torch.randn(b, k, device=dev).to(bf)
        ref = trot.rotate(x, 128, 5, k, torch.float32)
        t = time_op(lambda i: trot.rotate(x, 128, 5, k, bf), 1, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
        err = (trot.rotate(x, 128, 5, k, bf).float() - ref).norm() / ref.norm()
        print(f"tile {tile:5s} B={b:5d} K={k}: {t:6.1f} us  {b*k*4/t/1e3:5.0f} GB/s  err {err:.1e}", flush=True)
