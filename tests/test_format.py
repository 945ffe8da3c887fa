import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import tq
from tq.format import FormatError, from_state, header_json, state_tensors


@pytest.fixture
def qw(gen):
    return tq.quantize(torch.randn(48, 576, generator=gen), bits=3, group_size=128, residual_bits=2,
                       codebook="gaussian-poly", seed=5)


def assert_same(a, b):
    assert a.shape == b.shape and a.group_size == b.group_size and a.k_padded == b.k_padded
    assert a.seed == b.seed and a.dtype == b.dtype and a.full_row == b.full_row
    for pa, pb in zip(a.passes, b.passes, strict=True):
        assert pa.bits == pb.bits and pa.codebook.kind == pb.codebook.kind
        assert pa.codebook.poly_coefficients == pb.codebook.poly_coefficients
        assert all(torch.equal(x, y) for x, y in zip(pa.planes, pb.planes, strict=True))
        assert torch.equal(pa.norms, pb.norms) and torch.equal(pa.levels, pb.levels)


def test_save_load_roundtrip_exact(qw, tmp_path):
    path = tmp_path / "w.safetensors"
    tq.save(qw, path)
    back = tq.load(path)
    assert_same(qw, back)
    assert torch.equal(tq.dequantize(qw), tq.dequantize(back))
    assert back.nbytes == qw.nbytes


@pytest.mark.parametrize("group_size", [32, None])
def test_roundtrip_other_configs(group_size, tmp_path, gen):
    qw = tq.quantize(torch.randn(16, 300, generator=gen).bfloat16(), 8, group_size, norm_dtype=torch.float32)
    tq.save(qw, tmp_path / "a.safetensors")
    assert_same(qw, tq.load(tmp_path / "a.safetensors"))


def test_truncated_file(qw, tmp_path):
    path = tmp_path / "w.safetensors"
    tq.save(qw, path)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="not a readable safetensors"):
        tq.load(tmp_path / "cut.safetensors")
    with pytest.raises(FileNotFoundError):
        tq.load(tmp_path / "missing.safetensors")


def _rewrite(path, tensors=None, header=None):
    meta = {"tq": json.dumps(header)} if header is not None else {}
    save_file(tensors, path, metadata=meta)


def test_corrupt_contents_are_rejected(qw, tmp_path):
    tensors = state_tensors(qw)
    header = json.loads(header_json(qw))
    cases = {}
    cases["no metadata"] = (tensors, None, "no tq metadata")
    cases["version"] = (tensors, {**header, "version": 99}, "version 99")
    cases["format"] = (tensors, {**header, "format": "other"}, "not a tq weight")
    missing = dict(tensors)
    del missing["pass1.norms"]
    cases["missing tensor"] = (missing, header, "missing tensors")
    short = {**tensors, "pass0.plane0": tensors["pass0.plane0"][:, :-1].contiguous()}
    cases["plane shape"] = (short, header, "plane 0")
    nan = {**tensors, "pass0.norms": tensors["pass0.norms"].clone()}
    nan["pass0.norms"][0, 0] = float("nan")
    cases["nan norm"] = (nan, header, "finite")
    bad_levels = {**tensors, "pass0.levels": tensors["pass0.levels"].flip(0).contiguous()}
    cases["unsorted levels"] = (bad_levels, header, "increasing")
    cases["bad kind"] = (tensors, {**header, "passes": [dict(header["passes"][0], codebook="zz"),
                                                          header["passes"][1]]}, "unknown codebook")
    cases["incomplete"] = (tensors, {k: v for k, v in header.items() if k != "k_padded"}, "incomplete")
    for name, (t, h, match) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        _rewrite(path, t, h)
        with pytest.raises(FormatError, match=match):
            tq.load(path)


def test_from_state_in_memory(qw):
    back = from_state(header_json(qw), state_tensors(qw, prefix="layer."), prefix="layer.")
    assert_same(qw, back)


def test_repr_and_config(qw):
    text = repr(qw)
    assert "3+2" in text and "48x576" in text and "bits/weight" in text
    assert qw.config()["residual_bits"] == 2 and qw.config()["codebook"] == "gaussian-poly"
    assert load_file  # safetensors is importable without torch pickles
