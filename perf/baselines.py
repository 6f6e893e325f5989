"""Our learners against the baselines they are meant to beat, with the project's targets.

(a) SnAp-2 against a dense-masked SnAp-2 written the way research code
    usually writes it: numpy, a dense influence ``J`` (S x P), and per step
    ``J = mask * (D @ J + I); g += c @ J`` with dense ``D``, ``I`` (from
    ``cell.jacobians(...).toarray()``) and the mask from
    ``SnAp(cell, 2).mask().to_dense()``. The Jacobians are computed OUTSIDE
    the timed region, so the baseline is charged only for its influence
    update and gradient, while our SnAp-2 is charged for its whole online
    step (forward + backward + grad). Both give the same gradient (checked
    before timing). The baseline's BLAS runs on one thread, like our learner
    on one core (for information, both are also timed on all cores: our one
    stream split over the cores by groups, BLAS on all threads).
    GRU n=256, density 0.1, float32. Target: ours >= 100x faster.
(b) SnAp-2 against RTRL (ours, dense influence), GRU n=128, density 0.1,
    float32, both on one core. Target: SnAp-2 >= 50x faster.
(c) SnAp-1 against TBPTT(16), GRU n=1024, density 0.1, float32, one
    stream. Target: SnAp-1 <= 1.0x TBPTT's time per step.

Online step = forward + backward + grad every step (TBPTT: grad at the end
of each 16-step window). Medians over repeats; every ratio is between two
numbers measured in this run, the two timed in turns (interleaved
repeats) so that drifts of the shared machine hit both alike.

    python perf/baselines.py            # the sizes above
    python perf/baselines.py --quick    # smoke test (small n), a few seconds

Full run on the 2-core Xeon: about 1 minute (measured once; most of it is
the dense baseline).
"""

import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

import sparse_rtrl as sr  # noqa: E402
from sparse_rtrl import registry  # noqa: E402


def dense_snap(Ds, Is, mask, cs, steps):
    """Research-style dense-masked SnAp: the influence update and the gradient, nothing else."""
    J = np.zeros(mask.shape, dtype=mask.dtype)
    g = np.zeros(mask.shape[1], dtype=mask.dtype)
    for t in range(steps):
        D, I = Ds[t % len(Ds)], Is[t % len(Is)]
        J = mask * (D @ J + I)
        g += cs[t] @ J
    return g


def check_same_gradient(cell, mask, xs, cs):
    """Our SnAp-2 and the dense baseline give the same gradient over a few steps."""
    k = xs.shape[0]
    Ds, Is = _common.trajectory_jacobians(cell, xs)
    g_dense = dense_snap(Ds, Is, mask, cs, k)
    learner = registry.make_learner("snap2", cell)
    learner.reset()
    for t in range(k):
        learner.forward(xs[t])
        learner.backward(cs[t])
    g_ours = learner.grad()
    scale = float(np.abs(g_dense).max())
    err = float(np.abs(g_ours - g_dense).max()) / scale
    assert np.allclose(g_ours, g_dense, rtol=1e-3, atol=1e-4 * scale), f"gradients differ: max rel err {err:.3g}"
    return err


