"""SnAp-n: the Sparse n-step Approximation of RTRL (Menick et al. 2020)."""

import numpy as np

from .._validate import check_float, check_int, check_real_array, check_seed
from ..cells import Cell
from .base import Learner, _FormsDynamics, _load_kernel, PARALLEL_MIN_WORK, SPLIT_MIN_WORK


class SnAp(_FormsDynamics, Learner):
    """Sparse n-step Approximation of RTRL (Menick et al. 2020).

    Parameters
    ----------
    cell : Cell
    n : int >= 1
        Keep the influence of each parameter on the states its unit reaches
        within ``n`` steps of the recurrent graph.
    batch_size : int, optional
    parallel : bool, optional
        Use all cores: the streams of a batch are spread over them and, for
        one stream, the groups of the influence update are (SnAp-1 of a
        vanilla RNN or GRU, bound by memory traffic, stays on one core).
        Default: when there is enough work to gain from it. Results are
        identical either way.

    Attributes
    ----------
    mask_size : int
        Stored influence entries per stream (``nnz`` of the mask).
    saturated : bool
        The mask stops growing at ``n``: SnAp-n then equals RTRL.

    Notes
    -----
    ``R_1(p)`` = the states parameter ``p`` touches immediately;
    ``R_{k+1}(p) = R_k(p) U {i : D_ij structurally nonzero, j in R_k(p)}``;
    ``J_t = mask_n * (D_t J_{t-1} + I_t)``, ``grad += c_t J_t``. The mask is
    computed once, from the weight patterns only. Parameters with the same
    immediate states share their reach, so the influence is stored as one
    dense block per group (``|R_n| x q``) and updated with contiguous loops;
    work and memory scale with the mask, never with ``S x P``. SnAp-n equals
    RTRL once ``n`` exceeds the longest shortest path of the recurrent graph
    (``n >= diameter + 1``, because ``R_1`` is zero hops away).
    """

    def __init__(self, cell, n=1, batch_size=None, parallel=None):
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a sparse_rtrl Cell, got {type(cell).__name__}")
        self.n = check_int(n, "n", minimum=1)
        self._plan = _snap_plan(cell.structure, self.n)
        super().__init__(cell, batch_size, parallel)

    @property
    def mask_size(self):
        return int(self._plan["inf_ptr"][-1])

    @property
    def saturated(self):
        return self._plan["saturated"]

    @property
    def exact(self):
        return self.saturated

    def exact_for(self, n_steps):
        # Within n steps the true influence cannot leave the n-step reach.
        return self.saturated or n_steps <= self.n

    @property
    def name(self):
        return f"SnAp-{self.n}"

    _memory_parts = {"influence": ("_J",), "plan": ("_plan", "_dyn_plan", "_chunk_ptr")}

    def _default_parallel(self, B):
        # One large stream is split over the cores by groups (see ``_split``).
        if B == 1:
            return not self.diagonal and self.mask_size >= SPLIT_MIN_WORK
        return super()._default_parallel(B)

    @property
    def _split(self):
        """One stream on all cores: its groups are cut into chunks of equal
        work, updated in parallel (1.7-1.85x on two cores for SnAp-2). Not for
        the diagonal layout, whose step is bound by memory traffic: split, it
        measured 20% slower (cache lines shared between the cores)."""
        return self.parallel and self._B == 1 and not self.diagonal

    @property
    def diagonal(self):
        """True when each parameter keeps a single influence entry (SnAp-1 of a
        cell whose gates each touch one state): ``J`` is then kept in parameter
        order and updated in one streaming pass."""
        return self.n == 1 and bool(np.all(self.cell.structure.gate_touch.sum(axis=1) == 1))

    def _allocate(self):
        p = self._plan
        dt = self.cell.dtype
        self._J = np.zeros((self._B, self.mask_size), dt)
        st = self.cell.structure
        if self.diagonal:
            self._scratch = np.zeros((self._B, 0), dt)
            # The diagonal entry of row k: D's columns are sorted within a row.
            rows = st.dynamics.rows()
            diag = np.flatnonzero(rows == st.dynamics.indices)
            self._diag_entry = diag[: st.n_hidden].astype(np.int32)
            self._init_dynamics(entries=self._diag_entry)
            self._chunk_ptr = np.zeros(1, np.int64)
        else:
            # Form only the entries of D that the mask's blocks read.
            self._init_dynamics(entries=np.unique(p["plan_entry"]))
            if self._split:
                q = np.diff(p["col_ptr"])
                r = np.diff(p["row_ptr"])
                work = (p["plan_ptr"][p["row_ptr"][1:]] - p["plan_ptr"][p["row_ptr"][:-1]] + 2 * r + 1) * q
                self._chunk_ptr = _equal_chunks(work, _split_chunks())
            else:
                self._chunk_ptr = np.zeros(1, np.int64)
            rows_of_scratch = self._chunk_ptr.shape[0] - 1 if self._split else self._B
            self._scratch = np.zeros((rows_of_scratch, max(1, p["max_block"])), dt)
        self._kernel_plan = tuple(
            p[k] for k in ("row_ptr", "rows", "col_ptr", "col_gate", "col_src", "inf_ptr",
                           "plan_ptr", "plan_col", "plan_entry", "seed_ptr", "seed_local")
        )

    def _reset(self):
        self._J[:] = 0.0
        self._pending = False

    def _apply(self, c, accumulate):
        if self.diagonal:
            seg_ptr, seg_unit, seg_gate, src = self._structure_args[:4]
            args = (seg_ptr, seg_unit, seg_gate, src, self._diag_entry, self._dyn, self._coef, self._presyn, c,
                    self._J, self._acc, accumulate)
            name = "snap_diag_update"
        else:
            args = (*self._kernel_plan, self._dyn, self._coef, self._presyn, c, self._J, self._scratch, self._acc,
                    accumulate)
            name = "snap_update"
        if self._split:
            _load_kernel("snap", name + "_split")(self._chunk_ptr, *args)
        else:
            self._kernel("snap", name)(*args)
        self._pending = False

    def _prepare_step(self):
        if self._pending:
            self._apply(self._no_credit, False)

    def _after_step(self, coef, dloc, presyn):
        self._form_dynamics()
        self._pending = True

    def _backward(self, c):
        if self._pending:
            self._apply(c, True)
        elif self.diagonal:
            self._kernel("snap", "snap_diag_accumulate")(self._structure_args[0], self._structure_args[1], c, self._J, self._acc)
        else:
            p = self._plan
            self._kernel("snap", "snap_accumulate")(p["row_ptr"], p["rows"], p["col_ptr"], p["inf_ptr"], c, self._J, self._acc)

    def _grad(self):
        if self.diagonal:
            return super()._grad()
        # The accumulator is kept in group-column order; scatter it back to parameters.
        out = np.empty(self.cell.n_params, dtype=self.cell.dtype)
        self._kernel("snap", "take_block_grad")(self._acc, self._plan["block_params"], out)
        return out

    def _fused_state(self):
        """Everything the fused online loop reads and writes, as one tuple (no copies)."""
        if self._pending:
            self._apply(self._no_credit, False)
        p = self._plan
        seg_ptr, seg_unit, seg_gate, src = self._structure_args[:4]
        diag_entry = self._diag_entry if self.diagonal else np.zeros(0, np.int32)
        return (self._state, self._next, self._coef, self._dloc, self._presyn, self._dyn,
                *self._dyn_plan,
                # True or None: a type, not a value (see _train_kernels.snap_step)
                True if self.diagonal else None, seg_ptr, seg_unit, seg_gate, src, diag_entry,
                p["row_ptr"], p["rows"], p["col_ptr"], p["col_gate"], p["col_src"], p["inf_ptr"],
                p["plan_ptr"], p["plan_col"], p["plan_entry"], p["seed_ptr"], p["seed_local"],
                p["block_params"],
                self._J, self._scratch, self._acc, np.empty(self.cell.n_params, self.cell.dtype))

    def _after_fused(self, steps, pending):
        self.n_steps += steps
        self._pending = pending

    def mask(self):
        """The structural mask as a :class:`~sparse_rtrl.Pattern` (S x P)."""
        rows, cols = self._mask_coo()
        return _pattern_from_coo(rows, cols, (self.cell.n_state, self.cell.n_params))

    def _mask_coo(self):
        p = self._plan
        q = np.diff(p["col_ptr"])
        r = np.diff(p["row_ptr"])
        group_of_row = np.repeat(np.arange(r.shape[0]), r)
        rows = np.repeat(p["rows"], q[group_of_row])
        # Columns: each reach row of group g repeats that group's parameters.
        cols = np.concatenate(
            [np.tile(p["block_params"][p["col_ptr"][g]:p["col_ptr"][g + 1]], r[g]) for g in range(r.shape[0])]
        ) if r.shape[0] else np.zeros(0, dtype=np.int64)
        return rows, cols

    def influence(self, stream=0):
        """The influence ``J_t`` of one stream as a ``scipy.sparse.csr_matrix`` (S x P)."""
        import scipy.sparse as sp

        stream = check_int(stream, "stream", minimum=0, maximum=self._B - 1)
        if self._pending:
            self._apply(self._no_credit, False)
        rows, cols = self._mask_coo()
        values = self._J[stream][self._plan["block_params"]] if self.diagonal else self._J[stream].copy()
        m = sp.csr_matrix((values, (rows, cols)),
                          shape=(self.cell.n_state, self.cell.n_params))
        m.sort_indices()
        return m


