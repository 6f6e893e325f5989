"""Mujika et al.'s claim: KF-RTRL's gradient noise stays far below UORO's,
and the gap grows with the network. Reverse KF-RTRL alongside.

For each size, a leaky vanilla RNN (density 0.25, alpha 0.5) runs a fixed Add
trajectory with frozen weights; ``sr.estimator_variance`` gives, per step, the
variance of each estimator's per-step gradient across seeds relative to the
exact gradient's squared norm. Reported: the median over the second half of
the trajectory. Writes ``kf_variance_*.csv`` and ``kf_variance_*.png``.

    python experiments/kf_variance.py            # full: n = 8 ... 128, 100 seeds, 100 steps
    python experiments/kf_variance.py --quick    # CI smoke test
"""

import os
import time

import numpy as np

from _setup import figure, parser, save_figure, write_csv

LEARNERS = ("uoro", "kfrtrl", "rkfrtrl")  # registry specs


def main():
    args = parser(__doc__.split("\n\n")[0]).parse_args()
    import sparse_rtrl as sr
    from sparse_rtrl.compare import trajectory
    from sparse_rtrl.registry import make_learner

    sizes, T, seeds = ([4, 8], 20, 10) if args.quick else ([8, 16, 32, 64, 128], 100, 100)
    seeds = args.seeds or seeds
    rows, t0 = [], time.perf_counter()
    for n in sizes:
        cell, xs, cs = trajectory({"name": "add", "length": T}, "vanilla", n, 0.25, 0.5, T, seed=0)
        med, names = {}, {}
        for spec in LEARNERS:
            names[spec] = make_learner(spec, cell).name
            v = sr.estimator_variance(lambda s, spec=spec: make_learner(spec, cell, seed=s), xs, cs, range(seeds))
            rel = v["relative_variance"]
            med[spec] = float(np.median(rel[T // 2:]))
            rows.append({"n": n, "learner": names[spec], "median_relative_variance": med[spec],
                         "median_bias_sq_relative": float(np.median((v["bias_sq"] / v["exact_sq_norm"])[T // 2:]))})
        print(f"n = {n:4d}: relative variance " + ", ".join(f"{names[s]} {med[s]:.3g}" for s in LEARNERS)
              + f"; {names['uoro']} / {names['kfrtrl']} = {med['uoro'] / med['kfrtrl']:.1f}")
    tag = "quick" if args.quick else "full"
    write_csv(os.path.join(args.out, f"kf_variance_{tag}.csv"), rows)
    plot(rows, os.path.join(args.out, f"kf_variance_{tag}.png"))
    print(f"total {time.perf_counter() - t0:.0f} s")


def plot(rows, path):
    fig = figure(figsize=(6, 4))
    ax = fig.subplots()
    for name in dict.fromkeys(r["learner"] for r in rows):
        mine = [r for r in rows if r["learner"] == name]
        ax.loglog([r["n"] for r in mine], [r["median_relative_variance"] for r in mine], "o-", label=name)
    ax.set_xlabel("hidden units n")
    ax.set_ylabel("variance / |exact gradient|^2 (median, 2nd half)")
    ax.set_title("gradient estimator variance vs network size (Add, frozen weights)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
