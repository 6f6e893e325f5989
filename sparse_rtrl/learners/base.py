"""What every learner shares: the life cycle, batching, validation, the taxonomy, and two helpers.

Every learner has the same life cycle::

    learner.reset()          # state := cell.init_state(); influence, traces, accumulator := 0
    s = learner.forward(x)   # one step with input x; returns the new state
    learner.backward(c)      # c = dL_t/ds_t for the step just taken
    g = learner.grad()       # accumulated dL/dtheta since the last grad()/reset(); clears it
    learner.end_sequence()   # a sequence ends: emit what the learner still holds back (F-BPTT)

With ``batch_size=B`` the learner runs ``B`` independent streams: ``x`` is
``(B, n_in)``, states and credits ``(B, S)``, and ``grad()`` sums over the
batch. Learners read the cell's current parameters at every step, so an
optimiser may change ``cell.params`` between steps (online learning).

Learners that keep an influence matrix (or traces) defer its update from
``forward`` to ``backward`` so that update and gradient accumulation share one
pass over memory (:class:`DeferredUpdate`); a ``forward`` with no ``backward``
in between applies it first. The results do not depend on this.
"""

from typing import ClassVar

import numpy as np

from .._validate import check_int, check_real_array
from ..cells import Cell
from ..registry import Registered
from ..state import Stateful

#: With ``parallel=None`` a batched learner spreads its streams over the cores
#: once ``batch_size * n_params`` reaches this; below it, starting the threads
#: costs more than they save.
PARALLEL_MIN_WORK = 1 << 15

#: With ``parallel=None`` SnAp splits one stream's influence update over the
#: cores once its influence holds this many entries (about 0.1 ms of work).
SPLIT_MIN_WORK = 1 << 17

#: Values of ``Learner.facing`` and ``Learner.structure`` (Marschall, Cho & Savin 2020's axes).
FACINGS = ("past", "future", "none")
STRUCTURES = ("full", "sparse", "rank one", "Kronecker", "diagonal", "synthetic", "none")


