"""Online gradient estimators ("learners") for a recurrent cell.

Every learner has the same life cycle::

    learner.reset()          # state := cell.init_state(); influence, traces, accumulator := 0
    s = learner.forward(x)   # one step with input x; returns the new state
    learner.backward(c)      # c = dL_t/ds_t for the step just taken
    g = learner.grad()       # accumulated dL/dtheta since the last grad()/reset(); clears it

With ``batch_size=B`` the learner runs ``B`` independent streams: ``x`` is
``(B, n_in)``, states and credits ``(B, S)``, and ``grad()`` sums over the
batch. Learners read the cell's current parameters at every step, so an
optimiser may change ``cell.params`` between steps (online learning).

Learners that keep an influence matrix defer its update from ``forward`` to
``backward`` so that update and gradient accumulation share one pass over
memory; a ``forward`` with no ``backward`` in between applies it first. The
results do not depend on this.
"""

import importlib

import numpy as np

from ._validate import check_float, check_int, check_real_array, check_seed
from .cells import Cell


#: With ``parallel=None`` a batched learner spreads its streams over the cores
#: once ``batch_size * n_params`` reaches this; below it, starting the threads
#: costs more than they save.
PARALLEL_MIN_WORK = 1 << 15

#: With ``parallel=None`` SnAp splits one stream's influence update over the
#: cores once its influence holds this many entries (about 0.1 ms of work).
SPLIT_MIN_WORK = 1 << 17

_KERNEL_MODULES = {
    "learner": "._learner_kernels", "snap": "._snap_kernels", "kronecker": "._kronecker_kernels",
    "local": "._local_kernels", "future": "._future_kernels",
}
_KERNELS = {}


def _load_kernel(module, name):
    fn = _KERNELS.get((module, name))
    if fn is None:
        fn = getattr(importlib.import_module(_KERNEL_MODULES[module], __package__), name)
        _KERNELS[(module, name)] = fn
    return fn


