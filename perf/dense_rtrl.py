"""Exact RTRL on dense networks against numpy's matmul, and where the BLAS form of ``D J`` pays.

(a) Our RTRL's online step (forward + backward + grad, every step) on a dense
    vanilla RNN against the same recursion written in plain numpy the way
    research code writes it: per step ``J = D @ J + I; g += c @ J`` with
    dense ``D`` and ``I`` (``cell.jacobians(...).toarray()``, computed
    outside the timed region, so numpy is charged only for the update and
    the gradient). Both give the same gradient (checked before timing).
    n = 64, 128, 256, one stream, BLAS on one thread for both: numba calls
    scipy's OpenBLAS and numpy its own, and two OpenBLAS libraries in one
    process, each with threads that spin after a call, slow each other down
    (measured: the same step 2x slower right after a numpy product).
    Target (issue 14): ours >= 1.5x faster than numpy.
(c) KF-RTRL and reverse KF-RTRL (ours, whole online step) against the same
    recursions in numpy (``D @ B``, the factor updates with random signs,
    ``g += kron(A, c @ B)``; D, its diagonal gains and z precomputed), at
    n = 256. Target (issue 14): ours >= 1.5x faster.
(b) The crossover: our step with ``D J`` as one BLAS product (D held
    dense) against our step walking D's stored entries, by density of the
    recurrent weights (n = 128). ``sparse_rtrl.learners.exact.DENSE_MIN_DENSITY``
    is set from it.

Medians over repeats, each pair timed in turns (interleaved) in this run.

    python perf/dense_rtrl.py            # float64, n = 64..256
    python perf/dense_rtrl.py --quick    # smoke test, a few seconds
"""

import os
import sys

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy and scipy load their BLAS (see (a) above)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

import sparse_rtrl as sr  # noqa: E402
from sparse_rtrl.learners import exact  # noqa: E402


def numpy_rtrl(Ds, Is, cs, steps):
    """The research-code recursion: ``J = D @ J + I; g += c @ J``, nothing else."""
    J = np.zeros(Is[0].shape, Is[0].dtype)
    g = np.zeros(Is[0].shape[1], Is[0].dtype)

    def run():
        nonlocal J, g
        for t in range(steps):
            J = Ds[t % len(Ds)] @ J + Is[t % len(Is)]
            g += cs[t] @ J
        return g

    return run


def gemm_only(Ds, Is, steps):
    """The floor both share: numpy's ``D @ J`` alone, into a preallocated result."""
    J = np.zeros(Is[0].shape, Is[0].dtype)
    out = np.empty_like(J)

    def run():
        for t in range(steps):
            np.matmul(Ds[t % len(Ds)], J, out=out)

    return run


def trajectory_terms(cell, xs):
    """Dense ``D_t``, the gains ``d_t`` and ``z_t = [h; x; 1]`` along the trajectory."""
    s = cell.init_state()
    out = []
    for x in xs:
        jac = cell.jacobians(s, x)
        # The gains phi'(a) of a tanh cell (the values do not change the cost).
        out.append((jac.dynamics.toarray(), (1.0 - jac.state ** 2).astype(cell.dtype),
                    np.concatenate([s, x, [1.0]]).astype(cell.dtype)))
        s = jac.state
    return out


def numpy_kf(terms, cs, steps, reverse, seed=0):
    """KF-RTRL (or reverse KF-RTRL) as research code writes it, per step: D @ B, the factor updates, the
    gradient ``kron``; nothing else."""
    D0, d0, z0 = terms[0]
    n, m = d0.shape[0], z0.shape[0]
    dt = z0.dtype
    rng = np.random.default_rng(seed)
    A = np.zeros(n if reverse else m, dt)
    B = np.zeros((D0.shape[0], m if reverse else n), dt)
    g = np.zeros(n * m, dt)
    eps = 1e-7

    def run():
        nonlocal A, B
        for t in range(steps):
            D, d, z = terms[t % len(terms)]
            DB = D @ B
            if reverse:
                nu = rng.choice([-1.0, 1.0], n)
                rho0 = np.sqrt((np.linalg.norm(DB) + eps) / (np.linalg.norm(A) + eps))
                rho1 = np.sqrt((np.linalg.norm(nu * d) * np.linalg.norm(z) + eps) / (np.linalg.norm(nu) + eps))
                A = rho0 * A + rho1 * nu
                B = DB / rho0 + np.outer(nu * d, z) / rho1
                g[:] += np.kron(A, cs[t] @ B)
            else:
                nu0, nu1 = rng.choice([-1.0, 1.0], 2)
                rho0 = np.sqrt((np.linalg.norm(DB) + eps) / (np.linalg.norm(A) + eps))
                rho1 = np.sqrt((np.linalg.norm(d) + eps) / (np.linalg.norm(z) + eps))
                A = nu0 * rho0 * A + nu1 * rho1 * z
                B = nu0 / rho0 * DB + nu1 / rho1 * np.diag(d)
                g[:] += np.kron(A, cs[t] @ B)
        return g

    return run


