"""SnAp-n: the Sparse n-step Approximation of RTRL (Menick et al. 2020), and the influence core it shares with e-prop."""

from typing import NamedTuple

import numpy as np

from .._validate import check_int
from ..cells import Cell, DynamicsPlan, Segments
from .base import SPLIT_MIN_WORK, DeferredUpdate, DynamicsValues, Learner, Part


class SnApPlan(NamedTuple):
    """SnAp's index plan as the kernels read it (``_snap_kernels``), built once.

    Group ``g`` (the parameters ``block_params[col_ptr[g]:col_ptr[g+1]]``,
    which share their immediate states) keeps a dense block of influence,
    its reach ``rows[row_ptr[g]:row_ptr[g+1]]`` by its ``q`` parameters,
    row-major at ``inf_ptr[g]``. ``plan_ptr``/``plan_col``/``plan_entry``
    list, for each reach row, the entries of ``D`` that stay inside the
    group (local column, index into D's values); ``seed_ptr``/``seed_local``
    the rows the group's parameters touch immediately.
    """

    row_ptr: np.ndarray
    rows: np.ndarray
    col_ptr: np.ndarray
    col_gate: np.ndarray
    col_src: np.ndarray
    inf_ptr: np.ndarray
    plan_ptr: np.ndarray
    plan_col: np.ndarray
    plan_entry: np.ndarray
    seed_ptr: np.ndarray
    seed_local: np.ndarray


class SnApLayout(NamedTuple):
    """A mask and how its influence is laid out: the kernels' plan and what Python needs besides."""

    plan: SnApPlan
    block_params: np.ndarray  # int64 (P,): the parameter of each group column
    max_block: int  # the largest block (scratch size)
    saturated: bool  # the mask stops growing at this n: SnAp-n equals RTRL
    diagonal: bool  # one entry per parameter (SnAp-1 of a cell whose gates each touch one state)

    @property
    def mask_size(self):
        return int(self.plan.inf_ptr[-1])


class SnApKernelState(NamedTuple):
    """What the compiled online loop reads and writes of a SnAp core (hooks in ``_snap_kernels``)."""

    diagonal: object  # True (the diagonal layout) or None (blocks): a type, chosen at compile time
    seg: Segments
    diag_entry: np.ndarray
    plan: SnApPlan
    block_params: np.ndarray
    dyn_plan: DynamicsPlan
    dyn: np.ndarray
    J: np.ndarray
    scratch: np.ndarray
    coef: np.ndarray
    presyn: np.ndarray


def snap_layout(structure, n_steps):
    """SnAp-n's groups, reach sets and per-group D plans, computed once from the patterns."""
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
    # Each group's reach sorted, with numpy: sorting inside the kernel compiled numba's quicksort
    # (about 3.5 s on a cold cache, measured), for one sort per layout.
    group = np.repeat(np.arange(sizes.shape[0], dtype=np.int64), sizes)
    rows = (np.sort(group * S + rows) - group * S).astype(np.int32)

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
    plan = SnApPlan(
        row_ptr=row_ptr, rows=rows, col_ptr=col_ptr,
        col_gate=st.param_gate[block_params].astype(np.uint32), col_src=st.param_src[block_params].astype(np.uint32),
        inf_ptr=inf_ptr, plan_ptr=plan_ptr, plan_col=plan_col, plan_entry=plan_entry,
        seed_ptr=seed_ptr, seed_local=seed_local,
    )
    diagonal = n_steps == 1 and bool(np.all(st.gate_touch.sum(axis=1) == 1))
    return SnApLayout(plan, block_params.astype(np.int64), int((sizes * q).max()) if n_groups else 0, saturated,
                      diagonal)


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


def default_parallel(layout, B):
    """``parallel=None`` for a SnAp core: one large stream is split over the cores by groups (not the
    diagonal layout); a batch as any learner's."""
    return None if B != 1 else (not layout.diagonal and layout.mask_size >= SPLIT_MIN_WORK)


