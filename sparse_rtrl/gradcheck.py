"""A gradient checker for cells and learners, in the spirit of ``torch.autograd.gradcheck``.

:func:`gradcheck` runs one random sequence with frozen weights through each
learner and reports, per parameter group (weight matrix), the relative error
of its gradient of ``L = sum_t c_t . s_t`` against BPTT and against central
finite differences. It first checks the cell itself: its dynamics and
immediate Jacobians against finite differences of ``cell.step``, and that
their declared sparsity patterns cover every entry that is actually nonzero.
Reach for it first when you write a cell of your own.

Exact learners (RTRL, BPTT, TBPTT with a long enough window, SnAp with a
saturated mask) must match; approximations are reported, not judged.
"""

from dataclasses import dataclass, field

import numpy as np

from ._validate import check_float, check_int
from .cells import Cell
from .learners import RTRL, UORO, BPTT, Learner, SnAp

__all__ = ["EXACT_TOL", "FD_TOL", "GradCheckReport", "LearnerResult", "finite_difference_gradient",
           "finite_difference_jacobians", "gradcheck"]

#: Relative-error thresholds (float64, float32) for an exact learner vs BPTT.
EXACT_TOL = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 2e-3}
#: Threshold for BPTT and the Jacobians vs finite differences (computed in float64).
FD_TOL = 1e-5


def _rel(a, b):
    """``|a - b| / |b|`` with ``0/0 = 0``."""
    nb = float(np.linalg.norm(b))
    nd = float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
    if nb == 0.0:
        return 0.0 if nd == 0.0 else float("inf")
    return nd / nb


def _loss(cell, xs, cs):
    s = cell.init_state().astype(np.float64)
    total = 0.0
    for x, c in zip(xs, cs):
        s = cell.step(s, x)
        total += float(np.dot(c, s))
    return total


def finite_difference_gradient(cell, xs, cs, eps=1e-6):
    """Central differences of ``sum_t cs[t] . s_t`` w.r.t. ``cell.params`` (float64 copy)."""
    cell64 = cell.astype(np.float64)
    theta = cell64.params.copy()
    out = np.empty(cell64.n_params)
    for p in range(cell64.n_params):
        cell64.params[p] = theta[p] + eps
        up = _loss(cell64, xs, cs)
        cell64.params[p] = theta[p] - eps
        down = _loss(cell64, xs, cs)
        cell64.params[p] = theta[p]
        out[p] = (up - down) / (2 * eps)
    return out


def finite_difference_jacobians(cell, s, x, eps=1e-6):
    """Dense ``D`` and ``I`` by central differences of ``cell.step`` (float64 copy)."""
    cell64 = cell.astype(np.float64)
    s = np.asarray(s, np.float64)
    S, P = cell64.n_state, cell64.n_params
    D = np.empty((S, S))
    for j in range(S):
        e = np.zeros(S)
        e[j] = eps
        D[:, j] = (cell64.step(s + e, x) - cell64.step(s - e, x)) / (2 * eps)
    I = np.empty((S, P))
    theta = cell64.params.copy()
    for p in range(P):
        cell64.params[p] = theta[p] + eps
        up = cell64.step(s, x)
        cell64.params[p] = theta[p] - eps
        down = cell64.step(s, x)
        cell64.params[p] = theta[p]
        I[:, p] = (up - down) / (2 * eps)
    return D, I


@dataclass
class LearnerResult:
    """Errors of one learner's gradient: per weight name and overall."""

    name: str
    category: str  # "exact", "approximate" or "stochastic"
    vs_bptt: dict = field(default_factory=dict)
    vs_fd: dict = field(default_factory=dict)
    passed: bool = True
    gradient: np.ndarray = field(default=None, repr=False)


