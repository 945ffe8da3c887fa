"""The parity harness: every registered backend against the float64 reference, and the
harness itself failing deliberately broken backends."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import tq

from tq.backends import all_backends, get_backend
from tq.experiments import parity

BACKENDS = [b.name for b in all_backends()]
ODD_SHAPE = [(33, 96)]           # odd N; K = 96 pads the last group for G = 64 and 128
ALL_GROUPS = (32, 64, 128, None)
ALL_BITS = ((4, None), (4, 4), (3, 2), (2, None))
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


# many small torch ops: see the fixture in conftest.py
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _backend_or_skip(name):
    backend = get_backend(name, require_available=False)
    if not backend.available:
        pytest.skip(f"backend {name!r} unavailable: {backend.reason}")
    return backend


def _assert_all_pass(rows):
    bad = [r for r in rows if r["status"] == "FAIL"]
    assert not bad, parity.summarize(rows)
    assert any(r["status"] == "pass" for r in rows), parity.summarize(rows)


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_groups_and_bits(name, seed):
    """Every group size x bit configuration (residual included), bf16 with bias, odd shapes."""
    backend = _backend_or_skip(name)
    rows = parity.run_parity([backend], shapes=ODD_SHAPE, group_sizes=ALL_GROUPS, bit_configs=ALL_BITS,
                             batches=(1, 5), dtypes=(torch.bfloat16,), biases=(True,), seed=seed)
    _assert_all_pass(rows)


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_dtypes(name, seed):
    backend = _backend_or_skip(name)
    rows = parity.run_parity([backend], shapes=[(40, 160)], group_sizes=(32,), bit_configs=((4, None),),
                             batches=(3,), dtypes=DTYPES, biases=(False,), seed=seed)
    _assert_all_pass(rows)


@pytest.mark.gpu
@pytest.mark.parametrize("name", BACKENDS)
def test_backend_real_shapes_gpu(name, seed):
    backend = _backend_or_skip(name)
    rows = parity.run_parity([backend], shapes=[(4096, 4096), (1024, 3072)], group_sizes=(64, 128),
                             bit_configs=((4, None), (4, 4)), batches=(1, 256), dtypes=(torch.bfloat16,),
                             biases=(False,), seed=seed, device="cuda")
    _assert_all_pass(rows)
    assert all(r["torch_peak_bytes"] is not None for r in rows if r["status"] == "pass")


# ---------------------------------------------------------------------------
# The harness must fail a wrong kernel
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class BrokenBackend:
    """The reference backend with one deliberate bug applied to the weight before the call."""
    name: str
    corrupt: object  # QuantizedWeight -> QuantizedWeight
    available: bool = True
    reason: str = ""

    def supports(self, x, qw):
        return None

    def matmul(self, x, qw, *, bias=None):
        return get_backend("reference").matmul(x, self.corrupt(qw), bias=bias)


def _with_pass0_norms(qw, edit):
    norms = qw.passes[0].norms.clone()
    edit(norms)
    passes = [dataclasses.replace(qw.passes[0], norms=norms)] + list(qw.passes[1:])
    return dataclasses.replace(qw, passes=passes)


def _drop_last_group_norm(qw):
    def edit(norms):
        norms[:, -1] = 0
    return _with_pass0_norms(qw, edit)


def _flip_one_row(qw):
    def edit(norms):
        norms[qw.out_features // 2] *= -1  # a wrong sign on one output row
    return _with_pass0_norms(qw, edit)


def _drop_residual(qw):
    return dataclasses.replace(qw, passes=qw.passes[:1])


@pytest.mark.parametrize("corrupt,bits", [
    (_drop_last_group_norm, ((4, None),)),
    (_flip_one_row, ((4, None),)),
    (_drop_residual, ((4, 4),)),
])
def test_harness_fails_broken_backend(corrupt, bits, seed):
    broken = BrokenBackend(f"broken-{corrupt.__name__}", corrupt)
    rows = parity.run_parity([broken, "reference"], shapes=[(48, 128)], group_sizes=(32, None), bit_configs=bits,
                             batches=(4,), dtypes=(torch.float32, torch.bfloat16), biases=(False,), seed=seed)
    broken_rows = [r for r in rows if r["backend"] == broken.name]
    assert broken_rows and all(r["status"] == "FAIL" for r in broken_rows), parity.summarize(rows)
    assert all(r["status"] == "pass" for r in rows if r["backend"] == "reference"), parity.summarize(rows)


def test_harness_fails_crash_and_wrong_dtype(seed):
    class Crashes(BrokenBackend):
        def matmul(self, x, qw, *, bias=None):
            raise RuntimeError("kernel launch failed")

    class WrongDtype(BrokenBackend):
        def matmul(self, x, qw, *, bias=None):
            return get_backend("reference").matmul(x, qw, bias=bias).float()

    rows = parity.run_parity([Crashes("crash", None), WrongDtype("dtype", None)], shapes=[(32, 64)],
                             group_sizes=(32,), bit_configs=((4, None),), batches=(2,), dtypes=(torch.bfloat16,),
                             biases=(False,), seed=seed)
    assert [r["status"] for r in rows] == ["FAIL", "FAIL"]
    assert "kernel launch failed" in rows[0]["reason"] and "dtype" in rows[1]["reason"]


def test_unavailable_backend_is_skipped_with_reason(seed):
    unavailable = BrokenBackend("missing", None, available=False, reason="needs a GPU")
    rows = parity.run_parity([unavailable], shapes=[(32, 64)], group_sizes=(32,), bit_configs=((4, None),),
                             batches=(1,), dtypes=(torch.float32,), biases=(False,), seed=seed)
    assert rows[0]["status"] == "skip" and rows[0]["reason"] == "needs a GPU"


# ---------------------------------------------------------------------------
# Tolerances, weight error, CLI
# ---------------------------------------------------------------------------
def test_tolerance_table():
    assert parity.TOLERANCES[torch.float32].bound(0.5) == 1e-4
    bf16 = parity.TOLERANCES[torch.bfloat16]
    assert bf16.bound(1e-3) == pytest.approx(3e-3 + 2 ** -9)
    assert bf16.bound(1.0) == 1e-2  # capped


def test_weight_nmse_near_codebook_expectation(seed):
    # Both passes predicted: the residual codebook's expected MSE is relative to the residual's
    # energy, so the product with the main pass's is the two passes' NMSE (tq/residual.py)
    rows = parity.run_parity(["reference"], shapes=[(256, 512)], group_sizes=(128,),
                             bit_configs=((4, None), (4, 4), (3, 2)),
                             batches=(1,), dtypes=(torch.float32,), biases=(False,), seed=seed)
    plain, residual, low = rows
    assert 0.8 < plain["weight_nmse_over_expected"] < 1.25
    assert plain["expected_mse"] == plain["expected_mse_main_pass"]
    for r in (residual, low):
        assert 0.8 < r["weight_nmse_over_expected"] < 1.25, r
        assert r["expected_mse"] < 0.5 * r["expected_mse_main_pass"]
    assert residual["weight_nmse"] < 0.1 * plain["weight_nmse"]
    # a Gaussian residual codebook predicts nothing about the residual: no expectation then
    qw = tq.quantize(torch.randn(64, 256), bits=4, group_size=128, residual_bits=4, residual_codebook="gaussian")
    assert parity.expected_weight_nmse(qw) is None
    qw = tq.quantize(torch.randn(64, 256), bits=4, group_size=128, residual_bits=4)
    assert parity.expected_weight_nmse(qw) == pytest.approx(
        qw.passes[0].codebook.expected_mse * qw.passes[1].codebook.expected_mse)


def test_cli_writes_outputs_and_rejects_bad_options(tmp_path, capsys):
    out = tmp_path / "parity"
    code = parity.main(["--backends", "reference", "--group-sizes", "32,row", "--bits", "4,3+2", "--shapes", "40x96",
                        "--batch", "2", "--dtypes", "bf16", "--bias", "with", "--seed", "5", "--out", str(out)])
    assert code == 0
    data = json.loads((out / "parity.json").read_text())
    assert len(data["results"]) == 4 and data["meta"]["seed"] == 5
    assert (out / "parity.csv").read_text().count("\n") == 5
    assert parity.main(["--group-sizes", "48", "--out", str(out)]) == 2
    assert "power of two" in capsys.readouterr().err
    assert parity.main(["--shapes", "llama9", "--out", str(out)]) == 2
    assert "unknown shape" in capsys.readouterr().err
    unavailable = [b for b in all_backends() if not b.available]
    if unavailable:
        assert parity.main(["--backends", unavailable[0].name, "--out", str(out)]) == 2
        assert unavailable[0].reason in capsys.readouterr().err
