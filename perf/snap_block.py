"""SnAp-2's block update: how fast its inner loop runs, against what this core allows, and the forms tried.

The influence update of SnAp-n computes, for every group of parameters, a new
dense block ``D[R, R] @ J_block`` (``_snap_kernels._block_rows``): each row of
the new block is a sum of a few rows of the old one (the entries of ``D``
that stay inside the reach, ``m`` per row), streamed over the block's ``q``
contiguous columns. Every multiply-add reads one influence value that no
other output row shares in registers, so the loop is bound by how many loads
per cycle the core sustains on data in L1/L2, not by its multiply-add rate.

This script measures, on the ``cost_vs_size`` network (GRU, density 0.1,
float32, SnAp-2, one core), at each n:

1. the library's whole update (``snap_update``: rows, the immediate
   influence, the accumulation ``acc += c J`` and the store) and its rows
   alone, in G multiply-adds per second;
2. the ceiling: the same inner loop with nothing around it, a 4-source axpy
   ``w = d0 x0 + d1 x1 + d2 x2 + d3 x3`` over vectors of the network's
   median ``q``, all in L1;
3. other forms of the rows, each checked equal to the library's before it
   is timed:
   - *column tiles* (``W`` = 32 and 128 columns): each group's rows computed
     tile by tile, so that a tile of sources stays in L1;
   - *up to 8 sources per pass* instead of 4: fewer loads and stores of the
     row being built;
4. what register tiling over output rows could save at most: for the rows
   of each group taken four at a time, the sources they share (a source
   row read once for several output rows), as a fraction of the loads.

All timings are medians over interleaved repeats (the forms taking turns).

    python perf/snap_block.py                 # n = 256, 512, 1024 (~1 min)
    python perf/snap_block.py --quick         # smoke test, a few seconds
"""

import os
import sys

import numpy as np
from numba import njit, uint64

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

import sparse_rtrl as sr  # noqa: E402
from sparse_rtrl import registry  # noqa: E402
from sparse_rtrl.learners import _snap_kernels as sk  # noqa: E402

TILES = (32, 128)


@njit(cache=True)
def axpy4(w, x0, x1, x2, x3, reps):
    """The ceiling: the block update's inner loop alone, on vectors in L1."""
    n = uint64(w.shape[0])
    for _ in range(reps):
        for i in range(n):
            w[i] = 0.5 * x0[i] + 0.25 * x1[i] + 0.125 * x2[i] + 0.375 * x3[i]


@njit(cache=True)
def _keep(work, out, lo, hi):
    for k in range(uint64(hi - lo)):
        out[uint64(lo) + k] = work[k]


@njit(cache=True)
def rows_library(plan, dyn, J, work, out, keep):
    """The library's block rows (``_block_rows``) for every group, nothing else (if ``keep``, each
    group's new rows copied to ``out`` for the check)."""
    row_ptr, col_ptr, inf_ptr = plan.row_ptr, plan.col_ptr, plan.inf_ptr
    for g in range(row_ptr.shape[0] - 1):
        r0 = row_ptr[g]
        q = uint64(col_ptr[g + 1]) - uint64(col_ptr[g])
        sk._block_rows(J[0], work, dyn[0], uint64(inf_ptr[g]), q, r0, row_ptr[g + 1] - r0, plan.plan_ptr,
                       plan.plan_col, plan.plan_entry)
        if keep:
            _keep(work, out, inf_ptr[g], inf_ptr[g + 1])


@njit(cache=True)
def _tile(Jb, work, d, base, q, t0, W, r0, r, plan_ptr, plan_col, plan_entry):
    # the library's passes of four sources (then one at a time), over W columns from t0
    for a in range(r):
        ob = uint64(a) * W
        w = plan_ptr[r0 + a]
        m = plan_ptr[r0 + a + 1] - w
        for cc in range(W):
            work[ob + cc] = 0.0
        while m >= 4:
            d0, d1, d2, d3 = d[plan_entry[w]], d[plan_entry[w + 1]], d[plan_entry[w + 2]], d[plan_entry[w + 3]]
            s0 = base + uint64(plan_col[w]) * q + t0
            s1 = base + uint64(plan_col[w + 1]) * q + t0
            s2 = base + uint64(plan_col[w + 2]) * q + t0
            s3 = base + uint64(plan_col[w + 3]) * q + t0
            for cc in range(W):
                work[ob + cc] += d0 * Jb[s0 + cc] + d1 * Jb[s1 + cc] + d2 * Jb[s2 + cc] + d3 * Jb[s3 + cc]
            w += 4
            m -= 4
        while m > 0:
            d0 = d[plan_entry[w]]
            s0 = base + uint64(plan_col[w]) * q + t0
            for cc in range(W):
                work[ob + cc] += d0 * Jb[s0 + cc]
            w += 1
            m -= 1


