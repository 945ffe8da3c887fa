"""The backend sweep: latency, bandwidth and error per layer shape and batch size.

    python -m tq.experiments.sweep --group-size 64 [--bits 4] [--residual-bits 4]
        [--batch 1,16,256,2048] [--shapes llama3-8b,qwen3-0.6b,8192x28672]
        [--backends all|reference,triton,cutile] [--peers all|none|torch-int4,bnb-nf4]
        [--codebook gaussian|gaussian-poly|beta|beta-poly] [--graph] [--repeats 100]
        [--out out/sweep]

For every layer shape (model families map to their Linear shapes, see shapes.py) and
batch size B, it times every available tq backend, cuBLAS bf16 (``x @ W.T``, the
baseline) and the speed peers (torch's int4 kernel, bitsandbytes NF4; peers.py) on the
same random bf16 weight and activation.  Per point:

- the output is first checked: rows of y against the float64 product with the method's
  own dequantized weight (for tq: ``tq.reference.matmul_float64``), within the parity
  harness's bf16 tolerance; a method that fails the check is never timed;
- median latency over CUDA events with warm-up, several weight copies in rotation so
  L2 does not serve them, optionally CUDA-graph replay (timing.py); each point is
  measured twice and the spread of the two medians is reported (``stable`` = within 5%);
- effective GB/s = bytes the call must move (stored weight + norms/scales, x, y) /
  latency, and its percentage of the measured HBM copy bandwidth (one large
  device-to-device copy per run, bytes read + written);
- TFLOP/s = 2 B N K / latency; speedup over cuBLAS bf16 and over each peer;
- peak memory of one call (memory.py), and the output error against the float64 reference.

Writes sweep.csv, sweep.json, sweep.md, latency.png and speedup.png into --out.

Without a GPU the same command runs the reference backend (and Triton in interpreter
mode, TRITON_INTERPRET=1) on shapes scaled down by 32 and batches capped at 64, within a
time budget, and says so: those numbers show the harness works, not kernel speed.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys
import time

import numpy as np
import torch

from . import memory, plots, tables, timing
from .parity import TOLERANCES, parse_group_sizes, parse_ints, relative_error
from .peers import PEERS, CublasBf16, MethodUnavailable, TqMethod
from .shapes import describe_sources, parse_shapes, scale_down

CPU_SCALE = 32            # CPU runs divide N and K by this ...
CPU_MAX_BATCH = 64        # ... cap the batch at this ...
CPU_REPEATS = 3           # ... time this many calls per measurement after one warm-up call ...
CPU_SLOW_BUDGET = 10.0    # ... and give interpreted backends (Triton) this many seconds in all.
CHECK_ROWS = 256          # output rows (of N) compared with the float64 reference
CHECK_BATCH = 8           # activation rows compared
WEIGHT_STD = 0.02
BASELINE = "cublas-bf16"


class SweepError(ValueError):
    """A bad option: the message says what to change."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tq.experiments.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--group-size", default="128", help="power of two >= 32, or 'row' (default 128)")
    p.add_argument("--bits", type=int, default=4, help="bits of the main pass (default 4)")
    p.add_argument("--residual-bits", type=int, default=None, help="bits of the residual pass (default none)")
    p.add_argument("--codebook", default="gaussian", choices=("gaussian", "gaussian-poly", "beta", "beta-poly"))
    p.add_argument("--batch", default="1,16,256,2048", help="batch sizes B (rows of x)")
    p.add_argument("--shapes", default="llama3-8b,qwen3-0.6b,8192x28672",
                   help="model families (llama3-8b, llama3-70b, qwen3-0.6b, smollm2-135m) and/or NxK")
    p.add_argument("--backends", default="all", help="'all' (every available one) or a list: reference,triton,cutile")
    p.add_argument("--peers", default="all", help="'all', 'none' or a list: torch-int4,bnb-nf4")
    p.add_argument("--graph", action="store_true", help="time CUDA-graph replays instead of eager calls")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"max timed calls per measurement (default 100 on GPU, {CPU_REPEATS} on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls before timing (default 10 on GPU, 1 on CPU)")
    p.add_argument("--time-budget", type=float, default=None,
                   help=f"seconds after which remaining points are skipped (default: none; on CPU the "
                        f"interpreted backends get {CPU_SLOW_BUDGET:.0f} s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and activations")
    p.add_argument("--out", default="out/sweep", help="output directory (default out/sweep)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p


# ---------------------------------------------------------------------------
# Options -> plan
# ---------------------------------------------------------------------------
def _resolve_backends(spec: str, cpu_mode: bool, notes: list[str]):
    from tq.backends import all_backends, get_backend
    if spec.strip() == "all":
        chosen = []
        for b in all_backends():
            if b.available:
                chosen.append(b)
            else:
                notes.append(f"backend {b.name} not run: {b.reason}")
        return chosen
    out = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        out.append(get_backend(name))  # unknown -> ValueError; unavailable -> BackendUnavailableError with reason
    return out


def _resolve_peers(spec: str):
    spec = spec.strip()
    if spec == "none":
        return []
    names = list(PEERS) if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise SweepError(f"unknown peer(s) {unknown}; choose from {list(PEERS)}, 'all' or 'none'")
    return [PEERS[n]() for n in names]


def environment(device) -> dict:
    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0]}
    for mod in ("triton", "bitsandbytes", "numpy"):
        try:
            env[mod] = getattr(importlib.import_module(mod), "__version__", "installed")
        except Exception:
            env[mod] = None
    import tq
    env["tq"] = tq.__version__
    if timing.is_cuda(device):
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, sm=f"{props.major}{props.minor}", gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   l2_bytes=timing.l2_bytes(device))
        try:
            from cuda.bindings import driver
            err, version = driver.cuDriverGetVersion()
            env["driver_cuda_version"] = int(version)
        except Exception:
            env["driver_cuda_version"] = None
        try:  # the driver release (e.g. 570.xx) is only known to nvidia-smi
            import subprocess
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except Exception:
            env["driver"] = None
    else:
        env["gpu"] = None
    return env


