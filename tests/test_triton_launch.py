"""tq/triton/launch.py: specialization keys, the direct launcher's cache, and Replay's argument mapping.

The launches themselves need a GPU (test_triton_lut4.py's kernel tests run through them
there); here a stand-in compiled kernel records what it would have been given.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
from tq.triton import launch  # noqa: E402


def test_spec_classes():
    assert [launch.spec(v) for v in (1, 16, 32, 17, 0)] == [1, 16, 16, 0, 16]
    t = torch.empty(8, dtype=torch.float32)
    assert launch.ptr_spec(t) == 16 and launch.ptr_spec(None) == 16
    assert launch.ptr_spec(t[1:]) == 0


def test_signature_key_distinguishes_what_triton_specializes():
    a = torch.empty(8)
    k1 = launch.signature_key((a, 16, 2.0, True))
    assert k1 == launch.signature_key((torch.empty(8), 32, 3.0, True))
    assert k1 != launch.signature_key((a, 17, 2.0, True))          # divisibility
    assert k1 != launch.signature_key((a.half(), 16, 2.0, True))   # dtype
    assert k1 != launch.signature_key((a, 1 << 40, 2.0, True))     # i32 vs i64


class _FakeCompiled:
    function = "fn"
    packed_metadata = "md"

    def __init__(self):
        self.calls = []

    def run(self, g0, g1, g2, stream, function, metadata, launch_md, enter, exit_, *args):
        self.calls.append(((g0, g1, g2), stream, args))


def test_replay_maps_static_named_and_fresh_tensors():
    weight = torch.arange(4.0)
    x, y = torch.ones(2, 8), torch.zeros(2, 3)
    rotated = torch.empty(2, 8, dtype=torch.float16)   # allocated by the recorded call
    partial = torch.empty(4, 2, 3)
    rot, mm = _FakeCompiled(), _FakeCompiled()
    records = [(rot, ("N",), (5,), (x, rotated, 7), {"N": 128}),
               (mm, ("BN", "BM"), (3, 4), (rotated, y, partial, weight, 2, 0.5), {"BM": 16, "BN": 64})]
    replay = launch.Replay(records, static=[weight], named={"x": x, "y": y, "bias": None})
    x2, y2 = torch.full((2, 8), 3.0), torch.zeros(2, 3)
    replay({"x": x2, "y": y2, "bias": None}, stream=99)
    (grid, stream, args), = rot.calls
    assert grid == (5, 1, 1) and stream == 99
    assert args[0] is x2 and args[2] == 7 and args[3] == 128
    fresh_rot = args[1]
    assert fresh_rot is not rotated and fresh_rot.shape == (2, 8) and fresh_rot.dtype == torch.float16
    (grid, _, args), = mm.calls
    assert grid == (3, 4, 1)
    assert args[0] is fresh_rot                       # one buffer shared by both launches
    assert args[1] is y2 and args[3] is weight        # named output; static weight as recorded
    assert args[2] is not partial and args[2].shape == (4, 2, 3)
    assert args[4:] == (2, 0.5, 64, 16)               # constexprs in signature order


def test_record_replay_refuses_unreplayable_launches():
    def call():
        launch.Launcher.recording.append(None)
    assert launch.record_replay(call, [], {}) is None
    assert launch.Launcher.recording is None


class _FakeKernel:
    """kernel[grid](*args, **consts) -> a compiled stand-in; counts compiles per constexpr set."""
    arg_names = ["x", "n", "A", "B"]

    def __init__(self):
        self.compiles = []

    def __getitem__(self, grid):
        def launch_(*args, num_warps, num_stages, **consts):
            self.compiles.append(dict(consts))
            compiled = _FakeCompiled()
            compiled.consts = dict(consts)
            return compiled
        return launch_


def test_launcher_cache_keys_on_constexprs(monkeypatch):
    """A cached compiled kernel is reused only for the same constexprs (a 4-bit and a 4+4
    weight of one shape differ only in the RESIDUAL constexpr)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(launch, "_current_stream", lambda args: 7)
    kernel = _FakeKernel()
    launcher = launch.Launcher(kernel)
    x = torch.empty(4)
    launcher("k", (2,), (x, 5), {"A": 1, "B": False}, num_warps=4)
    launcher("k", (2,), (x, 5), {"A": 1, "B": False}, num_warps=4)   # cached: no compile
    assert len(kernel.compiles) == 1
    launcher("k", (2,), (x, 5), {"A": 1, "B": True}, num_warps=4)    # other constexpr: compile
    launcher("k", (2,), (x, 5), {"A": 1, "B": False}, num_warps=8)   # other launch option: compile
    launcher("k", (2,), (x, 5), {"A": 1, "B": False}, num_warps=4, maxnreg=128)  # compile option: compile
    assert len(kernel.compiles) == 4
    cached = launcher._compiled[("k", (("A", 1), ("B", False)), 4, 3, ())][0]
    assert len(cached.calls) == 1 and cached.calls[0][2] == (x, 5, 1, False)
