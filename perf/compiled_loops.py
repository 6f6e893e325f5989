"""Seconds per online training step of every learner: the compiled loop against the step-by-step path.

``sr.train_online(..., fused=True)`` runs the whole online loop (the cell's
step, the learner's update, an MSE readout with 2 outputs, its credit, the
learner's use of it, SGD every step) in compiled code; ``fused=False`` runs
the same kernels from Python, one call per step and object, as the library
did for every learner but SnAp and e-prop before the compiled loop covered
them all. Every learner of the registry (numbered ones at their example
numbers), on Marschall et al.'s network size: a dense 32-unit vanilla RNN,
8 inputs, float64 and float32. Both paths start from the same parameters and
a reset learner and take turns within each repeat; microseconds per step are
medians over repeats of ``--steps`` steps. BPTT back-propagates everything
since ``reset()`` at each update, so it updates once, at the end of each
repeat (an update every step would make its cost grow with the step count).
Target: >= 10x fewer seconds per step than the step-by-step path.

    python perf/compiled_loops.py            # 1000 steps, median of 5
    python perf/compiled_loops.py --quick    # smoke test: three learners, float64, a few steps

Where a learner's own work per step is large next to the calls (exact RTRL
holds a 32 x 1312 influence and multiplies it by D every step), the ratio is
bounded by that work: the script prints the learner's share of the compiled
step as its own row (``compiled_us`` against the step path's), so the bound
reads off the table.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

import sparse_rtrl as sr  # noqa: E402


def setup(spec, n, density, dtype, n_in, steps, rng):
    cell = sr.VanillaRNN(n_in, n, density=density, seed=0, dtype=dtype)
    learner = _common.make_learner(spec, cell)
    readout = sr.LinearReadout(cell, 2, "mse", seed=0)
    opt = sr.SGD([cell.params, readout.params], lr=1e-3)
    xs = rng.normal(size=(steps, n_in)).astype(dtype)
    ys = (0.5 * rng.normal(size=(steps, 2))).astype(dtype)
    p0, r0 = cell.params.copy(), readout.params.copy()
    obstacle = sr.training.fused.fused_obstacle(learner, readout, opt)
    if obstacle is not None:
        raise RuntimeError(f"{learner.name}: {obstacle}")

    every = steps if learner.name == "BPTT" else 1

    def run(fused, k=steps):
        def fn():
            learner.reset()
            cell.params[:] = p0
            readout.params[:] = r0
            sr.train_online(learner, readout, opt, xs[:k], ys[:k], min(every, k), fused=fused)
        return fn

    return learner, run


def plot(rows, path, title):
    fig = _common.figure(figsize=(12, 4.5))
    ax, ax2 = fig.subplots(1, 2)
    dtypes = sorted({r["dtype"] for r in rows})
    names = list(dict.fromkeys(r["learner"] for r in rows))
    x = np.arange(len(names))
    width = 0.8 / (2 * len(dtypes))
    for j, dt in enumerate(dtypes):
        sub = {r["learner"]: r for r in rows if r["dtype"] == dt}
        for k, (key, label) in enumerate((("us_per_step_steps", "step by step"), ("us_per_step_compiled", "compiled"))):
            off = (2 * j + k - len(dtypes)) * width + width / 2
            ax.bar(x + off, [sub[nm][key] if nm in sub else np.nan for nm in names], width, label=f"{label}, {dt}")
        ax2.bar(x + (j - (len(dtypes) - 1) / 2) * 0.8 / len(dtypes),
                [sub[nm]["speedup"] if nm in sub else np.nan for nm in names], 0.8 / len(dtypes), label=dt)
    ax.set_yscale("log")
    ax.set_ylabel("us per online step (median)")
    ax2.axhline(10.0, color="k", ls="--", lw=1, label="target 10x")
    ax2.set_ylabel("step-by-step time / compiled time")
    for a in (ax, ax2):
        a.set_xticks(x)
        a.set_xticklabels(names, fontsize=7, rotation=45, ha="right")
        a.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _common.save_figure(fig, path)


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=32, help="hidden units")
    p.add_argument("--density", type=float, default=1.0)
    p.add_argument("--dtypes", nargs="+", choices=("float32", "float64"), default=["float64", "float32"])
    p.add_argument("--learners", nargs="+", default=None, help="registry specs (default: every learner)")
    p.add_argument("--n-in", type=int, default=8)
    p.add_argument("--steps", type=int, default=1000, help="steps per timed repeat")
    args = p.parse_args(argv)
    specs = args.learners or sr.registry.example_specs()
    if args.quick:
        specs, args.steps, args.dtypes = args.learners or ["snap1", "uoro", "tbptt10"], 50, ["float64"]
    repeats = args.repeats or (2 if args.quick else 5)
    rng = np.random.default_rng(0)
    print(f"vanilla RNN n={args.n} d={args.density:g}, MSE readout (2 outputs), SGD every step; {args.steps} steps, "
          f"median of {repeats}; {_common.machine()}")

    rows = []
    for dtype in args.dtypes:
        for spec in specs:
            learner, run = setup(spec, args.n, args.density, np.dtype(dtype), args.n_in, args.steps, rng)
            run(True, 4)()  # compile (or load) both paths
            run(False, 4)()
            t_fast, t_steps = _common.interleaved_medians([run(True), run(False)], repeats)
            row = {"learner": learner.name, "spec": spec, "dtype": dtype, "n": args.n, "n_params": learner.cell.n_params,
                   "steps": args.steps, "us_per_step_compiled": t_fast / args.steps * 1e6,
                   "us_per_step_steps": t_steps / args.steps * 1e6, "speedup": t_steps / t_fast}
            rows.append(row)
            print(f"  {learner.name:<12s} {dtype}: compiled {row['us_per_step_compiled']:.3g} us, "
                  f"step by step {row['us_per_step_steps']:.4g} us, {row['speedup']:.3g}x", flush=True)

    print()
    _common.print_table(rows, ["learner", "dtype", "n_params", "us_per_step_compiled", "us_per_step_steps",
                               "speedup"])
    print("\nheadline (target: >= 10x fewer seconds per step than step by step):")
    for r in rows:
        print(f"  {r['learner']} {r['dtype']}: {r['speedup']:.3g}x ({'met' if r['speedup'] >= 10 else 'NOT met'})")
    tag = "quick" if args.quick else "full"
    print("wrote", _common.write_csv(os.path.join(args.out, f"compiled_loops_{tag}.csv"), rows))
    print("wrote", plot(rows, os.path.join(args.out, f"compiled_loops_{tag}.png"),
                        f"Compiled online loop vs step by step, every learner, n={args.n}, median of {repeats}; "
                        f"{_common.machine()}"))
    return rows


if __name__ == "__main__":
    main()
