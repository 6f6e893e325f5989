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

from .._validate import check_float, check_int, check_real_array, check_seed
from ..cells import Cell


#: With ``parallel=None`` a batched learner spreads its streams over the cores
#: once ``batch_size * n_params`` reaches this; below it, starting the threads
#: costs more than they save.
PARALLEL_MIN_WORK = 1 << 15

#: With ``parallel=None`` SnAp splits one stream's influence update over the
#: cores once its influence holds this many entries (about 0.1 ms of work).
SPLIT_MIN_WORK = 1 << 17

_KERNEL_MODULES = {
    "learner": ("._base_kernels", "._exact_kernels", "._uoro_kernels"), "snap": ("._snap_kernels",),
    "kronecker": ("._kronecker_kernels",), "local": ("._local_kernels",), "future": ("._future_kernels",),
}
_KERNELS = {}


def _load_kernel(module, name):
    fn = _KERNELS.get((module, name))
    if fn is None:
        for path in _KERNEL_MODULES[module]:
            fn = getattr(importlib.import_module(path, __package__), name, None)
            if fn is not None:
                break
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
