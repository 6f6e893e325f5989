"""Helpers shared by the perf scripts: timing, atomic CSV output, plotting.

Every script compiles (warms up) before it times, reports medians over
repeats and ratios against a baseline measured in the same run, and writes a
CSV and a PNG under ``perf/results/`` (or ``--out``), atomically, through the
library's one writer (``sparse_rtrl._io``). Figures are built with
matplotlib's object API (``matplotlib.figure.Figure``): no global figure
manager and no backend switch, so the caller's matplotlib state is left alone.

Learners are named by registry specs (``"snap2"``, ``"tbptt16"``, see
``sparse_rtrl.registry``) in code and on the command line; tables and CSVs
show the learners' labels (``learner.name``: ``"SnAp-2"``, ``"TBPTT(16)"``).
"""

import argparse
import functools
import os
import platform
import statistics
import time

import numpy as np

from sparse_rtrl import _io, registry


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (CI smoke test)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"),
                   help="folder for the CSV and PNG (default perf/results)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per point (median reported)")
    return p


def median_time(fn, repeats, warmup=1):
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_csv(path, rows):
    """Write ``rows`` (list of dicts) atomically (``sparse_rtrl._io.write_csv``).

    The columns are the first row's keys, in order; a later row's missing
    keys are written blank, and a key the first row lacks is an error.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fields = list(rows[0]) if rows else []
    for r in rows:
        extra = [k for k in r if k not in fields]
        if extra:
            raise ValueError(f"{path}: row has keys not in the first row's columns: {', '.join(map(str, extra))}")
    _io.write_csv(path, fields, [[r.get(k, "") for k in fields] for r in rows])
    return path


def save_figure(fig, path):
    """Save a matplotlib ``Figure`` atomically as a PNG (``sparse_rtrl._io.save_figure``)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return _io.save_figure(fig, path, dpi=120)


def figure(**kwargs):
    """A new matplotlib ``Figure`` (object API: not registered with any figure manager, no backend switch)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def colors():
    """The colours of matplotlib's default property cycle (read, not changed)."""
    import matplotlib

    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def machine():
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, numpy {np.__version__}"


def print_table(rows, columns):
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    print("  ".join(f"{c:>{widths[c]}}" for c in columns))
    for r in rows:
        print("  ".join(f"{_fmt(r[c]):>{widths[c]}}" for c in columns))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# -- helpers added for the cost, baseline and bandwidth studies -----------------

def online_run(learner, xs, cs, grad_every=1):
    """A function that runs ``len(xs)`` online steps from ``reset()``: ``forward`` +
    ``backward`` every step, ``grad`` every ``grad_every`` steps (1 for online
    learners, ``T`` for TBPTT(T))."""
    n = xs.shape[0]

    def run():
        learner.reset()
        for t in range(n):
            learner.forward(xs[t])
            learner.backward(cs[t])
            if (t + 1) % grad_every == 0:
                learner.grad()

    return run


def continue_run(learner, xs, cs):
    """A function that runs ``len(xs)`` more online steps (``forward`` +
    ``backward`` + ``grad``) continuing the learner's sequence: no ``reset()``
    in the timed region (for large influences, whose reset is a memset of
    the whole matrix, not part of a step)."""
    n = xs.shape[0]

    def run():
        for t in range(n):
            learner.forward(xs[t])
            learner.backward(cs[t])
            learner.grad()

    return run


def trajectory_jacobians(cell, xs):
    """Dense ``D_t``, ``I_t`` along the trajectory from the zero state driven by ``xs``."""
    s = cell.init_state()
    Ds, Is = [], []
    for x in xs:
        jac = cell.jacobians(s, x)
        s = jac.state
        Ds.append(jac.dynamics.toarray())
        Is.append(jac.immediate.toarray())
    return Ds, Is


def time_online(learner, xs, cs, grad_every=1, repeats=3, warmup=1):
    """Median seconds per online step over ``len(xs)`` steps from ``reset()`` (see
    ``online_run``). ``len(xs)`` should be a multiple of ``grad_every`` so that
    every window's ``grad`` is charged."""
    return median_time(online_run(learner, xs, cs, grad_every), repeats, warmup=warmup) / xs.shape[0]