class Learner(Stateful, Registered):
    """Base class: life cycle, batching, validation and the cell's step.

    Parameters
    ----------
    cell : Cell
    batch_size : int, optional
        ``B`` independent streams; None (the default) is the unbatched form.
    parallel : bool, optional
        Spread the streams of a batch over the cores (``prange``). Default:
        when there is enough work to gain from it. Results are identical
        either way.

    Attributes
    ----------
    cell : Cell
    batch_size : int or None
    parallel : bool
    n_steps : int
        Steps taken since the last ``reset()``.

    Notes
    -----
    The taxonomy (class attributes, read by the registry, ``compare``, the
    perf and reproduction scripts and the tests): ``facing`` (``"past"``:
    carries the influence forward; ``"future"``: carries credit backwards),
    ``structure`` (how the influence or credit is represented: ``"full"``,
    ``"sparse"``, ``"rank one"``, ``"Kronecker"``, ``"diagonal"``,
    ``"synthetic"``), ``stochastic`` (draws random numbers each step),
    ``unbiased`` (the mean of ``grad()`` over seeds is the exact gradient),
    ``learned`` (fits a model online: KeRNL, DNI), ``cells`` (the cell keys it
    runs on; None for any cell, see :meth:`supports`). A numbered learner
    names the constructor argument its spec's number sets (``spec_number``,
    ``"n"`` for ``snap2``) and the numbers that represent it in comparisons
    (``spec_examples``).

    Writing a learner. Subclass with a key (``class MyLearner(Learner,
    key="mine")``: it then appears in the registry, the command line,
    ``compare`` and the perf lists), declare the state it keeps in
    ``_state_fields`` (public name -> attribute), and define the hooks below.
    ``Learner.__init__`` runs, in this order: it checks the cell
    (:meth:`supports`) and ``batch_size``; decides ``parallel``
    (``_default_parallel``, which may read the subclass's settings); allocates
    the buffers every learner has (state, the cell's per-step factors, the
    gradient accumulator); calls ``_allocate()`` (the subclass's own arrays)
    and ``_bind()`` (its kernels, serial or parallel); and finally
    ``reset()``. So a subclass checks and stores its own settings first, then
    calls ``super().__init__``.
    """

    _family = "learner"
    _built_on = ("cell",)
    _not_settings = ("parallel",)
    _state_fields = {"state": "_state", "immediate_coef": "_coef", "local_dynamics": "_dloc",
                     "presynaptic": "_presyn", "accumulator": "_acc", "n_steps": "n_steps"}

    # -- taxonomy -------------------------------------------------------------------------
    facing: ClassVar[str] = "past"
    structure: ClassVar[str] = "full"
    stochastic: ClassVar[bool] = False
    unbiased: ClassVar[bool] = False
    learned: ClassVar[bool] = False
    cells: ClassVar[tuple] = None
    spec_number: ClassVar[str] = None
    spec_examples: ClassVar[tuple] = ()
    #: ``grad()`` is the exact gradient (see ``exact_for``).
    exact = False
    #: Whether ``forward`` needs the cell's Jacobian factors (``coef``, ``dloc``, ``presyn``).
    needs_jacobians: ClassVar[bool] = True
    #: Whether the compiled loop runs this learner when it was built with ``parallel=True`` (on one core).
    _loop_spreads: ClassVar[bool] = False

    #: Which attributes hold what, for ``memory()`` (dotted paths reach into helpers); the rest is workspace.
    _memory_parts: ClassVar[dict] = {}

    @classmethod
    def supports(cls, cell):
        """None if this learner runs on ``cell``, else the reason it does not (a sentence)."""
        if cls.cells is None or getattr(cell, "key", None) in cls.cells:
            return None
        return (f"{cls.__name__} runs on {' and '.join(cls.cells)} cells, not on a {type(cell).__name__}")

    def __init__(self, cell: Cell, batch_size: int = None, parallel: bool = None):
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a sparse_rtrl Cell, got {type(cell).__name__}")
        reason = self.supports(cell)
        if reason is not None:
            raise TypeError(reason)
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", minimum=1)
        if parallel is not None and not isinstance(parallel, (bool, np.bool_)):
            raise TypeError(f"parallel must be None, True or False, got {parallel!r}")
        self.cell = cell
        self.batch_size = batch_size
        if parallel is None:
            parallel = self._default_parallel(batch_size or 1)
        self._parallel = bool(parallel)
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
        self.n_steps = 0
        self._allocate()
        self._bind()
        self.reset()

    @property
    def parallel(self) -> bool:
        """Whether the streams of a batch (or one SnAp stream's groups) run on all cores; fixed at construction."""
        return self._parallel

    def _default_parallel(self, B):
        """Whether ``parallel=None`` means all cores: a batch with enough work."""
        return B >= 2 and B * self.cell.n_params >= PARALLEL_MIN_WORK

    def _pick(self, serial, parallel):
        """The driver of a batched kernel this learner runs: ``parallel`` when it spreads its streams."""
        return parallel if self._parallel else serial

    # -- hooks for subclasses ---------------------------------------------------
    def _allocate(self):
        """Allocate the learner's own state (called once, before ``_bind``)."""

    def _bind(self):
        """Bind the kernels this learner calls (serial or parallel drivers); called once."""
        from . import _base_kernels as k

        self._take_grad = self._pick(k.take_grad, k.take_grad_par)

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
        raise NotImplementedError(f"{type(self).__name__} defines no _backward")

    def _grad(self):
        """A new array: the accumulated gradient in parameter order, summed over
        the batch; the accumulator is zeroed."""
        out = np.empty(self.cell.n_params, dtype=self.cell.dtype)
        self._take_grad(self._acc, out)
        return out

    def _zero_grad(self):
        self._acc[:] = 0.0

    # -- public life cycle ------------------------------------------------------
    def reset(self) -> None:
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

    def forward(self, x) -> np.ndarray:
        """Advance one step with input ``x``; return the new state (a copy).

        Parameters
        ----------
        x : array_like, shape (n_in,) or (B, n_in) when batched
        """
        x = self._check_batch(x, "x", self.cell.n_in)
        self._prepare_step()
        coef, dloc, presyn = self._step_buffers()
        self.cell.advance(self._state, x, self._next, coef, dloc, presyn, self._parallel, self.needs_jacobians)
        self._state, self._next = self._next, self._state
        self.n_steps += 1
        self._after_step(coef, dloc, presyn)
        return self._output(self._state)

    def backward(self, c) -> None:
        """Add the credit ``c = dL_t/ds_t`` of the step just taken.

        Parameters
        ----------
        c : array_like, shape (S,) or (B, S) when batched
        """
        if self.n_steps == 0:
            raise RuntimeError("backward() needs a step: call forward() first (and after reset())")
        c = self._check_batch(c, "c", self.cell.n_state)
        self._backward(c)

    def grad(self) -> np.ndarray:
        """The accumulated gradient estimate, shape (P,); clears the accumulator."""
        return self._grad()

    def end_sequence(self) -> bool:
        """The sequence ends here (an episode's end): emit what the learner still holds back.

        Returns True when that may have added to the accumulator, so that a
        caller who applies gradients every step knows there is something left
        to apply. Most learners hold nothing back (False); F-BPTT emits its
        window. The state is not reset: call ``reset()`` for a new sequence.
        """
        return False

    @property
    def state(self) -> np.ndarray:
        """The current state (a copy): (S,), or (B, S) when batched."""
        return self._output(self._state)

    def exact_for(self, n_steps: int) -> bool:
        """Whether ``grad()`` is exact for sequences of ``n_steps`` with frozen weights."""
        return self.exact

    @property
    def name(self) -> str:
        """Short label for tables and plots, e.g. ``"SnAp-2"`` or ``"TBPTT(8)"``."""
        return type(self).__name__

    @property
    def spec(self) -> str:
        """The registry spec that builds a learner like this one, e.g. ``"snap2"``."""
        from ..registry import learner_spec

        return learner_spec(self)

    # -- the compiled online loop (``training.fused``; hooks in ``_loop_kernels``) ---------------
    def _loop_state(self, steps):
        """The NamedTuple of arrays the compiled loop runs this learner on, for at most ``steps`` steps
        without a reset (its class registered with ``_loop_kernels.loop_hooks``), after settling anything
        pending; None: it runs step by step."""
        return None

    def _loop_obstacle(self):
        """None when the compiled loop can run this learner, else why not (a sentence)."""
        if type(self)._loop_state is Learner._loop_state:
            return f"{self.name} has no compiled loop: it runs step by step"
        if self._parallel and not self._loop_spreads:
            return (f"{self.name} spreads its streams over the cores (parallel=True): it runs step by step, "
                    f"where the work of a step dwarfs the calls")
        return None

    def _loop_draws(self):
        """The random numbers one step draws, as ``(generator method, per stream, dtype)``, drawn from
        ``self._rng`` in the order the step-by-step path draws them; None for a deterministic learner."""
        return None

    def _loop_done(self, parts, steps, pending):
        """After the compiled loop ran ``steps`` steps on ``parts``: write back what Python keeps (the step
        count; ``pending``: the last step's update still waits for its credit, the loop stopped on a bad loss)."""
        self.n_steps += steps

    def memory(self) -> dict:
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
        from ..state import _get

        out = {"influence": 0, "traces": 0, "history": 0, "plan": 0, "workspace": 0}
        cell = self.cell
        seen = {id(a) for a in _arrays((cell.params, vars(cell.structure), cell.kernel_args))}
        parts = {}
        for klass in reversed(type(self).__mro__):
            parts.update(klass.__dict__.get("_memory_parts", {}))
        for part, paths in parts.items():
            for path in paths:
                try:
                    value = _get(self, path)
                except AttributeError:
                    continue
                for arr in _arrays(value):
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
    def nbytes(self) -> int:
        """Total bytes held by the learner's arrays (see ``memory()``)."""
        return sum(self.memory().values())

    def _identity(self):
        from ..registry import class_id

        return {"config": self._compared_config(),
                "cell": {"class": class_id(type(self.cell)), **self.cell._identity()}}

    def _state_problems(self, state):
        return [f"{name} = {state[name]} is negative" for name in ("n_steps",) if state[name] < 0]