def compare_dense(args, rng, repeats):
    n = args.n_dense
    cell = sr.GRU(args.n_in, n, density=args.density, seed=0, dtype=np.float32)
    mask = registry.make_learner("snap2", cell).mask().to_dense().astype(cell.dtype)
    steps = args.steps
    xs = rng.normal(size=(steps, cell.n_in)).astype(cell.dtype)
    cs = rng.normal(size=(steps, cell.n_state)).astype(cell.dtype)
    err = check_same_gradient(cell, mask, xs[:5], cs[:5])
    print(f"(a) gradient check over 5 steps: max |ours - dense| / max |dense| = {err:.2g} (np.allclose passed)")

    learner = _common.make_learner("snap2", cell, parallel=False)
    split = _common.make_learner("snap2", cell, parallel=True)
    # A few distinct steps' Jacobians, reused cyclically: the cost does not depend on the values.
    Ds, Is = _common.trajectory_jacobians(cell, xs[:4])
    dense_steps = max(2, min(steps, args.dense_steps))
    threads_all = _common.blas_threads() or 1

    def dense():
        dense_snap(Ds, Is, mask, cs, dense_steps)

    # Ours and the one-thread baseline take turns, so that the shared machine's
    # drifts hit both alike; then the baseline on all threads, for information
    # (changing OpenBLAS's thread count between calls would charge it for
    # restarting its threads).
    _common.blas_threads(1)
    rounds = _common.interleaved_times([_common.online_run(learner, xs, cs), dense], repeats)
    ours = statistics.median(rounds[0]) / steps
    times = {1: statistics.median(rounds[1]) / dense_steps}
    per_round = [(td / dense_steps) / (to / steps) for to, td in zip(*rounds)]
    ours_all = None
    if threads_all > 1:
        # Not interleaved: OpenBLAS's threads keep spinning after each call and
        # would take the second core from our split learner.
        ours_all = _common.median_time(_common.online_run(split, xs, cs), repeats) / steps
        _common.blas_threads(threads_all)
        times[threads_all] = _common.median_time(dense, repeats) / dense_steps
    _common.blas_threads(threads_all)
    label = f"GRU n={n} d={args.density}"
    rows = [
        _row("a", label, "SnAp-2 (ours, whole online step)", ours, 1.0),
        _row("a", label, "dense-masked SnAp-2, numpy, BLAS 1 thread (update + gradient only)", times[1],
             times[1] / ours, ">= 100x faster", times[1] / ours >= 100),
    ]
    for row in rows:
        row["ratio_per_round_min"] = min(per_round)
        row["ratio_per_round_max"] = max(per_round)
    for threads, sec in times.items():
        if threads != 1:
            rows.append(_row("a", label, f"SnAp-2 (ours, split over {threads} cores; information)", ours_all,
                             ours_all / ours))
            rows.append(_row("a", label, f"dense-masked SnAp-2, numpy, BLAS {threads} threads (information)", sec,
                             sec / ours))
    print(f"    J is {cell.n_state} x {cell.n_params} float32 = {mask.nbytes / 2**20:.1f} MB dense; "
          f"SnAp-2 keeps {learner.mask_size:,} entries ({100 * learner.mask_size / mask.size:.2g}%)")
    return rows


def compare_learners(part, kind_n, density, specs, n_in, steps, repeats, rng, target, better):
    """Time two learners of ours (registry specs) on one GRU; ratio = time(specs[1]) / time(specs[0])."""
    cell = sr.GRU(n_in, kind_n, density=density, seed=0, dtype=np.float32)
    xs = rng.normal(size=(steps, cell.n_in)).astype(cell.dtype)
    cs = rng.normal(size=(steps, cell.n_state)).astype(cell.dtype)
    learners = [_common.make_learner(spec, cell) for spec in specs]
    runs = [_common.online_run(lrn, xs, cs, _common.grad_every(spec)) for lrn, spec in zip(learners, specs)]
    times = _common.interleaved_times(runs, repeats)
    sec_a, sec_b = (statistics.median(t) / steps for t in times)
    label = f"GRU n={kind_n} d={density}"
    a, b = (lrn.name for lrn in learners)
    ratio = sec_b / sec_a
    rows = [_row(part, label, a, sec_a, 1.0), _row(part, label, b, sec_b, ratio, target, better(ratio))]
    # Per round, the same ratio: its spread shows the shared machine's phases
    # (a neighbour on the other hyperthread slows cache-resident code most).
    per_round = [tb / ta for ta, tb in zip(*times)]
    for row in rows:
        row["ratio_per_round_min"] = min(per_round)
        row["ratio_per_round_max"] = max(per_round)
    return rows


def _row(part, network, method, sec, ratio, target="", met=""):
    """``ratio``: this method's time / the part's first method's time."""
    return {"part": part, "network": network, "method": method, "us_per_step": sec * 1e6,
            "time_ratio_vs_first": ratio, "target": target, "target_met": met,
            "ratio_per_round_min": "", "ratio_per_round_max": ""}