@dataclass
class GradCheckReport:
    """Result of :func:`gradcheck`.

    Attributes
    ----------
    ok : bool
        Every check that has a verdict passed.
    jacobian_errors : dict
        ``{"dynamics": rel_err, "immediate": rel_err}`` against finite differences.
    pattern_misses : dict
        Entries that finite differences find nonzero but the declared pattern
        lacks, ``{"dynamics": count, "immediate": count}``.
    bptt_vs_fd : dict
        BPTT's relative error against finite differences per weight name.
    learners : list of LearnerResult
    """

    cell: str
    dtype: str
    n_steps: int
    jacobian_errors: dict
    pattern_misses: dict
    bptt_vs_fd: dict
    learners: list
    exact_tol: float
    fd_tol: float = FD_TOL
    problems: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def raise_if_failed(self):
        """Raise ``AssertionError`` listing the failed checks."""
        if not self.ok:
            raise AssertionError("gradcheck failed:\n  " + "\n  ".join(self.problems))

    def __str__(self):
        lines = [f"gradcheck: {self.cell}, {self.dtype}, {self.n_steps} steps"]
        lines.append(
            f"  cell Jacobians vs finite differences: D {self.jacobian_errors['dynamics']:.2e}, "
            f"I {self.jacobian_errors['immediate']:.2e}  (tolerance {self.fd_tol:.0e}); "
            f"entries missing from patterns: D {self.pattern_misses['dynamics']}, "
            f"I {self.pattern_misses['immediate']}"
        )
        names = list(self.bptt_vs_fd)
        width = max([len(n) for n in names] + [8])
        lname = max([len(r.name) for r in self.learners] + [len("BPTT")])
        header = f"  {'learner':<{lname}}  {'category':<11}  {'vs':<4}  " + "  ".join(f"{n:>{width}}" for n in names)
        lines.append(header)
        lines.append(
            f"  {'BPTT':<{lname}}  {'reference':<11}  {'FD':<4}  "
            + "  ".join(f"{self.bptt_vs_fd[n]:>{width}.2e}" for n in names)
        )
        for r in self.learners:
            for label, errs in (("BPTT", r.vs_bptt), ("FD", r.vs_fd)):
                lines.append(
                    f"  {r.name:<{lname}}  {r.category:<11}  {label:<4}  "
                    + "  ".join(f"{errs[n]:>{width}.2e}" for n in names)
                )
        lines.append("  result: " + ("OK" if self.ok else "FAILED\n    " + "\n    ".join(self.problems)))
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))

    def __repr__(self):
        learners = ", ".join(r.name for r in self.learners)
        return (f"GradCheckReport({self.cell}, {self.n_steps} steps, learners=[{learners}], "
                f"{'ok' if self.ok else f'{len(self.problems)} problems'})")


def _default_learners(cell):
    return {lrn.name: lrn for lrn in (RTRL(cell), SnAp(cell, 1), SnAp(cell, 2), UORO(cell, seed=0))}


def _resolve(cell, learners):
    if learners is None:
        return _default_learners(cell)
    if isinstance(learners, Learner) or callable(learners):
        learners = [learners]
    if not isinstance(learners, dict):
        named = {}
        for item in learners:
            lrn = item if isinstance(item, Learner) else item(cell)
            name = getattr(lrn, "name", repr(lrn))
            base, k = name, 2
            while name in named:
                name, k = f"{base}#{k}", k + 1
            named[name] = lrn
        learners = named
    out = {}
    for name, item in learners.items():
        lrn = item if isinstance(item, Learner) else item(cell)
        if not isinstance(lrn, Learner):
            raise TypeError(f"learners[{name!r}] must be a Learner or a callable returning one")
        if lrn.cell is not cell:
            raise ValueError(f"learners[{name!r}] is bound to a different cell than the one being checked")
        if lrn.batch_size is not None:
            raise ValueError(f"learners[{name!r}] is batched; gradcheck takes unbatched learners")
        out[name] = lrn
    return out


def _groups(cell, g):
    return {name: g[cell.weight_slice(name)] for name in cell.weight_names}


