"""Offline SASS of the cutile kernels: what one K-loop iteration of a variant costs, no GPU.

    python -m tq.cutile.sass [--set ci|default|full] [--match TEXT] [--arch sm_90] [--top 12]

The decode kernels are instruction-issue bound on Hopper (docs/cutile.md), so the number of
SASS instructions in a variant's K loop, read off its AOT cubin, predicts what a change to the
kernel buys before any GPU time is spent: the eighth session's 256-column K tiles were chosen
this way (846 -> 703 instructions per 128 columns, measured 7-15% faster on an H200).  Each
variant is compiled with compile.cubin and disassembled with ``nvdisasm`` (from PATH, else the
copy Triton's package ships); the K loop is the shortest backward-branch range that contains a
tensor-core instruction (else packed or fused math).  Counts are per thread of one warp, and depend on the
tileiras version: compare variants compiled in the same environment.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile

# instructions that mark a kernel's hot loop, in order of preference (tensor cores first)
HOT = ("HGMMA", "HMMA", "HFMA2", "FFMA")
_INSTR = re.compile(r"/\*([0-9a-f]{4,6})\*/\s+(.*?)\s*;")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_BRANCH = re.compile(r"\bBRA\b.*?(\.L_x_\d+)")


@dataclasses.dataclass
class Loop:
    start: int            # address of the first instruction (the branch target)
    end: int              # address of the backward branch
    instructions: list    # instruction texts, predicate included

    def mix(self) -> collections.Counter:
        return opcode_mix(self.instructions)


def nvdisasm() -> str | None:
    """Path of nvdisasm: PATH first, then the copy inside Triton's package."""
    found = shutil.which("nvdisasm")
    if found:
        return found
    try:
        import triton
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    return path if os.access(path, os.X_OK) else None


NO_NVDISASM = "nvdisasm not found: put it on PATH (CUDA toolkit) or install triton, which ships it"


def disassemble(cubin: bytes) -> str:
    tool = nvdisasm()
    if tool is None:
        raise RuntimeError(NO_NVDISASM)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "-c", f.name], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"nvdisasm failed: {out.stderr.strip()[:500]}")
    return out.stdout


def instructions(sass: str) -> tuple[list[tuple[int, str]], dict[str, int]]:
    """([(address, instruction text)], {label: address of the instruction after it})."""
    found, labels, pending = [], {}, []
    for line in sass.splitlines():
        m = _LABEL.match(line)
        if m:
            pending.append(m.group(1))
            continue
        m = _INSTR.search(line)
        if m:
            addr = int(m.group(1), 16)
            for name in pending:
                labels[name] = addr
            pending = []
            found.append((addr, m.group(2)))
    return found, labels


def opcode(text: str) -> str:
    """Base opcode of one instruction: predicate and modifiers dropped (`@!P0 LDG.E.128 ...` -> LDG)."""
    head = text.split()
    if head and head[0].startswith("@"):
        head = head[1:]
    return head[0].split(".")[0] if head else ""


def opcode_mix(texts) -> collections.Counter:
    return collections.Counter(opcode(t) for t in texts)


def loops(sass: str) -> list[Loop]:
    """Every backward-branch range (target <= branch) in the kernel's body, in address order of
    the branch.  Branches after the last unpredicated EXIT are left out: that is where the
    compiler puts the retry stubs of barrier waits, which jump back into the body from there."""
    found, labels = instructions(sass)
    exits = [a for a, t in found if t.split()[:1] == ["EXIT"]]
    body_end = exits[-1] if exits else float("inf")
    out = []
    for addr, text in found:
        m = _BRANCH.search(text)
        if m and m.group(1) in labels and labels[m.group(1)] <= addr < body_end:
            start = labels[m.group(1)]
            out.append(Loop(start, addr, [t for a, t in found if start <= a <= addr]))
    return out


def hot_loop(sass: str, hot=HOT) -> Loop | None:
    """The K loop: the shortest backward-branch range holding the first kind of hot instruction
    (in HOT's order) that the kernel has in any loop: the tensor-core loop where there is one, so
    that a producer warp's or an epilogue's FFMA loop is not taken for it."""
    every = loops(sass)
    for h in hot:
        candidates = [lp for lp in every if lp.mix()[h]]
        if candidates:
            return min(candidates, key=lambda lp: len(lp.instructions))
    return None


def spills(sass: str) -> int:
    """Local-memory accesses (register spills or run-time-indexed arrays)."""
    found, _ = instructions(sass)
    return sum(opcode(t) in ("LDL", "STL") for _, t in found)


def report(name: str, sass: str, top: int = 12) -> str:
    found, _ = instructions(sass)
    loop = hot_loop(sass)
    head = f"{name}: {len(found)} instructions, {spills(sass)} spills"
    if loop is None:
        return head + ", no hot loop"
    mix = ", ".join(f"{k} {v}" for k, v in loop.mix().most_common(top))
    return f"{head}, K loop {len(loop.instructions)} ({mix})"


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
