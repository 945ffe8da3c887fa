"""Root conftest: loaded for tests/ and benchmarks/ alike.

Anything marked ``gpu`` is skipped, with the reason, where torch sees no CUDA device.
"""
from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible to torch on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
