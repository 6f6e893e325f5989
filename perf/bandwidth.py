"""Memory bandwidth achieved by SnAp-2's influence update, against a STREAM-style triad.

1. Triad ``a = b + s * c`` in numba on float32 arrays far larger than the
   caches (default 3 x 128 MB), on one thread and with ``prange`` on all
   cores; bytes counted as 3 x the array bytes (read b, read c, write a).
2. SnAp-2, one stream, serial, on GRUs whose influence
   (``learner.memory()['influence']``) is >= 64 MB (default n=2048, densities
   0.03-0.05). Online steps (forward + backward + grad) continuing one
   sequence are timed (the reset, a memset of the influence, is not); bytes
   moved per step are counted as 2 x influence bytes (read and written once)
   + 2 x accumulator bytes. Achieved GB/s and the fraction of the
   single-thread triad are reported (target: >= 50%). The same stream split
   over all cores by groups (``parallel=True``) is compared with the triad
   on all threads.
3. Arithmetic intensity: flops per byte, with 2 flops per product of the
   ``D J`` update; the product count comes from the learner's plan (for each
   group, D's entries inside its reach x its parameters). To place it on a
   roofline, an in-cache axpy (``y += a x``, the kernel's inner loop, with
   x streamed from an L2-sized block) gives a single-thread compute ceiling;
   the bandwidth-bound and compute-bound times of each step are printed next
   to the measured one.

    python perf/bandwidth.py                              # 3 x 128 MB triad; GRU n=2048
    python perf/bandwidth.py --n 2048 --densities 0.03 0.05
    python perf/bandwidth.py --quick                      # smoke test: small arrays, small GRU

Full run on the 2-core Xeon: about 20 seconds (measured once).
"""

import os
import sys

import numba
import numpy as np
from numba import prange

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

import sparse_rtrl as sr  # noqa: E402
from sparse_rtrl import registry  # noqa: E402


@numba.njit(cache=True)
def triad(a, b, c, s):
    for i in range(a.shape[0]):
        a[i] = b[i] + s * c[i]


@numba.njit(cache=True, parallel=True)
def triad_par(a, b, c, s):
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


@numba.njit(cache=True, fastmath=True)
def axpy_sweep(y, block, coefs, q, sweeps):
    """``y += a x`` with x the successive q-long rows of ``block``; 2 flops per element."""
    rows = block.shape[0] // q
    for k in range(sweeps):
        for r in range(rows):
            a = coefs[(k + r) % coefs.shape[0]]
            x = block[r * q:(r + 1) * q]
            for i in range(q):
                y[i] += a * x[i]


def triad_bandwidth(n_elem, repeats, parallel):
    a = np.zeros(n_elem, np.float32)
    b = np.full(n_elem, 1.0, np.float32)
    c = np.full(n_elem, 2.0, np.float32)
    fn = triad_par if parallel else triad
    sec = _common.median_time(lambda: fn(a, b, c, np.float32(3.0)), repeats, warmup=2)
    assert a[0] == 7.0 and a[-1] == 7.0
    return 3 * a.nbytes / sec, sec