def gradcheck(cell: Cell, learners=None, n_steps: int = 8, seed: int = 0, eps: float = 1e-6,
              exact_tol: float = None) -> "GradCheckReport":
    """Check a cell's Jacobians and learners' gradients against BPTT and finite differences.

    Parameters
    ----------
    cell : Cell
        The cell to check (float32 or float64; finite differences always run
        on a float64 copy).
    learners : None, Learner, callable, list or dict
        Learners bound to ``cell``, or callables ``f(cell) -> learner``, or a
        dict ``name -> either``. Default: RTRL, SnAp-1, SnAp-2 and UORO.
    n_steps : int
        Length of the random sequence.
    seed : int
        Seed of the random inputs, credits and probe state.
    eps : float
        Finite-difference step.
    exact_tol : float, optional
        Relative-error threshold for exact learners vs BPTT (default 1e-8
        for float64, 2e-3 for float32).

    Returns
    -------
    GradCheckReport
        ``print(report)`` shows the table; ``report.ok`` is the verdict and
        ``report.raise_if_failed()`` turns it into an assertion.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be a sparse_rtrl Cell, got {type(cell).__name__}")
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    eps = check_float(eps, "eps", 0.0, 1.0, low_open=True)
    tol = EXACT_TOL[cell.dtype] if exact_tol is None else check_float(exact_tol, "exact_tol", 0.0, None, low_open=True)
    resolved = _resolve(cell, learners)

    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n_steps, cell.n_in))
    cs = rng.normal(size=(n_steps, cell.n_state))
    problems = []

    # 1. The cell's own Jacobians against finite differences, at a random point.
    s_probe = rng.normal(scale=0.5, size=cell.n_state)
    x_probe = rng.normal(size=cell.n_in)
    jac = cell.astype(np.float64).jacobians(s_probe, x_probe)
    D_fd, I_fd = finite_difference_jacobians(cell, s_probe, x_probe, eps)
    D, I = jac.dynamics.toarray(), jac.immediate.toarray()
    jac_err = {"dynamics": _rel(D, D_fd), "immediate": _rel(I, I_fd)}
    # A state or parameter that does not enter s'_k leaves it bitwise unchanged,
    # so any nonzero difference outside the declared pattern is a real miss.
    misses = {
        "dynamics": int(((D_fd != 0) & ~cell.structure.dynamics.to_dense()).sum()),
        "immediate": int(((I_fd != 0) & ~cell.structure.immediate_pattern().to_dense()).sum()),
    }
    for key in ("dynamics", "immediate"):
        if not jac_err[key] <= FD_TOL:
            problems.append(f"{key} Jacobian differs from finite differences (rel. error {jac_err[key]:.2e})")
        if misses[key]:
            problems.append(f"{key} pattern misses {misses[key]} entries that are nonzero")

    # 2. References: BPTT in the cell's dtype, finite differences in float64.
    bptt = BPTT(cell)
    g_bptt = _run(bptt, xs, cs)
    g_fd = finite_difference_gradient(cell, xs, cs, eps)
    fd_groups = _groups(cell, g_fd)
    bptt_groups = _groups(cell, g_bptt)
    bptt_vs_fd = {k: _rel(bptt_groups[k], fd_groups[k]) for k in fd_groups}
    bptt_vs_fd["all"] = _rel(g_bptt, g_fd)
    fd_ok_tol = FD_TOL if cell.dtype == np.float64 else max(FD_TOL, tol)
    if not bptt_vs_fd["all"] <= fd_ok_tol:
        problems.append(f"BPTT differs from finite differences (rel. error {bptt_vs_fd['all']:.2e})")

    # 3. Each learner against both references.
    results = []
    for name, lrn in resolved.items():
        lrn.reset()
        g = _run(lrn, xs, cs)
        groups = _groups(cell, g)
        exact = lrn.exact_for(n_steps)
        category = "exact" if exact else ("stochastic" if lrn.stochastic else "approximate")
        r = LearnerResult(name=name, category=category, gradient=g)
        r.vs_bptt = {k: _rel(groups[k], bptt_groups[k]) for k in groups}
        r.vs_bptt["all"] = _rel(g, g_bptt)
        r.vs_fd = {k: _rel(groups[k], fd_groups[k]) for k in groups}
        r.vs_fd["all"] = _rel(g, g_fd)
        if exact and not r.vs_bptt["all"] <= tol:
            r.passed = False
            problems.append(f"{name} is exact for {n_steps} steps but differs from BPTT (rel. error {r.vs_bptt['all']:.2e})")
        results.append(r)

    return GradCheckReport(
        cell=repr(cell), dtype=str(cell.dtype), n_steps=n_steps, jacobian_errors=jac_err,
        pattern_misses=misses, bptt_vs_fd=bptt_vs_fd, learners=results, exact_tol=tol, problems=problems,
    )


def _run(learner, xs, cs):
    learner.reset()
    for x, c in zip(xs, cs):
        learner.forward(x)
        learner.backward(c)
    return learner.grad()
