"""Peak GPU memory of one call, seen two ways.

1. torch's caching allocator: ``reset_peak_memory_stats`` before the call, then
   ``max_memory_allocated`` minus what was allocated before.  Exact for tensors torch
   allocates, blind to anything else.
2. The device: free memory from the driver (cuda-python's ``cuMemGetInfo``, falling
   back to ``torch.cuda.mem_get_info``) sampled before and after the call, with torch's
   cache emptied first.  Memory a library reserves during the call and keeps in a pool
   (torch's cache, cupy's memory pool, a backend's workspace) shows up as a drop in free
   memory; this is how allocations made outside torch are seen.  A raw cudaMalloc that
   is freed again before the call returns is not visible to this sampling.

On a machine without CUDA both numbers are None.
"""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class MemoryReport:
    torch_peak_bytes: int | None = None    # allocator peak during the call, above the starting level
    device_delta_bytes: int | None = None  # drop of device free memory across the call
    device_source: str | None = None       # which API measured the device numbers


def _driver_mem_get_info():
    """(free, total) from cuda-python's driver API, or None if cuda-python is missing."""
    try:
        from cuda.bindings import driver  # cuda-python >= 12.6 layout
    except ImportError:
        try:
            from cuda import cuda as driver  # older cuda-python layout
        except ImportError:
            return None
    try:
        result = driver.cuMemGetInfo()
    except Exception:  # no context or a driver error: fall back to torch's runtime call
        return None
    # cuda-python 12/13 returns (CUresult, free, total); report nothing unless it is success (0).
    if len(result) == 3:
        err, free, total = result
        if int(getattr(err, "value", err)) != 0:
            return None
    else:
        free, total = result
    return int(free), int(total)


def device_free_bytes() -> tuple[int | None, str | None]:
    if not torch.cuda.is_available():
        return None, None
    got = _driver_mem_get_info()
    if got is not None:
        return got[0], "cuda-python cuMemGetInfo"
    free, _ = torch.cuda.mem_get_info()
    return int(free), "torch.cuda.mem_get_info (cuda-python not installed)"


def measure_call(fn, device) -> tuple[object, MemoryReport]:
    """Run ``fn()`` once and report its peak memory on ``device`` (CUDA only)."""
    if torch.device(device).type != "cuda":
        return fn(), MemoryReport()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()  # so that torch's cache growth during the call is seen by the device
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    free_before, source = device_free_bytes()
    out = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    free_after, _ = device_free_bytes()
    delta = None if free_before is None or free_after is None else max(0, free_before - free_after)
    return out, MemoryReport(int(peak), delta, source)
