"""Chunked prefill, shared by the GPU backends: dequantize row chunks of W_rot, multiply with cuBLAS.

At large batch a fused dequant-matmul kernel must dequantize each weight tile once per
activation tile and cannot hide that work behind the tensor cores (neither Triton nor
cuTile Python offers warp specialization).  Here a side stream dequantizes row chunk
c + 1 of W_rot into one of two kept buffers (a memory-bound elementwise kernel, supplied
by the backend) while cuBLAS multiplies chunk c on the caller's stream straight into
y[:, rows of c] (row stride N: no copy).  The two buffers of at most
TQ_PREFILL_WORKSPACE_MB / 2 each (default 128 MiB in all) bound the extra memory; the whole
N x K weight never exists.
"""
from __future__ import annotations

import os
from typing import Callable

import torch

PREFILL_WORKSPACE_MB = 128
CHUNK_ROWS = 2048          # measured best on the H100 at K = 8192 (Triton backend)
_side_streams: dict = {}
_workspaces: dict = {}


def prefill_workspace_mb() -> int:
    """TQ_PREFILL_WORKSPACE_MB as a positive integer (MiB for both chunk buffers)."""
    raw = os.environ.get("TQ_PREFILL_WORKSPACE_MB")
    if raw is None:
        return PREFILL_WORKSPACE_MB
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"TQ_PREFILL_WORKSPACE_MB must be a positive integer (MiB for the chunked prefill's "
                         f"two buffers, default {PREFILL_WORKSPACE_MB}), got {raw!r}")
    return value


def chunk_rows_for(k_padded: int, n: int, dtype_bytes: int = 2) -> int:
    """Rows per chunk: 2048 unless the two buffers would exceed TQ_PREFILL_WORKSPACE_MB
    (default 128); at least 128, at most N (rounded up to 128)."""
    budget = prefill_workspace_mb() << 20
    rows = min(CHUNK_ROWS, budget // 2 // (k_padded * dtype_bytes))
    rows = max(128, rows // 128 * 128)
    return min(rows, -(-n // 128) * 128)


def capturing(device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def side_stream(device) -> torch.cuda.Stream:
    s = _side_streams.get(device)
    if s is None:
        s = _side_streams[device] = torch.cuda.Stream(device=device)
    return s


def workspace(device, stream: int, rows: int, k_padded: int, dtype) -> list:
    """The two chunk buffers, kept per (device, caller stream, shape, dtype).

    Allocating them per call made eager calls host bound on the H100 (816 us per call against
    477 us of GPU time at 8192x8192, B = 2048): buffers used on a side stream return to the
    caching allocator late and are allocated anew.  Calls on one stream are ordered (the side
    stream forks from and joins back into it), so reusing the buffers is safe; like cuBLAS's
    workspace they stay allocated (`release_prefill_workspace()` frees them).  Inside a CUDA
    graph capture each call gets its own pair from the graph's pool: graphs may replay
    concurrently.
    """
    if capturing(device):
        return [torch.empty((rows, k_padded), dtype=dtype, device=device) for _ in range(2)]
    key = (device, stream, rows, k_padded, dtype)
    bufs = _workspaces.get(key)
    if bufs is None:
        bufs = _workspaces[key] = [torch.empty((rows, k_padded), dtype=dtype, device=device) for _ in range(2)]
    return bufs


def release_prefill_workspace() -> None:
    """Free the chunked prefill's cached buffers (every backend's)."""
    _workspaces.clear()


def run_chunked(dequant: Callable[[torch.Tensor, int, int], None], x_rot, y: torch.Tensor,
                bias: torch.Tensor | None, n: int, k_padded: int, chunk_rows: int) -> None:
    """y = x_rot @ W_rot^T (+ bias) through dequantized row chunks and torch.mm (cuBLAS).

    dequant(buf, row0, rows) writes rows [row0, row0 + rows) of W_rot, in x_rot's column
    order and y's dtype, into buf[:rows] on the current stream.  x_rot may be a callable
    that produces it on the caller's stream: it then runs after the side stream has forked,
    so the rotation overlaps the first chunk's dequant.
    """
    dev = y.device
    main = torch.cuda.current_stream(dev)
    side = side_stream(dev)
    bufs = workspace(dev, main.cuda_stream, chunk_rows, k_padded, y.dtype)
    ready = [torch.cuda.Event() for _ in range(2)]
    free = [torch.cuda.Event() for _ in range(2)]
    # Fork: side sees everything queued on main so far (the buffers' previous users included).
    side.wait_stream(main)
    if callable(x_rot):
        x_rot = x_rot()
    bias_y = None if bias is None else bias.to(y.dtype)
    for c, r0 in enumerate(range(0, n, chunk_rows)):
        i, rows = c % 2, min(chunk_rows, n - r0)
        with torch.cuda.stream(side):
            if c >= 2:
                side.wait_event(free[i])
            dequant(bufs[i], r0, rows)
            ready[i].record(side)
        main.wait_event(ready[i])  # joins side back into main (graph capture needs the join)
        w = bufs[i][:rows]
        # y[:, r0:r0+rows] has row stride N: cuBLAS writes it in place (ldc = N), no copy.
        if bias_y is None:
            torch.mm(x_rot, w.T, out=y[:, r0:r0 + rows])
        else:
            torch.addmm(bias_y[r0:r0 + rows], x_rot, w.T, out=y[:, r0:r0 + rows])
        free[i].record(main)
