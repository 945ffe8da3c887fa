"""Direct launches of already-compiled Triton kernels.

`kernel[grid](...)` re-binds and re-specializes every argument in Python on each call; on
the lent H100's host that is about 30 us per launch (measured: a 26-argument empty kernel),
which at batch 1 is as long as the matmul itself.  A `Launcher` does the first launch of a
key the normal way (compiling if needed), keeps the returned compiled kernel, and after that
calls its launcher directly with the same argument order (`CompiledKernel.run`, the call
`JITFunction.run` itself ends in since Triton 3.3).

The cache key is the caller's key plus the constexprs and launch options; the caller's key
must determine everything else Triton specializes on: for runtime arguments whose value can
change between calls, the classes `spec(int)` / `ptr_spec(tensor)` (Triton compiles different code for an integer
equal to 1, a multiple of 16, and for 16-byte aligned pointers).  Under the interpreter,
or when a launch hook is installed (profilers), every launch takes the normal path.
"""
from __future__ import annotations

import functools
import os

import torch
import triton

try:  # the knobs module (launch hooks) exists in the Triton versions this package supports
    from triton import knobs as _knobs
except ImportError:  # pragma: no cover
    _knobs = None


def spec(value: int) -> int:
    """What Triton specializes an integer argument on: 1, a multiple of 16, or neither."""
    return 1 if value == 1 else (16 if value % 16 == 0 else 0)


def ptr_spec(t) -> int:
    return 16 if t is None or t.data_ptr() % 16 == 0 else 0


def signature_key(values) -> tuple:
    """Everything Triton specializes on in a sequence of runtime arguments (computed once per weight)."""
    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append((v.dtype, ptr_spec(v)))
        elif isinstance(v, bool):
            out.append(("b", v))
        elif isinstance(v, int):
            out.append(("i", spec(v), -(1 << 31) <= v < (1 << 31)))
        else:
            out.append((type(v).__name__,))
    return tuple(out)


def _hook_set(hook) -> bool:
    # Recent Triton keeps an always-present (possibly empty) HookChain, older ones None.
    if hook is None:
        return False
    calls = getattr(hook, "calls", None)
    return bool(calls) if calls is not None else True


def hooks_installed() -> bool:
    """Whether a Triton launch hook (a profiler) is set: direct launches and replays would skip it."""
    rt = getattr(_knobs, "runtime", None)
    return rt is not None and (_hook_set(rt.launch_enter_hook) or _hook_set(rt.launch_exit_hook))


class Launcher:
    # When a list, every launch through any Launcher is appended to it as
    # (compiled, constexpr names, grid, args, consts): what Replay re-issues.
    recording: list | None = None

    def __init__(self, kernel):
        self.kernel = kernel
        self.arg_names = tuple(kernel.arg_names)
        self._compiled: dict = {}

    def __call__(self, key, grid, args: tuple, consts: dict, num_warps: int, num_stages: int = 3, **options):
        """Launch kernel[grid](*args, **consts); key: see the module docstring; options: further
        compile options (maxnreg)."""
        # The constexprs and launch options are part of the key here, so no caller can forget one.
        key = (key, tuple(consts.items()), num_warps, num_stages, tuple(sorted(options.items())))
        hit = self._compiled.get(key)
        if hit is not None and not hooks_installed():
            compiled, names = hit
            g0 = grid[0]
            g1 = grid[1] if len(grid) > 1 else 1
            g2 = grid[2] if len(grid) > 2 else 1
            compiled.run(g0, g1, g2, _current_stream(args), compiled.function, compiled.packed_metadata,
                         None, None, None, *args, *[consts[n] for n in names])
            if Launcher.recording is not None:
                Launcher.recording.append((compiled, names, grid, args, consts))
            return
        compiled = self.kernel[grid](*args, **consts, num_warps=num_warps, num_stages=num_stages, **options)
        # Cached only when the argument order is certain: the runtime arguments are the
        # leading parameters and the constexprs are all the others.
        names = self.arg_names[len(args):]
        if (os.environ.get("TRITON_INTERPRET", "0") != "1" and compiled is not None and hasattr(compiled, "run")
                and set(names) == set(consts)):
            self._compiled[key] = (compiled, names)
            if Launcher.recording is not None:
                Launcher.recording.append((compiled, names, grid, args, consts))
        elif Launcher.recording is not None:
            Launcher.recording.append(None)  # not replayable


class Replay:
    """The recorded launches of one call, re-issued with fresh per-call tensors.

    Built from `Launcher.recording` after a normal call.  Every tensor argument is either
    static (one of `static`: weight data, signs, counters: passed as recorded), one of the
    call's inputs/outputs (`named`: x, y, bias), or a buffer the call allocated (the rotated
    activation, split-K partials, scratch), allocated again per replay with the recorded
    shape and dtype.  Valid only for calls whose inputs Triton would specialize the same way
    (the caller's key); not when a launch hook is installed.
    """

    def __init__(self, records: list, static: list, named: dict):
        static_ids = {id(t) for t in static}
        named_ids = {id(t): name for name, t in named.items() if t is not None}
        self.fresh: list = []        # (shape, dtype, device) of buffers allocated per call
        fresh_ids: dict = {}
        self.launches = []
        for compiled, names, grid, args, consts in records:
            slots = []
            for a in args:
                if isinstance(a, torch.Tensor) and id(a) not in static_ids:
                    if id(a) in named_ids:
                        slots.append(("named", named_ids[id(a)]))
                        continue
                    if id(a) not in fresh_ids:
                        fresh_ids[id(a)] = len(self.fresh)
                        self.fresh.append((tuple(a.shape), a.dtype, a.device))
                    slots.append(("fresh", fresh_ids[id(a)]))
                else:
                    slots.append(("value", a))
            g = tuple(grid) + (1,) * (3 - len(grid))
            self.launches.append((compiled, g, slots, tuple(consts[n] for n in names)))

    def __call__(self, named: dict, stream: int) -> None:
        buffers = [torch.empty(shape, dtype=dtype, device=dev) for shape, dtype, dev in self.fresh]
        for compiled, g, slots, consts in self.launches:
            args = [v if kind == "value" else (named[v] if kind == "named" else buffers[v]) for kind, v in slots]
            compiled.run(g[0], g[1], g[2], stream, compiled.function, compiled.packed_metadata, None, None, None,
                         *args, *consts)


def record_replay(fn, static: list, named: dict):
    """Run fn() with launch recording; a Replay of its launches, or None if one is not replayable."""
    Launcher.recording = []
    try:
        fn()
        records = Launcher.recording
    finally:
        Launcher.recording = None
    if not records or any(r is None for r in records) or hooks_installed():
        return None
    return Replay(records, static, named)


@functools.lru_cache(maxsize=None)
def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (8 for a CPU device: the interpreter)."""
    if device.type != "cuda":
        return 8
    return torch.cuda.get_device_properties(device).multi_processor_count


def current_raw_stream(device: torch.device) -> int:
    return torch._C._cuda_getCurrentRawStream(device.index if device.index is not None else torch.cuda.current_device())


def _current_stream(args) -> int:
    return current_raw_stream(next(a.device for a in args if isinstance(a, torch.Tensor)))


__all__ = ["Launcher", "Replay", "record_replay", "hooks_installed", "current_raw_stream", "sm_count", "spec", "ptr_spec",
           "signature_key", "triton"]
