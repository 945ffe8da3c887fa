"""Offline SASS of Triton's batch 1-16 decode kernels: registers, spills and the K loop, no GPU.

    python -m tq.triton.sass [--batch 1] [--arch 90] [--match TEXT] [--top 12]

Every tiling the decode tuner tries at that batch (dispatch.mma_tilings, the TMA forms from
sm_90) is compiled as a launch at that batch specializes it (aot.py: 4-bit g128, Lloyd-Max's symmetric
lookup, bf16, one pass) and read by tq/sass.py; the K loop reported is the longest loop with
mmas: the ring kernel's main loop covers 2 K tiles (unrolled by 2; its one-tile remainder loop is
not shown), the TMA kernel's one.  The kernel is bound by instruction issue per SM
(docs/triton.md), so its K loop's size predicts a change's worth: the fourteenth session's
lookup forms ran 380 -> 347 -> 318 instructions per 2 K tiles (the loop is unrolled by 2) and
7-8% and 8-13% faster at B = 1 on an H200.  Counts depend on the Triton version (CI's, not
necessarily the GPU image's): compare variants compiled in the same environment.
"""
from __future__ import annotations

import argparse
import sys

from .. import sass


def variants(batch: int, arch: int) -> list:
    """The decode tuner's tilings at this batch as aot.DecodeVariant (split-K factors aside)."""
    from . import aot, dispatch
    bb = 8 if batch <= 8 else 16
    return [aot.DecodeVariant(rows=bn, warps=w, batch_tile=bb, depth=d, maxnreg=cap, tma_stages=st, batch=batch)
            for bn, w, d, cap, st in dispatch.mma_tilings(bb, tma=arch >= 90)]


def report(v, arch: int = 90, top: int = 12) -> str:
    from . import aot
    cubin = aot.compile_decode(v, arch).asm["cubin"]
    regs = sass.registers(cubin)
    line = sass.report(f"{v.name} [sm_{arch}]", sass.disassemble(cubin), top, longest=True)
    return line if regs is None else line.replace(" instructions,", f" instructions, {regs} registers,", 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tq.triton.sass", description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1, help="decode batch, 1-16 (default 1)")
    ap.add_argument("--arch", type=int, default=90, help="compute capability x 10, from 80 (default 90)")
    ap.add_argument("--match", default="", help="only variants whose name contains this text (e.g. '128 rows')")
    ap.add_argument("--top", type=int, default=12, help="opcodes listed per K loop (default 12)")
    args = ap.parse_args(argv)
    if not 1 <= args.batch <= 16:
        print(f"--batch must be 1-16 (the decode path), got {args.batch}", file=sys.stderr)
        return 2
    if args.arch < 80:
        print(f"--arch {args.arch}: the mma decode needs compute capability 8.0 or later", file=sys.stderr)
        return 2
    try:
        import triton  # noqa: F401
    except ImportError as e:
        print(f"triton is not installed ({e}): pip install triton, or the project's setup (scripts/setup.sh)",
              file=sys.stderr)
        return 2
    try:
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as e:
        print(f"this Triton has no AOT compile API: {e}", file=sys.stderr)
        return 2
    if sass.nvdisasm() is None:
        print(sass.NO_NVDISASM, file=sys.stderr)
        return 2
    chosen = [v for v in variants(args.batch, args.arch) if args.match in v.name]
    if not chosen:
        print(f"no decode tiling at batch {args.batch} matches {args.match!r}", file=sys.stderr)
        return 2
    for v in chosen:
        print(report(v, args.arch, args.top), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