def _split_chunks():
    """Chunks of one stream's update for the parallel split: two per thread."""
    import numba

    return 2 * numba.config.NUMBA_NUM_THREADS


def _equal_chunks(work, k):
    """Boundaries cutting items with costs ``work`` into at most ``k`` runs of
    about equal total cost (fewer when there are fewer items)."""
    total = np.concatenate([[0], np.cumsum(work, dtype=np.float64)])
    cuts = np.searchsorted(total, np.linspace(0.0, total[-1], k + 1)[1:-1])
    return np.unique(np.concatenate([[0], cuts, [work.shape[0]]])).astype(np.int64)


def _pattern_from_coo(rows, cols, shape):
    from ..patterns import Pattern

    order = np.lexsort((cols, rows))
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    return Pattern(indptr, cols[order], shape)


def _snap_plan(structure, n_steps):
    """Build SnAp-n's groups, reach sets and per-group D plans (once)."""
    from ._snap_kernels import plan_fill, plan_sizes, reach_fill, reach_sizes

    st = structure
    S = st.n_state
    sigs, sig_of_gate = np.unique(st.gate_touch, axis=0, return_inverse=True)
    sig_of_gate = np.asarray(sig_of_gate).reshape(-1)
    n_sig = sigs.shape[0]
    key = st.param_unit.astype(np.int64) * n_sig + sig_of_gate[st.param_gate]
    block_params = np.argsort(key, kind="stable")
    group_keys, q = np.unique(key[block_params], return_counts=True)
    col_ptr = np.concatenate([[0], np.cumsum(q)]).astype(np.int64)

    # Seeds: the states each group's parameters touch immediately.
    g_unit = group_keys // n_sig
    g_sig = group_keys % n_sig
    seed_lists = [g_unit + m * st.n_hidden for m in range(sigs.shape[1])]
    seed_hit = [sigs[g_sig, m] for m in range(sigs.shape[1])]
    seed_rows_2d = np.stack(seed_lists, axis=1)
    hit_2d = np.stack(seed_hit, axis=1)
    seed_rows = seed_rows_2d[hit_2d].astype(np.int32)
    seed_ptr = np.concatenate([[0], np.cumsum(hit_2d.sum(axis=1))]).astype(np.int64)

    # Transpose of D's pattern: for each state j, the states k with D[k, j] != 0.
    dyn = st.dynamics
    dyn_rows = dyn.rows()
    order = np.argsort(dyn.indices, kind="stable")
    out_idx = dyn_rows[order].astype(np.int32)
    out_ptr = np.zeros(S + 1, dtype=np.int64)
    np.cumsum(np.bincount(dyn.indices, minlength=S), out=out_ptr[1:])

    sizes = reach_sizes(seed_ptr, seed_rows, out_ptr, out_idx, n_steps, S)
    saturated = bool(np.array_equal(sizes, reach_sizes(seed_ptr, seed_rows, out_ptr, out_idx, n_steps + 1, S)))
    row_ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    rows = np.empty(int(row_ptr[-1]), dtype=np.int32)
    reach_fill(seed_ptr, seed_rows, out_ptr, out_idx, n_steps, S, row_ptr, rows)

    counts = plan_sizes(row_ptr, rows, dyn.indptr, dyn.indices, S)
    plan_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    plan_col = np.empty(int(plan_ptr[-1]), dtype=np.int32)
    plan_entry = np.empty(int(plan_ptr[-1]), dtype=np.int32)
    plan_fill(row_ptr, rows, dyn.indptr, dyn.indices, S, plan_ptr, plan_col, plan_entry)

    # Local position of each seed inside its group's sorted reach.
    n_groups = group_keys.shape[0]
    group_of_row = np.repeat(np.arange(n_groups, dtype=np.int64), sizes)
    global_keys = group_of_row * S + rows
    group_of_seed = np.repeat(np.arange(n_groups, dtype=np.int64), np.diff(seed_ptr))
    seed_local = (np.searchsorted(global_keys, group_of_seed * S + seed_rows) - row_ptr[group_of_seed]).astype(np.int32)

    inf_ptr = np.concatenate([[0], np.cumsum(sizes * q)]).astype(np.int64)
    return {
        "block_params": block_params.astype(np.int64),
        "col_ptr": col_ptr,
        "col_gate": st.param_gate[block_params].astype(np.uint32),
        "col_src": st.param_src[block_params].astype(np.uint32),
        "seed_ptr": seed_ptr,
        "seed_local": seed_local,
        "row_ptr": row_ptr,
        "rows": rows,
        "plan_ptr": plan_ptr,
        "plan_col": plan_col,
        "plan_entry": plan_entry,
        "inf_ptr": inf_ptr,
        "max_block": int((sizes * q).max()) if n_groups else 0,
        "saturated": saturated,
    }
