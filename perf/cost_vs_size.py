"""Time per online step of every learner against network size n, with fitted power laws.

At fixed density (default 0.1), for n in 64 ... 2048 (where it fits): SnAp-1,
SnAp-2, SnAp-3, RTRL, TBPTT(16) and UORO. An online step is ``forward`` +
``backward`` + ``grad`` (TBPTT(T): ``grad`` at the end of each T-step
window). For each learner the exponent k of ``time ~ n**k`` is fitted by
least squares on log time vs log n. For SnAp-1/2/3 the time is also fitted
against the mask size (``learner.mask_size``, stored influence entries):
the project's target is an exponent of 1 +- 0.15 over at least a decade of
mask sizes. It is also fitted against the multiply-adds per step of the
influence update (``products``): SnAp-3 does more of them per mask entry as n
grows (more of D falls inside each reach), so its time follows products, not
mask size. Both fits are reported over all measured points and over the
points with ``mask_size >= --fit-min-mask`` (where the fixed per-step
Python cost, a few hundred microseconds, no longer dominates); the range of
mask sizes covered is printed and stored with each fit.

Points over the caps are skipped and recorded with the reason (RTRL above
``--rtrl-max-mb`` of dense influence, any learner above ``--max-mb``
estimated, any point whose timing would take more than ``--max-point-s``).

    python perf/cost_vs_size.py                       # GRU, density 0.1, float32
    python perf/cost_vs_size.py --cells gru lstm --sizes 64 128 256 512
    python perf/cost_vs_size.py --quick               # smoke test, a few seconds

Full run on the 2-core Xeon: about 6 minutes for GRU (an estimate from
partial runs). With the defaults RTRL is skipped from n=1024 (memory),
SnAp-3 at n=1024 (time) and n=2048 (memory); SnAp-3 and RTRL at n=512 and
SnAp-2 at n=2048 (~1 GB of influence) each run for about ``--max-point-s``.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402
from cost_vs_sparsity import LEARNERS, add_ratios, warm_up  # noqa: E402

from sparse_rtrl import registry  # noqa: E402

SIZES = (64, 128, 256, 512, 1024, 2048)
POOLED = "SnAp-1/2/3 pooled"  # label of the fit over the SnAp learners' points together


def is_snap(spec):
    return registry.parse_learner(spec)[0].key == "snap"


def fits(rows, cells, learners, min_mask):
    out = []
    for kind in cells:
        ok = [r for r in rows if r["cell"] == kind and r["status"] == "ok"]
        for name in map(_common.learner_name, learners):
            pts = [r for r in ok if r["learner"] == name]
            k, a = _common.fit_power_law([r["n"] for r in pts], [r["us_per_step"] for r in pts])
            out.append({"cell": kind, "learner": name, "x": "n", "subset": "all", "exponent": k,
                        "prefactor_us": a, "points": len(pts),
                        "x_min": min((r["n"] for r in pts), default=""),
                        "x_max": max((r["n"] for r in pts), default=""), "decades": ""})
        groups = [(name, [name]) for name in map(_common.learner_name, filter(is_snap, learners))]
        if len(groups) > 1:
            groups.append((POOLED, [g for g, _ in groups]))
        for label, names in groups:
            for x in ("mask_size", "products"):
                for subset, lo in (("all", 0), (f"mask_size>={min_mask:g}", min_mask)):
                    pts = [r for r in ok if r["learner"] in names and r["mask_size"] >= lo]
                    xs = [r[x] for r in pts]
                    k, a = _common.fit_power_law(xs, [r["us_per_step"] for r in pts])
                    out.append({"cell": kind, "learner": label, "x": x, "subset": subset, "exponent": k,
                                "prefactor_us": a, "points": len(pts), "x_min": min(xs, default=""),
                                "x_max": max(xs, default=""),
                                "decades": float(np.log10(max(xs) / min(xs))) if len(xs) > 1 else ""})
    return out


def plot(rows, fit_rows, cells, args, path):
    fig = _common.figure(figsize=(14, 4.2 * len(cells)))
    axes = fig.subplots(len(cells), 3, squeeze=False)
    colors = dict(zip(LEARNERS, _common.colors()))
    for i, kind in enumerate(cells):
        ax_n, ax_m, ax_mem = axes[i]
        fit = {(f["learner"], f["x"], f["subset"]): f for f in fit_rows if f["cell"] == kind}
        for spec in LEARNERS:
            name = _common.learner_name(spec)
            pts = sorted((r["n"], r["us_per_step"], r["mask_size"], r["mem_total_mb"])
                         for r in rows if r["cell"] == kind and r["learner"] == name and r["status"] == "ok")
            if not pts:
                continue
            n, us, mask, mem = zip(*pts)
            f = fit.get((name, "n", "all"))
            k = f["exponent"] if f else float("nan")
            ax_n.plot(n, us, "o-", color=colors[spec], ms=4, label=f"{name} (k={k:.2f})")
            ax_mem.plot(n, mem, "o-", color=colors[spec], ms=4, label=name)
            if is_snap(spec):
                f = fit.get((name, "mask_size", "all"))
                k = f["exponent"] if f else float("nan")
                ax_m.plot(mask, us, "o", color=colors[spec], ms=5, label=f"{name} (k={k:.2f})")
        f = fit.get((POOLED, "mask_size", "all"))
        if f and np.isfinite(f["exponent"]):
            x = np.geomspace(f["x_min"], f["x_max"], 20)
            ax_m.plot(x, f["prefactor_us"] * x ** f["exponent"], "k--", lw=1,
                      label=f"pooled fit k={f['exponent']:.2f}")
        ax_n.set_xlabel("hidden units n")
        ax_n.set_ylabel("us per online step (median)")
        ax_n.set_title(f"{kind}, density {args.density}: time vs n", fontsize=9)
        ax_m.set_xlabel("SnAp mask size (influence entries)")
        ax_m.set_ylabel("us per online step (median)")
        ax_m.set_title(f"{kind}: SnAp time vs mask size", fontsize=9)
        ax_mem.set_xlabel("hidden units n")
        ax_mem.set_ylabel("learner memory, MB")
        ax_mem.set_title(f"{kind}: memory vs n (skipped points: see CSV)", fontsize=9)
        for ax in (ax_n, ax_m, ax_mem):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"Cost vs size, {args.dtype}; {_common.machine()}", fontsize=9)
    fig.tight_layout()
    return _common.save_figure(fig, path)


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--n-in", type=int, default=8)
    p.add_argument("--cells", nargs="+", choices=registry.CELLS.keys(), default=["gru"])
    p.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=LEARNERS, help="registry specs")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--steps", type=int, default=64, help="steps per timed repeat (cut for slow points)")
    p.add_argument("--rtrl-max-mb", type=float, default=512.0)
    p.add_argument("--max-mb", type=float, default=4096.0)
    p.add_argument("--max-point-s", type=float, default=60.0)
    p.add_argument("--fit-min-mask", type=float, default=1e5,
                   help="second mask-size fit over points with at least this many entries")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.steps, args.fit_min_mask = [8, 16, 32], 16, 1e3
    repeats = args.repeats or (1 if args.quick else 5)
    dtype = np.dtype(args.dtype)
    learners = [spec for spec in LEARNERS if spec in args.learners]
    timer = _common.CappedTimer(args.max_mb, args.rtrl_max_mb, args.max_point_s, repeats, args.steps)

    warm_up(args.cells, args.n_in, dtype)
    rng = np.random.default_rng(0)
    rows = []
    print(f"density {args.density}, {args.dtype}, median of {repeats} repeats of up to {args.steps} steps; "
          f"{_common.machine()}")
    for kind in args.cells:
        for n in sorted(set(args.sizes)):
            cell = registry.make_cell(kind, args.n_in, n, density=args.density, dtype=dtype)
            rows += _common.measure_rows(timer, learners, cell, rng, args.steps,
                                         {"cell": kind, "n": n, "density": args.density, "dtype": args.dtype},
                                         f"n={n:<5d}")
    add_ratios(rows)
    fit_rows = fits(rows, args.cells, learners, args.fit_min_mask)

    print()
    _common.print_table([r for r in rows if r["status"] == "ok"],
                        ["cell", "n", "learner", "us_per_step", "vs_TBPTT", "RTRL_speedup", "mem_total_mb",
                         "mask_size"])
    skipped = [r for r in rows if r["status"] != "ok"]
    if skipped:
        print("\nskipped:")
        for r in skipped:
            print(f"  {r['cell']} n={r['n']} {r['learner']}: {r['reason']}")
    print("\nfitted exponents (least squares on log-log):")
    _common.print_table(fit_rows, ["cell", "learner", "x", "subset", "exponent", "points", "x_min", "x_max",
                                   "decades"])
    for f in fit_rows:
        if f["x"] in ("mask_size", "products") and f["points"] >= 2 and np.isfinite(f["exponent"]):
            span = f["decades"] if f["decades"] != "" else 0.0
            verdict = "within" if abs(f["exponent"] - 1.0) <= 0.15 else "outside"
            print(f"  {f['cell']} {f['learner']} ({f['subset']}): time ~ {f['x']}^{f['exponent']:.3f} over "
                  f"{f['x_min']:,}..{f['x_max']:,} ({span:.2f} decades): {verdict} the target 1 +- 0.15"
                  + ("" if span >= 1.0 else "; less than a decade covered"))

    tag = "quick" if args.quick else f"d{args.density}_{args.dtype}"
    print("wrote", _common.write_csv(os.path.join(args.out, f"cost_vs_size_{tag}.csv"), rows))
    print("wrote", _common.write_csv(os.path.join(args.out, f"cost_vs_size_fits_{tag}.csv"), fit_rows))
    print("wrote", plot(rows, fit_rows, args.cells, args, os.path.join(args.out, f"cost_vs_size_{tag}.png")))
    return rows, fit_rows


if __name__ == "__main__":
    main()
