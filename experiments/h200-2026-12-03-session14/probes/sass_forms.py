# Offline (no GPU): registers and K-loop SASS size of Triton's batch 1-16 decode kernel
# (lutmma.lut4_mma_kernel, ring form, bf16, one pass) with each word lookup of asm_forms.py and
# with more row pairs per warp, compiled for sm_90 by the local Triton (the CI's 3.9; the GPU
# image has 3.6) with the batch and tiles_per_group specialized as at run time (g128: 1).
# The K loop is unrolled by 2: its count is per 2 K tiles (the second loop is the remainder).
# Run from the repository root: PYTHONPATH=$PWD python experiments/h200-2026-12-03-session14/probes/sass_forms.py
import collections
import glob
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import tq.triton.lutmma as lutmma

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from asm_forms import WORDS, ptx_form  # noqa: E402

CUOBJDUMP = glob.glob(triton.__path__[0] + "/backends/nvidia/bin/cuobjdump")[0]


def build(asm, bb, bn, warps, depth, cap, batch):
    kernel = lutmma.lut4_mma_kernel
    types = {"x_ptr": "*bf16", "y_ptr": "*bf16", "ws_ptr": "*fp32", "lock_ptr": "*i32", "bias_ptr": "*bf16",
             "inv_sqrt_g": "fp32"}
    for p in ("a", "r"):
        types.update({f"{p}_pl": "*u8", f"{p}_norm": "*fp16", f"{p}_lv": "*fp32"})
        types.update({f"{p}_{t}": "i64" for t in ("lp", "ln", "hp", "hn")})
    consts = dict(BN=bn, BB=bb, WARPS=warps, RESIDUAL=False, PARTIAL=False, HAS_BIAS=False, USE_ASM=True,
                  ASM_A=asm, ASM_R=asm, UNROLL=2, DEPTH=depth, tiles_per_group=1, B=batch)
    names = kernel.arg_names
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
             if n not in consts and (types.get(n, "i32").startswith("*") or n in ("ld_pl", "ld_x", "ld_y", "N"))}
    sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in names}
    opts = {"num_warps": warps, "num_stages": 1, "maxnreg": cap or 255}
    c = triton.compile(ASTSource(kernel, sig, consts, attrs), target=GPUTarget("cuda", 90, 32), options=opts)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(c.asm["cubin"])
        f.flush()
        sass = subprocess.run([CUOBJDUMP, "-sass", f.name], capture_output=True, text=True).stdout
        res = subprocess.run([CUOBJDUMP, "-res-usage", f.name], capture_output=True, text=True).stdout
    lines = [(int(a, 16), i.strip()) for a, i in re.findall(r"^\s+/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass, flags=re.M)]
    loops = []
    for a, ins in lines:
        m = re.search(r"BRA\s+0x([0-9a-f]+)", ins)
        if m and int(m.group(1), 16) < a:
            loops.append([i for b, i in lines if int(m.group(1), 16) <= b <= a])
    regs = int(re.search(r"REG:(\d+)", res).group(1))
    spills = len(re.findall(r"\b(?:LDL|STL)\b", sass))
    return regs, spills, loops


print(f"triton {triton.__version__}; sm_90; main K loop = 2 tiles")
print("form      BB   B  rows warps depth cap | regs spill-ops | K loop  (PRMT LOP3 IMAD.HI HMMA LDG.128)")
rows = [(f, bb, 1 if bb == 8 else 16, 128, 8, 2, 128) for f in WORDS for bb in (8, 16)]
rows += [(f, 8, 1, 64, 4, 2, 128) for f in WORDS]
# (probe_rowpairs: B = 8)
rows += [("today", 8, 8, bn, w, d, cap) for bn, w, d, cap in
         [(128, 8, 2, 128), (128, 4, 2, 128), (128, 4, 1, 128), (128, 4, 2, 0), (256, 8, 1, 0), (256, 8, 2, 0),
          (256, 4, 1, 0)]]
for form, bb, batch, bn, warps, depth, cap in rows:
    regs, spills, loops = build(ptx_form(form)("bf16", bb, True), bb, bn, warps, depth, cap, batch)
    h = collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", i).split()[0] for i in loops[0])
    mix = " ".join(str(h[k]) for k in ("PRMT", "LOP3.LUT", "IMAD.HI.U32", "HMMA.16816.F32.BF16", "LDG.E.128"))
    print(f"{form:9s} {bb:2d} {batch:3d} {bn:5d} {warps:4d} {depth:5d} {cap or '-':>3} | {regs:4d} {spills:6d}     | "
          f"{len(loops[0]):5d}   ({mix})", flush=True)
