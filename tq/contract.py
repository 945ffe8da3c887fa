"""The matmul contract every backend shares: y = x @ W_hat.T (+ bias).

    matmul(x, qw, *, bias=None) -> y

x: [..., K] floating tensor on qw's device (float32, float16 or bfloat16; the
reference also takes float64); bias: optional [N] tensor; y: [..., N] in x's dtype.
``prepare`` validates once, for every backend, and flattens the leading dims.
"""
from __future__ import annotations

import torch

from .format import QuantizedWeight

ACTIVATION_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
ALL_DTYPES = ACTIVATION_DTYPES + (torch.float64,)  # float64: the reference backend only


def prepare(x, qw: QuantizedWeight, bias=None, dtypes=ACTIVATION_DTYPES):
    """Validate (x, qw, bias); return (x as [B, K], output shape)."""
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw must be a tq.QuantizedWeight (from tq.quantize or tq.load), got {type(qw).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError("x must have at least one dimension (its last is in_features)")
    if x.shape[-1] != qw.in_features:
        raise ValueError(f"x has last dimension {x.shape[-1]}, but the weight has in_features K={qw.in_features}; "
                         f"x must be [..., {qw.in_features}]")
    if x.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"x dtype {x.dtype} is not supported by this backend; use one of {names}")
    if x.device != qw.device:
        raise ValueError(f"x is on {x.device} but the quantized weight is on {qw.device}; "
                         f"move one of them (qw.to(device) or x.to(device))")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (qw.out_features,):
            raise ValueError(f"bias must be a tensor of shape ({qw.out_features},), "
                             f"got {getattr(bias, 'shape', type(bias).__name__)}")
        if bias.device != x.device:
            raise ValueError(f"bias is on {bias.device} but x is on {x.device}")
    out_shape = (*x.shape[:-1], qw.out_features)
    return x.reshape(-1, qw.in_features), out_shape
