"""PNG plots of a sweep: latency and speedup over cuBLAS bf16 against batch size, per method."""
from __future__ import annotations

import math
import os


def _grid(n: int):
    cols = min(3, n)
    return cols, math.ceil(n / cols)


def _series(rows, shape, method, key):
    pts = sorted((r["batch"], r[key]) for r in rows
                 if r["shape"] == shape and r["method"] == method and r.get(key) is not None)
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_sweep(rows: list[dict], out_dir: str, baseline: str = "cublas-bf16") -> list[str]:
    """Write latency.png and speedup.png into ``out_dir``; returns their paths ([] without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    if not shapes:
        return []
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}  # one colour per method in every panel
    paths = []
    for name, key, ylabel, skip in (
            ("latency.png", "latency_us", "median latency (us)", ()),
            ("speedup.png", f"speedup_vs_{baseline}", f"speedup over {baseline} (x)", (baseline,))):
        cols, nrows = _grid(len(shapes))
        fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.6 * nrows), squeeze=False)
        for ax, shape in zip(axes.flat, shapes):
            for method in methods:
                if method in skip:
                    continue
                xs, ys = _series(rows, shape, method, key)
                if xs:
                    ax.plot(xs, ys, marker="o", label=method, color=colors[method])
            if key.startswith("speedup"):
                ax.axhline(1.0, color="gray", lw=0.8, ls="--")
            ax.set_yscale("log")
            ax.set_xscale("log", base=2)
            ax.set_title(shape, fontsize=9)
            ax.set_xlabel("batch B (rows of x)")
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
        for ax in list(axes.flat)[len(shapes):]:
            ax.set_visible(False)
        legend = {}
        for ax in axes.flat:
            for h, label in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(label, h)
        handles, labels = list(legend.values()), list(legend)
        if handles:
            fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=8)
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
