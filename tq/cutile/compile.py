"""Ahead-of-time compilation of the cutile kernels to cubin, without a GPU.

    python -m tq.cutile.compile [--arch sm_80,sm_90,sm_100,sm_120] [--set default|ci|full] [--out DIR] [--jobs N]

Each kernel variant (one set of constant arguments and argument dtypes) is compiled with
``cuda.tile.compilation.export_kernel`` for each architecture; one line per variant and
arch gives the cubin size; the exit status is non-zero if any compile fails.  CI runs it
on a CPU machine with ``cuda-tile[tileiras]`` installed, so a kernel that stops
compiling for Ampere, Hopper or Blackwell fails CI.

Variant sets (constants the dispatcher in dispatch.py can choose):
- ``default``: every pass configuration the backend supports (bits 2, 3, 4, 8 alone;
  4+4, 3+2, 4+2, 2+2, 8+4, 3+3 residual) x {lookup, polynomial} codebook x {decode
  split-K, prefill} tiling, with the activation dtype, K tile (128/64/32) and bias
  cycled across them so that each of those also appears with every path; plus the
  decode tiling without split, the rotation kernel for block sizes 32..8192 and both
  slice-count pairs, and the split-K reduction for each dtype.
  The batch-1 GEMV kernel is compiled for every pass configuration as well.
- ``ci``: one variant of each kernel and path (fast; what the CPU test compiles).
- ``full``: the product of all of the above axes (slow: thousands of compiles).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import io
import itertools
import os
import sys
import time

ARCHS = ("sm_80", "sm_90", "sm_100", "sm_120")
DTYPES = ("bfloat16", "float16", "float32")
PASS_CONFIGS = ((2, None), (3, None), (4, None), (8, None),
                (4, 4), (3, 2), (4, 2), (2, 2), (8, 4), (3, 3))
POLY_TERMS = {2: 2, 3: 3, 4: 3, 8: 3}  # Horner terms of the default degree-5 polynomial codebooks


@dataclasses.dataclass(frozen=True)
class Variant:
    kernel: str        # "rotate", "fused" or "reduce"
    name: str          # human-readable constants
    params: tuple      # (dtype name, constants...) interpreted by _signature


@dataclasses.dataclass
class Result:
    variant: Variant
    arch: str
    ok: bool
    size: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def kernel(self) -> str:
        return self.variant.kernel


def _fused_variant(bits, residual, poly, dtype, path, tk, bias, split=None):
    from .dispatch import SUPPORTED_BITS
    a0, a1 = SUPPORTED_BITS[bits]
    at = POLY_TERMS[bits] if poly else 0
    b0, b1 = SUPPORTED_BITS[residual] if residual else (0, 0)
    bt = (POLY_TERMS[residual] if poly else 0) if residual else 0
    if path == "gemv":
        tn, tb, sp = 128, 1, (4 if split is None else split)
    elif path == "decode":
        tn, tb, sp = 128, 16, (4 if split is None else split)
    else:
        tn, tb, sp = (64, 64, 1) if dtype == "float32" else (128, 128, 1)
    cfg = f"{bits}" + (f"+{residual}" if residual else "")
    name = (f"fused {cfg}-bit {'poly' if poly else 'lookup'} {dtype} {path} TN={tn} TK={tk} TB={tb} "
            f"SPLIT={sp}{' bias' if bias else ''}")
    if path == "gemv":
        return Variant("gemv", name.replace("fused", "gemv"), (dtype, a0, a1, at, b0, b1, bt, tn, tk, sp, bias))
    return Variant("fused", name, (dtype, a0, a1, at, b0, b1, bt, tn, tk, tb, sp, bias))


def _rotate_variant(dtype, r, v0, v1):
    from .dispatch import rotate_tb
    tb = rotate_tb(r)
    return Variant("rotate", f"rotate {dtype} R={r} TB={tb} V={v0},{v1}", (dtype, r, tb, v0, v1))


def _reduce_variant(dtype, split, bias):
    return Variant("reduce", f"reduce {dtype} SPLIT={split} TB=16 TN=128{' bias' if bias else ''}",
                   (dtype, split, 16, 128, bias))


def variants(which: str = "default") -> list[Variant]:
    out = []
    if which == "ci":
        out.append(_fused_variant(4, None, True, "bfloat16", "decode", 128, False))
        out.append(_fused_variant(4, 2, True, "bfloat16", "gemv", 128, True))
        out.append(_fused_variant(3, 2, False, "float16", "prefill", 64, True))
        out.append(_rotate_variant("bfloat16", 128, 2, 4))
        out.append(_reduce_variant("bfloat16", 4, True))
        return out
    if which == "full":
        for (bits, res), poly, dt, path, tk, bias in itertools.product(
                PASS_CONFIGS, (False, True), DTYPES, ("gemv", "decode", "prefill"), (128, 64, 32), (False, True)):
            out.append(_fused_variant(bits, res, poly, dt, path, tk, bias))
        for dt, r, vv in itertools.product(DTYPES, (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
                                           ((1, 0), (2, 0), (4, 0), (1, 2), (2, 4), (1, 4))):
            out.append(_rotate_variant(dt, r, *vv))
        for dt, sp, bias in itertools.product(DTYPES, (2, 4, 8), (False, True)):
            out.append(_reduce_variant(dt, sp, bias))
        return out
    if which != "default":
        raise ValueError(f"unknown variant set {which!r}; choose default, ci or full")
    cyc = itertools.count()
    for (bits, res), poly, path in itertools.product(PASS_CONFIGS, (False, True), ("decode", "prefill")):
        i = next(cyc)
        out.append(_fused_variant(bits, res, poly, DTYPES[i % 3], path, (128, 64, 32)[(i // 3) % 3], i % 2 == 1))
    for i, (bits, res) in enumerate(PASS_CONFIGS):
        out.append(_fused_variant(bits, res, i % 2 == 0, DTYPES[i % 3], "gemv", (128, 64, 32)[i % 3], i % 2 == 1))
    for dt in DTYPES:
        out.append(_fused_variant(4, None, True, dt, "decode", 128, True, split=1))
        out.append(_fused_variant(4, None, True, dt, "gemv", 128, True, split=1))
    for i, r in enumerate((32, 64, 128, 256, 1024, 4096, 8192)):
        vv = ((2, 0), (2, 4), (1, 2), (1, 0), (2, 4), (2, 0), (2, 0))[i]
        out.append(_rotate_variant(DTYPES[i % 3], r, *vv))
    for dt in DTYPES:
        out.append(_reduce_variant(dt, 4, dt != "float32"))
    return out


def _signature(v: Variant):
    import cuda.tile as ct
    from cuda.tile.compilation import ArrayConstraint, CallingConvention, KernelSignature, ScalarConstraint

    def arr(dtype, ndim):  # a C-contiguous array argument that aliases nothing
        return ArrayConstraint(dtype, ndim, index_dtype=ct.int32, stride_lower_bound_incl=0, alias_groups=(),
                               may_alias_internally=False, stride_constant=(None,) * (ndim - 1) + (1,))

    dt = getattr(ct, v.params[0])
    c = v.params[1:]
    if v.kernel == "rotate":
        from .rotate import rotate_kernel as k
        params = [arr(dt, 2), arr(ct.float32, 1), arr(dt, 3), arr(dt, 3), *c]
    elif v.kernel == "reduce":
        from .reduce import splitk_reduce_kernel as k
        params = [arr(ct.float32, 3), arr(dt, 2), arr(dt, 2), *c]
    else:
        if v.kernel == "gemv":
            from .fused import fused_gemv_kernel as k
            split = c[8]
        else:
            from .fused import fused_matmul_kernel as k
            split = c[9]
        out = arr(ct.float32, 3) if split > 1 else arr(dt, 2)
        pas = [arr(dt, 3), arr(ct.uint8, 2), arr(ct.uint8, 2), arr(ct.float16, 2), arr(ct.float32, 1),
               arr(ct.float32, 1)]
        params = [out, arr(dt, 2), *pas, *pas, ScalarConstraint(ct.int32), ScalarConstraint(ct.int32), *c]
    return k, KernelSignature(params, calling_convention=CallingConvention.cutile_python_v1())


def compile_one(v: Variant, arch: str, out_dir: str | None = None) -> Result:
    t0 = time.perf_counter()
    try:
        from cuda.tile.compilation import export_kernel
        kernel, sig = _signature(v)
        buf = io.BytesIO()
        export_kernel(kernel, [sig], buf, gpu_code=arch, output_format="cubin")
        data = buf.getvalue()
        if out_dir:
            safe = "".join(ch if ch.isalnum() or ch in "+-=." else "_" for ch in v.name)
            with open(os.path.join(out_dir, f"{safe}.{arch}.cubin"), "wb") as f:
                f.write(data)
        return Result(v, arch, True, len(data), time.perf_counter() - t0)
    except Exception as e:  # report, keep going, fail at the end
        return Result(v, arch, False, 0, time.perf_counter() - t0, f"{type(e).__name__}: {e}"[:2000])


def _compile_args(a):
    return compile_one(*a)


def compile_all(archs, vs, out_dir=None, jobs: int | None = None, echo=None) -> list[Result]:
    """Compile every variant for every arch (in ``jobs`` processes); results in input order."""
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        out_dir = os.fspath(out_dir)
    work = [(v, a, out_dir) for v in vs for a in archs]
    jobs = jobs or min(8, os.cpu_count() or 1)
    results = []
    if jobs <= 1:
        for w in work:
            r = compile_one(*w)
            results.append(r)
            if echo:
                echo(r)
        return results
    with cf.ProcessPoolExecutor(jobs) as ex:
        for r in ex.map(_compile_args, work):
            results.append(r)
            if echo:
                echo(r)
    return results


def _line(r: Result) -> str:
    if r.ok:
        return f"ok    {r.arch:7s} {r.size:9d} B  {r.seconds:5.1f} s  {r.variant.name}"
    return f"FAIL  {r.arch:7s} {'-':>9s}    {r.seconds:5.1f} s  {r.variant.name}: {r.error}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tq.cutile.compile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default=",".join(ARCHS), help="comma-separated targets (default: all four)")
    ap.add_argument("--set", default="default", choices=("default", "ci", "full"), help="variant set")
    ap.add_argument("--out", default=None, help="directory to write the cubins to (default: keep in memory)")
    ap.add_argument("--jobs", type=int, default=None, help="parallel compiler processes (default: CPUs, max 8)")
    args = ap.parse_args(argv)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    bad = [a for a in archs if not (a.startswith("sm_") and a[3:].isdigit())]
    if bad or not archs:
        ap.error(f"--arch: expected names like sm_90, got {bad or args.arch!r}")
    from . import env
    ok, reason = env.compiler_ready()
    if not ok:
        print(f"cannot compile: {reason}", file=sys.stderr)
        return 2
    vs = variants(args.set)
    t0 = time.perf_counter()
    results = compile_all(archs, vs, args.out, args.jobs, echo=lambda r: print(_line(r), flush=True))
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)}/{len(results)} compiled ({len(vs)} variants x {len(archs)} archs) "
          f"in {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