def axpy_rate(q, block_bytes, repeats):
    """Flops per second of the in-cache axpy on one thread."""
    block = np.random.default_rng(0).normal(size=max(q, block_bytes // 4 // q * q)).astype(np.float32)
    y = np.zeros(q, np.float32)
    coefs = np.linspace(0.5, 1.5, 7).astype(np.float32)
    sweeps = max(1, int(2e8 // block.shape[0]))
    sec = _common.median_time(lambda: axpy_sweep(y, block, coefs, q, sweeps), repeats, warmup=1)
    return 2.0 * block.shape[0] * sweeps / sec


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--array-mb", type=float, default=128.0, help="size of each triad array")
    p.add_argument("--n", type=int, default=2048, help="GRU hidden units for SnAp-2")
    p.add_argument("--densities", type=float, nargs="+", default=[0.03, 0.04, 0.05])
    p.add_argument("--n-in", type=int, default=8)
    p.add_argument("--steps", type=int, default=4, help="online steps per timed repeat")
    p.add_argument("--min-influence-mb", type=float, default=64.0)
    args = p.parse_args(argv)
    if args.quick:
        args.array_mb, args.n, args.densities, args.steps, args.min_influence_mb = 8.0, 128, [0.1], 8, 0.0
    repeats = args.repeats or (2 if args.quick else 5)
    threads = numba.config.NUMBA_NUM_THREADS
    mb = 2.0 ** 20
    print(f"median of {repeats} repeats; {_common.machine()}")

    n_elem = int(args.array_mb * mb) // 4
    bw1, t1 = triad_bandwidth(n_elem, max(repeats, 5), parallel=False)
    bwp, tp = triad_bandwidth(n_elem, max(repeats, 5), parallel=True)
    print(f"triad, 3 x {n_elem * 4 / mb:.0f} MB float32: 1 thread {bw1 / 1e9:.2f} GB/s, "
          f"{threads} threads {bwp / 1e9:.2f} GB/s")
    rows = [
        {"what": "triad", "threads": 1, "n": "", "density": "", "influence_mb": "", "us_per_step": t1 * 1e6,
         "bytes_per_step": 3 * n_elem * 4, "gb_per_s": bw1 / 1e9, "fraction_of_triad_1thread": 1.0,
         "products_per_step": "", "flops_per_byte": "", "gflop_per_s": "", "bandwidth_bound_us": "",
         "compute_bound_us": ""},
        {"what": "triad (prange)", "threads": threads, "n": "", "density": "", "influence_mb": "",
         "us_per_step": tp * 1e6, "bytes_per_step": 3 * n_elem * 4, "gb_per_s": bwp / 1e9,
         "fraction_of_triad_1thread": bwp / bw1, "products_per_step": "", "flops_per_byte": "",
         "gflop_per_s": "", "bandwidth_bound_us": "", "compute_bound_us": ""},
    ]

    # Compile (or load) the learner's kernels on a tiny cell.
    tiny = sr.GRU(args.n_in, 8, density=0.5, seed=0, dtype=np.float32)
    _common.time_online(registry.make_learner("snap2", tiny), np.zeros((2, args.n_in), np.float32),
                        np.ones((2, tiny.n_state), np.float32), 1, 1, warmup=0)
    rng = np.random.default_rng(0)
    for density in args.densities:
        cell = sr.GRU(args.n_in, args.n, density=density, seed=0, dtype=np.float32)
        est = _common.snap_estimate(cell, 2)
        print(f"GRU n={args.n} density {density}: SnAp-2 influence {est['mask_size'] * 4 / mb:.1f} MB "
              f"({est['mask_size']:,} entries)", flush=True)
        xs = rng.normal(size=(args.steps, cell.n_in)).astype(np.float32)
        cs = rng.normal(size=(args.steps, cell.n_state)).astype(np.float32)
        for parallel in (False, True):
            # One stream: on one core, then split over all cores by groups.
            learner = _common.make_learner("snap2", cell, parallel=parallel)
            influence = learner.memory()["influence"]
            if influence < args.min_influence_mb * mb and not parallel:
                print(f"  warning: influence {influence / mb:.1f} MB < {args.min_influence_mb:g} MB "
                      f"(not far larger than the caches)")
            learner.reset()
            sec = _common.median_time(_common.continue_run(learner, xs, cs), repeats) / args.steps
            moved = 2 * influence + 2 * learner._acc.nbytes
            products = _common.plan_products(learner)
            q_mean = int(round(cell.n_params / len(learner._layout.plan.col_ptr[:-1])))
            bw = bwp if parallel else bw1
            rows.append({"what": "SnAp-2 online step" + (" (split)" if parallel else ""),
                         "threads": threads if parallel else 1, "n": args.n, "density": density,
                         "influence_mb": influence / mb, "us_per_step": sec * 1e6, "bytes_per_step": moved,
                         "gb_per_s": moved / sec / 1e9, "fraction_of_triad_1thread": moved / sec / bw1,
                         "fraction_of_triad_same_threads": moved / sec / bw,
                         "products_per_step": products, "flops_per_byte": 2 * products / moved,
                         "gflop_per_s": 2 * products / sec / 1e9, "bandwidth_bound_us": moved / bw * 1e6,
                         "compute_bound_us": "", "_q": q_mean,
                         "_block_bytes": int(learner._layout.max_block) * 4, "_threads": threads if parallel else 1})
            del learner

    # In-cache axpy ceiling, with rows as long as the groups' and an L2-sized block.
    for r in rows:
        if "_q" in r:
            rate = axpy_rate(r.pop("_q"), min(r.pop("_block_bytes"), 1 << 20), max(repeats, 3)) * r.pop("_threads")
            r["compute_bound_us"] = 2 * r["products_per_step"] / rate * 1e6
            r["axpy_gflop_per_s"] = rate / 1e9
        else:
            r["axpy_gflop_per_s"] = ""
            r["fraction_of_triad_same_threads"] = 1.0

    print()
    _common.print_table(rows, ["what", "threads", "n", "density", "influence_mb", "us_per_step", "gb_per_s",
                               "fraction_of_triad_same_threads", "flops_per_byte", "gflop_per_s",
                               "bandwidth_bound_us", "compute_bound_us"])
    print(f"\nheadline (target: SnAp-2 >= 50% of the triad on as many threads: 1 thread {bw1 / 1e9:.2f} GB/s, "
          f"{threads} threads {bwp / 1e9:.2f} GB/s):")
    for r in rows:
        if r["products_per_step"] != "":  # the learner's rows (the triad's have no products)
            roof = max(r["bandwidth_bound_us"], r["compute_bound_us"])
            bound = "bandwidth" if r["bandwidth_bound_us"] >= r["compute_bound_us"] else "compute"
            slower = r["us_per_step"] / roof
            frac = r["fraction_of_triad_same_threads"]
            print(f"  n={r['n']} density {r['density']}, {r['threads']} thread(s): {r['gb_per_s']:.2f} GB/s = "
                  f"{100 * frac:.0f}% of the triad on {r['threads']} thread(s) "
                  f"({'met' if frac >= 0.5 else 'NOT met'}); "
                  f"{r['flops_per_byte']:.2f} flop/byte, {r['gflop_per_s']:.2f} GFLOP/s "
                  f"(in-cache axpy ceiling {r['axpy_gflop_per_s']:.1f}); step {r['us_per_step']:.4g} us vs "
                  f"{r['bandwidth_bound_us']:.4g} us at triad bandwidth and {r['compute_bound_us']:.4g} us at the "
                  f"axpy ceiling: the roofline puts it on the {bound}-bound side, and the step takes "
                  f"{slower:.2g}x the roofline's time")

    tag = "quick" if args.quick else f"n{args.n}"
    print("wrote", _common.write_csv(os.path.join(args.out, f"bandwidth_{tag}.csv"), rows))
    print("wrote", plot(rows, bw1, bwp, threads, os.path.join(args.out, f"bandwidth_{tag}.png")))
    return rows


def plot(rows, bw1, bwp, threads, path):
    fig = _common.figure(figsize=(11, 4))
    ax, ax2 = fig.subplots(1, 2)
    labels = [r["what"].replace(" online step", "") + (f"\nd={r['density']}" if r["density"] != "" else "")
              + f"\n{r['threads']} thread(s)" for r in rows]
    ax.bar(range(len(rows)), [r["gb_per_s"] for r in rows],
           color=["tab:gray" if r["what"].startswith("triad") else "tab:blue" for r in rows])
    ax.axhline(0.5 * bw1 / 1e9, color="k", ls="--", lw=1, label="50% of 1-thread triad (target)")
    ax.axhline(0.5 * bwp / 1e9, color="gray", ls=":", lw=1, label=f"50% of {threads}-thread triad")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("GB/s (median)")
    ax.legend(fontsize=8)
    ax.set_title("achieved bandwidth", fontsize=9)
    snaps = [r for r in rows if r["what"] == "SnAp-2 online step"]
    if snaps:
        ai = np.array([r["flops_per_byte"] for r in snaps])
        perf = np.array([r["gflop_per_s"] for r in snaps])
        ceiling = max(r["axpy_gflop_per_s"] for r in snaps)
        x = np.geomspace(min(ai.min(), 0.05) / 2, max(ai.max(), 10) * 2, 50)
        ax2.plot(x, np.minimum(x * bw1 / 1e9, ceiling), "k-", lw=1, label="roofline: 1-thread triad, axpy")
        ax2.scatter(ai, perf, color="tab:blue", zorder=3, label="SnAp-2 (one stream, one thread)")
        for r in snaps:
            ax2.annotate(f"d={r['density']}", (r["flops_per_byte"], r["gflop_per_s"]), fontsize=7)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("flops per byte moved")
        ax2.set_ylabel("GFLOP/s")
        ax2.legend(fontsize=8)
        ax2.grid(True, which="both", alpha=0.3)
    ax2.set_title("roofline (single thread)", fontsize=9)
    fig.suptitle(f"triad: {bw1 / 1e9:.2f} GB/s (1 thread), {bwp / 1e9:.2f} GB/s ({threads} threads); "
                 f"{_common.machine()}", fontsize=9)
    fig.tight_layout()
    return _common.save_figure(fig, path)


if __name__ == "__main__":
    main()