class Part:
    """Base of the helper objects a learner is composed of (their arrays count in ``memory()``)."""


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
    elif isinstance(value, Part):
        for v in vars(value).values():
            yield from _arrays(v)


class DeferredUpdate(Part):
    """An update of the influence (or traces) that waits for its step's credit.

    ``forward`` marks the step taken (``step_taken``); ``backward`` then runs
    the update and the gradient accumulation in one pass (``apply(c, True)``).
    A second credit for the same step only accumulates (``accumulate(c)``), and
    anything that needs the updated influence first settles it
    (``apply(no_credit, False)``). RTRL, SnAp, e-prop, RFLO and KeRNL share it.
    """

    def __init__(self, apply, accumulate, no_credit):
        self._apply = apply
        self._accumulate = accumulate
        self._no_credit = no_credit
        self.pending = False

    def reset(self):
        self.pending = False

    def step_taken(self):
        self.pending = True

    def settle(self):
        """Apply a pending update without credit (before the next step, or to read the influence)."""
        if self.pending:
            self.pending = False
            self._apply(self._no_credit, False)

    def credit(self, c):
        """The step's credit: the pending update with accumulation, or accumulation alone."""
        if self.pending:
            self.pending = False
            self._apply(c, True)
        else:
            self._accumulate(c)


class DynamicsValues(Part):
    """The values of ``D_t`` on its pattern (or the part of it a learner reads), formed each step.

    ``entries`` lists which entries of the pattern to form (default all); the
    values are formed from that step's factors and weights.
    """

    def __init__(self, learner, entries=None):
        from . import _base_kernels as k

        st = learner.cell.structure
        self.plan = st.dynamics_plan(entries)
        self.values = np.zeros((learner._B, st.dynamics.nnz), learner.cell.dtype)
        self._form = learner._pick(k.form_dynamics, k.form_dynamics_par)
        self._learner = learner

    def form(self):
        lrn = self._learner
        self._form(lrn.cell.params, lrn._coef, lrn._dloc, self.plan, self.values)
