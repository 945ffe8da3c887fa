# Two trims of the decode kernels' K loop (tq/triton/lutmma.py), old and new kernels in one
# process: "before" (the library's lutmma.py), "both" (that source with epilogue.patch applied: at
# B <= 8 the FFMAs of the accumulator's batch 8-15 columns skipped, 8 of 16 per 2 K tiles, and
# 1/sqrt(G) applied once after the loop instead of once per row and tile) and "deadcols" (the
# first trim alone), the variants built as modules of their own at run time.  (The logged run
# imported the same three sources from copies, with the patch applied to the library.)  The
# library's tuner in each (two interleaved rounds, each re-tuned); whole call, CUDA-graph replay,
# weights in rotation, outputs checked against the float64 reference; cuBLAS bf16 timed the same
# way (B = 16: one round).  Run from the repository root with PYTHONPATH=$PWD.
import importlib.util
import os
import tempfile

import torch

import tq
from tq.experiments.timing import time_op
from tq.reference import matmul_float64
from tq.triton import dispatch as td
from tq.triton import launch, lutmma

HERE = os.path.dirname(os.path.abspath(__file__))


def patched(source: str, patch: str) -> str:
    """source with each hunk of a one-file unified diff applied (its context and removed lines,
    found exactly once, replaced by its context and added lines)."""
    for hunk in patch.split("\n@@")[1:]:
        body = hunk.split("\n")[1:]
        old = "\n".join(ln[1:] for ln in body if ln[:1] in (" ", "-"))
        new = "\n".join(ln[1:] for ln in body if ln[:1] in (" ", "+"))
        assert source.count(old) == 1, hunk[:80]
        source = source.replace(old, new)
    return source


def module(name: str, source: str):
    """A module of its own from lutmma.py-like source (absolute imports; Triton reads the file)."""
    path = os.path.join(tempfile.mkdtemp(), f"{name}.py")
    with open(path, "w") as f:
        f.write(source.replace("from .lut4 import", "from tq.triton.lut4 import")
                .replace("from .tiles import", "from tq.triton.tiles import"))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


with open(lutmma.__file__) as f:
    BEFORE = f.read()
with open(os.path.join(HERE, "epilogue.patch")) as f:
    BOTH = patched(BEFORE, f.read())
# the dead-column part alone: the patch with 1/sqrt(G) back in the per-tile scales
DEADCOLS = (BOTH.replace("n_groups, 1.0, ld_pl", "n_groups, inv_sqrt_g, ld_pl")
            .replace("n_groups, 1.0)", "n_groups, inv_sqrt_g)").replace("store_split_k(acc * inv_sqrt_g,", "store_split_k(acc,")
            .replace("lutmm.py; 1/sqrt(G), common to every group and pass, once\n    # here instead of once per row and tile)",
                     "lutmm.py)"))
FORMS = {m: (mod, launch.Launcher(mod.lut4_mma_kernel), launch.Launcher(mod.lut4_mma_tma_kernel))
         for m, mod in [("before", lutmma), ("deadcols", module("lutmma_deadcols", DEADCOLS)),
                        ("both", module("lutmma_both", BOTH))]}
saved = td.lutmma, td._mma_launcher, td._mma_tma_launcher
dev = "cuda"
g = torch.Generator().manual_seed(144)
rows = []
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    n_rot = 3 if n * k <= 8192 * 8192 else 2
    w = [(torch.randn(n, k, generator=g) * 0.02).to(dev) for _ in range(n_rot)]
    qws = [tq.quantize(wi, bits=4, group_size=128, seed=11 + i) for i, wi in enumerate(w)]
    wb = [wi.to(torch.bfloat16) for wi in w]
    del w
    for b in (1, 8, 16):
        x = torch.randn(b, k, generator=g).to(dev, torch.bfloat16)
        ref = torch.from_numpy(matmul_float64(x, qws[0])).to(dev)
        cublas = time_op(lambda i: x @ wb[i].T, n_rot, dev, graph=True, warmup=3, repeats=60).median_s * 1e6
        for rnd in range(2 if b <= 8 else 1):
            for form, (mod, ring, tma) in FORMS.items():
                td.lutmma, td._mma_launcher, td._mma_tma_launcher = mod, ring, tma
                td._tuned.clear()
                td._replays.clear()
                y = tq.matmul(x, qws[0], backend="triton")
                err = ((y.double() - ref).norm() / ref.norm()).item()
                us = time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), n_rot, dev, graph=True, warmup=3,
                             repeats=60).median_s * 1e6
                c = [v for kk, v in td._tuned.items() if kk[0] == "lut4-decode"][0]
                rows.append((f"{n}x{k}", b, rnd, form, c, us, cublas, err))
                print(rows[-1], flush=True)
        td.lutmma, td._mma_launcher, td._mma_tma_launcher = saved
    del qws, wb
    torch.cuda.empty_cache()
print(f"\n{torch.cuda.get_device_name()}; torch {torch.__version__}; triton {__import__('triton').__version__}")
print("shape        B  round  form      rows warps tma split per_split     us   x cuBLAS  rel.err")
for r in rows:
    c = r[4]
    print(f"{r[0]:11s} {r[1]:3d}  {r[2]}      {r[3]:9s} {c.bn:4d} {c.num_warps:4d} {c.tma_stages:3d} {c.split:4d} "
          f"{c.per_split:6d}   {r[5]:7.1f}  {r[6] / r[5]:5.2f}x  {r[7]:.2e}")
