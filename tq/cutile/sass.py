"""Offline SASS of the cutile kernels: what one K-loop iteration of a variant costs, no GPU.

    python -m tq.cutile.sass [--set ci|default|full] [--match TEXT] [--arch sm_90] [--top 12]

The decode kernels are instruction-issue bound on Hopper (docs/cutile.md), so the number of
SASS instructions in a variant's K loop, read off its AOT cubin, predicts what a change to the
kernel buys before any GPU time is spent: the eighth session's 256-column K tiles were chosen
this way (846 -> 703 instructions per 128 columns, measured 7-15% faster on an H200).  Each
variant is compiled with compile.cubin and read by tq/sass.py (nvdisasm; the K loop; counts per
thread of one warp, which depend on the tileiras version: compare variants compiled in the same
environment).
"""
from __future__ import annotations

import argparse
import sys

# (the SASS reading itself is shared with the Triton backend's tool; re-exported here)
from ..sass import (HOT, NO_NVDISASM, Loop, disassemble, hot_loop, instructions, loops, nvdisasm,  # noqa: F401
                    opcode, opcode_mix, report, spills)


def main(argv=None) -> int:
    from . import compile as aot, env
    ap = argparse.ArgumentParser(prog="python -m tq.cutile.sass", description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", default="ci", choices=("ci", "default", "full"), help="variant set (compile.variants)")
    ap.add_argument("--match", default="", help="only variants whose name contains this text (e.g. 'words 4-bit')")
    ap.add_argument("--arch", default="sm_90", help="target (default sm_90)")
    ap.add_argument("--top", type=int, default=12, help="opcodes listed per K loop (default 12)")
    args = ap.parse_args(argv)
    ok, reason = env.compiler_ready()
    if not ok:
        print(f"cannot compile: {reason}", file=sys.stderr)
        return 2
    if nvdisasm() is None:
        print(NO_NVDISASM, file=sys.stderr)
        return 2
    chosen = [v for v in aot.variants(args.set) if args.match in v.name]
    if not chosen:
        print(f"no variant of the {args.set!r} set matches {args.match!r}", file=sys.stderr)
        return 2
    for v in chosen:
        print(report(f"{v.name} [{args.arch}]", disassemble(aot.cubin(v, args.arch)), args.top), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
