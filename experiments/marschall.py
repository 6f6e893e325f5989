"""Marschall, Cho & Savin's comparison: every learner trains a 32-unit leaky
vanilla RNN online on Add and on Mimic; final losses and alignments with
RTRL, grouped by the framework's axes (past/future-facing, tensor structure,
stochastic/deterministic, closed form/learned).

Every learner gets the same optimiser (Adam, lr 1e-3, clipping at 1), no
per-learner tuning, as a like-for-like baseline. The final loss is the mean
training loss (mean squared error) of the last 10% of the steps; the
alignment is the mean cosine with RTRL's gradient over 500 steps of a fresh
stream, with the trained network frozen, per step and over 20-step windows
(the future-facing learners emit a step's gradient later, so only windows
compare them fairly). Writes ``marschall_*.csv`` and
``marschall_*.png``.

    python experiments/marschall.py            # full: 30k steps per learner and task, 2 seeds
    python experiments/marschall.py --quick    # CI smoke test
"""

import os
import time

import numpy as np

from _setup import figure, grad_every, parser, save_figure, train, write_csv

# Registry specs. TBPTT(T) updates at the end of each T-step window, the others every step
# (``grad_every``); each learner's place on the framework's axes comes from its class (``taxonomy``).
LEARNERS = ["rtrl", "snap2", "snap1", "uoro", "kfrtrl", "rkfrtrl", "rflo", "eprop", "kernl", "tbptt10", "fbptt10",
            "dni", "dnib"]
WINDOW = 20
TASKS = {"add": {"name": "add", "t1": 5, "t2": 9, "length": 100}, "mimic": {"name": "mimic", "length": 100}}


def taxonomy(spec):
    """``(facing, structure, noise, form)`` of learner ``spec``: its class's ``facing``, ``structure``,
    ``stochastic`` ("stochastic"/"deterministic") and ``learned`` ("learned"/"closed form")."""
    from sparse_rtrl.registry import parse_learner

    cls, _ = parse_learner(spec)
    return (cls.facing, cls.structure, "stochastic" if cls.stochastic else "deterministic",
            "learned" if cls.learned else "closed form")


def alignment_after_training(trainer, steps, seed, every):
    """Mean cosine of the trained learner's gradient with RTRL's, weights frozen, over windows of ``every`` steps."""
    import sparse_rtrl as sr
    from sparse_rtrl.compare import stream_credits

    xs, credits = stream_credits(trainer.cell, trainer.readout, trainer.task.held_out(seed), steps)
    report = sr.alignment({"learner": trainer.learner}, xs, credits, every=every)
    return report["mean_cosine"]["learner"]


def main():
    args = parser(__doc__.split("\n\n")[0]).parse_args()
    from sparse_rtrl.training.trainer import RunConfig

    n, steps, seeds, align_steps = (8, 300, 1, 60) if args.quick else (32, 30_000, 2, 500)
    seeds = args.seeds or seeds
    rows, t0 = [], time.perf_counter()
    for task_name, task_cfg in TASKS.items():
        for spec in LEARNERS:
            every, axes = grad_every(spec), taxonomy(spec)
            for seed in range(seeds):
                cfg = RunConfig(task=task_cfg, cell="vanilla", n_hidden=n, density=1.0, alpha=0.5, learner=spec,
                                optimizer="adam", lr=1e-3, clip_norm=1.0, update_every=every, steps=steps,
                                dtype="float64", seed=seed, log_every=max(steps // 20, 1), eval_every=0,
                                checkpoint_every=steps)
                trainer, log, secs = train(cfg)
                tail = log[-max(1, len(log) // 10):]
                final = float(np.mean([r["value"] for r in tail]))
                first = log[0]["value"]
                cos = alignment_after_training(trainer, align_steps, seed + 100, 1)
                cos_w = alignment_after_training(trainer, align_steps, seed + 100, WINDOW)
                rows.append({"task": task_name, "learner": trainer.learner.name, "seed": seed, "facing": axes[0],
                             "structure": axes[1], "noise": axes[2], "form": axes[3], "first_loss": first,
                             "final_loss": final, "alignment": cos, "alignment_window": cos_w,
                             "seconds": round(secs, 1)})
                print(f"{task_name:>5} {trainer.learner.name:>10} seed {seed}: loss {first:.4f} -> {final:.4f}, "
                      f"alignment {cos:.3f} per step, {cos_w:.3f} over {WINDOW}-step windows ({secs:.0f} s)")
    tag = "quick" if args.quick else f"n{n}"
    write_csv(os.path.join(args.out, f"marschall_{tag}.csv"), rows)
    plot(rows, os.path.join(args.out, f"marschall_{tag}.png"), n)
    print(f"total {time.perf_counter() - t0:.0f} s")


def plot(rows, path, n):
    colours = {"full": "k", "sparse": "tab:blue", "rank one": "tab:red", "Kronecker": "tab:orange",
               "diagonal": "tab:green", "synthetic": "tab:purple"}
    fig = figure(figsize=(12, 4.5))
    axes = fig.subplots(1, len(TASKS))
    for ax, task in zip(axes, TASKS):
        mine = [r for r in rows if r["task"] == task]
        for name in dict.fromkeys(r["learner"] for r in mine):
            rs = [r for r in mine if r["learner"] == name]
            x, y = np.mean([r["alignment_window"] for r in rs]), np.mean([r["final_loss"] for r in rs])
            marker = "o" if rs[0]["facing"] == "past" else "s"
            face = "none" if rs[0]["noise"] == "stochastic" else colours[rs[0]["structure"]]
            ax.scatter([x], [y], marker=marker, s=60, edgecolors=colours[rs[0]["structure"]], facecolors=face)
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xlabel(f"alignment with RTRL after training (mean cosine, {WINDOW}-step windows)")
        ax.set_ylabel("final training loss (mse)")
        ax.set_title(f"{task}: vanilla n={n}, alpha=0.5 (o past-, s future-facing; open = stochastic)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
