import pytest
import torch

import tq
from tq import backends


def test_reference_always_available():
    assert "reference" in tq.available_backends()
    ref = tq.get_backend("reference")
    assert ref.available and ref.reason


def test_every_backend_reports_a_reason():
    for b in backends.all_backends():
        assert b.name in backends.PREFERENCE and isinstance(b.reason, str) and b.reason


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        tq.get_backend("cuda-magic")
    with pytest.raises(ValueError, match="unknown backend"):
        tq.matmul(torch.randn(1, 128), tq.quantize(torch.randn(8, 128)), backend="nope")


def test_unavailable_backend_error_carries_reason(monkeypatch):
    fake = backends.Backend("cutile", None, False, "no CUDA device: torch.cuda.is_available() is False")
    monkeypatch.setitem(backends._cache, "cutile", fake)
    with pytest.raises(tq.BackendUnavailableError, match="no CUDA device"):
        tq.get_backend("cutile")
    qw = tq.quantize(torch.randn(8, 128))
    with pytest.raises(tq.BackendUnavailableError, match="no CUDA device"):
        tq.matmul(torch.randn(1, 128), qw, backend="cutile")


def test_auto_skips_backends_that_do_not_support_the_inputs(monkeypatch):
    class Picky:
        @staticmethod
        def supports(x, qw):
            return "only 4-bit"

        @staticmethod
        def matmul(x, qw, bias=None):
            raise AssertionError("must not be called")

    for name in ("cutile", "triton"):
        monkeypatch.setitem(backends._cache, name, backends.Backend(name, Picky, True, "fake"))
    qw = tq.quantize(torch.randn(8, 128), bits=3)
    x = torch.randn(2, 128)
    assert backends.select_backend(x, qw).name == "reference"
    torch.testing.assert_close(tq.matmul(x, qw), tq.matmul(x, qw, backend="reference"))
    with pytest.raises(ValueError, match="only 4-bit"):
        tq.matmul(x, qw, backend="triton")


def test_import_failure_becomes_unavailable(monkeypatch):
    monkeypatch.setitem(backends._MODULES, "triton", "tq._no_such_module")
    monkeypatch.delitem(backends._cache, "triton", raising=False)
    b = backends.get_backend("triton", require_available=False)
    assert not b.available and "import failed" in b.reason
    backends._cache.pop("triton", None)
