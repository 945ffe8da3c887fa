"""cutile backend: fused dequant-on-the-fly matmul kernels written in NVIDIA cuTile Python.

    availability() -> (bool, reason)   cuda-tile + tileiras 13.2-13.4 + CUDA device + r580 driver + sm_80+
    supports(x, qw) -> None | reason
    matmul(x, qw, *, bias=None) -> y   y = x @ W_hat.T (+ bias), x a torch tensor or a cupy array
    compile_stats() -> dict            first-call (JIT compile) time per kernel variant

Kernels: rotate.py (activation rotation), fused.py (every pass in one launch; decode and
prefill tilings), reduce.py (split-K epilogue); dispatch.py picks tilings and launches;
compile.py compiles every variant ahead of time (``python -m tq.cutile.compile``).
See docs/cutile.md.
"""
from __future__ import annotations

import torch

from .. import contract
from ..format import QuantizedWeight
from . import env
from .dispatch import SUPPORTED_BITS, compile_stats  # noqa: F401

NAME = "cutile"


def availability() -> tuple[bool, str]:
    return env.availability()


def _is_cupy(a) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def _to_torch(a, name: str):
    if a is None or isinstance(a, torch.Tensor):
        return a
    if _is_cupy(a):
        return torch.from_dlpack(a)
    raise TypeError(f"{name} must be a torch.Tensor or a cupy.ndarray, got {type(a).__name__}")


def supports(x, qw) -> str | None:
    ok, reason = availability()
    if not ok:
        return reason
    if not isinstance(qw, QuantizedWeight):
        return f"qw must be a tq.QuantizedWeight, got {type(qw).__name__}"
    try:
        x = _to_torch(x, "x")
    except TypeError as e:
        return str(e)
    if x.dtype not in contract.ACTIVATION_DTYPES:
        return f"x dtype {x.dtype} is not supported (bfloat16, float16 or float32)"
    if x.device.type != "cuda":
        return f"x is on {x.device}; the cutile backend runs on CUDA tensors only"
    for i, p in enumerate(qw.passes):
        if p.bits not in SUPPORTED_BITS:
            return (f"pass {i} has {p.bits}-bit indices; the cutile kernels handle bits "
                    f"{sorted(SUPPORTED_BITS)}")
    return None


def matmul(x, qw: QuantizedWeight, *, bias=None):
    """y = x @ W_hat.T (+ bias) in x's dtype; x: [..., K] torch tensor or cupy array on the GPU."""
    cupy_in = _is_cupy(x)
    xt = _to_torch(x, "x")
    bt = _to_torch(bias, "bias")
    reason = supports(xt, qw)
    if reason:
        raise ValueError(f"the cutile backend cannot run these inputs: {reason}")
    x2, out_shape = contract.prepare(xt, qw, bt)
    y = matmul_prepared(x2, qw, bt).reshape(out_shape)
    if cupy_in:
        import cupy
        return cupy.from_dlpack(y)
    return y


def matmul_prepared(x2, qw: QuantizedWeight, bias=None):
    """matmul on torch inputs that tq.matmul already validated and checked with supports(): x2 is [B, K]."""
    from .dispatch import run
    return run(x2.contiguous(), qw, bias)