class Learner:
    """Base class: life cycle, batching, validation and the cell's step.

    Attributes
    ----------
    cell : Cell
    batch_size : int or None
    parallel : bool
        Whether the streams of a batch run on all cores (``prange``). Results
        are identical either way.
    n_steps : int
        Steps taken since the last ``reset()``.
    """

    #: ``grad()`` is the exact gradient (see ``exact_for``).
    exact = False
    #: ``grad()`` is a random estimate (unbiased where the paper says so).
    stochastic = False

    def __init__(self, cell, batch_size=None, parallel=None):
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a sparse_rtrl Cell, got {type(cell).__name__}")
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", minimum=1)
        if parallel is not None and not isinstance(parallel, (bool, np.bool_)):
            raise TypeError(f"parallel must be None, True or False, got {parallel!r}")
        self.cell = cell
        self.batch_size = batch_size
        if parallel is None:
            parallel = self._default_parallel(batch_size or 1)
        self.parallel = bool(parallel)
        st = cell.structure
        B = self._B = batch_size or 1
        dt = cell.dtype
        self._state = np.zeros((B, st.n_state), dt)
        self._next = np.zeros((B, st.n_state), dt)
        self._coef = np.zeros((B, st.n_state, st.n_gates), dt)
        self._dloc = np.zeros((B, st.n_hidden, st.n_local, st.n_local), dt)
        self._presyn = np.zeros((B, st.n_presyn), dt)
        self._acc = np.zeros((B, st.n_params), dt)
        self._no_credit = np.zeros((B, st.n_state), dt)
        self._structure_args = (
            st.seg_ptr, st.seg_unit, st.seg_gate, st.param_src.view(np.uint32), st.gate_touch,
            np.int64(st.n_hidden), np.int64(st.n_rec_segments),
        )
        self.n_steps = 0
        self._allocate()
        self.reset()

    def _default_parallel(self, B):
        """Whether ``parallel=None`` means all cores: a batch with enough work."""
        return B >= 2 and B * self.cell.n_params >= PARALLEL_MIN_WORK

    def _kernel(self, module, name):
        """The serial or parallel driver of a batched kernel."""
        return _load_kernel(module, name + "_par" if self.parallel else name)

    # -- hooks for subclasses ---------------------------------------------------
    def _allocate(self):
        """Allocate the learner's own state (called once)."""

    def _reset(self):
        """Zero the learner's own state."""

    def _prepare_step(self):
        """Called at the start of ``forward``, before the cell's step."""

    def _step_buffers(self):
        """Where the cell writes ``coef``, ``dloc`` and ``presyn`` for this step."""
        return self._coef, self._dloc, self._presyn

    def _after_step(self, coef, dloc, presyn):
        """Called after the cell's step with the buffers it wrote."""

    def _backward(self, c):
        raise NotImplementedError

    def _grad(self):
        """A new array: the accumulated gradient in parameter order, summed over
        the batch; the accumulator is zeroed."""
        out = np.empty(self.cell.n_params, dtype=self.cell.dtype)
        self._kernel("learner", "take_grad")(self._acc, out)
        return out

    def _zero_grad(self):
        self._acc[:] = 0.0

    # -- public life cycle ------------------------------------------------------
    def reset(self):
        """Start a new sequence: zero state, influence/traces and accumulator."""
        self._state[:] = 0.0
        self.n_steps = 0
        self._zero_grad()
        self._reset()

    def _check_batch(self, value, name, width):
        if self.batch_size is None:
            return check_real_array(value, name, (width,), self.cell.dtype)[None]
        return check_real_array(value, name, (self.batch_size, width), self.cell.dtype)

    def _output(self, arr):
        return arr[0].copy() if self.batch_size is None else arr.copy()

    def forward(self, x):
        """Advance one step with input ``x``; return the new state (a copy).

        Parameters
        ----------
        x : array_like, shape (n_in,) or (B, n_in) when batched
        """
        x = self._check_batch(x, "x", self.cell.n_in)
        self._prepare_step()
        coef, dloc, presyn = self._step_buffers()
        self.cell.advance(self._state, x, self._next, coef, dloc, presyn, self.parallel)
        self._state, self._next = self._next, self._state
        self.n_steps += 1
        self._after_step(coef, dloc, presyn)
        return self._output(self._state)

    def backward(self, c):
        """Add the credit ``c = dL_t/ds_t`` of the step just taken.

        Parameters
        ----------
        c : array_like, shape (S,) or (B, S) when batched
        """
        if self.n_steps == 0:
            raise RuntimeError("backward() needs a step: call forward() first (and after reset())")
        c = self._check_batch(c, "c", self.cell.n_state)
        self._backward(c)

    def grad(self):
        """The accumulated gradient estimate, shape (P,); clears the accumulator."""
        return self._grad()

    @property
    def state(self):
        """The current state (a copy): (S,), or (B, S) when batched."""
        return self._output(self._state)

    def exact_for(self, n_steps):
        """Whether ``grad()`` is exact for sequences of ``n_steps`` with frozen weights."""
        return self.exact

    @property
    def name(self):
        """Short label for tables and plots, e.g. ``"SnAp-2"`` or ``"TBPTT(8)"``."""
        return type(self).__name__

    #: Which attributes hold what, for ``memory()``; the rest is workspace.
    _memory_parts = {}

    def memory(self):
        """Bytes held by the learner, by part.

        Returns
        -------
        dict
            ``influence`` (influence matrix or its factors), ``traces``
            (other per-stream estimator state), ``history`` (stored trajectory),
            ``plan`` (index plans built once), ``workspace`` (state, per-step
            buffers, accumulator). Measured from the arrays, not estimated:
            each buffer is counted once however many views of it the learner
            keeps, and buffers the cell owns (its parameters and structure)
            are not counted.
        """
        out = {"influence": 0, "traces": 0, "history": 0, "plan": 0, "workspace": 0}
        seen = {id(a) for a in _arrays((self.cell.params, vars(self.cell.structure), self.cell.kernel_args))}
        for part, names in self._memory_parts.items():
            for name in names:
                for arr in _arrays(getattr(self, name, None)):
                    if id(arr) not in seen:
                        seen.add(id(arr))
                        out[part] += arr.nbytes
        for value in vars(self).values():
            for arr in _arrays(value):
                if id(arr) not in seen:
                    seen.add(id(arr))
                    out["workspace"] += arr.nbytes
        return out

    @property
    def nbytes(self):
        """Total bytes held by the learner's arrays (see ``memory()``)."""
        return sum(self.memory().values())

    def __repr__(self):
        batch = "" if self.batch_size is None else f", batch_size={self.batch_size}"
        return f"{type(self).__name__}({type(self.cell).__name__}{batch})"


