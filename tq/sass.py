"""Offline SASS reading shared by the backends' `sass` tools (tq.cutile.sass, tq.triton.sass).

The decode kernels of both backends are instruction-issue bound on Hopper, so the number of SASS
instructions in a kernel's K loop, read off its cubin without a GPU, predicts what a change buys
before any GPU time is spent.  `disassemble` runs ``nvdisasm`` (from PATH, else the copy Triton's
package ships); `hot_loop` finds the K loop: the shortest backward-branch range that contains a
tensor-core instruction (else packed or fused math).  Counts are per thread of one warp, and
depend on the compiler versions: compare variants compiled in the same environment.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import re
import shutil
import subprocess
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


def tool(name: str) -> str | None:
    """Path of a CUDA binary tool (nvdisasm, cuobjdump): PATH first, then the copy inside
    Triton's package."""
    found = shutil.which(name)
    if found:
        return found
    try:
        import triton
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    return path if os.access(path, os.X_OK) else None


def nvdisasm() -> str | None:
    return tool("nvdisasm")


def _run(path: str, args: list, cubin: bytes) -> subprocess.CompletedProcess:
    """path args... <cubin file>, output captured."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([path, *args, f.name], capture_output=True, text=True)


NO_NVDISASM = "nvdisasm not found: put it on PATH (CUDA toolkit) or install triton, which ships it"


def disassemble(cubin: bytes) -> str:
    path = nvdisasm()
    if path is None:
        raise RuntimeError(NO_NVDISASM)
    out = _run(path, ["-c"], cubin)
    if out.returncode != 0:
        raise RuntimeError(f"nvdisasm failed: {out.stderr.strip()[:500]}")
    return out.stdout


def registers(cubin: bytes) -> int | None:
    """Registers per thread of the cubin's kernel (cuobjdump -res-usage), or None without cuobjdump."""
    path = tool("cuobjdump")
    if path is None:
        return None
    m = re.search(r"REG:(\d+)", _run(path, ["-res-usage"], cubin).stdout)
    return int(m.group(1)) if m else None


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


def hot_loop(sass: str, hot=HOT, longest: bool = False) -> Loop | None:
    """The K loop: the shortest backward-branch range holding the first kind of hot instruction
    (in HOT's order) that the kernel has in any loop: the tensor-core loop where there is one, so
    that a producer warp's or an epilogue's FFMA loop is not taken for it.  longest: the longest
    such range instead (Triton's unrolled main loop rather than its one-tile remainder loop)."""
    every = loops(sass)
    for h in hot:
        candidates = [lp for lp in every if lp.mix()[h]]
        if candidates:
            return (max if longest else min)(candidates, key=lambda lp: len(lp.instructions))
    return None


def spills(sass: str) -> int:
    """Local-memory accesses (register spills or run-time-indexed arrays)."""
    found, _ = instructions(sass)
    return sum(opcode(t) in ("LDL", "STL") for _, t in found)


def report(name: str, sass: str, top: int = 12, longest: bool = False) -> str:
    found, _ = instructions(sass)
    loop = hot_loop(sass, longest=longest)
    head = f"{name}: {len(found)} instructions, {spills(sass)} spills"
    if loop is None:
        return head + ", no hot loop"
    mix = ", ".join(f"{k} {v}" for k, v in loop.mix().most_common(top))
    return f"{head}, K loop {len(loop.instructions)} ({mix})"