def with_form(make, blas):
    """``make()`` with products by D in the BLAS form (``blas``) or walking D's entries."""
    saved = exact.DENSE_MIN_STATES, exact.DENSE_MIN_DENSITY
    exact.DENSE_MIN_STATES, exact.DENSE_MIN_DENSITY = (0, 0.0) if blas else (sys.maxsize, 2.0)
    try:
        learner = make()
    finally:
        exact.DENSE_MIN_STATES, exact.DENSE_MIN_DENSITY = saved
    assert (learner._D_dense.shape[1] > 0) == blas
    return learner


def rtrl(cell, blas):
    """Our RTRL with ``D J`` in the BLAS form (``blas``) or walking D's entries."""
    return with_form(lambda: sr.RTRL(cell), blas)


def check_same_gradient(cell, xs, cs):
    k = xs.shape[0]
    Ds, Is = _common.trajectory_jacobians(cell, xs)
    g_numpy = numpy_rtrl(Ds, Is, cs, k)().copy()
    for blas in (True, False):
        learner = rtrl(cell, blas)
        for t in range(k):
            learner.forward(xs[t])
            learner.backward(cs[t])
        g = learner.grad()
        tol = 1e-4 if cell.dtype == np.float32 else 1e-9
        np.testing.assert_allclose(g, g_numpy, rtol=tol, atol=tol * float(np.abs(g_numpy).max()))


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--n-in", type=int, default=8)
    args = p.parse_args(argv)
    if args.quick:
        sizes, crossover_n, densities, steps, repeats = (16, 24), 24, (0.25, 1.0), 3, 2
        kf_sizes, kf_repeats = (24,), 2
    else:
        sizes, crossover_n, densities, steps, repeats = (64, 128, 256), 128, (0.05, 0.1, 0.2, 0.3, 0.5, 1.0), 4, 5
        kf_sizes, kf_repeats = (64, 128, 256), 15
    repeats = args.repeats or repeats
    rng = np.random.default_rng(0)
    rows = []
    print(f"(a) dense vanilla RNN, {args.dtype}, one stream: our RTRL step vs numpy's J = D @ J + I; g += c @ J")
    for n in sizes:
        cell = sr.VanillaRNN(args.n_in, n, density=1.0, seed=0, dtype=args.dtype)
        xs = rng.normal(size=(steps, cell.n_in)).astype(cell.dtype)
        cs = rng.normal(size=(steps, cell.n_state)).astype(cell.dtype)
        check_same_gradient(cell, xs[:3], cs[:3])
        Ds, Is = _common.trajectory_jacobians(cell, xs[:2])
        ours, rows_form = rtrl(cell, True), rtrl(cell, False)
        fns = [_common.continue_run(ours, xs, cs), _common.continue_run(rows_form, xs, cs),
               numpy_rtrl(Ds, Is, cs, steps), gemm_only(Ds, Is, steps)]
        t_ours, t_rows, t_numpy, t_gemm = (t / steps for t in _common.interleaved_medians(fns, repeats))
        rows.append(dict(part="vs_numpy", n=n, density=1.0, d_density=1.0, n_params=cell.n_params,
                         blas_ms=1e3 * t_ours, rows_ms=1e3 * t_rows, numpy_ms=1e3 * t_numpy, gemm_ms=1e3 * t_gemm,
                         numpy_over_blas=t_numpy / t_ours, rows_over_blas=t_rows / t_ours))
        print(f"  n={n:4d}  ours (BLAS) {1e3 * t_ours:9.3f} ms  ours (rows) {1e3 * t_rows:9.3f} ms  "
              f"numpy {1e3 * t_numpy:9.3f} ms  numpy/ours {t_numpy / t_ours:6.2f}x  (D @ J alone "
              f"{1e3 * t_gemm:9.3f} ms)", flush=True)
    print(f"(c) KF-RTRL and reverse KF-RTRL, dense vanilla RNN, {args.dtype}: our step vs numpy")
    for n in kf_sizes:
        cell = sr.VanillaRNN(args.n_in, n, density=1.0, seed=0, dtype=args.dtype)
        xs = rng.normal(size=(steps, cell.n_in)).astype(cell.dtype)
        cs = rng.normal(size=(steps, cell.n_state)).astype(cell.dtype)
        terms = trajectory_terms(cell, xs[:2])
        for name, make, reverse in (("KF-RTRL", sr.KFRTRL, False), ("R-KF-RTRL", sr.RKFRTRL, True)):
            ours = with_form(lambda: make(cell, seed=0), True)
            walk = with_form(lambda: make(cell, seed=0), False)
            fns = [_common.continue_run(ours, xs, cs), _common.continue_run(walk, xs, cs),
                   numpy_kf(terms, cs, steps, reverse)]
            t_ours, t_rows, t_numpy = (t / steps for t in _common.interleaved_medians(fns, kf_repeats))
            rows.append(dict(part=name, n=n, density=1.0, d_density=1.0, n_params=cell.n_params,
                             blas_ms=1e3 * t_ours, rows_ms=1e3 * t_rows, numpy_ms=1e3 * t_numpy, gemm_ms="",
                             numpy_over_blas=t_numpy / t_ours, rows_over_blas=t_rows / t_ours))
            print(f"  {name:9s} n={n:4d}  ours (BLAS) {1e3 * t_ours:8.3f} ms  ours (rows) {1e3 * t_rows:8.3f} ms  "
                  f"numpy {1e3 * t_numpy:8.3f} ms  numpy/ours {t_numpy / t_ours:6.2f}x", flush=True)
    print(f"(b) n={crossover_n}: BLAS form vs walking D's entries, by density")
    for density in densities:
        cell = sr.VanillaRNN(args.n_in, crossover_n, density=density, seed=0, dtype=args.dtype)
        xs = rng.normal(size=(steps, cell.n_in)).astype(cell.dtype)
        cs = rng.normal(size=(steps, cell.n_state)).astype(cell.dtype)
        blas, walk = rtrl(cell, True), rtrl(cell, False)
        t_blas, t_rows = (t / steps for t in _common.interleaved_medians(
            [_common.continue_run(blas, xs, cs), _common.continue_run(walk, xs, cs)], repeats))
        d_density = cell.structure.dynamics.nnz / cell.n_state ** 2
        rows.append(dict(part="crossover", n=crossover_n, density=density, d_density=d_density,
                         n_params=cell.n_params, blas_ms=1e3 * t_blas, rows_ms=1e3 * t_rows, numpy_ms="", gemm_ms="",
                         numpy_over_blas="", rows_over_blas=t_rows / t_blas))
        print(f"  density {density:5.2f} (D {d_density:5.3f})  BLAS {1e3 * t_blas:9.3f} ms  rows "
              f"{1e3 * t_rows:9.3f} ms  rows/BLAS {t_rows / t_blas:6.2f}x", flush=True)
    print(_common.machine(), f"| rule: BLAS from n >= {exact.DENSE_MIN_STATES} and D density >= "
          f"{exact.DENSE_MIN_DENSITY}")
    os.makedirs(args.out, exist_ok=True)
    tag = "quick" if args.quick else args.dtype
    _common.write_csv(os.path.join(args.out, f"dense_rtrl_{tag}.csv"), rows)
    fig = _common.figure(figsize=(9, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    a = [r for r in rows if r["part"] == "vs_numpy"]
    for key, label in (("blas_ms", "ours, BLAS form"), ("rows_ms", "ours, walking D"), ("numpy_ms", "numpy")):
        ax1.plot([r["n"] for r in a], [r[key] for r in a], "o-", label=label)
    ax1.set(xscale="log", yscale="log", xlabel="hidden units (dense)", ylabel="ms per online step",
            title=f"exact RTRL, {args.dtype}")
    for name, marker in (("KF-RTRL", "s"), ("R-KF-RTRL", "^")):
        k = [r for r in rows if r["part"] == name]
        ax1.plot([r["n"] for r in k], [r["blas_ms"] for r in k], marker + "--", label=f"{name}, ours")
        ax1.plot([r["n"] for r in k], [r["numpy_ms"] for r in k], marker + ":", label=f"{name}, numpy")
    ax1.legend(fontsize=7)
    b = [r for r in rows if r["part"] == "crossover"]
    ax2.plot([r["d_density"] for r in b], [r["rows_over_blas"] for r in b], "o-")
    ax2.axhline(1.0, color="grey", lw=0.8)
    ax2.set(xscale="log", xlabel="density of D", ylabel="walking D / BLAS form (time)",
            title=f"crossover, n={crossover_n}")
    _common.save_figure(fig, os.path.join(args.out, f"dense_rtrl_{tag}.png"))


if __name__ == "__main__":
    main()
