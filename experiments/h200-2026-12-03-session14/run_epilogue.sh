#!/bin/bash
# GPU run: lutmma's GPU parity tests on the patched kernels, then probe_epilogue.py.
export PYTHONPATH=$PWD TRITON_DEFAULT_FP_FUSION=1
# (the tests on the patched kernels, then the library restored for the probe's "before")
cp tq/triton/lutmma.py /tmp/lutmma.py.orig
python3 - <<'PY'
src = open("experiments/h200-2026-12-03-session14/probes/probe_epilogue.py").read()
ns = {"__file__": "experiments/h200-2026-12-03-session14/probes/probe_epilogue.py", "__name__": "patch"}
exec(src[:src.index("def module(")], ns)
lib = open("tq/triton/lutmma.py").read()
open("tq/triton/lutmma.py", "w").write(ns["patched"](lib, open("experiments/h200-2026-12-03-session14/probes/epilogue.patch").read()))
PY
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_triton_lutmma.py > $OUT/pytest_lutmma_gpu2.log 2>&1
tail -2 $OUT/pytest_lutmma_gpu2.log
cp /tmp/lutmma.py.orig tq/triton/lutmma.py
timeout 250 python3 experiments/h200-2026-12-03-session14/probes/probe_epilogue.py > $OUT/probe_epilogue.log 2>&1
grep -A60 "^shape" $OUT/probe_epilogue.log || tail -30 $OUT/probe_epilogue.log
