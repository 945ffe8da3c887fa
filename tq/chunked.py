"""Chunked prefill, shared by the GPU backends: dequantize row chunks of W_rot, multiply with cuBLAS.

At large batch a fused dequant-matmul kernel must dequantize each weight tile once per
activation tile and cannot hide that work behind the tensor cores (neither Triton nor
cuTile Python offers warp specialization).  Here a side stream dequantizes row chunk
c + 1 of W_rot into one of two kept buffers (a memory-bound elementwise kernel, supplied
by the backend) while cuBLAS multiplies chunk c on the caller's stream straight into
y[:, rows of c] (row stride N: no copy).  The two buffers of at most
TQ_PREFILL_WORKSPACE_MB / 2 each (default 128 MiB in all) bound the extra memory; the whole
N x K weight never exists.  The budget holds per caller stream and activation dtype.
"""
from __future__ import annotations

from typing import Callable

import torch

from .settings import int_setting, switch_setting

PREFILL_WORKSPACE_MB = 128
CHUNK_ROWS = 2048          # measured best on the H100 at K = 8192 (Triton backend)
_side_streams: dict = {}
_workspaces: dict = {}


def prefill_workspace_mb() -> int:
    """TQ_PREFILL_WORKSPACE_MB as a positive integer (MiB for both chunk buffers)."""
    return int_setting("TQ_PREFILL_WORKSPACE_MB", PREFILL_WORKSPACE_MB, lambda v: v > 0,
                       f"a positive integer (MiB for the chunked prefill's two buffers, "
                       f"default {PREFILL_WORKSPACE_MB})")


def unrotate_enabled() -> bool:
    """TQ_PREFILL_UNROTATE=1: where a backend can (a K tile is one rotation block), the chunk
    kernel rotates the weight rows back into x's basis and cuBLAS multiplies x itself: no
    activation rotation, one rounding less (relative error 2.4e-3 against 2.9e-3 at
    8192x8192).  Default 0 (rotate x): on the H100 the un-rotating chunk kernels' tensor-core
    work slowed the concurrent cuBLAS chunks more than the rotation costs (B = 2048: 1.29 vs
    1.25x cuBLAS's time at 8192x8192, 1.39 vs 1.25x at 28672x8192; experiments/)."""
    return switch_setting("TQ_PREFILL_UNROTATE", False,
                          "1: the chunked prefill un-rotates the weight chunks instead of rotating x")


def chunk_rows_for(k_padded: int, n: int, dtype_bytes: int = 2) -> int:
    """Rows per chunk: at most 2048, and fewer where the two buffers would exceed
    TQ_PREFILL_WORKSPACE_MB (default 128); then evened out over the chunks that N needs
    (a multiple of 128, at least 128: at a K so large that 128 rows exceed the budget, the
    128-row floor wins over the budget).  Even chunks: at 8192x28672 the budget allows 1152 rows,
    which left a 128-row last chunk whose GEMM cost a fifth of a full one; 8 chunks of 1024 rows
    measured 8.1-8.7% (Triton) and 2.6-5.2% (cuTile) faster at B = 2048 on the H200 (ninth session)."""
    budget = prefill_workspace_mb() << 20
    rows = min(CHUNK_ROWS, budget // 2 // (k_padded * dtype_bytes))
    rows = max(128, rows // 128 * 128)
    chunks = max(1, -(-n // rows))
    return -(-(-(-n // chunks)) // 128) * 128


def capturing(device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def side_stream(device, caller: int) -> torch.cuda.Stream:
    """The dequant stream of one caller stream (one per pair, so calls from different caller
    streams never share it, nor does one caller's graph capture pull in another's calls)."""
    key = (device, caller)
    s = _side_streams.get(key)
    if s is None:
        s = _side_streams[key] = torch.cuda.Stream(device=device)
    return s


def workspace(device, stream: int, rows: int, k_padded: int, dtype) -> list:
    """The two chunk buffers: views of one flat buffer kept per (device, caller stream, dtype).

    One buffer per caller stream, whatever the layer shape, so TQ_PREFILL_WORKSPACE_MB bounds
    the total (each shape's two chunks fit in it: chunk_rows_for); it grows to the largest
    shape seen.  Allocating per call made eager calls host bound on the H100 (816 us per call
    against 477 us of GPU time at 8192x8192, B = 2048): buffers used on a side stream return to
    the caching allocator late and are allocated anew.  Calls on one stream are ordered (the
    side stream forks from and joins back into it), so reusing the buffer is safe; like
    cuBLAS's workspace it stays allocated (`release_prefill_workspace()` frees it).  Inside a
    CUDA graph capture each call gets its own pair from the graph's pool: graphs may replay
    concurrently.  (Two host threads issuing chunked calls on the same stream would share the
    buffer, as they would share cuBLAS's workspace: give each thread its own stream.)
    """
    size = rows * k_padded
    if capturing(device):
        return [torch.empty((rows, k_padded), dtype=dtype, device=device) for _ in range(2)]
    key = (device, stream, dtype)
    flat = _workspaces.get(key)
    if flat is None or flat.numel() < 2 * size:
        flat = _workspaces[key] = torch.empty(2 * size, dtype=dtype, device=device)
    return [flat[:size].view(rows, k_padded), flat[size:2 * size].view(rows, k_padded)]


def release_prefill_workspace() -> None:
    """Free the chunked prefill's cached buffers (every backend's)."""
    _workspaces.clear()


def run_chunked(dequant: Callable[[torch.Tensor, int, int], None], x_rot, y: torch.Tensor,
                bias: torch.Tensor | None, n: int, k_padded: int, chunk_rows: int) -> None:
    """y = x_rot @ W^T (+ bias) through dequantized row chunks and torch.mm (cuBLAS).

    dequant(buf, row0, rows) writes rows [row0, row0 + rows) of W, in x_rot's column
    order and y's dtype, into buf[:rows] on the current stream: W is W_rot with the rotated
    activation, or W_rot rotated back (the un-rotating chunk kernels) with x itself, which
    may then have fewer columns than k_padded (the padding multiplies zeros: it is dropped).
    x_rot may be a callable that produces it on the caller's stream: it then runs after the
    side stream has forked, so the rotation overlaps the first chunk's dequant.
    """
    dev = y.device
    main = torch.cuda.current_stream(dev)
    side = side_stream(dev, main.cuda_stream)
    bufs = workspace(dev, main.cuda_stream, chunk_rows, k_padded, y.dtype)
    for b in bufs:  # the allocator must not hand this memory out again before the side stream is done
        b.record_stream(side)
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
        w = bufs[i][:rows, :x_rot.shape[1]]
        # y[:, r0:r0+rows] has row stride N: cuBLAS writes it in place (ldc = N), no copy.
        if bias_y is None:
            torch.mm(x_rot, w.T, out=y[:, r0:r0 + rows])
        else:
            torch.addmm(bias_y[r0:r0 + rows], x_rot, w.T, out=y[:, r0:r0 + rows])
        free[i].record(main)