def make_weight(n: int, k: int, seed: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=g) * WEIGHT_STD).to(torch.bfloat16).to(device)


def make_activation(batch: int, k: int, seed: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, k, generator=g).to(torch.bfloat16).to(device)


# ---------------------------------------------------------------------------
# One point
# ---------------------------------------------------------------------------
def check_output(method, x, y, weight) -> dict:
    """Errors of y on a row subset: against the method's own float64 answer and against W itself."""
    rows, b = min(CHECK_ROWS, y.shape[1]), min(CHECK_BATCH, y.shape[0])
    xs = x[:b]
    y64 = y[:b, :rows].double().cpu().numpy()
    ref = method.reference_output(xs, rows)
    own = method.own_weight(rows)
    torch_y = (xs.cpu() @ own.to(torch.bfloat16).T).double().numpy()  # torch at bf16: the tolerance's yardstick
    exact_w = xs.double().cpu().numpy() @ weight[:rows].double().cpu().numpy().T
    err = relative_error(y64, ref)
    tol = TOLERANCES[torch.bfloat16].bound(relative_error(torch_y, ref))
    ok = bool(np.isfinite(y64).all()) and err <= tol
    return {"rel_err": err, "tolerance": tol, "rel_err_vs_weight": relative_error(y64, exact_w), "check_ok": ok}


