"""Seconds per online training step: the fused (compiled) loop against the step-by-step path.

``sr.train_online(learner, readout, optimizer, xs, ys, fused=True)`` runs the
whole loop (cell step, SnAp-1 update, MSE readout with 2 outputs, backward,
SGD update every step) in compiled code; ``fused=False`` runs the same steps
from Python. Vanilla RNN with SnAp-1, n = 32 (and 64, 128), densities 0.1 and
1.0, float32 and float64. Each run starts from the same parameters and a
reset learner; the two paths take turns within each repeat. Microseconds per
step are medians over repeats of ``--steps`` steps. Targets: <= 5 us per
step at 32 units, fused; >= 10x fewer seconds than the step-by-step path.

    python perf/fused_loop.py            # 2000 steps, median of 5
    python perf/fused_loop.py --quick    # smoke test, a few seconds

Full run on the 2-core Xeon: about 30 seconds (measured once).
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

import sparse_rtrl as sr  # noqa: E402


def setup(n, density, dtype, n_in, steps, rng):
    cell = sr.VanillaRNN(n_in, n, density=density, seed=0, dtype=dtype)
    learner = sr.registry.make_learner("snap1", cell)
    readout = sr.LinearReadout(cell, 2, "mse", seed=0)
    opt = sr.SGD([cell.params, readout.params], lr=1e-3)
    xs = rng.normal(size=(steps, n_in)).astype(dtype)
    ys = (0.5 * rng.normal(size=(steps, 2))).astype(dtype)
    p0, r0 = cell.params.copy(), readout.params.copy()

    def run(fused, k=steps):
        def fn():
            learner.reset()
            cell.params[:] = p0
            readout.params[:] = r0
            sr.train_online(learner, readout, opt, xs[:k], ys[:k], fused=fused)
        return fn

    return cell, run


def plot(rows, path, title):
    fig = _common.figure(figsize=(11, 4))
    ax, ax2 = fig.subplots(1, 2)
    labels = [f"n={r['n']} d={r['density']}\n{r['dtype']}" for r in rows]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["us_per_step_steps"] for r in rows], 0.4, label="step by step (fused=False)")
    ax.bar(x + 0.2, [r["us_per_step_fused"] for r in rows], 0.4, label="fused=True")
    ax.axhline(5.0, color="k", ls="--", lw=1, label="5 us target (n=32)")
    ax.set_yscale("log")
    ax.set_ylabel("us per online step (median)")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=6)
    ax.legend(fontsize=7)
    ax2.bar(x, [r["speedup"] for r in rows], color="tab:green")
    ax2.axhline(10.0, color="k", ls="--", lw=1, label="target 10x")
    ax2.set_ylabel("step-by-step time / fused time")
    ax2.set_xticks(x)
    ax2.set_xticklabels(labels, fontsize=6)
    ax2.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _common.save_figure(fig, path)


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--densities", type=float, nargs="+", default=[0.1, 1.0])
    p.add_argument("--dtypes", nargs="+", choices=("float32", "float64"), default=["float32", "float64"])
    p.add_argument("--n-in", type=int, default=8)
    p.add_argument("--steps", type=int, default=2000, help="steps per timed repeat")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.steps = [32], 200
    repeats = args.repeats or (2 if args.quick else 5)
    rng = np.random.default_rng(0)
    print(f"vanilla RNN + SnAp-1, MSE readout (2 outputs), SGD every step; {args.steps} steps, median of {repeats}; "
          f"{_common.machine()}")

    rows = []
    for dtype in args.dtypes:
        for n in args.sizes:
            for density in args.densities:
                cell, run = setup(n, density, np.dtype(dtype), args.n_in, args.steps, rng)
                # Compile (or load) both paths with one short call each.
                run(True, 4)()
                run(False, 4)()
                t_fused, t_steps = _common.interleaved_medians([run(True), run(False)], repeats)
                row = {"n": n, "density": density, "dtype": dtype, "n_params": cell.n_params, "steps": args.steps,
                       "us_per_step_fused": t_fused / args.steps * 1e6,
                       "us_per_step_steps": t_steps / args.steps * 1e6, "speedup": t_steps / t_fused}
                rows.append(row)
                print(f"  n={n:<4d} d={density:<4g} {dtype}: fused {row['us_per_step_fused']:.3g} us, "
                      f"step by step {row['us_per_step_steps']:.4g} us, {row['speedup']:.3g}x", flush=True)

    print()
    _common.print_table(rows, ["n", "density", "dtype", "n_params", "us_per_step_fused", "us_per_step_steps",
                               "speedup"])
    print("\nheadline (targets: fused <= 5 us per step at n=32; >= 10x fewer seconds than step by step):")
    for r in rows:
        us_ok = "" if r["n"] != 32 else f"; <= 5 us: {'met' if r['us_per_step_fused'] <= 5.0 else 'NOT met'}"
        print(f"  n={r['n']} d={r['density']:g} {r['dtype']}: {r['us_per_step_fused']:.3g} us fused, "
              f"{r['speedup']:.3g}x ({'met' if r['speedup'] >= 10 else 'NOT met'}){us_ok}")
    tag = "quick" if args.quick else "full"
    print("wrote", _common.write_csv(os.path.join(args.out, f"fused_loop_{tag}.csv"), rows))
    print("wrote", plot(rows, os.path.join(args.out, f"fused_loop_{tag}.png"),
                        f"Fused online loop vs step by step, median of {repeats}; {_common.machine()}"))
    return rows


if __name__ == "__main__":
    main()