def plot(rows, path, title):
    parts = sorted({r["part"] for r in rows})
    fig = _common.figure(figsize=(5 * len(parts), 3.8))
    axes = fig.subplots(1, len(parts), squeeze=False)
    for ax, part in zip(axes[0], parts):
        pr = [r for r in rows if r["part"] == part]
        labels = [r["method"].split(" (")[0].replace("dense-masked SnAp-2, numpy, ", "dense numpy\n") for r in pr]
        ax.bar(range(len(pr)), [r["us_per_step"] for r in pr],
               color=["tab:blue"] + ["tab:gray"] * (len(pr) - 1))
        for i, r in enumerate(pr):
            ax.annotate(f"{r['us_per_step']:.3g} us\n{r['time_ratio_vs_first']:.3g}x", (i, r["us_per_step"]),
                        ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(pr)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("us per step (median)")
        target = next((r["target"] for r in pr if r["target"]), "")
        met = next((r["target_met"] for r in pr if r["target"]), "")
        ax.set_title(f"({part}) {pr[0]['network']}\ntarget {target}: {'met' if met else 'NOT met'}", fontsize=9)
        ax.margins(y=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _common.save_figure(fig, path)


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--n-in", type=int, default=8)
    p.add_argument("--steps", type=int, default=64, help="steps per timed repeat of our learners")
    p.add_argument("--dense-steps", type=int, default=8, help="steps per timed repeat of the dense baseline")
    args = p.parse_args(argv)
    args.n_dense, args.n_rtrl, args.n_tbptt = 256, 128, 1024
    if args.quick:
        args.n_dense, args.n_rtrl, args.n_tbptt, args.steps, args.dense_steps = 32, 32, 64, 16, 4
    repeats = args.repeats or (2 if args.quick else 15)
    rng = np.random.default_rng(0)

    # Compile (or load) every kernel used below on a tiny cell first.
    tiny = sr.GRU(args.n_in, 8, density=0.5, seed=0, dtype=np.float32)
    for spec in ("snap1", "snap2", "rtrl", "tbptt16"):
        _common.time_online(_common.make_learner(spec, tiny), np.zeros((16, args.n_in), np.float32),
                            np.ones((16, tiny.n_state), np.float32), _common.grad_every(spec), 1, warmup=0)
    check_same_gradient(tiny, registry.make_learner("snap2", tiny).mask().to_dense().astype(np.float32),
                        np.ones((3, args.n_in), np.float32), np.ones((3, tiny.n_state), np.float32))

    print(f"median of {repeats} repeats; float32; BLAS threads available: {_common.blas_threads()}; "
          f"{_common.machine()}")
    rows = compare_dense(args, rng, repeats)
    rows += compare_learners("b", args.n_rtrl, args.density, ("snap2", "rtrl"), args.n_in, args.steps, repeats,
                             rng, ">= 50x faster", lambda r: r >= 50)
    steps_c = max(16, args.steps // 16 * 16)
    rows += compare_learners("c", args.n_tbptt, args.density, ("tbptt16", "snap1"), args.n_in, steps_c, repeats,
                             rng, "<= 1.0x TBPTT", lambda r: r <= 1.0)

    print()
    _common.print_table(rows, ["part", "network", "method", "us_per_step", "time_ratio_vs_first", "target_met"])
    note = " (quick mode: small sizes, not the targets' sizes)" if args.quick else ""
    print(f"\nheadline ratios{note}:")
    by = {r["part"]: r for r in rows if r["target"]}
    first = {}
    for r in rows:
        first.setdefault(r["part"], r)
    a, b, c = by["a"], by["b"], by["c"]
    print("  (the ratio of medians; per round of the interleaved repeats it ranged over "
          + ", ".join(f"({p}) {by[p]['ratio_per_round_min']:.3g}-{by[p]['ratio_per_round_max']:.3g}x" for p in "abc")
          + ": this shared machine has slow phases that hit cache-resident code hardest)")
    print(f"  (a) ours is {a['time_ratio_vs_first']:.3g}x faster than the dense numpy SnAp-2 on {a['network']} "
          f"(target >= 100x: {'met' if a['target_met'] else 'NOT met'}); the baseline is charged only for its "
          f"influence update and gradient, ours for forward + backward + grad")
    print(f"  (b) SnAp-2 is {b['time_ratio_vs_first']:.3g}x faster than RTRL on {b['network']} "
          f"(target >= 50x: {'met' if b['target_met'] else 'NOT met'})")
    print(f"  (c) SnAp-1 takes {c['time_ratio_vs_first']:.3g}x TBPTT(16)'s time per step on {c['network']} "
          f"({c['us_per_step']:.4g} vs {first['c']['us_per_step']:.4g} us; target <= 1.0x: "
          f"{'met' if c['target_met'] else 'NOT met'})")

    tag = "quick" if args.quick else "full"
    print("wrote", _common.write_csv(os.path.join(args.out, f"baselines_{tag}.csv"), rows))
    print("wrote", plot(rows, os.path.join(args.out, f"baselines_{tag}.png"),
                        f"Baselines{note}, float32, median of {repeats}; {_common.machine()}"))
    return rows


if __name__ == "__main__":
    main()