def measure_point(method, shape, batch, x, weight, copies, device, opts) -> dict:
    n, k = shape.n, shape.k
    row = {"shape": shape.name, "n": n, "k": k, "batch": batch, "method": method.name, "kind": method.kind,
           "bits_per_weight": method.bits_per_weight, "stored_bytes": method.stored_bytes, "copies": copies,
           "status": "ok"}
    if method.kind == "tq":
        reason = method.supports(x)
        if reason:
            row["status"] = f"skipped: {reason}"
            return row
    try:
        y = method.run(x, 0)
        row.update(check_output(method, x, y, weight))
    except Exception as e:  # a method that raises is reported, never timed
        row["status"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        return row
    if not row["check_ok"]:
        row["status"] = f"check failed: rel err {row['rel_err']:.3g} > {row['tolerance']:.3g} (not timed)"
        return row
    del y
    mem = memory.MemoryReport()
    try:
        if timing.is_cuda(device):
            _, mem = memory.measure_call(lambda: method.run(x, 0), device)
        t = timing.time_op(lambda i: method.run(x, i), copies, device, warmup=opts["warmup"],
                           repeats=opts["repeats"], graph=opts["graph"])
    except Exception as e:  # e.g. out of memory while timing: the point has no time, the sweep goes on
        row["status"] = f"error while timing: {type(e).__name__}: {str(e)[:160]}"
        return row
    moved = method.stored_bytes + x.numel() * x.element_size() + batch * n * 2
    row.update({
        "latency_us": t.median_s * 1e6, "latency_us_first": t.first_s * 1e6, "latency_us_second": t.second_s * 1e6,
        "spread": t.spread, "stable": t.stable, "timed_calls": t.calls, "timing": t.method,
        "bytes_moved": moved, "gbps": moved / t.median_s / 1e9,
        "pct_copy_bw": 100.0 * moved / t.median_s / opts["copy_bw"] if opts["copy_bw"] else None,
        "tflops": 2.0 * batch * n * k / t.median_s / 1e12,
        "torch_peak_bytes": mem.torch_peak_bytes, "device_delta_bytes": mem.device_delta_bytes,
        "materialized_w_hat_bytes": n * k * 2,
    })
    if t.note:
        row["timing_note"] = t.note
    return row


def add_speedups(rows: list[dict], references: list[str]) -> None:
    """speedup_vs_<m> = latency of m / latency of this row, at the same shape and batch."""
    lat = {(r["shape"], r["batch"], r["method"]): r.get("latency_us") for r in rows}
    for r in rows:
        for m in references:
            other = lat.get((r["shape"], r["batch"], m))
            mine = r.get("latency_us")
            r[f"speedup_vs_{m}"] = other / mine if other and mine else None


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------
def plan(args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu_mode = device.type != "cuda"
    notes = []
    if cpu_mode:
        # Must be set before tq.triton (and so triton.jit) is imported by the registry.
        if os.environ.get("TRITON_INTERPRET") is None:
            os.environ["TRITON_INTERPRET"] = "1"
        # One thread: tiny CPU matmuls on a shared, loaded machine stall for milliseconds in
        # the intra-op thread pool; one thread makes the smoke run quicker and steadier.
        torch.set_num_threads(1)
        notes.append(f"NO GPU: CPU run (1 thread) at shapes scaled down {CPU_SCALE}x, batches capped at {CPU_MAX_BATCH}; "
                     f"Triton (if available) runs in its interpreter. These timings show that the sweep works, "
                     f"they say nothing about kernel speed; '{BASELINE}' is torch's CPU bf16 matmul here.")
    try:
        groups = parse_group_sizes(str(args.group_size))
    except (ValueError, TypeError) as e:
        raise SweepError(f"--group-size: {e}") from None
    if len(groups) != 1:
        raise SweepError("--group-size takes one value (run the sweep once per group size)")
    for name, v in (("--bits", args.bits), ("--residual-bits", args.residual_bits)):
        if v is not None and not 1 <= v <= 8:
            raise SweepError(f"{name} must be in 1..8, got {v}")
    shapes = parse_shapes(args.shapes)
    if cpu_mode:
        shapes = [scale_down(s, CPU_SCALE) for s in shapes]
    batches = parse_ints(args.batch, "--batch")
    if cpu_mode:
        batches = sorted({min(b, CPU_MAX_BATCH) for b in batches})
    backends = _resolve_backends(args.backends, cpu_mode, notes)
    peers = _resolve_peers(args.peers)
    if args.repeats is not None and args.repeats < 1:
        raise SweepError("--repeats must be >= 1")
    quantize_kwargs = {"bits": args.bits, "group_size": groups[0], "residual_bits": args.residual_bits,
                       "codebook": args.codebook, "seed": args.seed}
    cache: dict = {}
    tq_methods = [TqMethod(b, quantize_kwargs, cache) for b in backends]
    # On the CPU everything but the reference is interpreted (slow): it runs last, within the budget.
    fast = [CublasBf16()] + peers + [m for m in tq_methods if not cpu_mode or m.backend.name == "reference"]
    slow = [m for m in tq_methods if m not in fast]
    budget = args.time_budget
    slow_budget = CPU_SLOW_BUDGET if cpu_mode and budget is None else budget
    return {"device": device, "cpu_mode": cpu_mode, "notes": notes, "shapes": shapes, "batches": batches,
            "phases": [fast, slow], "quantize_kwargs": quantize_kwargs, "budgets": [budget, slow_budget],
            "repeats": args.repeats or (CPU_REPEATS if cpu_mode else 100),
            "warmup": args.warmup if args.warmup is not None else (1 if cpu_mode else 10)}


def run_sweep(args, progress: bool = True) -> dict:
    # plan() may set TRITON_INTERPRET and the thread count for a CPU run; undo both afterwards
    # so that a caller in the same process (the tests) is left as it was.
    saved_env, saved_threads = os.environ.get("TRITON_INTERPRET"), torch.get_num_threads()
    try:
        return _run_sweep(args, progress)
    finally:
        torch.set_num_threads(saved_threads)
        if saved_env is None:
            os.environ.pop("TRITON_INTERPRET", None)


def _run_sweep(args, progress: bool) -> dict:
    p = plan(args)
    device, shapes, batches = p["device"], p["shapes"], p["batches"]
    for note in p["notes"]:
        print(note)
    t0 = time.perf_counter()
    copy_bw, copy_bytes = timing.copy_bandwidth(device)
    print(f"device {device}: copy bandwidth {copy_bw / 1e9:.1f} GB/s (read+write of a {copy_bytes >> 20} MiB copy)")
    opts = {"warmup": p["warmup"], "repeats": p["repeats"], "graph": args.graph, "copy_bw": copy_bw}
    methods = [m for phase in p["phases"] for m in phase]
    total = len(methods) * len(shapes) * len(batches)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="sweep", unit="point", file=sys.stderr)
    rows: list[dict] = []
    skipped_budget = 0
    for phase, budget in zip(p["phases"], p["budgets"]):
        # A phase's budget counts from its own start, so the fast phase never starves the slow one.
        t_phase = time.perf_counter()
        for si, shape in enumerate(shapes):
            if not phase:
                break
            weight = make_weight(shape.n, shape.k, args.seed + si, device)
            for method in phase:
                over = budget is not None and time.perf_counter() - t_phase > budget
                unavailable = None
                if not over:
                    try:
                        method.prepare(weight, 1, key=(shape, args.seed + si))
                        # On the CPU one copy: rotation is about the GPU's L2, CPU runs are smoke runs.
                        copies = 1 if p["cpu_mode"] else timing.rotation_count(method.stored_bytes, device)
                        if copies > 1:
                            method.prepare(weight, copies, key=(shape, args.seed + si))
                    except MethodUnavailable as e:
                        unavailable = str(e)
                    except Exception as e:  # e.g. out of memory, or a library error: report, go on
                        unavailable = f"preparing the weight failed ({type(e).__name__}: {str(e)[:160]})"
                for bi, batch in enumerate(batches):
                    over = over or (budget is not None and time.perf_counter() - t_phase > budget)
                    base = {"shape": shape.name, "n": shape.n, "k": shape.k, "batch": batch, "method": method.name,
                            "kind": method.kind}
                    if over:
                        skipped_budget += 1
                        rows.append({**base, "status": f"skipped: time budget of {budget:.0f} s used up"})
                    elif unavailable:
                        rows.append({**base, "status": f"unavailable: {unavailable}"})
                    else:
                        x = make_activation(batch, shape.k, args.seed + 1000 * si + bi + 1, device)
                        # Interpreted backends on the CPU: one timed call per measurement, they take seconds each.
                        point_opts = {**opts, "repeats": 1} if p["cpu_mode"] and phase is p["phases"][1] else opts
                        rows.append(measure_point(method, shape, batch, x, weight, copies, device, point_opts))
                    if bar:
                        bar.update()
                method.release()
            del weight
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if bar:
        bar.close()
    if skipped_budget:
        p["notes"].append(f"{skipped_budget} points skipped: a time budget was used up (see status; "
                          f"raise it with --time-budget)")
    references = [BASELINE] + [m.name for m in p["phases"][0] if m.kind == "peer"]
    add_speedups(rows, references)
    unstable = [r for r in rows if r.get("stable") is False]
    if unstable:
        p["notes"].append(f"{len(unstable)} of {sum('stable' in r for r in rows)} points were NOT stable: their two "
                          f"measurements differ by more than {timing.STABLE_SPREAD:.0%} (see the spread column)")
    meta = {
        "command": "python -m tq.experiments.sweep " + " ".join(getattr(args, "argv", []) or []),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device), "cpu_mode": p["cpu_mode"], "notes": p["notes"],
        "copy_bandwidth_gbps": copy_bw / 1e9, "copy_bytes": copy_bytes,
        "quantization": {k: v for k, v in p["quantize_kwargs"].items()},
        "batches": batches, "shapes": [f"{s.name}={s.n}x{s.k}" for s in shapes],
        "shape_sources": describe_sources(shapes), "graph": args.graph, "repeats": p["repeats"],
        "warmup": p["warmup"], "seconds": round(time.perf_counter() - t0, 1), "environment": environment(device),
        "references": references,
        "timing": ("CUDA-graph replay between CUDA events" if args.graph else "per-call CUDA events")
        if not p["cpu_mode"] else "time.perf_counter per call (CPU)",
    }
    return {"meta": meta, "rows": rows}


