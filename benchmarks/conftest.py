"""Benchmarks are opt-in: ``pytest benchmarks --benchmark-only`` (the default run collects tests/ only).

GPU benchmarks carry the ``gpu`` marker and skip, with the reason, where torch sees no GPU.
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
