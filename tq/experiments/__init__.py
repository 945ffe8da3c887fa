"""Experiments: runnable studies of tq (``python -m tq.experiments.<name>``).

The backend comparison of docs/harness.md lives in these modules:

- ``parity``: every available backend against the float64 reference, with tolerances;
- ``sweep``: latency, bandwidth and error per layer shape and batch size, against cuBLAS
  bf16 and the int4/NF4 kernels people use today;
- ``shapes``, ``timing``, ``memory``, ``peers``, ``tables``, ``plots``: the pieces both use.

See docs/harness.md.
"""
