"""Time per step of the P-TNCN (``sr.PTNCN``): the compiled step against the same equations in plain numpy,
and against the density of its matrices.

A step is ``step_symbols`` + ``grad()``: predict, compare, correct, and form
every clipped local update. The numpy baseline is the two-layer step of
ALGORITHMS.md written with ``@`` products (dense, same dtype), timed in the
same run on the same weights. Issue 13's targets: the dense step at most
1.2x the numpy step; at density 0.1 at least 5x faster than dense.

    python perf/ptncn_step.py            # two layers of 1000, 50 symbols, batch 50, float32
    python perf/ptncn_step.py --quick    # smoke test (n=32), a few seconds

A sparse step spreads its loops over numba's threads (``NUMBA_NUM_THREADS``,
``numba.set_num_threads``); the dense one and numpy use OpenBLAS's. On a
shared machine the timings are noisy, the threaded ones most (a thread that
waits for a busy core holds up the step): compare the ratios measured in one
run, repeat, and read the load averages printed with the table.
"""

import os
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

import sparse_rtrl as sr  # noqa: E402

DENSITIES = (1.0, 0.5, 0.2, 0.1, 0.05, 0.01)


def numpy_step(w, B, beta=0.1, alpha_e=0.001):
    """The two-layer step of ALGORITHMS.md in numpy (tanh, softmax, clipped updates divided by ``B``)."""
    def clip(d):
        n = np.linalg.norm(d)
        return d * (1.0 / n) if n > 1.0 else d

    def step(x, carried):
        x_prev, y1, y2 = carried
        a2 = y1 @ w["M2"] + y2 @ w["V2"]
        z2 = np.tanh(a2)
        mu1 = z2 @ w["W2"]
        a1 = x_prev @ w["M1"] + y2 @ w["U1"] + y1 @ w["V1"]
        z1 = np.tanh(a1)
        logits = z1 @ w["W1"]
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        e1, ex = mu1 - z1, p - x
        y2n = np.tanh(a2 - beta * (e1 @ w["E2"]))
        y1n = np.tanh(a1 - beta * (ex @ w["E1"] - alpha_e * e1))
        ev2, ev1 = z2 - y2n, z1 - y1n
        dW1, dW2 = clip(z1.T @ ex), clip(z2.T @ ev1)
        deltas = [dW1, dW2, clip(dW1.T), clip(dW2.T), clip(x_prev.T @ ev1), clip(y2.T @ ev1), clip(y1.T @ ev1),
                  clip(y1.T @ ev2), clip(y2.T @ ev2)]
        return (x, y1n, y2n), [d / B for d in deltas]

    return step


def main(argv=None):
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=1000, help="units per layer (default 1000)")
    p.add_argument("--symbols", type=int, default=50, help="alphabet size (default 50)")
    p.add_argument("--batch", type=int, default=50, help="streams (default 50)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed repeat (default 10)")
    args = p.parse_args(argv)
    if args.quick:
        args.hidden, args.symbols, args.batch, args.steps = 32, 8, 4, 3
    repeats = args.repeats or (2 if args.quick else 5)
    load_before = os.getloadavg()
    H, K, B, dt = args.hidden, args.symbols, args.batch, np.float32
    rng = np.random.default_rng(0)
    syms = rng.integers(0, K, (args.steps, B))
    eye = np.eye(K, dtype=dt)
    rows = []
    dense_time = None
    for density in DENSITIES:
        model = sr.PTNCN(K, n_hidden=[H, H], batch_size=B, dtype=dt, seed=0, density=density)

        def run(model=model):
            for t in range(args.steps):
                model.step_symbols(syms[t])
                model.grad()

        seconds = _common.median_time(run, repeats) / args.steps
        row = {"what": "PTNCN", "density": density, "hidden": H, "symbols": K, "batch": B,
               "ms_per_step": seconds * 1e3, "n_params": model.n_params, "memory_bytes": model.nbytes,
               "vs_numpy": "", "speedup_vs_dense": ""}
        if density == 1.0:
            dense_time = seconds
            step = numpy_step({k: v.copy() for k, v in model.weights.items()}, B)
            carried = [(np.zeros((B, K), dt), np.zeros((B, H), dt), np.zeros((B, H), dt))]

            def run_numpy():
                for t in range(args.steps):
                    carried[0], _ = step(eye[syms[t]], carried[0])

            numpy_time = _common.median_time(run_numpy, repeats) / args.steps
            row["vs_numpy"] = seconds / numpy_time
            rows.append(row)
            rows.append({"what": "numpy", "density": 1.0, "hidden": H, "symbols": K, "batch": B,
                         "ms_per_step": numpy_time * 1e3, "n_params": model.n_params, "memory_bytes": "",
                         "vs_numpy": 1.0, "speedup_vs_dense": ""})
            continue
        row["speedup_vs_dense"] = dense_time / seconds
        rows.append(row)
    _common.print_table(rows, ["what", "density", "ms_per_step", "vs_numpy", "speedup_vs_dense", "n_params"])
    print(_common.machine(), f"| numba threads {numba.get_num_threads()} | load average "
          f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    _common.write_csv(os.path.join(args.out, "ptncn_step.csv"), rows)
    fig = _common.figure(figsize=(5, 3.6))
    ax = fig.subplots()
    pts = [r for r in rows if r["what"] == "PTNCN"]
    ax.loglog([r["density"] for r in pts], [r["ms_per_step"] for r in pts], "o-", label="P-TNCN step")
    ax.axhline(rows[1]["ms_per_step"], color="gray", ls="--", label="numpy, dense")
    ax.set_xlabel("density of every matrix")
    ax.set_ylabel("ms per step")
    ax.set_title(f"P-TNCN, 2 x {H} units, {K} symbols, batch {B}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _common.save_figure(fig, os.path.join(args.out, "ptncn_step.png"))


if __name__ == "__main__":
    main()
