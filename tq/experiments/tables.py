"""Writing result rows (lists of flat dicts): terminal tables, Markdown, CSV and JSON."""
from __future__ import annotations

import csv
import json
import math
import os


def format_value(v, spec: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return format(v, spec) if spec else f"{v:.4g}"
    return str(v)


def _cells(rows, columns):
    """columns: list of (header, key, format spec)."""
    return [[format_value(r.get(key), spec) for _, key, spec in columns] for r in rows]


def text_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    headers = [h for h, _, _ in columns]
    cells = _cells(rows, columns)
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    headers = [h for h, _, _ in columns]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in _cells(rows, columns)]
    return "\n".join(out)


def write_csv(path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:  # union of keys, in first-seen order, so rows of different kinds share one file
        keys += [k for k in r if k not in keys]
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k) for k in keys})


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_json(path, obj) -> None:
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)

    def clean(o):
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return _jsonable(o)

    with open(path, "w") as f:
        json.dump(clean(obj), f, indent=1, default=str)
        f.write("\n")
