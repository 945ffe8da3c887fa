"""The backend registry: the one module that knows every backend.

A backend is a module exposing

    availability() -> (bool, reason)        # can it run here at all, and why (not)
    supports(x, qw) -> None | reason        # can it run these inputs
    matmul(x, qw, *, bias=None) -> y        # the contract in tq/contract.py

and is imported lazily, so ``import tq`` works with neither triton nor cuda-tile
installed.  ``tq.matmul(..., backend="auto")`` prefers cutile, then triton, then the
reference, among those available that support the inputs.
"""
from __future__ import annotations

import dataclasses
import importlib

from . import contract

PREFERENCE = ("cutile", "triton", "reference")
_MODULES = {"cutile": "tq.cutile", "triton": "tq.triton", "reference": "tq.reference"}


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here; the message says why and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    module: object | None
    available: bool
    reason: str

    def supports(self, x, qw) -> str | None:
        if not self.available:
            return self.reason
        return self.module.supports(x, qw)

    def matmul(self, x, qw, *, bias=None):
        if not self.available:
            raise BackendUnavailableError(f"backend {self.name!r} is unavailable: {self.reason}")
        return self.module.matmul(x, qw, bias=bias)


_cache: dict[str, Backend] = {}


def get_backend(name: str, *, require_available: bool = True) -> Backend:
    """The backend called ``name``; raises BackendUnavailableError (with the reason) if it cannot run."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; choose one of {list(_MODULES)} or 'auto'")
    if name not in _cache:
        try:
            module = importlib.import_module(_MODULES[name])
            ok, reason = module.availability()
        except ImportError as e:  # a backend whose own imports fail is unavailable, not an import error of tq
            module, ok, reason = None, False, f"import failed: {e}"
        _cache[name] = Backend(name, module, bool(ok), reason)
    backend = _cache[name]
    if require_available and not backend.available:
        raise BackendUnavailableError(f"backend {name!r} is unavailable: {backend.reason}")
    return backend


def all_backends() -> list[Backend]:
    return [get_backend(n, require_available=False) for n in PREFERENCE]


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine, in preference order."""
    return [b.name for b in all_backends() if b.available]


def select_backend(x, qw, backend: str = "auto") -> Backend:
    if backend != "auto":
        chosen = get_backend(backend)
        reason = chosen.supports(x, qw)
        if reason:
            raise ValueError(f"backend {backend!r} does not support these inputs: {reason}")
        return chosen
    reasons = []
    for b in all_backends():
        reason = b.supports(x, qw)
        if reason is None:
            return b
        reasons.append(f"{b.name}: {reason}")
    raise BackendUnavailableError("no backend supports these inputs: " + "; ".join(reasons))


def matmul(x, qw, *, bias=None, backend: str = "auto"):
    """y = x @ W_hat.T (+ bias) through the chosen backend (see tq/contract.py)."""
    # Validate once here so that every backend, and "auto" choosing among them, fails the same
    # clear way on bad input; float64 is allowed because the reference backend takes it.
    x2, out_shape = contract.prepare(x, qw, bias, dtypes=contract.ALL_DTYPES)
    chosen = select_backend(x, qw, backend)
    # Inputs are validated and supported: a backend's matmul_prepared skips its own re-checks
    # (tens of microseconds of host time per call at batch 1).
    prepared = getattr(chosen.module, "matmul_prepared", None)
    if prepared is not None:
        return prepared(x2, qw, bias).reshape(out_shape)
    return chosen.matmul(x, qw, bias=bias)
