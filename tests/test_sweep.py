"""The sweep CLI (on the CPU at small size), its options' errors, and its pieces."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tq.backends import all_backends, get_backend
from tq.experiments import peers, shapes, sweep, timing
from tq.reference import matmul_float64

SMALL = ["--shapes", "qwen3-0.6b", "--batch", "1,4", "--backends", "reference", "--repeats", "2", "--warmup", "1"]


# many small torch ops: see the fixture in conftest.py
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback of the sweep")
def test_cli_on_cpu_writes_every_output(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert sweep.main(["--group-size", "64", *SMALL, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "NO GPU" in printed
    for name in ("sweep.csv", "sweep.json", "sweep.md", "latency.png", "speedup.png"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "sweep.json").read_text())
    rows = data["rows"]
    assert data["meta"]["cpu_mode"] and data["meta"]["quantization"]["group_size"] == 64
    assert {r["shape"] for r in rows} == {"qwen3-0.6b.qkv", "qwen3-0.6b.o", "qwen3-0.6b.gate_up", "qwen3-0.6b.down"}
    timed = [r for r in rows if r["status"] == "ok"]
    assert {"tq-reference", "cublas-bf16"} <= {r["method"] for r in timed}
    for r in timed:
        assert r["latency_us"] > 0 and r["rel_err"] <= r["tolerance"] and r["gbps"] > 0
        assert r["speedup_vs_cublas-bf16"] is not None
    assert "Meta-Llama" not in (out / "sweep.md").read_text()  # only the families that ran are cited
    assert "Qwen3-0.6B config.json" in (out / "sweep.md").read_text()


@pytest.mark.parametrize("argv,message", [
    (["--shapes", "llama9-1b"], "unknown shape"),
    (["--group-size", "48"], "power of two"),
    (["--group-size", "16"], "power of two"),
    (["--backends", "tensorrt"], "unknown backend"),
    (["--peers", "marlin"], "unknown peer"),
    (["--batch", "0"], "positive"),
    (["--bits", "9"], "1..8"),
])
def test_bad_options_get_clear_errors(argv, message, tmp_path, capsys):
    assert sweep.main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_unavailable_backend_requested_explicitly_names_the_reason(tmp_path, capsys):
    unavailable = [b for b in all_backends() if not b.available]
    if not unavailable:
        pytest.skip("every backend is available here")
    assert sweep.main(["--backends", unavailable[0].name, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert unavailable[0].reason in err and unavailable[0].name in err


def test_family_shapes_match_their_configs():
    by_name = {s.name: (s.n, s.k) for s in shapes.parse_shapes("llama3-8b,qwen3-0.6b,8192x28672")}
    assert by_name == {
        "llama3-8b.qkv": (6144, 4096), "llama3-8b.o": (4096, 4096), "llama3-8b.gate_up": (28672, 4096),
        "llama3-8b.down": (4096, 14336), "qwen3-0.6b.qkv": (4096, 1024), "qwen3-0.6b.o": (1024, 2048),
        "qwen3-0.6b.gate_up": (6144, 1024), "qwen3-0.6b.down": (1024, 3072), "8192x28672": (8192, 28672)}
    small = shapes.scale_down(shapes.LayerShape("x", 8192, 28672), 32)
    assert (small.n, small.k) == (256, 896)


def test_speedups_compare_same_shape_and_batch():
    rows = [{"shape": "s", "batch": 1, "method": "cublas-bf16", "latency_us": 30.0},
            {"shape": "s", "batch": 1, "method": "tq-x", "latency_us": 10.0},
            {"shape": "s", "batch": 2, "method": "tq-x", "latency_us": 10.0}]
    sweep.add_speedups(rows, ["cublas-bf16"])
    assert rows[1]["speedup_vs_cublas-bf16"] == 3.0 and rows[2]["speedup_vs_cublas-bf16"] is None


class _WrongPeer(peers.CublasBf16):
    """A peer whose kernel returns the wrong thing: the sweep must refuse to time it."""
    name = "wrong"

    def run(self, x, i):
        return -super().run(x, i)


def test_a_wrong_method_is_never_timed():
    w = sweep.make_weight(64, 128, 0, "cpu")
    x = sweep.make_activation(3, 128, 1, "cpu")
    method = _WrongPeer()
    method.prepare(w, 1)
    opts = {"warmup": 1, "repeats": 1, "graph": False, "copy_bw": 1e9}
    row = sweep.measure_point(method, shapes.LayerShape("t", 64, 128), 3, x, w, 1, "cpu", opts)
    assert row["status"].startswith("check failed") and "latency_us" not in row


def test_torch_int4_peer_matches_its_own_dequantized_weight():
    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        pytest.skip("this torch has no CPU int4 kernel")
    w = sweep.make_weight(64, 256, 0, "cpu")
    x = sweep.make_activation(5, 256, 1, "cpu")
    m = peers.TorchInt4()
    m.prepare(w, 2)
    y = m.run(x, 1).double().numpy()
    ref = m.reference_output(x, 64)
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-2
    # and its own weight is a 4-bit approximation of w (about 10% relative error for a Gaussian)
    err = (m.own_weight(64) - w.double()).norm() / w.double().norm()
    assert 0.02 < float(err) < 0.2


def test_clone_and_row_slice_of_a_quantized_weight(seed):
    import tq
    w = torch.randn(40, 96, generator=torch.Generator().manual_seed(seed))
    qw = tq.quantize(w, bits=3, group_size=32, residual_bits=2)
    copy = peers.clone_quantized(qw)
    assert copy.passes[1].planes[0].data_ptr() != qw.passes[1].planes[0].data_ptr()
    x = torch.randn(2, 96, generator=torch.Generator().manual_seed(seed + 1))
    np.testing.assert_allclose(matmul_float64(x, peers.slice_rows(qw, 7)), matmul_float64(x, qw)[:, :7])


def test_time_op_on_cpu_measures_twice():
    a = torch.randn(64, 64)
    t = timing.time_op(lambda i: a @ a, 3, "cpu", warmup=1, repeats=3)
    assert t.calls == 3 and t.first_s > 0 and t.second_s > 0 and t.median_s > 0
    assert t.method == "perf_counter" and isinstance(t.stable, bool)
    assert timing.rotation_count(1, "cpu") == timing.MAX_ROTATION
    assert timing.rotation_count(1 << 40, "cpu") == timing.MIN_ROTATION


def test_tq_method_uses_registry_backend():
    m = peers.TqMethod(get_backend("reference"), {"bits": 4, "group_size": 32})
    w = sweep.make_weight(32, 64, 0, "cpu")
    m.prepare(w, 3, key="k")
    assert len(m.copies) == 3 and m.bits_per_weight == m.qw.bits_per_weight
