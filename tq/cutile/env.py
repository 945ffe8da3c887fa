"""Can the cutile backend run here?  Facts about the machine, and the verdict with a reason.

cuTile Python (package ``cuda-tile``) compiles kernels with the Tile IR compiler
``tileiras`` plus ``ptxas``/``libnvvm`` of the same CUDA 13.2-13.4 release, and runs
them through a driver of the r580 family or newer (CUDA 13.0 driver API) on a GPU of
compute capability 8.0 or higher.  ``facts()`` gathers each of those without raising;
``verdict(facts)`` is a pure function of them, so every reason can be tested on a
machine that lacks some of them.
"""
from __future__ import annotations

import ctypes
import functools
import re
import subprocess

TILEIRAS_VERSIONS = ((13, 2), (13, 3), (13, 4))
MIN_DRIVER_API = 13000  # cuDriverGetVersion of the r580 driver family (CUDA 13.0)
MIN_CAPABILITY = (8, 0)
INSTALL_HINT = "pip install 'cuda-tile[tileiras]'"


def _cuda_tile_error() -> str | None:
    try:
        import cuda.tile  # noqa: F401
    except Exception as e:  # ImportError, or a broken install raising something else
        return f"{type(e).__name__}: {e}"
    return None


def tileiras_path() -> str | None:
    """Path of the tileiras cuTile would use (pip package, PATH or CUDA_HOME), or None."""
    try:
        from cuda.tile._compile import _find_compiler_bin  # private, but it is cuTile's own search
        return _find_compiler_bin().path
    except Exception:
        return None


@functools.lru_cache(maxsize=None)
def tileiras_version(path: str) -> tuple[int, int] | None:
    try:
        text = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def driver_api_version() -> int | None:
    """cuDriverGetVersion (e.g. 13000 for CUDA 13.0 = r580), or None without a driver."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        v = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(v)) == 0:
            return v.value
    return None


def facts() -> dict:
    """Everything the verdict depends on; never raises."""
    f = {"cuda_tile_error": _cuda_tile_error(), "tileiras_path": None, "tileiras_version": None,
         "device_count": 0, "driver_api": None, "capability": None, "device_name": None}
    if f["cuda_tile_error"] is None:
        f["tileiras_path"] = tileiras_path()
        if f["tileiras_path"]:
            f["tileiras_version"] = tileiras_version(f["tileiras_path"])
    try:
        import torch
        if torch.cuda.is_available():
            f["device_count"] = torch.cuda.device_count()
            f["capability"] = tuple(torch.cuda.get_device_capability())
            f["device_name"] = torch.cuda.get_device_name()
    except Exception:
        pass
    f["driver_api"] = driver_api_version()
    return f


def verdict(f: dict) -> tuple[bool, str]:
    """(available, reason) from ``facts()``; the first missing requirement is the reason."""
    if f.get("cuda_tile_error"):
        return False, f"cuda-tile is missing or broken ({f['cuda_tile_error']}); install it with {INSTALL_HINT}"
    if not f.get("tileiras_path"):
        return False, f"the tileiras compiler is missing; install it with {INSTALL_HINT} (CUDA 13.2-13.4)"
    ver = f.get("tileiras_version")
    if ver not in TILEIRAS_VERSIONS:
        shown = "unknown" if ver is None else f"{ver[0]}.{ver[1]}"
        return False, (f"tileiras at {f['tileiras_path']} is version {shown}; cuda-tile needs tileiras/ptxas "
                       f"13.2-13.4 ({INSTALL_HINT})")
    if not f.get("device_count"):
        return False, "no CUDA device is visible (torch.cuda.is_available() is False)"
    drv = f.get("driver_api")
    if drv is None or drv < MIN_DRIVER_API:
        shown = "none" if drv is None else f"CUDA {drv // 1000}.{drv % 1000 // 10}"
        return False, f"the NVIDIA driver is older than r580 (driver API {shown}; cuTile needs CUDA 13.0 or newer)"
    cap = f.get("capability")
    if cap is None or tuple(cap) < MIN_CAPABILITY:
        return False, f"compute capability {cap} is below 8.0 (cuTile needs Ampere or newer)"
    ver_s = f"{ver[0]}.{ver[1]}"
    return True, (f"cuda-tile with tileiras {ver_s} on {f.get('device_name')} (sm_{cap[0]}{cap[1]}), "
                  f"driver API {drv // 1000}.{drv % 1000 // 10}")


@functools.lru_cache(maxsize=1)
def availability() -> tuple[bool, str]:
    return verdict(facts())


def compiler_ready() -> tuple[bool, str]:
    """Enough to compile cubins ahead of time (no GPU needed): cuda-tile plus a matching tileiras."""
    f = facts()
    f["device_count"], f["driver_api"], f["capability"] = 1, MIN_DRIVER_API, MIN_CAPABILITY
    ok, reason = verdict(f)
    return (True, "cuda-tile and tileiras present") if ok else (False, reason)
