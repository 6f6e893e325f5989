"""Helpers shared by the perf scripts: timing, atomic CSV output, plotting.

Every script compiles (warms up) before it times, reports medians over
repeats and ratios against a baseline measured in the same run, and writes a
CSV and a PNG under ``perf/results/`` (or ``--out``).
"""

import argparse
import csv
import os
import platform
import statistics
import tempfile
import time

import numpy as np


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (CI smoke test)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"),
                   help="folder for the CSV and PNG (default perf/results)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per point (median reported)")
    return p


def median_time(fn, repeats, warmup=1):
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_csv(path, rows):
    """Write ``rows`` (list of dicts) atomically: a temporary file renamed into place."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fields = list(rows[0]) if rows else []
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def save_figure(fig, path):
    """Save a matplotlib figure atomically."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, format="png")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def machine():
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, numpy {np.__version__}"


def print_table(rows, columns):
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    print("  ".join(f"{c:>{widths[c]}}" for c in columns))
    for r in rows:
        print("  ".join(f"{_fmt(r[c]):>{widths[c]}}" for c in columns))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
