"""Shared fixtures: fresh random seeds (reported, reproducible with TQ_TEST_SEED) and GPU skipping."""
from __future__ import annotations

import importlib
import os
import secrets
import sys

import pytest
import torch

# Fresh seeds every run so that kernels are checked on inputs nobody tuned them for;
# the seed is printed in the header and can be pinned with TQ_TEST_SEED=<int>.
BASE_SEED = int(os.environ.get("TQ_TEST_SEED", secrets.randbits(31)))


def pytest_report_header(config):
    return f"tq test seed: {BASE_SEED} (set TQ_TEST_SEED={BASE_SEED} to reproduce)"



@pytest.fixture
def seed(request) -> int:
    """A per-test seed derived from the run's base seed and the test's id."""
    return (BASE_SEED + sum(map(ord, request.node.nodeid))) % (2**31)


@pytest.fixture
def gen(seed) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Every module with @triton.jit functions, dependencies first.
TRITON_KERNEL_MODULES = ("tq.triton.tiles", "tq.triton.dequant", "tq.triton.decode", "tq.triton.prefill",
                         "tq.triton.rotate", "tq.triton.lut4", "tq.triton.lutmm", "tq.triton.lutmma", "tq.triton.unrotate",
                         "tq.triton.dispatch")


def _define_triton_kernels(interpret: bool) -> str | None:
    """(Re)define the Triton kernel modules interpreted or compiled; returns TRITON_INTERPRET to restore.

    @triton.jit reads the flag when a kernel is defined, so modules an earlier test imported
    in the other mode are defined again.
    """
    old = os.environ.get("TRITON_INTERPRET")
    if interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    for name in TRITON_KERNEL_MODULES:
        importlib.reload(sys.modules[name]) if name in sys.modules else importlib.import_module(name)
    return old


def _restore_interpret(old: str | None) -> None:
    if old is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = old


@pytest.fixture(scope="module")
def triton_backend():
    """The tq.triton module: its kernels compiled on a GPU, interpreted on the CPU (TRITON_INTERPRET=1,
    for this module's tests only; restored afterwards)."""
    pytest.importorskip("triton")
    old = os.environ.get("TRITON_INTERPRET")
    if not torch.cuda.is_available():
        _define_triton_kernels(interpret=True)
    import tq.triton as tqt
    from tq import backends

    ok, reason = tqt.availability()
    if not ok:
        _restore_interpret(old)
        pytest.skip(f"triton backend unavailable: {reason}")
    yield tqt
    _restore_interpret(old)
    backends._cache.pop("triton", None)  # never let other modules see an interpreted backend


@pytest.fixture(scope="module")
def compiled_triton_kernels():
    """The Triton kernel modules defined for compilation (for ahead-of-time compiles on the CPU)."""
    pytest.importorskip("triton")
    old = _define_triton_kernels(interpret=False)
    import tq.triton.lutmm as lutmm
    yield lutmm
    _restore_interpret(old)


@pytest.fixture
def one_torch_thread():
    """The harness's CPU work is many small ops; on a loaded 2-core machine they stall in the
    thread pool (milliseconds each), one thread is many times faster.  Restored afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