class SnApCore(Part):
    """An influence kept on a structural mask, in SnAp's layout, with its update and accumulation.

    Used by :class:`SnAp` and by :class:`~sparse_rtrl.EProp`, which differ only
    in which entries of ``D`` propagate the influence: SnAp forms every entry
    its mask's blocks read, e-prop only the unit-local ones (``local_only``).

    The diagonal layout (``layout.diagonal``: one entry per parameter) keeps
    ``J`` in parameter order and updates it with the per-parameter trace
    kernel, the decay of unit ``i`` being ``D_ii``; the block layout keeps one
    dense block per group. With ``parallel`` and one stream, the groups are
    cut into chunks of equal work updated on all cores (``split``): 1.7-1.85x
    on two cores for SnAp-2. Not for the diagonal layout, whose step is bound
    by memory traffic: split, it measured 20% slower (cache lines shared
    between the cores).
    """

    def __init__(self, learner, layout, local_only):
        from . import _base_kernels as bk
        from . import _snap_kernels as k

        self.layout = layout
        plan = layout.plan
        cell = learner.cell
        st = cell.structure
        B, dt = learner._B, cell.dtype
        self._learner = learner
        self.J = np.zeros((B, layout.mask_size), dt)
        self.split = learner.parallel and B == 1 and not layout.diagonal
        if layout.diagonal:
            # The diagonal entry of row k: D's columns are sorted within a row.
            rows = st.dynamics.rows()
            self.diag_entry = np.flatnonzero(rows == st.dynamics.indices)[: st.n_hidden].astype(np.int32)
            entries = self.diag_entry
            self.chunk_ptr = np.zeros(1, np.int64)
            self.scratch = np.zeros((B, 0), dt)
        else:
            self.diag_entry = np.zeros(0, np.int32)
            # Form only the entries of D that the mask's blocks read.
            entries = np.unique(plan.plan_entry)
            if self.split:
                q = np.diff(plan.col_ptr)
                r = np.diff(plan.row_ptr)
                work = (plan.plan_ptr[plan.row_ptr[1:]] - plan.plan_ptr[plan.row_ptr[:-1]] + 2 * r + 1) * q
                self.chunk_ptr = _equal_chunks(work, _split_chunks())
            else:
                self.chunk_ptr = np.zeros(1, np.int64)
            self.scratch = np.zeros((self.chunk_ptr.shape[0] - 1 if self.split else B, max(1, layout.max_block)), dt)
        # e-prop forms D_local only: a plan that lists none of the weights' contributions.
        self.dynamics = DynamicsValues(learner, entries=np.zeros(0, np.int64) if local_only else entries)
        self.deferred = DeferredUpdate(self._apply, self._accumulate, learner._no_credit)
        pick = learner._pick
        if layout.diagonal:
            self._update = pick(bk.trace_update, bk.trace_update_par)
            self._accumulate_kernel = pick(bk.trace_accumulate, bk.trace_accumulate_par)
            self._take = pick(bk.take_grad, bk.take_grad_par)
        else:
            self._update = pick(k.snap_update, k.snap_update_par)
            self._update_split = k.snap_update_split
            self._accumulate_kernel = pick(k.snap_accumulate, k.snap_accumulate_par)
            self._take = pick(k.take_block_grad, k.take_block_grad_par)

    def reset(self):
        self.J[:] = 0.0
        self.deferred.reset()

    def _apply(self, c, accumulate):
        lrn = self._learner
        if self.layout.diagonal:
            self._update(lrn.cell.structure.segments, self.dynamics.values, self.diag_entry, lrn._coef, lrn._presyn, c,
                         self.J, lrn._acc, accumulate)
        elif self.split:
            self._update_split(self.chunk_ptr, self.layout.plan, self.dynamics.values, lrn._coef, lrn._presyn, c,
                               self.J, self.scratch, lrn._acc, accumulate)
        else:
            self._update(self.layout.plan, self.dynamics.values, lrn._coef, lrn._presyn, c, self.J, self.scratch,
                         lrn._acc, accumulate)

    def _accumulate(self, c):
        lrn = self._learner
        if self.layout.diagonal:
            self._accumulate_kernel(lrn.cell.structure.segments, c, self.J, lrn._acc)
        else:
            self._accumulate_kernel(self.layout.plan, c, self.J, lrn._acc)

    def step_taken(self):
        self.dynamics.form()
        self.deferred.step_taken()

    def grad(self):
        """The accumulator in parameter order (the block layout keeps it in group-column order)."""
        lrn = self._learner
        out = np.empty(lrn.cell.n_params, dtype=lrn.cell.dtype)
        if self.layout.diagonal:
            self._take(lrn._acc, out)
        else:
            self._take(lrn._acc, self.layout.block_params, out)
        return out

    def kernel_state(self):
        """The arrays the compiled loop runs on (``SnApKernelState``); a pending update is applied first."""
        from . import _snap_kernels  # noqa: F401  (registers the loop hooks of SnApKernelState)

        self.deferred.settle()
        lrn = self._learner
        return SnApKernelState(True if self.layout.diagonal else None, lrn.cell.structure.segments, self.diag_entry,
                               self.layout.plan, self.layout.block_params, self.dynamics.plan, self.dynamics.values,
                               self.J, self.scratch, lrn._coef, lrn._presyn)

    def loop_done(self, steps, pending):
        """After the compiled loop ran ``steps`` steps: the learner's step count, and whether the last
        step's update still waits for its credit (the loop stopped on a non-finite loss)."""
        self._learner.n_steps += steps
        self.deferred.pending = pending

    def mask_coo(self):
        p = self.layout.plan
        q = np.diff(p.col_ptr)
        r = np.diff(p.row_ptr)
        group_of_row = np.repeat(np.arange(r.shape[0]), r)
        rows = np.repeat(p.rows, q[group_of_row])
        block_params = self.layout.block_params
        # Columns: each reach row of group g repeats that group's parameters.
        cols = np.concatenate(
            [np.tile(block_params[p.col_ptr[g]:p.col_ptr[g + 1]], r[g]) for g in range(r.shape[0])]
        ) if r.shape[0] else np.zeros(0, dtype=np.int64)
        return rows, cols

    def mask(self):
        cell = self._learner.cell
        rows, cols = self.mask_coo()
        return _pattern_from_coo(rows, cols, (cell.n_state, cell.n_params))

    def influence(self, stream):
        import scipy.sparse as sp

        cell = self._learner.cell
        self.deferred.settle()
        rows, cols = self.mask_coo()
        values = self.J[stream][self.layout.block_params] if self.layout.diagonal else self.J[stream].copy()
        m = sp.csr_matrix((values, (rows, cols)), shape=(cell.n_state, cell.n_params))
        m.sort_indices()
        return m


