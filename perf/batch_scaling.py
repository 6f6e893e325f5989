"""Throughput of a batch of streams on one core against all cores.

The same learner, built with ``batch_size=8, parallel=True`` (streams spread
over the cores with ``prange``), timed with ``numba.set_num_threads(1)`` and
with all of numba's threads (``numba.config.NUMBA_NUM_THREADS``); the two
settings take turns within each repeat so that drifts of the shared machine
hit both alike. Throughput = streams x steps / second of online steps
(forward + backward + grad; TBPTT(16): grad at the end of each window).
SnAp-1, SnAp-2, TBPTT(16) and UORO on a GRU n=256, density 0.1; RTRL on a
small GRU (n=64, density 0.1), float32. Target: all threads / one thread
>= 1.7x on this 2-core machine.

    python perf/batch_scaling.py            # GRU n=256 (RTRL n=64), batch 8
    python perf/batch_scaling.py --quick    # smoke test, a few seconds

Full run on the 2-core Xeon: about 30 seconds.
Another process on the machine takes cores from the all-threads runs: the
load average is printed with the results.
"""

import os
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

from sparse_rtrl import registry  # noqa: E402

LEARNERS = ("snap1", "snap2", "tbptt16", "uoro", "rtrl")  # registry specs


def with_threads(k, run):
    def fn():
        numba.set_num_threads(k)
        run()
    return fn


def plot(rows, threads, path, title):
    fig = _common.figure(figsize=(11, 4))
    ax, ax2 = fig.subplots(1, 2)
    x = np.arange(len(rows))
    labels = [f"{r['learner']}\nGRU n={r['n']}" for r in rows]
    ax.bar(x - 0.2, [r["streams_steps_per_s_1thread"] for r in rows], 0.4, label="1 thread")
    ax.bar(x + 0.2, [r["streams_steps_per_s_all"] for r in rows], 0.4, label=f"{threads} threads")
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("stream-steps per second (median)")
    ax.legend(fontsize=8)
    ax2.bar(x, [r["speedup"] for r in rows], color="tab:green")
    ax2.axhline(1.7, color="k", ls="--", lw=1, label="target 1.7x")
    ax2.axhline(threads, color="gray", ls=":", lw=1, label=f"ideal {threads}x")
    for i, r in enumerate(rows):
        ax2.annotate(f"{r['speedup']:.2f}x", (i, r["speedup"]), ha="center", va="bottom", fontsize=8)
    ax2.set_xticks(x)
    ax2.set_xticklabels(labels, fontsize=7)
    ax2.set_ylabel(f"{threads} threads / 1 thread")
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _common.save_figure(fig, path)


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--n-rtrl", type=int, default=64, help="hidden units of RTRL's (smaller) GRU")
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--n-in", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=64, help="steps per timed repeat (a multiple of 16)")
    p.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=LEARNERS, help="registry specs")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.n_rtrl, args.steps = 32, 16, 16
    repeats = args.repeats or (1 if args.quick else 9)
    threads = numba.config.NUMBA_NUM_THREADS
    B = args.batch
    rng = np.random.default_rng(0)
    print(f"batch {B}, float32, median of {repeats}; 1 vs {threads} threads; load average "
          f"{os.getloadavg()[0]:.2f} at start; {_common.machine()}")
    if threads < 2:
        print("only one numba thread available: the ratio measures nothing but noise")
    busy = os.getloadavg()[0]
    if busy >= 0.5:
        print(f"warning: load average {busy:.2f} before starting: other processes hold cores, and every parallel "
              "region waits for the busiest one; the all-threads numbers will be pessimistic")

    rows = []
    for spec in (s for s in LEARNERS if s in args.learners):
        n = args.n_rtrl if registry.parse_learner(spec)[0].key == "rtrl" else args.n
        cell = registry.make_cell("gru", args.n_in, n, density=args.density, dtype=np.float32)
        learner = _common.make_learner(spec, cell, batch_size=B, parallel=True)
        every = _common.grad_every(spec)
        steps = max(every, args.steps // every * every)
        xs = rng.normal(size=(steps, B, cell.n_in)).astype(np.float32)
        cs = rng.normal(size=(steps, B, cell.n_state)).astype(np.float32)
        run = _common.online_run(learner, xs, cs, every)
        # warmup=1 compiles (or loads) the parallel kernels under both settings.
        t1, tall = _common.interleaved_medians([with_threads(1, run), with_threads(threads, run)], repeats)
        numba.set_num_threads(threads)
        thr1, thrall = B * steps / t1, B * steps / tall
        rows.append({"learner": learner.name, "n": n,
                     "density": args.density, "batch": B, "steps": steps, "us_per_step_1thread": t1 / steps * 1e6,
                     "us_per_step_all": tall / steps * 1e6, "threads": threads,
                     "streams_steps_per_s_1thread": thr1, "streams_steps_per_s_all": thrall,
                     "speedup": thrall / thr1, "target_met": thrall / thr1 >= 1.7})
        print(f"  {learner.name:9s} n={n}: {thr1:.4g} -> {thrall:.4g} stream-steps/s, {thrall / thr1:.2f}x", flush=True)

    print()
    _common.print_table(rows, ["learner", "n", "batch", "us_per_step_1thread", "us_per_step_all",
                               "streams_steps_per_s_1thread", "streams_steps_per_s_all", "speedup"])
    print(f"\nheadline: {threads} threads / 1 thread (target >= 1.7x); load average now {os.getloadavg()[0]:.2f}")
    for r in rows:
        print(f"  {r['learner']:9s} (GRU n={r['n']}): {r['speedup']:.2f}x "
              f"{'met' if r['target_met'] else 'NOT met'}")
    tag = "quick" if args.quick else f"gru{args.n}_b{B}"
    print("wrote", _common.write_csv(os.path.join(args.out, f"batch_scaling_{tag}.csv"), rows))
    print("wrote", plot(rows, threads, os.path.join(args.out, f"batch_scaling_{tag}.png"),
                        f"Batch of {B} streams, density {args.density}, float32, median of {repeats}; "
                        f"{_common.machine()}"))
    return rows


if __name__ == "__main__":
    main()
