"""triton backend: fused dequant-on-the-fly matmul kernels written in Triton.

    matmul(x, qw, *, bias=None) -> y = x @ W_hat.T (+ bias)     (contract: tq/contract.py)

Kernels: rotate.py (activation rotation); lut4.py + lutmm.py (all-4-bit weights with
bf16/fp16 x: register-table dequant by PTX prmt, one kernel for every batch, and the
chunked-prefill dequant); decode.py / prefill.py + dequant.py (every other configuration);
launch.py (direct launches, decode replays); dispatch.py picks the path and the tiles.
docs/triton.md has the design and numbers.
Runs on a CUDA GPU, or on the CPU under TRITON_INTERPRET=1 (slow; for tests).
"""
from __future__ import annotations

import functools
import os

NAME = "triton"


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def availability() -> tuple[bool, str]:
    return _availability(_interpreting())


@functools.lru_cache(maxsize=2)
def _availability(interpreting: bool) -> tuple[bool, str]:
    # Cached: matmul asks on every call, and the device name query costs microseconds.
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return False, f"triton is not installed ({e}); pip install 'tq[triton]'"
    import torch

    if interpreting:
        return True, f"triton {triton.__version__} in interpreter mode (TRITON_INTERPRET=1, CPU tensors)"
    if not torch.cuda.is_available():
        return False, ("no CUDA device (torch.cuda.is_available() is False); "
                       "set TRITON_INTERPRET=1 before importing triton to run the kernels on the CPU")
    return True, f"triton {triton.__version__} on {torch.cuda.get_device_name()}"


def supports(x, qw) -> str | None:
    ok, reason = availability()
    if not ok:
        return reason
    import torch

    from ..contract import ACTIVATION_DTYPES
    from .dispatch import unsupported_reason

    if not isinstance(x, torch.Tensor):
        return f"x must be a torch.Tensor, got {type(x).__name__}"
    if x.dtype not in ACTIVATION_DTYPES:
        return f"x dtype {x.dtype} is not supported (float32, float16 or bfloat16)"
    if _interpreting():
        if x.device.type != "cpu":
            return f"x is on {x.device}; under TRITON_INTERPRET=1 the kernels run on the CPU: move x and the weight there"
    elif x.device.type != "cuda":
        return f"x is on {x.device}; the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)"
    return unsupported_reason(qw)


def matmul(x, qw, *, bias=None):
    """y = x @ W_hat.T (+ bias), y in x's dtype; see tq/contract.py for the contract."""
    from .. import contract

    x2, out_shape = contract.prepare(x, qw, bias)
    reason = supports(x, qw)
    if reason:
        raise ValueError(f"the triton backend cannot run these inputs: {reason}")
    return matmul_prepared(x2, qw, bias).reshape(out_shape)


def matmul_prepared(x2, qw, bias=None):
    """matmul on inputs that tq.matmul already validated and checked with supports(): x2 is [B, K]."""
    from .dispatch import run

    return run(x2, qw, bias)
