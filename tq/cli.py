"""`python -m tq <command>`: info (versions, GPU, backends, codebooks)."""
from __future__ import annotations

import argparse
import importlib
import platform
import sys


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception as e:  # report, never crash: info is what people run when things are broken
        return f"not available ({type(e).__name__})"


def cmd_info(args) -> int:
    import torch

    import tq
    from tq.backends import all_backends
    from tq.codebook import get_codebook

    print(f"tq {tq.__version__}  python {platform.python_version()}  torch {torch.__version__}")
    for name in ("numpy", "scipy", "triton", "cuda.tile", "cupy", "safetensors"):
        print(f"  {name:12s} {_version(name)}")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print(f"GPU: {p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
              f"{p.total_memory / 2**30:.1f} GiB, CUDA {torch.version.cuda}")
    else:
        print("GPU: none visible to torch")
    print("backends (auto prefers them in this order):")
    for b in all_backends():
        print(f"  {b.name:10s} {'available  ' if b.available else 'unavailable'}  {b.reason}")
    if args.codebooks:
        print("codebook expected MSE per bits (unit-variance N(0,1) source), relative to Lloyd-Max:")
        print("  bits  lloyd-max    poly deg 3   poly deg 5   poly exact")
        for bits in range(1, 9):
            lm = get_codebook("gaussian", bits).expected_mse
            cols = [f"{lm:.4e}"]
            for deg in (3, 5, "exact"):
                try:
                    cols.append(f"{get_codebook('gaussian-poly', bits, poly_degree=deg).expected_mse / lm:10.5f}x")
                except ValueError:
                    cols.append("        n/a")
            print(f"  {bits:4d}  " + "  ".join(cols))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, GPU, backend availability with reasons")
    info.add_argument("--codebooks", action="store_true", help="also list each codebook kind's MSE per bits")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
