"""The copy task where truncation binds, on sweeps: SnAp-2 against TBPTT with short windows, and KF-RTRL
against UORO and TBPTT.

Two studies, each a sweep of learners x seeds (``sr.sweep``), scored by the
sequence length the curriculum reached (the length grows when the mean recall
loss of the last episodes falls below 0.15 bits per symbol):

- ``snap``: Menick et al.'s claim that SnAp-2 can beat BPTT in online
  learning. A GRU with n = 64 and density 0.25 is trained fully online. SnAp-1,
  SnAp-2 and UORO update every step; TBPTT(T) updates at the end of each
  T-step window, with T = 4 and 8. Episodes of length L last 2L + 1 steps, so
  from L = 2 on, the windows are shorter than the episodes they must solve.
- ``kf``: Mujika et al.'s KF-RTRL against UORO and TBPTT(4) and TBPTT(8) on
  copy, with a dense 32-unit vanilla RNN (KF-RTRL's cell here), and RTRL as
  the exact reference.

Adam 3e-3 with clipping at 1, float32, held fixed for all learners (the
length reached, not a held-out loss, is the score, so the rate is not
tuned here).

    python experiments/copy_sweeps.py                          # 300k steps, 5 seeds (~40 min on two cores)
    python experiments/copy_sweeps.py --steps 1000000 --seeds 10   # a larger budget (hours)
    python experiments/copy_sweeps.py --quick                  # smoke test, in this process

Sweeps go to ``--work`` (default ``runs/copy_sweeps``; a rerun continues them);
results to ``copy_sweeps_{full,quick}.csv`` (a row per learner: median and
quartiles of the length reached), ``copy_sweeps_{full,quick}_curves.csv`` and
``.png``.
"""

import os
import time

import numpy as np

from _setup import figure, grad_every, parser, save_figure, write_csv

STUDIES = {
    "snap": {"cell": "gru", "n_hidden": 64, "density": 0.25,
             "learners": ["snap2", "snap1", "uoro", "tbptt4", "tbptt8"]},
    "kf": {"cell": "vanilla", "n_hidden": 32, "density": 1.0,
           "learners": ["kfrtrl", "uoro", "tbptt4", "tbptt8", "rtrl"]},
}


def spec(study, args):
    s = STUDIES[study]
    learners = args.learners[study] if args.learners else s["learners"]
    base = {"task": {"name": "copy"}, "cell": s["cell"], "n_hidden": args.n or s["n_hidden"],
            "density": s["density"], "optimizer": "adam", "lr": 3e-3, "clip_norm": 1.0, "dtype": "float32",
            "steps": args.steps, "log_every": max(args.steps // 60, 1), "eval_every": 0,
            "checkpoint_every": max(args.steps // 6, 1)}
    return {"name": f"copy-{study}", "base": base, "grid": {"seed": list(range(args.seeds))},
            "zip": [{"learner": learners, "update_every": [grad_every(x) for x in learners]}]}


def curves(res, folder):
    """Length reached against steps, per run: the logged train records' ``length``."""
    from sparse_rtrl.training.runlog import read_log

    out = []
    for r in res.runs:
        for rec in read_log(os.path.join(folder, "runs", r["name"], "metrics.jsonl")):
            if rec.get("split") == "train":
                out.append({"learner": r["learner"], "name": r["learner_name"], "seed": r["seed"],
                            "step": rec["step"], "length": rec.get("length"), "bits_per_symbol": rec.get("value")})
    return out


def main():
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--work", default=os.path.join("runs", "copy_sweeps"), help="folder of the sweeps")
    p.add_argument("--workers", type=int, default=None, help="Dask worker processes (default: one per core; "
                                                                 "0: in this process)")
    p.add_argument("--steps", type=int, default=300_000)
    p.add_argument("--studies", nargs="+", choices=list(STUDIES), default=list(STUDIES))
    args = p.parse_args()
    import sparse_rtrl as sr

    args.seeds, args.n, args.learners = args.seeds or 5, None, None
    if args.quick:
        args.steps, args.seeds, args.n, args.workers = 600, 1, 8, 0
        args.learners = {"snap": ["snap2", "tbptt4"], "kf": ["kfrtrl", "uoro"]}
    rows, points, t0 = [], [], time.perf_counter()
    for study in args.studies:
        s = spec(study, args)
        folder = os.path.join(args.work, s["name"])
        t = time.perf_counter()
        res = sr.sweep(s, folder, workers=args.workers)
        print(f"{s['name']}: {len(res.runs)} runs, {len(res.trained)} trained, {time.perf_counter() - t:.0f} s")
        for c in curves(res, folder):
            points.append(dict(c, study=study))
        for learner in s["zip"][0]["learner"]:
            mine = [r for r in res.runs if r["learner"] == learner and r["status"] == "finished"]
            lengths = [r["length"] for r in mine]
            q = np.percentile(lengths, [25, 50, 75]) if lengths else [np.nan] * 3
            rows.append({"study": study, "learner": learner, "name": mine[0]["learner_name"] if mine else learner,
                         "cell": s["base"]["cell"], "n_hidden": s["base"]["n_hidden"], "steps": args.steps,
                         "seeds": len(mine), "length_median": float(q[1]), "length_q25": float(q[0]),
                         "length_q75": float(q[2]), "lengths": " ".join(str(x) for x in lengths),
                         "seconds_median": float(np.median([r["seconds"] for r in mine])) if mine else np.nan})
            r = rows[-1]
            print(f"  {r['name']:>10}: length {r['length_median']:g} [{r['length_q25']:g}, {r['length_q75']:g}] "
                  f"over {r['seeds']} seeds ({r['lengths']})")
    tag = "quick" if args.quick else "full"
    write_csv(os.path.join(args.out, f"copy_sweeps_{tag}.csv"), rows)
    write_csv(os.path.join(args.out, f"copy_sweeps_{tag}_curves.csv"), points)
    plot(points, args, os.path.join(args.out, f"copy_sweeps_{tag}.png"))
    print(f"total {time.perf_counter() - t0:.0f} s")


def plot(points, args, path):
    fig = figure(figsize=(12, 4.5))
    axes = fig.subplots(1, len(args.studies), squeeze=False)[0]
    for ax, study in zip(axes, args.studies):
        mine = [p for p in points if p["study"] == study]
        for name in dict.fromkeys(p["name"] for p in mine):
            runs = {}
            for p in mine:
                if p["name"] == name:
                    runs.setdefault(p["seed"], []).append((p["step"], p["length"]))
            n = min(len(v) for v in runs.values())
            steps = np.array([s for s, _ in sorted(next(iter(runs.values())))[:n]])
            lengths = np.array([[length for _, length in sorted(v)[:n]] for v in runs.values()], dtype=float)
            line, = ax.plot(steps, np.median(lengths, axis=0), label=name)
            ax.fill_between(steps, np.percentile(lengths, 25, axis=0), np.percentile(lengths, 75, axis=0),
                            color=line.get_color(), alpha=0.15)
        s = STUDIES[study]
        ax.set_xlabel("step")
        ax.set_ylabel("copy length reached (median over seeds; band: quartiles)")
        ax.set_title(f"{study}: {s['cell']} n={args.n or s['n_hidden']}, density {s['density']:g}, "
                     f"{args.seeds} seeds", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