def _columns(references):
    cols = [("shape", "shape", ""), ("N", "n", ""), ("K", "k", ""), ("B", "batch", ""), ("method", "method", ""),
            ("us", "latency_us", ".1f"), ("spread", "spread", ".1%"), ("stable", "stable", ""), ("GB/s", "gbps", ".0f"),
            ("% copy bw", "pct_copy_bw", ".0f"), ("TFLOP/s", "tflops", ".2f")]
    cols += [(f"x {m}", f"speedup_vs_{m}", ".2f") for m in references]
    cols += [("torch peak B", "torch_peak_bytes", ""), ("dev delta B", "device_delta_bytes", ""),
             ("rel err", "rel_err", ".1e"), ("err vs W", "rel_err_vs_weight", ".1e"), ("status", "status", "")]
    return cols


def _terminal_columns(references):
    keep = {"shape", "batch", "method", "latency_us", "spread", "gbps", "pct_copy_bw", "tflops", "rel_err", "status"}
    return [c for c in _columns(references) if c[1] in keep or c[1].startswith("speedup_vs_")]


def write_outputs(result: dict, out_dir: str, plots_too: bool = True) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    meta, rows = result["meta"], result["rows"]
    paths = [os.path.join(out_dir, n) for n in ("sweep.csv", "sweep.json", "sweep.md")]
    tables.write_csv(paths[0], rows)
    tables.write_json(paths[1], result)
    env = meta["environment"]
    lines = [f"# tq sweep ({meta['date_utc']})", "", f"Command: `{meta['command']}`", "",
             f"Device: {env.get('gpu') or 'CPU (no GPU)'}; torch {env['torch']}, CUDA {env['cuda']}, "
             f"triton {env.get('triton')}, bitsandbytes {env.get('bitsandbytes')}, tq {env['tq']}, "
             f"driver {env.get('driver')} (CUDA {env.get('driver_cuda_version')}).", "",
             f"Quantization: {meta['quantization']}. Copy bandwidth {meta['copy_bandwidth_gbps']:.1f} GB/s "
             f"(read + write). Timing: {meta['timing']}, "
             f"median of two measurements of up to {meta['repeats']} calls, warm-up {meta['warmup']}.", ""]
    lines += [f"- {n}" for n in meta["notes"]]
    lines += ["", "Shape sources:"] + [f"- {k}: {v}" for k, v in meta["shape_sources"].items()] + [""]
    lines.append(tables.markdown_table(rows, _columns(meta["references"])))
    with open(paths[2], "w") as f:
        f.write("\n".join(lines) + "\n")
    if plots_too:
        paths += plots.plot_sweep(rows, out_dir, BASELINE)
    return paths


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    from tq.backends import BackendUnavailableError
    try:
        result = run_sweep(args)
    except (SweepError, ValueError, BackendUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta, rows = result["meta"], result["rows"]
    print(tables.text_table(rows, _terminal_columns(meta["references"])))
    for n in meta["notes"]:
        print(f"note: {n}")
    paths = write_outputs(result, args.out, plots_too=not args.no_plots)
    print(f"{len(rows)} points in {meta['seconds']} s; wrote " + ", ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
