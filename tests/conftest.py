"""Shared fixtures: fresh random seeds (reported, reproducible with TQ_TEST_SEED) and GPU skipping."""
from __future__ import annotations

import os
import secrets

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


@pytest.fixture
def one_torch_thread():
    """The harness's CPU work is many small ops; on a loaded 2-core machine they stall in the
    thread pool (milliseconds each), one thread is many times faster.  Restored afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