#: The state of a learner built on a SnAp core, by public name.
CORE_FIELDS = {"influence": "_core.J", "dynamics": "_core.dynamics.values", "pending": "_core.deferred.pending"}
CORE_MEMORY = {"influence": ("_core.J",),
               "plan": ("_layout", "_core.dynamics.plan", "_core.chunk_ptr", "_core.diag_entry")}


class SnAp(Learner, key="snap"):
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

    structure = "sparse"
    spec_number = "n"
    spec_examples = (1, 2, 3)
    _state_fields = CORE_FIELDS
    _memory_parts = CORE_MEMORY

    def __init__(self, cell, n: int = 1, batch_size: int = None, parallel: bool = None):
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a sparse_rtrl Cell, got {type(cell).__name__}")
        self.n = check_int(n, "n", minimum=1)
        self._layout = snap_layout(cell.structure, self.n)
        super().__init__(cell, batch_size, parallel)

    def _default_parallel(self, B):
        split = default_parallel(self._layout, B)
        return super()._default_parallel(B) if split is None else split

    def _allocate(self):
        self._core = SnApCore(self, self._layout, local_only=False)

    def _reset(self):
        self._core.reset()

    def _prepare_step(self):
        self._core.deferred.settle()

    def _after_step(self, coef, dloc, presyn):
        self._core.step_taken()

    def _backward(self, c):
        self._core.deferred.credit(c)

    def _grad(self):
        return self._core.grad()

    _loop_spreads = True  # the compiled loop runs SnAp's kernels on one core (same numbers)

    def _loop_state(self, steps):
        return self._core.kernel_state()

    def _loop_done(self, parts, steps, pending):
        self._core.loop_done(steps, pending)

    @property
    def mask_size(self):
        return self._layout.mask_size

    @property
    def saturated(self):
        return self._layout.saturated

    @property
    def diagonal(self):
        """True when each parameter keeps a single influence entry (SnAp-1 of a
        cell whose gates each touch one state): ``J`` is then kept in parameter
        order and updated in one streaming pass."""
        return self._layout.diagonal

    @property
    def exact(self):
        return self.saturated

    def exact_for(self, n_steps):
        # Within n steps the true influence cannot leave the n-step reach.
        return self.saturated or n_steps <= self.n

    @property
    def name(self):
        return f"SnAp-{self.n}"

    def mask(self):
        """The structural mask as a :class:`~sparse_rtrl.Pattern` (S x P)."""
        return self._core.mask()

    def influence(self, stream: int = 0):
        """The influence ``J_t`` of one stream as a ``scipy.sparse.csr_matrix`` (S x P)."""
        stream = check_int(stream, "stream", minimum=0, maximum=self._B - 1)
        return self._core.influence(stream)
