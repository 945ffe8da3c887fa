# Offline (no GPU): registers, spills and K-loop SASS of the word-decode variants (word_variants.py)
# on the AOT variants of compile.variants(SET) whose name contains MATCH, sm_90.  (The JIT compiles
# the real arrays differently: the AOT cubins show no cp.async for the norms; Nsight on the GPU does.)
# Run from the repository root:
#   PYTHONPATH=$PWD python experiments/h200-2026-12-03-session15/probes/sass_variants.py [SET [MATCH [name/TN,...]]]
import dataclasses
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import word_variants as wv  # noqa: E402
from tq import sass  # noqa: E402
from tq.cutile import compile as aot  # noqa: E402

base = [v for v in aot.variants(sys.argv[1] if len(sys.argv) > 1 else "default") if v.kernel == "words"
        and (sys.argv[2] if len(sys.argv) > 2 else "4-bit T=5") in v.name]
seen = set()
PAIRS = [("rownorms+nopdlred", 128), ("nopdlred", 128), ("today", 128), ("pdlred", 128),
         ("nprefetch+rownorms+nopdlred", 128), ("nprefetch+nopdlred", 128), ("lat+rownorms+nopdlred", 128),
         ("halves+rownorms+nopdlred", 128), ("occ3+rownorms+nopdlred", 64), ("occ4+rownorms+nopdlred", 64)]
if len(sys.argv) > 3:
    PAIRS = [(s.split("/")[0], int(s.split("/")[1])) for s in sys.argv[3].split(",")]
for name, tn in PAIRS:
    for v in base:
        p = list(v.params)
        p[5] = tn
        key = (name, tn, tuple(p))
        if key in seen:
            continue
        seen.add(key)
        wv.use(name, tn)
        vv = dataclasses.replace(v, params=tuple(p))
        cub = aot.cubin(vv, "sm_90")
        head, tail = v.name.split(" TN=")
        label = f"{name:28s} {head} TN={tn} {tail.split(' ', 1)[1]} regs={sass.registers(cub)}"
        try:
            print(sass.report(label, sass.disassemble(cub), 8), flush=True)
        except RuntimeError as e:   # (nvdisasm 13.x fails on a few cubins of tileiras 13.4)
            print(f"{label}: {str(e)[:80]}", flush=True)