def _arrays(value):
    """The distinct memory buffers reachable from ``value``: each array is
    followed down its ``.base`` chain to the array that owns the memory."""
    if isinstance(value, np.ndarray):
        while isinstance(value.base, np.ndarray):
            value = value.base
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _arrays(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _arrays(v)


class _FormsDynamics:
    """Mixin for learners that multiply by D entry by entry: form its values each step.

    ``_dyn_plan`` lists which entries to form (all of them, or the subset a
    SnAp mask reads); the values are formed at ``forward`` time, from that
    step's weights.
    """

    def _init_dynamics(self, entries=None):
        st = self.cell.structure
        self._dyn_plan = st.dynamics_plan(entries)
        self._dyn = np.zeros((self._B, st.dynamics.nnz), self.cell.dtype)

    def _form_dynamics(self):
        self._kernel("learner", "form_dynamics")(self.cell.params, self._coef, self._dloc, *self._dyn_plan, self._dyn)


class RTRL(_FormsDynamics, Learner):
    """Real-Time Recurrent Learning with a dense influence matrix (the exact reference).

    Notes
    -----
    ``J_t = D_t J_{t-1} + I_t`` with ``J_0 = 0``; ``grad += c_t J_t``
    (Williams & Zipser 1989). ``O(nnz(D) P)`` time and ``O(S P)`` memory per
    stream and step: use it on small networks, as the ground truth.
    """

    exact = True
    _memory_parts = {"influence": ("_J", "_J_new"), "plan": ("_dyn_plan",)}

    def _allocate(self):
        st = self.cell.structure
        self._J = np.zeros((self._B, st.n_state, st.n_params), self.cell.dtype)
        self._J_new = np.zeros_like(self._J)
        self._init_dynamics()

    def _reset(self):
        self._J[:] = 0.0
        self._pending = False

    def _apply(self, c, accumulate):
        st = self.cell.structure
        self._kernel("learner", "rtrl_update")(st.dynamics.indptr, st.dynamics.indices, self._dyn, self._coef, self._presyn,
                    st.param_unit, st.param_gate, st.param_src, st.gate_touch, np.int64(st.n_hidden),
                    self._J, self._J_new, c, self._acc, accumulate)
        self._J, self._J_new = self._J_new, self._J
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
        else:
            self._kernel("learner", "dense_accumulate")(self._J, c, self._acc)

    def influence(self):
        """The influence matrix ``J_t``: (S, P), or (B, S, P) when batched (a copy)."""
        if self._pending:
            self._apply(self._no_credit, False)
        return self._output(self._J)


class TBPTT(Learner):
    """Truncated back-propagation through time over windows of ``truncation`` steps.

    Parameters
    ----------
    cell : Cell
    truncation : int >= 1
        Window length ``T``.
    batch_size : int, optional
    parallel : bool, optional
        Spread the streams of a batch over the cores (default: when the batch
        is large enough to gain from it).

    Notes
    -----
    Windows are consecutive blocks of ``T`` steps counted from ``reset()``. The
    credit of step ``t`` is back-propagated to the first step of its window
    and no further: the state entering the window is treated as a constant.
    This is Marschall et al.'s "efficient BPTT": with an update at each
    window's end it costs one forward and one backward step per step. The
    result does not depend on when ``grad()`` is called: a ``grad()`` in the
    middle of a window back-propagates the credits received so far and keeps
    the window, so later credits still reach its first step. With ``T`` at
    least the sequence length it equals BPTT.
    """

    exact = False
    _memory_parts = {"history": ("_coef_hist", "_dloc_hist", "_z_hist", "_c_hist", "_theta_hist", "_theta_idx")}

    def __init__(self, cell, truncation, batch_size=None, parallel=None):
        self.truncation = check_int(truncation, "truncation", minimum=1)
        super().__init__(cell, batch_size, parallel)

    def _capacity(self):
        return self.truncation

    def _allocate(self):
        self._alloc_window(self._capacity())
        st = self.cell.structure
        self._delta = np.zeros((self._B, st.n_state), self.cell.dtype)
        self._scratch = np.zeros_like(self._delta)
        self._gate_work = np.zeros((self._B, st.n_hidden, st.n_gates), self.cell.dtype)

    def _alloc_window(self, cap):
        st = self.cell.structure
        B, dt = self._B, self.cell.dtype
        self._coef_hist = np.zeros((cap, B, st.n_state, st.n_gates), dt)
        self._dloc_hist = np.zeros((cap, B, st.n_hidden, st.n_local, st.n_local), dt)
        self._z_hist = np.zeros((cap, B, st.n_presyn), dt)
        self._c_hist = np.zeros((cap, B, st.n_state), dt)
        # Copies of the recurrent weights, one per change inside the window
        # (one in all when weights change only between windows).
        self._theta_hist = np.zeros((cap + 1, st.n_rec_params), dt)
        self._theta_idx = np.zeros(cap, np.int64)

    def _reset(self):
        self._w = 0  # steps stored in the current window
        self._credit_end = 0  # 1 + last window step holding credit not yet back-propagated
        self._n_snap = 0  # recurrent-weight copies stored for the current window
        self._c_hist[:] = 0.0

    def _flush(self):
        if self._credit_end == 0:
            return
        self._kernel("learner", "bptt_window")(*self._structure_args, self._coef_hist, self._dloc_hist, self._z_hist,
                    self._c_hist, self._theta_hist, self._theta_idx, self._credit_end,
                    self._delta, self._scratch, self._gate_work, self._acc)
        self._c_hist[: self._credit_end] = 0.0
        self._credit_end = 0

    def _window_full(self):
        self._flush()
        self._w = 0
        # The new window starts with the weights in force now.
        if self._n_snap > 1:
            self._theta_hist[0] = self._theta_hist[self._n_snap - 1]
            self._n_snap = 1

    def _prepare_step(self):
        if self._w == self._coef_hist.shape[0]:
            self._window_full()

    def _step_buffers(self):
        w = self._w
        return self._coef_hist[w], self._dloc_hist[w], self._z_hist[w]

    def _after_step(self, coef, dloc, presyn):
        from ._learner_kernels import snapshot_if_changed

        self._n_snap = snapshot_if_changed(self.cell.params, self.cell.structure.n_rec_params,
                                           self._theta_hist, self._n_snap)
        self._theta_idx[self._w] = self._n_snap - 1
        self._c_hist[self._w] = 0.0
        self._w += 1

    def _backward(self, c):
        self._c_hist[self._w - 1] += c
        self._credit_end = self._w

    def _grad(self):
        self._flush()
        return super()._grad()

    def exact_for(self, n_steps):
        return self.truncation >= n_steps

    @property
    def name(self):
        return f"TBPTT({self.truncation})"


class BPTT(TBPTT):
    """Back-propagation through time over everything since ``reset()`` (exact reference).

    Notes
    -----
    ``delta_T = c_T``, ``delta_{t-1} = c_{t-1} + D_t^T delta_t``,
    ``grad = sum_t delta_t I_t`` (Werbos 1990). The trajectory's Jacobians are
    stored (memory grows with the sequence); each ``grad()`` back-propagates
    the credits received since the previous ``grad()`` all the way to the
    first step after ``reset()``, so it is exact whenever it is called.
    """

    exact = True

    def __init__(self, cell, batch_size=None, parallel=None):
        self.truncation = None
        Learner.__init__(self, cell, batch_size, parallel)

    def _capacity(self):
        return 16

    def _window_full(self):
        # Grow instead of truncating; amortised O(1) per step.
        names = ("_coef_hist", "_dloc_hist", "_z_hist", "_c_hist", "_theta_hist", "_theta_idx")
        old = [getattr(self, k) for k in names]
        w = self._w
        self._alloc_window(2 * w)
        for name, prev in zip(names, old):
            getattr(self, name)[:prev.shape[0]] = prev

    def exact_for(self, n_steps):
        return True

    @property
    def name(self):
        return "BPTT"


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
    from .patterns import Pattern

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


class UORO(Learner):
    """Unbiased Online Recurrent Optimization (Tallec & Ollivier 2017).

    Parameters
    ----------
    cell : Cell
    seed : int or numpy.random.Generator
        Seed of the random signs (one independent stream of draws per learner).
    batch_size : int, optional
    parallel : bool, optional
        Spread the streams of a batch over the cores (default: when the batch
        is large enough to gain from it).
    eps : float > 0
        Guard in the normalisers ``rho0``, ``rho1``.

    Notes
    -----
    Rank-one estimate ``J ~ u theta^T`` with a fresh sign vector ``nu`` each
    step: ``u' = rho0 D u + rho1 nu``, ``theta' = theta / rho0 + nu^T I / rho1``,
    ``grad += (c . u) theta``. ``E[u theta^T] = J`` because ``nu`` has zero
    mean and the normalisers are even in ``nu``. ``O(nnz(D) + P)`` per step.
    """

    stochastic = True
    _memory_parts = {"influence": ("_u", "_theta")}

    def __init__(self, cell, seed=0, batch_size=None, eps=1e-7, parallel=None):
        self.seed = check_seed(seed)
        self.eps = check_float(eps, "eps", 0.0, None, low_open=True)
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        super().__init__(cell, batch_size, parallel)

    def _allocate(self):
        st = self.cell.structure
        B, dt = self._B, self.cell.dtype
        self._u = np.zeros((B, st.n_state), dt)
        self._theta = np.zeros((B, st.n_params), dt)
        self._nu = np.zeros((B, st.n_state), dt)
        self._nu_I = np.zeros((B, st.n_params), dt)
        self._Du = np.zeros((B, st.n_state), dt)
        self._uniform = np.zeros((B, st.n_state), np.float64)
        self._gate_work = np.zeros((B, st.n_hidden, st.n_gates), dt)

    def _reset(self):
        self._u[:] = 0.0
        self._theta[:] = 0.0

    def _after_step(self, coef, dloc, presyn):
        self._rng.random(out=self._uniform)
        self._kernel("learner", "uoro_update")(self.cell.params, coef, dloc, presyn, *self._structure_args, self._uniform,
                    self._u, self._theta, self._nu, self._nu_I, self._Du, self._gate_work,
                    self.cell.dtype.type(self.eps))

    def _backward(self, c):
        self._kernel("learner", "uoro_accumulate")(self._u, self._theta, c, self._acc)