@njit(cache=True)
def rows_tiled(plan, dyn, J, work, out, tile):
    """Column tiles: the rows of a group computed ``tile`` columns at a time, each tile stored to ``out``."""
    row_ptr, col_ptr, inf_ptr = plan.row_ptr, plan.col_ptr, plan.inf_ptr
    for g in range(row_ptr.shape[0] - 1):
        r0 = row_ptr[g]
        r = row_ptr[g + 1] - r0
        q = uint64(col_ptr[g + 1]) - uint64(col_ptr[g])
        base = uint64(inf_ptr[g])
        t0 = uint64(0)
        while t0 < q:
            W = min(uint64(tile), q - t0)
            _tile(J[0], work, dyn[0], base, q, t0, W, r0, r, plan.plan_ptr, plan.plan_col, plan.plan_entry)
            for a in range(r):
                o = base + uint64(a) * q + t0
                for cc in range(W):
                    out[o + cc] = work[uint64(a) * W + cc]
            t0 += W


@njit(cache=True)
def _rows8(Jb, work, d, base, q, r0, r, plan_ptr, plan_col, plan_entry):
    for a in range(r):
        ob = uint64(a) * q
        w = plan_ptr[r0 + a]
        m = plan_ptr[r0 + a + 1] - w
        for cc in range(q):
            work[ob + cc] = 0.0
        while m >= 8:
            d0, d1, d2, d3 = d[plan_entry[w]], d[plan_entry[w + 1]], d[plan_entry[w + 2]], d[plan_entry[w + 3]]
            d4, d5, d6, d7 = d[plan_entry[w + 4]], d[plan_entry[w + 5]], d[plan_entry[w + 6]], d[plan_entry[w + 7]]
            s0 = base + uint64(plan_col[w]) * q
            s1 = base + uint64(plan_col[w + 1]) * q
            s2 = base + uint64(plan_col[w + 2]) * q
            s3 = base + uint64(plan_col[w + 3]) * q
            s4 = base + uint64(plan_col[w + 4]) * q
            s5 = base + uint64(plan_col[w + 5]) * q
            s6 = base + uint64(plan_col[w + 6]) * q
            s7 = base + uint64(plan_col[w + 7]) * q
            for cc in range(q):
                work[ob + cc] += (d0 * Jb[s0 + cc] + d1 * Jb[s1 + cc] + d2 * Jb[s2 + cc] + d3 * Jb[s3 + cc]
                                  + d4 * Jb[s4 + cc] + d5 * Jb[s5 + cc] + d6 * Jb[s6 + cc] + d7 * Jb[s7 + cc])
            w += 8
            m -= 8
        while m >= 4:
            d0, d1, d2, d3 = d[plan_entry[w]], d[plan_entry[w + 1]], d[plan_entry[w + 2]], d[plan_entry[w + 3]]
            s0 = base + uint64(plan_col[w]) * q
            s1 = base + uint64(plan_col[w + 1]) * q
            s2 = base + uint64(plan_col[w + 2]) * q
            s3 = base + uint64(plan_col[w + 3]) * q
            for cc in range(q):
                work[ob + cc] += d0 * Jb[s0 + cc] + d1 * Jb[s1 + cc] + d2 * Jb[s2 + cc] + d3 * Jb[s3 + cc]
            w += 4
            m -= 4
        while m > 0:
            d0 = d[plan_entry[w]]
            s0 = base + uint64(plan_col[w]) * q
            for cc in range(q):
                work[ob + cc] += d0 * Jb[s0 + cc]
            w += 1
            m -= 1


@njit(cache=True)
def rows_eight(plan, dyn, J, work, out, keep):
    """Up to eight sources per pass over the row being built."""
    row_ptr, col_ptr, inf_ptr = plan.row_ptr, plan.col_ptr, plan.inf_ptr
    for g in range(row_ptr.shape[0] - 1):
        r0 = row_ptr[g]
        q = uint64(col_ptr[g + 1]) - uint64(col_ptr[g])
        _rows8(J[0], work, dyn[0], uint64(inf_ptr[g]), q, r0, row_ptr[g + 1] - r0, plan.plan_ptr, plan.plan_col,
               plan.plan_entry)
        if keep:
            _keep(work, out, inf_ptr[g], inf_ptr[g + 1])


def shared_fraction(plan):
    """Loads that register tiling over four output rows at a time could save, at most: 1 - (sources of
    the four rows, each counted once) / (sources summed over the rows)."""
    total = union = 0
    for g in range(plan.row_ptr.shape[0] - 1):
        end = plan.row_ptr[g + 1]
        for a in range(plan.row_ptr[g], end, 4):
            cols = [plan.plan_col[plan.plan_ptr[b]:plan.plan_ptr[b + 1]] for b in range(a, min(a + 4, end))]
            total += sum(len(c) for c in cols)
            union += len(np.unique(np.concatenate(cols)))
    return 1.0 - union / total


def block_products(plan):
    per_group = plan.plan_ptr[plan.row_ptr[1:]] - plan.plan_ptr[plan.row_ptr[:-1]]
    return int(np.sum(per_group.astype(np.int64) * np.diff(plan.col_ptr)))


