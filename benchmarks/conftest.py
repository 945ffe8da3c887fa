"""Benchmarks are opt-in: ``pytest benchmarks --benchmark-only`` (the default run collects tests/ only).

GPU benchmarks carry the ``gpu`` marker and skip, with the reason, where torch sees no GPU.
"""
