"""SnAp's copy-task claim: with a sparse GRU trained fully online, SnAp-2
reaches longer sequences than SnAp-1, and both beat UORO, for the same number
of steps; TBPTT (updates at the end of each window) for comparison.

The score is the sequence length the curriculum reached (the length grows
when the mean recall loss of the last episodes falls below 0.15 bits per
symbol). Writes ``copy_task.csv`` (length reached against steps, per learner
and seed) and ``copy_task.png``.

    python experiments/copy_task.py            # full: GRU n=64, d=0.25, 100k steps, 3 seeds
    python experiments/copy_task.py --quick    # CI smoke test
"""

import os
import time

import numpy as np

from _setup import figure, grad_every, parser, save_figure, train, write_csv

LEARNERS = ["snap2", "snap1", "uoro", "tbptt16"]  # registry specs; TBPTT(T) updates every T steps


def main():
    args = parser(__doc__.split("\n\n")[0]).parse_args()
    from sparse_rtrl.training.trainer import RunConfig

    n, steps, seeds = (8, 600, 1) if args.quick else (64, 100_000, 3)
    seeds = args.seeds or seeds
    rows, t0 = [], time.perf_counter()
    for spec in LEARNERS:
        every = grad_every(spec)
        for seed in range(seeds):
            cfg = RunConfig(task={"name": "copy"}, cell="gru", n_hidden=n, density=0.25, learner=spec,
                            optimizer="adam", lr=3e-3, clip_norm=1.0, update_every=every, steps=steps,
                            dtype="float32", seed=seed, log_every=max(steps // 50, 1), eval_every=0,
                            checkpoint_every=steps)
            trainer, log, secs = train(cfg)
            rows += [{"learner": trainer.learner.name, "seed": seed, "step": r["step"], "length": r["length"],
                      "bits_per_symbol": r["value"]} for r in log]
            print(f"{trainer.learner.name:>10} seed {seed}: length {trainer.task.length} after {steps} steps "
                  f"({secs:.0f} s)")
    tag = "quick" if args.quick else f"gru{n}"
    write_csv(os.path.join(args.out, f"copy_task_{tag}.csv"), rows)
    plot(rows, os.path.join(args.out, f"copy_task_{tag}.png"), n)
    print(f"total {time.perf_counter() - t0:.0f} s")


def plot(rows, path, n):
    fig = figure(figsize=(7, 4))
    ax = fig.subplots()
    for name in dict.fromkeys(r["learner"] for r in rows):
        mine = [r for r in rows if r["learner"] == name]
        # Each seed's length is a step function of the step; average them on one grid.
        grid = sorted({int(r["step"]) for r in mine})
        curves = []
        for seed in sorted({r["seed"] for r in mine}):
            pts = sorted((int(r["step"]), float(r["length"])) for r in mine if r["seed"] == seed)
            steps_s, lengths = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
            idx = np.searchsorted(steps_s, grid, side="right") - 1
            curves.append(np.where(idx >= 0, lengths[np.maximum(idx, 0)], np.nan))
        ax.plot(grid, np.nanmean(curves, axis=0), label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("copy length reached (mean over seeds)")
    ax.set_title(f"copy task, GRU n={n}, density 0.25, online Adam", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