def interleaved_times(fns, repeats, warmup=1):
    """Wall times of each of ``fns`` over ``repeats`` rounds, the functions
    taking turns within each round, so that slow drifts of a shared machine
    hit all of them alike (for ratios between them). Returns one list of
    times per function."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return times


def interleaved_medians(fns, repeats, warmup=1):
    """Median of each of ``interleaved_times``."""
    return [statistics.median(ts) for ts in interleaved_times(fns, repeats, warmup)]


def plan_products(learner):
    """Multiply-adds per step and stream in a SnAp learner's ``D J`` product.

    From the learner's plan: for each group ``g``, (entries of ``D`` inside the
    group's reach) x (the group's parameters). SnAp-1 of a cell whose gates
    each touch one state keeps one entry per parameter (``learner.diagonal``):
    one product per parameter.
    """
    if getattr(learner, "diagonal", False):
        return int(learner.mask_size)
    p = learner._layout.plan
    per_group = p.plan_ptr[p.row_ptr[1:]] - p.plan_ptr[p.row_ptr[:-1]]
    return int(np.sum(per_group.astype(np.int64) * np.diff(p.col_ptr)))


def snap_estimate(cell, n):
    """Size of SnAp-n on ``cell`` without building it (for skipping points that would not fit).

    Returns a dict: ``mask_size`` (influence entries per stream), ``products``
    (multiply-adds per step of ``D J``), ``plan_entries`` (entries of D kept in
    the per-group plans) and ``bytes`` (influence + plans, per stream; the
    learner's workspace is left out). Computed from the cell's structure with
    scipy: the reach of each (unit, gate-signature) group after ``n - 1`` hops
    of D's pattern. Agrees with the built learner's ``mask_size`` and plan.
    """
    import scipy.sparse as sp

    st = cell.structure
    S = st.n_state
    sigs, sig_of_gate = np.unique(st.gate_touch, axis=0, return_inverse=True)
    sig_of_gate = np.asarray(sig_of_gate).reshape(-1)
    key = st.param_unit.astype(np.int64) * sigs.shape[0] + sig_of_gate[st.param_gate]
    groups, q = np.unique(key, return_counts=True)
    g_unit, g_sig = groups // sigs.shape[0], groups % sigs.shape[0]
    seed_r, seed_c = [], []
    for m in range(sigs.shape[1]):
        hit = sigs[g_sig, m]
        seed_r.append(g_unit[hit] + m * st.n_hidden)
        seed_c.append(np.flatnonzero(hit))
    seed_r, seed_c = np.concatenate(seed_r), np.concatenate(seed_c)
    G = groups.shape[0]
    A = st.dynamics.to_scipy(np.ones(st.dynamics.nnz, np.float32)).tocsr()
    X = sp.csr_matrix((np.ones(seed_r.shape[0], np.float32), (seed_r, seed_c)), shape=(S, G))
    for _ in range(n - 1):
        X = X + A @ X
        X.data[:] = 1.0
    X = X.tocsc()
    reach = np.diff(X.indptr).astype(np.int64)
    inside = np.asarray((A @ X).multiply(X).sum(axis=0)).ravel().astype(np.int64)
    mask = int(np.sum(reach * q))
    itemsize = np.dtype(cell.dtype).itemsize
    return {
        "mask_size": mask,
        "products": int(np.sum(inside * q)),
        "plan_entries": int(inside.sum()),
        # influence + plans (8 bytes per kept D entry, 4 per reach row) + the
        # per-parameter index arrays and accumulator (~64 bytes per parameter)
        # + the scratch block: within a few per cent of learner.nbytes for
        # large masks, an overestimate for small ones.
        "bytes": (mask + int((reach * q).max())) * itemsize + 8 * int(inside.sum()) + 4 * int(reach.sum())
                 + 64 * st.n_params + 64 * S,
    }


def fit_power_law(x, y):
    """Least-squares exponent ``k`` (and prefactor ``a``) of ``y ~ a x**k`` on log-log axes.

    Returns ``(k, a)``, or ``(nan, nan)`` with fewer than two distinct ``x``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if np.unique(x[ok]).shape[0] < 2:
        return float("nan"), float("nan")
    k, loga = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(k), float(np.exp(loga))


def make_learner(spec, cell, batch_size=None, parallel=False):
    """The learner of registry spec ``spec`` (``"snap2"``, ``"rtrl"``, ``"tbptt16"``, ...) on ``cell``.

    On one core unless ``parallel`` says otherwise, so that learners compared
    in one study get the same hardware (SnAp would otherwise split a large
    stream over both cores by default). Learners that draw random numbers
    get seed 0.
    """
    return registry.make_learner(spec, cell, batch_size=batch_size, seed=0, parallel=parallel)


@functools.lru_cache(maxsize=None)
def learner_name(spec, cell_key="vanilla"):
    """The label (``learner.name``, e.g. ``"TBPTT(16)"``) of the learner ``spec`` builds.

    Read from a copy built on a tiny cell of type ``cell_key``, so that rows
    of points skipped without building their learner carry the same label.
    """
    return make_learner(spec, registry.make_cell(cell_key, 1, 2)).name


def grad_every(spec):
    """Steps between ``grad()`` calls for the learner ``spec``: ``T`` for TBPTT(T) (``"tbptt<T>"``), else 1."""
    cls, number = registry.parse_learner(spec)
    return number if cls.key == "tbptt" else 1


def estimate_learner(spec, cell):
    """Per-stream size of learner ``spec`` before building it: ``bytes`` (all arrays,
    estimated), ``influence_bytes``, ``products`` (multiply-adds per step of
    the influence or trace update) and ``mask_size`` (SnAp only, else None)."""
    cls, number = registry.parse_learner(spec)
    st = cell.structure
    it = np.dtype(cell.dtype).itemsize
    S, P, nnz = st.n_state, st.n_params, st.dynamics.nnz
    small = 64 * P + 64 * S + 8 * nnz
    if cls.key == "snap":
        e = snap_estimate(cell, number)
        return {"bytes": e["bytes"] + 8 * nnz, "influence_bytes": e["mask_size"] * it,
                "products": e["products"], "mask_size": e["mask_size"]}
    if cls.key == "rtrl":
        inf = 2 * S * P * it
        return {"bytes": inf + small, "influence_bytes": inf, "products": nnz * P, "mask_size": None}
    if cls.key == "tbptt":
        T = number
        hist = T * (S * st.n_gates + st.n_hidden * st.n_local ** 2 + st.n_presyn + S) * it
        hist += (T + 1) * st.n_rec_params * it
        return {"bytes": hist + small, "influence_bytes": 0, "products": 2 * (nnz + P), "mask_size": None}
    return {"bytes": small, "influence_bytes": (S + P) * it, "products": 2 * (nnz + P), "mask_size": None}


class CappedTimer:
    """Time learners point by point, skipping points over a memory or time cap.

    Points should come from cheap to expensive for each ``key`` (e.g. density
    rising, or n rising): the time of a new point is estimated from the last
    point measured under the same key, scaled by the ratio of multiply-adds
    per step (``estimate_learner``); a point whose estimated cost exceeds the
    cap is recorded as skipped without being built. A point that is built is
    first probed with one online step (which also warms it up), and its number
    of steps per repeat is cut (down to ``min_steps``) to fit ``max_point_s``.
    Every skipped point is returned as a row with ``status="skipped"`` and
    the reason; nothing is dropped silently.
    """

    FIELDS = ("status", "reason", "us_per_step", "steps", "repeats", "build_s", "mem_total_mb",
              "mem_influence_mb", "est_mem_mb", "mask_size", "products")

    def __init__(self, max_mb, rtrl_max_mb, max_point_s, repeats, steps, min_steps=2):
        self.max_mb = max_mb
        self.rtrl_max_mb = rtrl_max_mb
        self.max_point_s = max_point_s
        self.repeats = repeats
        self.steps = steps
        self.min_steps = min_steps
        self._last = {}

    def _skip(self, row, reason):
        row.update(status="skipped", reason=reason)
        return row

    def _prepare(self, spec, cell, xs, cs, key):
        """Row for learner ``spec``, and a timed run for it (None if skipped)."""
        mb = 1024.0 ** 2
        est = estimate_learner(spec, cell)
        kind = registry.parse_learner(spec)[0].key
        row = {"learner": learner_name(spec, cell.key), **dict.fromkeys(self.FIELDS, "")}
        # Multiply-adds of the influence update: exact for SnAp (from the
        # structure) and RTRL (nnz(D) x P); left blank for the others, whose
        # rough count serves only to scale time estimates.
        exact = kind in ("snap", "rtrl")
        row.update(est_mem_mb=est["bytes"] / mb, products=est["products"] if exact else "",
                   mask_size=est["mask_size"] if est["mask_size"] is not None else "")
        if kind == "rtrl" and est["influence_bytes"] / mb > self.rtrl_max_mb:
            return self._skip(row, f"memory: RTRL influence {est['influence_bytes'] / mb:.0f} MB "
                                   f"> --rtrl-max-mb {self.rtrl_max_mb:g}"), None
        if est["bytes"] / mb > self.max_mb:
            return self._skip(row, f"memory: estimated {est['bytes'] / mb:.0f} MB > --max-mb {self.max_mb:g}"), None
        every = grad_every(spec)
        min_steps = max(self.min_steps, every)
        last = self._last.get(key)
        if last is not None:
            sec, products, where = last
            guess = sec * max(1.0, est["products"] / max(products, 1))
            if guess * (1 + self.repeats * min_steps) > self.max_point_s:
                return self._skip(row, f"time: ~{guess:.2g} s/step (scaled from {where}) x "
                                       f"{1 + self.repeats * min_steps} steps > --max-point-s {self.max_point_s:g}"), None
        t0 = time.perf_counter()
        learner = make_learner(spec, cell)
        row["build_s"] = time.perf_counter() - t0
        # Probe: one online step (one window for TBPTT); also compiles and touches memory.
        t0 = time.perf_counter()
        learner.reset()
        for t in range(every):
            learner.forward(xs[t])
            learner.backward(cs[t])
        learner.grad()
        probe = (time.perf_counter() - t0) / every
        if probe * self.repeats * min_steps > self.max_point_s:
            self._last[key] = (probe, est["products"], "probe")
            return self._skip(row, f"time: one step took {probe:.2g} s; {self.repeats} x {min_steps} steps "
                                   f"> --max-point-s {self.max_point_s:g}"), None
        steps = int(min(self.steps, max(min_steps, self.max_point_s / (self.repeats * probe))))
        steps = max(every, steps // every * every)
        row.update(steps=steps, repeats=self.repeats, mask_size=getattr(learner, "mask_size", ""),
                   _learner=learner, _products=est["products"], _round_s=probe * steps)
        return row, online_run(learner, xs[:steps], cs[:steps], every)

    def measure_point(self, specs, cell, xs, cs, keys):
        """Rows for learners ``specs`` on ``cell`` (inputs ``xs``, credits ``cs``,
        at least ``steps`` of each); ``keys[i]`` names the series of learner i
        for the time estimates. The learners that are built take turns in
        every repeat (``interleaved_medians``), so that the drifts of a shared
        machine hit all of them alike and their ratios hold."""
        mb = 1024.0 ** 2
        prepared = [self._prepare(spec, cell, xs, cs, key) for spec, key in zip(specs, keys)]
        timed = [(row, run, key) for (row, run), key in zip(prepared, keys) if run is not None]
        if timed:
            # One warm-up round unless a round would take more than two seconds.
            warmup = 1 if sum(r.pop("_round_s") for r, _, _ in timed) < 2.0 else 0
            secs = interleaved_medians([run for _, run, _ in timed], self.repeats, warmup=warmup)
            for (row, _, key), sec in zip(timed, secs):
                learner = row.pop("_learner")
                per_step = sec / row["steps"]
                mem = learner.memory()
                self._last[key] = (per_step, row.pop("_products"), f"{per_step * 1e6:.3g} us at the previous point")
                row.update(status="ok", us_per_step=per_step * 1e6, mem_total_mb=sum(mem.values()) / mb,
                           mem_influence_mb=mem["influence"] / mb)
        return [row for row, _ in prepared]


def measure_rows(timer, learners, cell, rng, steps, point, label):
    """Time ``learners`` (specs) at one point of a study (``CappedTimer.measure_point``)
    on fresh random inputs and credits; print a line per learner and return
    the rows, each ``point`` plus the learner's results (``learner``: its
    label). ``label`` names the point in the printed lines."""
    xs = rng.normal(size=(steps, cell.n_in)).astype(cell.dtype)
    cs = rng.normal(size=(steps, cell.n_state)).astype(cell.dtype)
    point = {**point, "n_params": cell.n_params, "n_state": cell.n_state}
    kind = point["cell"]
    rows = []
    for result in timer.measure_point(learners, cell, xs, cs, keys=[(kind, spec) for spec in learners]):
        row = {**point, **result}
        name = row["learner"]
        rows.append(row)
        what = (f"{row['us_per_step']:.4g} us/step, {row['mem_total_mb']:.3g} MB"
                if row["status"] == "ok" else f"skipped ({row['reason']})")
        print(f"  {kind:7s} {label} {name:9s} {what}", flush=True)
    return rows


def blas_threads(n=None):
    """Set numpy's OpenBLAS thread count to ``n`` (if given); return the count in force.

    Best effort through the library's own ``*_set_num_threads`` entry point
    (numpy's wheels bundle ``scipy_openblas``); returns None when no OpenBLAS
    is found, in which case ``OPENBLAS_NUM_THREADS`` decides.
    """
    import ctypes
    import glob

    libdir = os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    if n is not None:
                        setter(int(n))
                    return int(getter())
    return None