def measure(n, n_in, repeats, rng):
    cell = registry.make_cell("gru", n_in, n, density=0.1, dtype=np.float32)
    learner = sr.SnAp(cell, n=2, parallel=False)
    core = learner._core  # the influence and its plan
    plan = core.layout.plan
    dt = np.float32
    dyn = (0.1 * rng.standard_normal(core.dynamics.values.shape)).astype(dt)
    coef = rng.standard_normal(learner._coef.shape).astype(dt)
    z = rng.standard_normal(learner._presyn.shape).astype(dt)
    c = rng.standard_normal((1, learner._coef.shape[1])).astype(dt)
    J = (0.01 * rng.standard_normal(core.J.shape)).astype(dt)
    J_update = J.copy()
    acc = np.zeros_like(learner._acc)
    r_max = int(np.diff(plan.row_ptr).max())
    work = np.zeros(max(1, core.layout.max_block), dt)
    tile_work = np.zeros(r_max * max(TILES), dt)
    out = np.zeros(J.shape[1], dt)

    # every form gives the library's rows (the tiles and the eight-source passes sum in another order)
    reference = np.zeros(J.shape[1], dt)
    rows_library(plan, dyn, J, work, reference, True)
    for tile in TILES:
        rows_tiled(plan, dyn, J, tile_work, out, tile)
        np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-6, err_msg=f"column tiles of {tile}")
    rows_eight(plan, dyn, J, work, out, True)
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-6, err_msg="eight sources per pass")

    q_med = int(np.median(np.diff(plan.col_ptr)))
    xs = [rng.standard_normal(q_med).astype(dt) for _ in range(5)]
    reps = max(1, block_products(plan) // (4 * q_med))  # as many multiply-adds as the update does

    forms = {
        "update (library)": lambda: sk.snap_update(plan, dyn, coef, z, c, J_update, core.scratch, acc, True),
        "rows (library)": lambda: rows_library(plan, dyn, J, work, out, False),
        **{f"rows, column tiles of {t}": (lambda t: lambda: rows_tiled(plan, dyn, J, tile_work, out, t))(t)
           for t in TILES},
        "rows, up to 8 sources per pass": lambda: rows_eight(plan, dyn, J, work, out, False),
        "ceiling: 4-source axpy in L1": lambda: axpy4(xs[0], xs[1], xs[2], xs[3], xs[4], reps),
    }
    times = _common.interleaved_medians(list(forms.values()), repeats)
    products = block_products(plan)
    macs = {name: products for name in forms}
    macs["ceiling: 4-source axpy in L1"] = reps * 4 * q_med
    base = times[1]
    ceiling = macs["ceiling: 4-source axpy in L1"] / times[-1]
    rows = []
    for (name, _), t in zip(forms.items(), times):
        rate = macs[name] / t
        rows.append({"n": n, "form": name, "us": t * 1e6, "gmac_per_s": rate / 1e9,
                     "vs_library_rows": base / t if "ceiling" not in name else "",
                     "of_ceiling": rate / ceiling, "products": macs[name], "median_q": q_med,
                     "rows_per_group": float(np.mean(np.diff(plan.row_ptr))),
                     "sources_per_row": float(np.mean(np.diff(plan.plan_ptr))),
                     "shared_4rows": shared_fraction(plan)})
    return rows


def plot(rows, sizes, path):
    fig = _common.figure(figsize=(9, 4.5))
    ax = fig.subplots()
    forms = list(dict.fromkeys(r["form"] for r in rows))
    width = 0.8 / len(forms)
    for i, (form, color) in enumerate(zip(forms, _common.colors())):
        ys = [next(r["gmac_per_s"] for r in rows if r["n"] == n and r["form"] == form) for n in sizes]
        ax.bar(np.arange(len(sizes)) + (i - len(forms) / 2 + 0.5) * width, ys, width, label=form, color=color)
    ax.set_xticks(np.arange(len(sizes)), [f"n = {n}" for n in sizes])
    ax.set_ylabel("G multiply-adds per second (one core)")
    ax.legend(fontsize=7)
    ax.set_title(f"SnAp-2 block update, GRU d=0.1 float32; {_common.machine()}", fontsize=9)
    fig.tight_layout()
    return _common.save_figure(fig, path)


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--n-in", type=int, default=8)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = [48]
    repeats = args.repeats or (3 if args.quick else 11)
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        rows += measure(n, args.n_in, repeats, rng)
    _common.print_table(rows, ["n", "form", "us", "gmac_per_s", "vs_library_rows", "of_ceiling", "median_q",
                               "rows_per_group", "sources_per_row", "shared_4rows"])
    tag = "quick" if args.quick else "full"
    print(_common.write_csv(os.path.join(args.out, f"snap_block_{tag}.csv"), rows))
    print(plot(rows, args.sizes, os.path.join(args.out, f"snap_block_{tag}.png")))


if __name__ == "__main__":
    main()
