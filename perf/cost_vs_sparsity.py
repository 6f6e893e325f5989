"""Time per online step and memory of every learner against the density of the recurrent weights.

For each cell (vanilla, GRU, LSTM) at fixed n, and each density in 1.0 ...
0.01: SnAp-1, SnAp-2, SnAp-3, RTRL, TBPTT(16) and UORO. An online step is
``forward`` + ``backward`` + ``grad`` (TBPTT(T): ``grad`` at the end of each
T-step window). Memory is ``learner.memory()`` (total, and the influence
part), measured from the arrays. Ratios are against TBPTT(16) and RTRL
measured at the same point in the same run.

Points that would not fit are skipped and recorded in the CSV with the
reason: RTRL when its two dense S x P influence copies exceed
``--rtrl-max-mb``; any learner whose estimated memory exceeds ``--max-mb``
(SnAp-3 at high density is nearly RTRL); any point whose estimated time
(scaled from the previous density, or one probed step) exceeds
``--max-point-s``.

    python perf/cost_vs_sparsity.py                  # n=256, all cells, float32
    python perf/cost_vs_sparsity.py --cells gru --densities 0.1 0.05
    python perf/cost_vs_sparsity.py --quick          # smoke test (n=16), a few seconds

Full run on the 2-core Xeon: about 15 minutes (an estimate from partial
runs), almost all of it in the slow points -- SnAp-2, SnAp-3 and RTRL at
densities 0.2-1.0 -- each of which runs for about ``--max-point-s`` (30 s).
With the defaults RTRL is skipped for LSTM at density >= 0.5 (memory) and
SnAp-2/SnAp-3 for LSTM at density 1.0 (time, ~6 s per step).
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

from sparse_rtrl import registry  # noqa: E402

LEARNERS = ("snap1", "snap2", "snap3", "rtrl", "tbptt16", "uoro")  # registry specs
DENSITIES = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)


def warm_up(cells, n_in, dtype):
    """Compile (or load from the cache) every kernel the sweep uses, on tiny cells."""
    for kind in cells:
        cell = registry.make_cell(kind, n_in, 8, density=0.5, dtype=dtype)
        xs = np.zeros((16, n_in), dtype)
        cs = np.ones((16, cell.n_state), dtype)
        for spec in LEARNERS:
            learner = _common.make_learner(spec, cell)
            _common.time_online(learner, xs, cs, _common.grad_every(spec), repeats=1, warmup=0)
        _common.snap_estimate(cell, 2)


def add_ratios(rows):
    """``vs_TBPTT`` (time / TBPTT(16)'s) and ``RTRL_speedup`` (RTRL's time / time), same point."""
    for r in rows:
        r["vs_TBPTT"] = r["RTRL_speedup"] = ""
    points = {}
    for r in rows:
        points.setdefault((r["cell"], r["n"], r["density"]), {})[r["learner"]] = r
    tbptt, rtrl = _common.learner_name("tbptt16"), _common.learner_name("rtrl")
    for point in points.values():
        tb = point.get(tbptt, {}).get("us_per_step", "")
        rt = point.get(rtrl, {}).get("us_per_step", "")
        for r in point.values():
            if r["status"] != "ok":
                continue
            if tb != "":
                r["vs_TBPTT"] = r["us_per_step"] / tb
            if rt != "":
                r["RTRL_speedup"] = rt / r["us_per_step"]


def plot(rows, cells, args, path):
    fig = _common.figure(figsize=(4.2 * len(cells), 7))
    axes = fig.subplots(2, len(cells), squeeze=False)
    colors = dict(zip(LEARNERS, _common.colors()))
    for j, kind in enumerate(cells):
        ax_t, ax_m = axes[0, j], axes[1, j]
        for spec in LEARNERS:
            name = _common.learner_name(spec)
            pts = sorted((r["density"], r["us_per_step"], r["mem_total_mb"], r["mem_influence_mb"])
                         for r in rows if r["cell"] == kind and r["learner"] == name and r["status"] == "ok")
            if not pts:
                continue
            d, us, tot, inf = (np.array(v, dtype=float) for v in zip(*pts))
            ax_t.plot(d, us, "o-", color=colors[spec], label=name, ms=4)
            ax_m.plot(d, tot, "o-", color=colors[spec], label=name, ms=4)
            if np.any(inf > 0):
                ax_m.plot(d, np.where(inf > 0, inf, np.nan), ":", color=colors[spec], lw=1)
        n_skip = sum(1 for r in rows if r["cell"] == kind and r["status"] != "ok")
        ax_t.set_title(f"{kind} n={args.n}" + (f" ({n_skip} points skipped, see CSV)" if n_skip else ""),
                       fontsize=9)
        for ax in (ax_t, ax_m):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("density of recurrent weights")
            ax.grid(True, which="both", alpha=0.3)
        ax_t.set_ylabel("us per online step (median)")
        ax_m.set_ylabel("learner memory, MB (solid: total, dotted: influence)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Cost vs sparsity, {args.dtype}; {_common.machine()}", fontsize=9)
    fig.tight_layout()
    return _common.save_figure(fig, path)


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=256, help="hidden units")
    p.add_argument("--n-in", type=int, default=8)
    p.add_argument("--cells", nargs="+", choices=registry.CELLS.keys(), default=list(registry.CELLS.keys()))
    p.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES))
    p.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=LEARNERS, help="registry specs")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--steps", type=int, default=64, help="steps per timed repeat (cut for slow points)")
    p.add_argument("--rtrl-max-mb", type=float, default=512.0, help="skip RTRL above this dense influence")
    p.add_argument("--max-mb", type=float, default=4096.0, help="skip any learner above this estimated memory")
    p.add_argument("--max-point-s", type=float, default=30.0, help="skip points whose timing would take longer")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.steps, args.densities = 16, 16, [1.0, 0.2, 0.05]
    repeats = args.repeats or (1 if args.quick else 5)
    dtype = np.dtype(args.dtype)
    learners = [spec for spec in LEARNERS if spec in args.learners]
    densities = sorted(set(args.densities))  # sparse to dense: cheap points first
    timer = _common.CappedTimer(args.max_mb, args.rtrl_max_mb, args.max_point_s, repeats, args.steps)

    warm_up(args.cells, args.n_in, dtype)
    rng = np.random.default_rng(0)
    rows = []
    print(f"n={args.n}, {args.dtype}, median of {repeats} repeats of up to {args.steps} steps; {_common.machine()}")
    for kind in args.cells:
        for density in densities:
            cell = registry.make_cell(kind, args.n_in, args.n, density=density, dtype=dtype)
            rows += _common.measure_rows(timer, learners, cell, rng, args.steps,
                                         {"cell": kind, "n": args.n, "density": density, "dtype": args.dtype},
                                         f"density {density:<5g}")
    add_ratios(rows)

    print()
    shown = [r for r in rows if r["status"] == "ok"]
    _common.print_table(shown, ["cell", "density", "learner", "us_per_step", "vs_TBPTT", "RTRL_speedup",
                                "mem_total_mb", "mem_influence_mb", "mask_size"])
    skipped = [r for r in rows if r["status"] != "ok"]
    if skipped:
        print("\nskipped:")
        for r in skipped:
            print(f"  {r['cell']} density {r['density']:g} {r['learner']}: {r['reason']}")
    print("\nheadline ratios (same run, same point):")
    for kind in args.cells:
        for density in densities:
            pt = {r["learner"]: r for r in rows if r["cell"] == kind and r["density"] == density}
            tbptt, rtrl, snap2 = (_common.learner_name(spec) for spec in ("tbptt16", "rtrl", "snap2"))
            parts = []
            for name in (_common.learner_name(spec) for spec in ("snap1", "snap2")):
                if pt.get(name, {}).get("vs_TBPTT", "") != "":
                    parts.append(f"{name}/{tbptt} = {pt[name]['vs_TBPTT']:.3g}")
            if pt.get(snap2, {}).get("RTRL_speedup", "") != "":
                parts.append(f"{rtrl}/{snap2} = {pt[snap2]['RTRL_speedup']:.3g}")
            if parts:
                print(f"  {kind:7s} density {density:<5g} " + ", ".join(parts))

    tag = "quick" if args.quick else f"n{args.n}_{args.dtype}"
    print("wrote", _common.write_csv(os.path.join(args.out, f"cost_vs_sparsity_{tag}.csv"), rows))
    print("wrote", plot(rows, args.cells, args, os.path.join(args.out, f"cost_vs_sparsity_{tag}.png")))
    return rows


if __name__ == "__main__":
    main()
