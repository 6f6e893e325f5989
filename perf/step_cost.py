"""Per-step cost of each learner on one sparse network, with ratios.

Every learner that runs on the cell, one or two settings each
(``sparse_rtrl.registry.example_specs``; TBPTT at ``--truncation``). An
online step is ``forward`` + ``backward`` + ``grad`` (the gradient a
fully online learner hands the optimiser every step); every learner on one
core. TBPTT(T) hands it over
at the end of each window, so its ``grad`` runs every T steps, as in
Marschall et al.'s efficient BPTT. Ratios are against TBPTT and RTRL measured
in the same run.

    python perf/step_cost.py            # GRU n=128, density 0.1, float32
    python perf/step_cost.py --quick    # smoke test
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

from sparse_rtrl import registry  # noqa: E402


def learner_specs(cell, truncation):
    """The specs of every learner that runs on ``cell`` (``registry.example_specs``), TBPTT's at ``truncation``."""
    specs = []
    for spec in registry.example_specs(cell):
        cls, _ = registry.parse_learner(spec)
        if cls.key == "tbptt":
            spec = f"{cls.key}{truncation}"
        if spec not in specs:
            specs.append(spec)
    return specs


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--cell", choices=registry.CELLS.keys(), default="gru")
    p.add_argument("--n-hidden", type=int, default=128)
    p.add_argument("--n-in", type=int, default=8)
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--truncation", type=int, default=16)
    args = p.parse_args(argv)
    if args.quick:
        args.n_hidden, args.steps, repeats = 16, 8, 2
    else:
        repeats = args.repeats or 5
    steps = args.steps or 64
    cell = registry.make_cell(args.cell, args.n_in, args.n_hidden, density=args.density, seed=0, dtype=args.dtype)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(steps, cell.n_in)).astype(cell.dtype)
    cs = rng.normal(size=(steps, cell.n_state)).astype(cell.dtype)

    specs = learner_specs(cell, args.truncation)
    learners = [(_common.make_learner(spec, cell), _common.grad_every(spec)) for spec in specs]
    rows = []
    for learner, every in learners:
        sec = _common.time_online(learner, xs, cs, every, repeats)
        rows.append({"learner": learner.name, "us_per_step": sec * 1e6, "state_bytes": learner.nbytes})
    base = {spec: r["us_per_step"] for spec, r in zip(specs, rows)}
    tb = base[f"tbptt{args.truncation}"]
    for r in rows:
        r["vs_TBPTT"] = r["us_per_step"] / tb
        r["RTRL_speedup"] = base["rtrl"] / r["us_per_step"]
    print(f"{cell!r}, {steps} steps, median of {repeats}; {_common.machine()}")
    _common.print_table(rows, ["learner", "us_per_step", "vs_TBPTT", "RTRL_speedup", "state_bytes"])
    tag = "quick" if args.quick else f"{args.cell}{args.n_hidden}_d{args.density}_{args.dtype}"
    path = _common.write_csv(os.path.join(args.out, f"step_cost_{tag}.csv"), rows)
    print("wrote", path)

    fig = _common.figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.barh([r["learner"] for r in rows], [r["us_per_step"] for r in rows], color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("microseconds per online step (median)")
    ax.set_title(f"{type(cell).__name__} n={cell.n_hidden}, density {args.density}, {args.dtype}", fontsize=10)
    fig.tight_layout()
    print("wrote", _common.save_figure(fig, os.path.join(args.out, f"step_cost_{tag}.png")))
    return rows


if __name__ == "__main__":
    main()
