# Offline (no GPU): registers and K-loop SASS size of Triton's batch 1-16 decode kernel
# (lutmma.lut4_mma_kernel, ring form, bf16, one pass) with each word lookup of asm_forms.py and
# with more row pairs per warp, compiled for sm_90 by the local Triton (the CI's 3.9; the GPU
# image has 3.6) with the batch and tiles_per_group specialized as at run time (g128: 1).
# The K loop is unrolled by 2: its count is per 2 K tiles (the second loop is the remainder).
# Run from the repository root: PYTHONPATH=$PWD python experiments/h200-2026-12-03-session14/probes/sass_forms.py
import collections
import os
import sys

import triton

from tq import sass
from tq.triton import aot

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from asm_forms import WORDS, ptx_form  # noqa: E402


def build(asm, bb, bn, warps, depth, cap, batch):
    v = aot.DecodeVariant(rows=bn, warps=warps, batch_tile=bb, depth=depth, maxnreg=cap or 255, batch=batch)
    cubin = aot.compile_decode(v, 90, asm=asm).asm["cubin"]
    text = sass.disassemble(cubin)
    return sass.registers(cubin), sass.spills(text), sass.hot_loop(text, longest=True)


print(f"triton {triton.__version__}; sm_90; main K loop = 2 tiles")
print("form      BB   B  rows warps depth cap | regs spill-ops | K loop  (PRMT LOP3 IMAD.HI HMMA LDG.128)")
rows = [(f, bb, 1 if bb == 8 else 16, 128, 8, 2, 128) for f in WORDS for bb in (8, 16)]
rows += [(f, 8, 1, 64, 4, 2, 128) for f in WORDS]
# (probe_rowpairs: B = 8)
rows += [("today", 8, 8, bn, w, d, cap) for bn, w, d, cap in
         [(128, 8, 2, 128), (128, 4, 2, 128), (128, 4, 1, 128), (128, 4, 2, 0), (256, 8, 1, 0), (256, 8, 2, 0),
          (256, 4, 1, 0)]]
for form, bb, batch, bn, warps, depth, cap in rows:
    regs, spills, loop = build(ptx_form(form)("bf16", bb, True), bb, bn, warps, depth, cap, batch)
    full = collections.Counter((t.split()[1] if t.startswith("@") else t.split()[0]) for t in loop.instructions)
    mix = " ".join(str(full[k]) for k in ("PRMT", "LOP3.LUT", "IMAD.HI.U32", "HMMA.16816.F32.BF16", "LDG.E.128"))
    print(f"{form:9s} {bb:2d} {batch:3d} {bn:5d} {warps:4d} {depth:5d} {cap or '-':>3} | {regs:4d} {spills:6d}     | "
          f"{len(loop.instructions):5d}   ({mix})", flush=True)
