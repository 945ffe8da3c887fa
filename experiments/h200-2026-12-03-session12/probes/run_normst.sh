#!/usr/bin/env bash
set -u
export PYTHONPATH=$PWD
mkdir -p $OUT/logs
D=experiments/h200-2026-12-03-session12/probes
timeout 420 python3 $D/probe_normst.py > $OUT/logs/probe_normst.log 2>&1
tail -50 $OUT/logs/probe_normst.log
