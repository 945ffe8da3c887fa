"""Weight error per stored bit: TurboQuant against the formats people use today.

    python -m tq.experiments.quality --weights gaussian,student-t,minilm,smollm2 \\
        --bits 2,3,4 --group-size 32,64,128 --out DIR

For every weight set (tq/experiments/weights.py) and every method, each 2-D weight is
quantized and reconstructed, and over the whole set

    NMSE            = sum over layers of ||W - W_hat||^2  /  sum over layers of ||W||^2
    bits per weight = 8 * (every stored byte of every layer) / (number of weights)

Methods (each at every --bits and --group-size):
- TurboQuant ``tq.quantize`` plain, one per --codebooks kind, and residual
  (--residual pairs such as 4+4, same codebooks and group sizes, one per
  --residual-codebooks choice of the residual pass's levels);
- RTN: ``tq.baselines.rtn`` asymmetric integers with float16 scale and zero per group;
- NF4: ``tq.baselines.nf4`` with a block size equal to each group size (4-bit only,
  run when 4 is among --bits).

Writes to DIR: results.csv, results.json (rows, comparisons and the run's
environment), results.md (tables) and rate_distortion.png (NMSE on a log axis against
bits per weight, one curve per method and group size, with the Gaussian bound
2^(-2R), the distortion-rate function of an i.i.d. Gaussian source).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import sys
import time

import torch

import tq
from tq import baselines
from tq.codebook import KINDS
from tq.quantize import RESIDUAL_CHOICES

DEFAULT_RESIDUAL = RESIDUAL_CHOICES[0]
from tq.experiments import weights as weight_sets

CSV_FIELDS = ("weight_set", "method", "curve", "family", "codebook", "residual_codebook", "bits", "residual_bits",
              "group_size",
              "bits_per_weight", "nmse", "max_layer_nmse", "n_layers", "n_weights", "seconds")
# The comparison the README quotes: TurboQuant 4-bit g128 against RTN int4 g128.
TARGET = {"family": "turboquant", "bits": 4, "residual_bits": None, "group_size": 128}
REFERENCE = {"family": "rtn", "bits": 4, "group_size": 128}


@dataclasses.dataclass(frozen=True)
class Method:
    family: str                     # "turboquant", "rtn" or "nf4"
    bits: int
    group_size: int                 # NF4: the block size
    residual_bits: int | None = None
    codebook: str | None = None     # TurboQuant only
    residual_codebook: str | None = None    # TurboQuant with residual_bits only

    @property
    def _residual_tag(self) -> str:
        # (the default residual codebook keeps the plain names; runs recorded before the fitted
        # residual codebooks used those names for the Gaussian residual, which is now tagged)
        rc = self.residual_codebook
        return f" [{rc} residual]" if self.residual_bits and rc != DEFAULT_RESIDUAL else ""

    @property
    def label(self) -> str:
        if self.family == "turboquant":
            cfg = f"{self.bits}+{self.residual_bits}" if self.residual_bits else f"{self.bits}-bit"
            return f"TQ {self.codebook} {cfg} g{self.group_size}{self._residual_tag}"
        if self.family == "rtn":
            return f"RTN int{self.bits} g{self.group_size}"
        return f"NF4 block {self.group_size}"

    @property
    def curve(self) -> str:
        """The rate-distortion curve this point belongs to (bits vary along it)."""
        if self.family == "turboquant":
            kind = "residual" if self.residual_bits else "plain"
            return f"TQ {self.codebook} {kind} g{self.group_size}{self._residual_tag}"
        if self.family == "rtn":
            return f"RTN g{self.group_size}"
        return "NF4"            # block size varies along it

    def apply(self, w: torch.Tensor, seed: int) -> tuple[torch.Tensor, float]:
        """(float32 W_hat, stored bits) for one weight."""
        if self.family == "turboquant":
            extra = {"residual_codebook": self.residual_codebook} if self.residual_bits else {}
            qw = tq.quantize(w, self.bits, self.group_size, self.residual_bits, seed, self.codebook, **extra)
            return tq.dequantize(qw, torch.float32), 8.0 * qw.nbytes
        if self.family == "rtn":
            w_hat, bpw = baselines.rtn(w, self.bits, self.group_size)
        else:
            w_hat, bpw = baselines.nf4(w, self.group_size)
        return w_hat, bpw * w.numel()


def build_methods(bits, group_sizes, codebooks, residual, nf4=True,
                  residual_codebooks=(DEFAULT_RESIDUAL,)) -> list[Method]:
    methods = []
    for g in group_sizes:
        for kind in codebooks:
            methods += [Method("turboquant", b, g, None, kind) for b in bits]
            methods += [Method("turboquant", b, g, r, kind, rc) for rc in residual_codebooks for b, r in residual]
        methods += [Method("rtn", b, g) for b in bits]
    if nf4 and baselines.NF4_BITS in bits:
        methods += [Method("nf4", baselines.NF4_BITS, g) for g in group_sizes]
    return methods


def measure(weight_set, methods, seed: int = 0, log=None) -> list[dict]:
    """One row per method: aggregate NMSE and bits per weight over the set's layers."""
    acc = {m: {"err": 0.0, "bits": 0.0, "worst": 0.0, "seconds": 0.0} for m in methods}
    total_sq = 0.0
    for i, (layer, w) in enumerate(weight_set.layers):
        sq = float(torch.sum(w.double() ** 2))
        total_sq += sq
        for m in methods:
            t0 = time.perf_counter()
            w_hat, stored_bits = m.apply(w, seed)
            diff = w - w_hat
            err = float(torch.sum(diff * diff, dtype=torch.float64))
            a = acc[m]
            a["err"] += err
            a["bits"] += stored_bits
            a["worst"] = max(a["worst"], err / sq if sq > 0 else 0.0)
            a["seconds"] += time.perf_counter() - t0
        if log and (i + 1) % max(1, len(weight_set.layers) // 10) == 0:
            log(f"  {weight_set.name}: {i + 1}/{len(weight_set.layers)} layers")
    n = weight_set.n_weights
    rows = []
    for m in methods:
        a = acc[m]
        rows.append({
            "weight_set": weight_set.name, "method": m.label, "curve": m.curve, "family": m.family,
            "codebook": m.codebook, "residual_codebook": m.residual_codebook, "bits": m.bits, "residual_bits": m.residual_bits,
            "group_size": m.group_size, "bits_per_weight": a["bits"] / n,
            "nmse": a["err"] / total_sq, "max_layer_nmse": a["worst"],
            "n_layers": len(weight_set.layers), "n_weights": n, "seconds": round(a["seconds"], 3),
        })
    return rows


# ---------------------------------------------------------------------------
# Comparisons: TurboQuant 4-bit g128 against RTN and NF4
# ---------------------------------------------------------------------------
def _find(rows, **want):
    for r in rows:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def pareto(points):
    """(bpw, nmse) points sorted by bpw, keeping each that beats every cheaper one."""
    front = []
    for bpw, err in sorted(points):
        if not front or err < front[-1][1]:
            front.append((bpw, err))
    return front


def matching_rate(points, target_nmse: float) -> dict:
    """Lowest bits per weight at which a method's curve reaches ``target_nmse``.

    Along the method's Pareto frontier (its points sorted by bits per weight, each kept
    only if its NMSE beats all cheaper ones), take the first pair of neighbours whose
    NMSE brackets the target and interpolate log(NMSE) linearly in bits per weight.
    """
    front = pareto(points)
    if not front:
        return {"bits_per_weight": None, "at_cheapest": False, "highest_measured": None, "how": "no points"}
    out = {"at_cheapest": False, "highest_measured": max(b for b, _ in points)}
    if front[0][1] <= target_nmse:
        return {**out, "bits_per_weight": front[0][0], "at_cheapest": True,
                "how": f"already below the target at its cheapest point ({front[0][0]:.3f} bits/weight, "
                       f"NMSE {front[0][1]:.4g}): at most this"}
    for (b0, e0), (b1, e1) in zip(front, front[1:]):
        if e1 <= target_nmse:
            t = (math.log(target_nmse) - math.log(e0)) / (math.log(e1) - math.log(e0))
            return {**out, "bits_per_weight": b0 + t * (b1 - b0),
                    "how": f"log-linear between {b0:.3f} (NMSE {e0:.4g}) and {b1:.3f} (NMSE {e1:.4g})"}
    return {**out, "bits_per_weight": None,
            "how": f"not reached up to {front[-1][0]:.3f} bits/weight (NMSE {front[-1][1]:.4g})"}


def compare(rows, weight_set: str, codebook: str = "gaussian") -> dict | None:
    rows = [r for r in rows if r["weight_set"] == weight_set]
    target = _find(rows, codebook=codebook, **TARGET)
    if target is None:
        return None
    out = {"weight_set": weight_set, "target": target["method"], "target_nmse": target["nmse"],
           "target_bits_per_weight": target["bits_per_weight"]}
    rtn4 = _find(rows, **REFERENCE)
    if rtn4 is not None:
        out["rtn_int4_g128_nmse"] = rtn4["nmse"]
        out["rtn_int4_g128_bits_per_weight"] = rtn4["bits_per_weight"]
        out["ratio_to_rtn_int4_g128"] = target["nmse"] / rtn4["nmse"]
    for family in ("rtn", "nf4"):
        points = [(r["bits_per_weight"], r["nmse"]) for r in rows if r["family"] == family]
        if points:
            out[f"{family}_matching_rate"] = matching_rate(points, target["nmse"])
    return out


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------
def environment() -> dict:
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "tq": tq.__version__, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


def _fmt(x, digits=4) -> str:
    return "" if x is None else f"{x:.{digits}g}"


def markdown(rows, comparisons, command: str, env: dict) -> str:
    sets = list(dict.fromkeys(r["weight_set"] for r in rows))
    lines = ["# Weight error per stored bit", "", f"Command: `{command}`", "",
             f"Environment: python {env['python']}, torch {env['torch']}, numpy {env['numpy']}, "
             f"tq {env['tq']}, {env['platform']}, {env['cpu_count']} CPUs.", "",
             "NMSE = sum of squared errors over all layers / sum of squares; bits per weight count "
             "every stored byte (indices, norms/scales/zeros/absmax, codebooks, padding of the last group).", ""]
    if comparisons:
        lines += ["## TurboQuant 4-bit g128 against RTN and NF4", "",
                  "| weights | TQ 4-bit g128 NMSE @ bits/weight | RTN int4 g128 NMSE @ bits/weight | ratio TQ / RTN | "
                  "bits/weight where RTN matches TQ | bits/weight where NF4 matches TQ |",
                  "|---|---|---|---|---|---|"]
        for c in comparisons:
            def rate(key):
                m = c.get(key)
                if m is None:
                    return ""
                if m["bits_per_weight"] is None:      # not reached within the measured points
                    return f"> {m['highest_measured']:.3f} (not reached)"
                return f"{'<= ' if m['at_cheapest'] else ''}{m['bits_per_weight']:.3f}"
            lines.append(f"| {c['weight_set']} | {_fmt(c['target_nmse'])} @ {c['target_bits_per_weight']:.3f} | "
                         f"{_fmt(c.get('rtn_int4_g128_nmse'))} @ {_fmt(c.get('rtn_int4_g128_bits_per_weight'))} | "
                         f"{_fmt(c.get('ratio_to_rtn_int4_g128'), 3)} | {rate('rtn_matching_rate')} | "
                         f"{rate('nf4_matching_rate')} |")
        lines += ["", "Matching rates: along each baseline's Pareto frontier (its points sorted by bits per "
                  "weight, keeping only those better than every cheaper one), log(NMSE) interpolated linearly "
                  "in bits per weight between the two points that bracket TurboQuant's NMSE.", ""]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines += ["## NMSE (bits per weight) by method", "",
              "| method | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    by_key = {(r["weight_set"], r["method"]): r for r in rows}
    for m in methods:
        cells = []
        for s in sets:
            r = by_key.get((s, m))
            cells.append("" if r is None else f"{r['nmse']:.4g} ({r['bits_per_weight']:.3f})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Weight sets", ""]
    for s in sets:
        r = next(r for r in rows if r["weight_set"] == s)
        lines.append(f"- {s}: {r['n_layers']} weights, {r['n_weights']:,} values")
    return "\n".join(lines) + "\n"


def plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r["weight_set"] for r in rows))
    cols = min(2, len(sets))
    nrows = -(-len(sets) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(7.5 * cols, 5.2 * nrows), squeeze=False)
    colors = {"TQ gaussian plain": "tab:blue", "TQ beta plain": "tab:cyan", "TQ gaussian-poly plain": "tab:purple",
              "TQ beta-poly plain": "tab:pink", "TQ gaussian residual": "tab:green", "TQ beta residual": "tab:olive",
              "TQ gaussian-poly residual": "tab:brown", "TQ beta-poly residual": "tab:gray",
              "RTN": "tab:red", "NF4": "tab:orange"}
    styles = {128: "-", 64: "--", 32: ":"}
    for ax, s in zip(axes.flat, sets):
        srows = [r for r in rows if r["weight_set"] == s]
        for curve in dict.fromkeys(r["curve"] for r in srows):
            pts = sorted((r["bits_per_weight"], r["nmse"]) for r in srows if r["curve"] == curve)
            head = curve.rsplit(" g", 1)[0] if curve != "NF4" else "NF4"
            g = next(r["group_size"] for r in srows if r["curve"] == curve)
            main = curve.startswith(("TQ gaussian plain", "TQ gaussian residual", "RTN", "NF4"))
            ax.plot(*zip(*pts), marker="o", markersize=3.5 if main else 2.5, linewidth=1.3 if main else 0.8,
                    alpha=1.0 if main else 0.75, color=colors.get(head, "black"),
                    linestyle="-" if curve == "NF4" else styles.get(g, "-."), label=curve)
        lo = min(r["bits_per_weight"] for r in srows)
        hi = max(r["bits_per_weight"] for r in srows)
        rate = [lo + (hi - lo) * i / 100 for i in range(101)]
        ax.plot(rate, [2.0 ** (-2 * x) for x in rate], color="black", linewidth=1, linestyle="-.",
                label="Gaussian bound 2^(-2R)")
        ax.set_yscale("log")
        ax.set_title(s)
        ax.set_xlabel("bits per weight (every stored byte)")
        ax.set_ylabel("NMSE")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(sets):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * math.ceil(len(labels) / 4) / nrows, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out_dir, rows, comparisons, command, env) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in
             ("results.csv", "results.json", "results.md", "rate_distortion.png")}
    with open(paths["results.csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r[k] is None else r[k]) for k in CSV_FIELDS})
    with open(paths["results.json"], "w") as f:
        json.dump({"command": command, "environment": env, "comparisons": comparisons, "rows": rows}, f, indent=1)
    with open(paths["results.md"], "w") as f:
        f.write(markdown(rows, comparisons, command, env))
    plot(rows, paths["rate_distortion.png"])
    return list(paths.values())


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _residual(text: str) -> list[tuple[int, int]]:
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [tuple(int(p) for p in pair.split("+")) for pair in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected pairs like 2+2,4+4 or 'none', got {text!r}") from None


def _shape(text: str) -> tuple[int, int]:
    try:
        n, k = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NxK such as 384x1536, got {text!r}") from None
    return n, k


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tq.experiments.quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="gaussian,student-t,minilm",
                   help="comma-separated weight sets: gaussian, student-t, minilm, smollm2, PATH.safetensors")
    p.add_argument("--bits", type=_ints, default=[2, 3, 4], help="main-pass bits (default 2,3,4)")
    p.add_argument("--group-size", type=_ints, default=[32, 64, 128],
                   help="group sizes, also NF4 block sizes (default 32,64,128)")
    p.add_argument("--codebooks", default="gaussian,beta,gaussian-poly",
                   help=f"TurboQuant codebook kinds, from {', '.join(KINDS)} (default gaussian,beta,gaussian-poly)")
    p.add_argument("--residual", type=_residual, default=[(2, 2), (3, 2), (4, 4)],
                   help="TurboQuant residual configurations MAIN+RESIDUAL, or 'none' (default 2+2,3+2,4+4)")
    p.add_argument("--residual-codebooks", default=DEFAULT_RESIDUAL,
                   help=f"residual-pass codebooks, from {', '.join(RESIDUAL_CHOICES)} (default {DEFAULT_RESIDUAL})")
    p.add_argument("--no-nf4", action="store_true", help="leave NF4 out")
    p.add_argument("--synthetic-shape", type=_shape, default=weight_sets.DEFAULT_SYNTHETIC_SHAPE,
                   help="N x K of the synthetic weights (default 384x1536)")
    p.add_argument("--max-layers", type=int, default=None,
                   help="use only the first N weights of each set (quick checks)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic weights and of the rotation")
    p.add_argument("--out", required=True, help="directory for results.{csv,json,md} and rate_distortion.png")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    names = [w.strip() for w in args.weights.split(",") if w.strip()]
    codebooks = [c.strip() for c in args.codebooks.split(",") if c.strip()]
    bad = [c for c in codebooks if c not in KINDS]
    if bad:
        raise SystemExit(f"error: unknown codebook kind(s) {bad}; choose from {', '.join(KINDS)}")
    try:
        for name in names:                       # fail before any long run
            weight_sets.check_available(name)
    except (weight_sets.MissingWeightsError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    residual_codebooks = [c.strip() for c in args.residual_codebooks.split(",") if c.strip()]
    bad = [c for c in residual_codebooks if c not in RESIDUAL_CHOICES]
    if bad or not residual_codebooks:
        raise SystemExit(f"error: unknown residual codebook(s) {bad}; choose from {', '.join(RESIDUAL_CHOICES)}")
    methods = build_methods(args.bits, args.group_size, codebooks, args.residual, nf4=not args.no_nf4,
                            residual_codebooks=residual_codebooks)
    command = "python -m tq.experiments.quality " + " ".join(argv if argv is not None else sys.argv[1:])
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rows, comparisons = [], []
    for name in names:
        t0 = time.perf_counter()
        ws = weight_sets.load_weight_set(name, args.synthetic_shape, args.seed)
        if args.max_layers:
            ws.layers = ws.layers[:args.max_layers]
        log(f"{ws.name}: {len(ws.layers)} weights, {ws.n_weights:,} values, {len(methods)} methods")
        set_rows = measure(ws, methods, args.seed, log)
        rows += set_rows
        c = compare(set_rows, ws.name, codebook="gaussian" if "gaussian" in codebooks else codebooks[0])
        if c:
            comparisons.append(c)
        log(f"{ws.name}: done in {time.perf_counter() - t0:.1f} s")
    for path in write_outputs(args.out, rows, comparisons, command, environment()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
