"""The exact references: RTRL, BPTT and TBPTT (Marschall et al.'s "efficient BPTT")."""

from typing import NamedTuple

import numpy as np

from .._validate import check_int
from .base import DeferredUpdate, DynamicsValues, Learner, Part


class RTRLPlan(NamedTuple):
    """What RTRL's update reads about the cell: D's pattern and each parameter's unit, gate and source."""

    dyn_ptr: np.ndarray
    dyn_idx: np.ndarray
    unit: np.ndarray
    gate: np.ndarray
    src: np.ndarray
    touch: np.ndarray
    n: np.int64


#: RTRL forms ``D J`` as one BLAS product (D held dense) from this many states and this density of D's
#: pattern on, and walks D's stored entries below. perf/dense_rtrl.py measures the crossover: at n = 128,
#: density 0.2 to 0.25 on one core, about 0.12 with BLAS on two; the BLAS form is 9-14x faster on a dense D.
#: Either form gives the same numbers to rounding (tests/test_exact.py).
DENSE_MIN_STATES = 32
DENSE_MIN_DENSITY = 0.2


def blas_form(structure) -> bool:
    """Whether a product ``D M`` on this cell structure should be one BLAS call on D held dense (RTRL's
    ``D J``, the Kronecker learners' ``D B``) rather than a walk over D's stored entries."""
    S = structure.n_state
    return S >= DENSE_MIN_STATES and structure.dynamics.nnz >= DENSE_MIN_DENSITY * S * S


class RTRL(Learner, key="rtrl"):
    """Real-Time Recurrent Learning with a dense influence matrix (the exact reference).

    Notes
    -----
    ``J_t = D_t J_{t-1} + I_t`` with ``J_0 = 0``; ``grad += c_t J_t``
    (Williams & Zipser 1989). ``O(nnz(D) P)`` time and ``O(S P)`` memory per
    stream and step: use it on small networks, as the ground truth. On a
    dense or nearly dense ``D`` (``DENSE_MIN_DENSITY`` of its entries, from
    ``DENSE_MIN_STATES`` states on) ``D J`` is one BLAS matrix product.
    """

    structure = "full"
    unbiased = True
    exact = True
    _state_fields = {"influence": "_J", "dynamics": "_dynamics.values", "pending": "_deferred.pending"}
    _memory_parts = {"influence": ("_J", "_J_new"), "plan": ("_dynamics.plan", "_plan")}

    def _allocate(self):
        st = self.cell.structure
        self._J = np.zeros((self._B, st.n_state, st.n_params), self.cell.dtype)
        self._J_new = np.zeros_like(self._J)
        S = st.n_state
        self._D_dense = np.zeros((self._B, S, S) if blas_form(st) else (self._B, 0, 0), self.cell.dtype)
        self._dynamics = DynamicsValues(self)
        self._plan = RTRLPlan(st.dynamics.indptr, st.dynamics.indices, st.param_unit, st.param_gate, st.param_src,
                              st.gate_touch, np.int64(st.n_hidden))
        self._deferred = DeferredUpdate(self._apply, self._accumulate, self._no_credit)

    def _bind(self):
        from . import _exact_kernels as k

        super()._bind()
        self._update = self._pick(k.rtrl_update, k.rtrl_update_par)
        self._dense_accumulate = self._pick(k.dense_accumulate, k.dense_accumulate_par)

    def _reset(self):
        self._J[:] = 0.0
        self._deferred.reset()

    def _apply(self, c, accumulate):
        self._update(self._plan, self._dynamics.values, self._coef, self._presyn, self._J, self._J_new, c, self._acc,
                     accumulate, self._D_dense)
        self._J, self._J_new = self._J_new, self._J

    def _accumulate(self, c):
        self._dense_accumulate(self._J, c, self._acc)

    def _prepare_step(self):
        self._deferred.settle()

    def _after_step(self, coef, dloc, presyn):
        self._dynamics.form()
        self._deferred.step_taken()

    def _backward(self, c):
        self._deferred.credit(c)

    def _loop_state(self, steps):
        from ._exact_kernels import RTRLLoop

        self._deferred.settle()
        return RTRLLoop(self._plan, self._dynamics.plan, self._dynamics.values, self._coef, self._presyn, self._J,
                        self._J_new, self._D_dense, np.zeros(1, np.int64))

    def _loop_done(self, parts, steps, pending):
        super()._loop_done(parts, steps, pending)
        if parts.flip[0]:
            self._J, self._J_new = self._J_new, self._J
        self._deferred.pending = pending

    def influence(self):
        """The influence matrix ``J_t``: (S, P), or (B, S, P) when batched (a copy)."""
        self._deferred.settle()
        return self._output(self._J)


class WindowArrays(NamedTuple):
    """A stored window as the BPTT kernel reads it."""

    coef: np.ndarray  # (cap, B, S, G): each step's gate coefficients
    dloc: np.ndarray  # (cap, B, n, m, m): each step's unit-local D
    z: np.ndarray  # (cap, B, n_presyn): each step's presynaptic vector
    c: np.ndarray  # (cap, B, S): each step's credit not yet back-propagated
    theta: np.ndarray  # (cap + 1, n_rec): copies of the recurrent weights
    theta_idx: np.ndarray  # (cap,): the copy each step ran with


class Window(Part):
    """The steps of a BPTT window: their Jacobian factors, credits and weight copies.

    Shared by :class:`TBPTT` (windows of fixed length, back-propagated and
    emptied when full) and :class:`BPTT` (one window since ``reset()``, grown
    when full). Credits are back-propagated to the window's first step and no
    further; a step runs with the recurrent weights in force when it was
    taken, a copy of which is stored only when they changed.
    """

    def __init__(self, learner, capacity):
        from . import _exact_kernels as k

        self._learner = learner
        self._back_propagate = learner._pick(k.bptt_window, k.bptt_window_par)
        self._snapshot = k.snapshot_if_changed
        st = learner.cell.structure
        B, dt = learner._B, learner.cell.dtype
        self.allocate(capacity)
        self.delta = np.zeros((B, st.n_state), dt)
        self.scratch = np.zeros_like(self.delta)
        self.gate_work = np.zeros((B, st.n_hidden, st.n_gates), dt)

    def allocate(self, cap):
        st = self._learner.cell.structure
        B, dt = self._learner._B, self._learner.cell.dtype
        self.coef = np.zeros((cap, B, st.n_state, st.n_gates), dt)
        self.dloc = np.zeros((cap, B, st.n_hidden, st.n_local, st.n_local), dt)
        self.z = np.zeros((cap, B, st.n_presyn), dt)
        self.c = np.zeros((cap, B, st.n_state), dt)
        self.theta = np.zeros((cap + 1, st.n_rec_params), dt)
        self.theta_idx = np.zeros(cap, np.int64)

    @property
    def arrays(self):
        return WindowArrays(self.coef, self.dloc, self.z, self.c, self.theta, self.theta_idx)

    @property
    def capacity(self):
        return self.coef.shape[0]

    def reset(self):
        self.steps = 0  # steps stored in the current window
        self.credit_end = 0  # 1 + last window step holding credit not yet back-propagated
        self.n_copies = 0  # recurrent-weight copies stored for the current window
        self.c[:] = 0.0

    def flush(self):
        """Back-propagate the stored credits into the accumulator."""
        if self.credit_end == 0:
            return
        lrn = self._learner
        self._back_propagate(lrn.cell.structure.segments, self.arrays, self.credit_end, self.delta, self.scratch,
                             self.gate_work, lrn._acc)
        self.c[: self.credit_end] = 0.0
        self.credit_end = 0

    def restart(self):
        """Empty a full window (its credits back-propagated); the next one starts with the weights in force."""
        self.flush()
        self.steps = 0
        if self.n_copies > 1:
            self.theta[0] = self.theta[self.n_copies - 1]
            self.n_copies = 1

    def grow(self, capacity=None):
        """Double the window's room (or make it ``capacity``), keeping what it holds (amortised O(1) per step)."""
        old = self.arrays
        self.allocate(capacity or 2 * self.steps)
        for new, prev in zip(self.arrays, old):
            new[:prev.shape[0]] = prev

    def loop_state(self):
        """The window as the compiled loop runs it (``_exact_kernels.WindowLoop``)."""
        from ._exact_kernels import WindowLoop

        lrn = self._learner
        counts = np.array([self.steps, self.credit_end, self.n_copies], np.int64)
        return WindowLoop(lrn.cell.structure.segments, self.arrays, self.delta, self.scratch, self.gate_work, counts,
                          np.int64(lrn.cell.structure.n_rec_params), lrn._acc)

    def loop_done(self, parts):
        self.steps, self.credit_end, self.n_copies = (int(v) for v in parts.counts)

    @property
    def full(self):
        return self.steps == self.capacity

    def buffers(self):
        """Where the cell writes the factors of the step about to be taken."""
        w = self.steps
        return self.coef[w], self.dloc[w], self.z[w]

    def step_taken(self):
        lrn = self._learner
        self.n_copies = self._snapshot(lrn.cell.params, lrn.cell.structure.n_rec_params, self.theta,
                                       self.n_copies)
        self.theta_idx[self.steps] = self.n_copies - 1
        self.c[self.steps] = 0.0
        self.steps += 1

    def add_credit(self, c):
        self.c[self.steps - 1] += c
        self.credit_end = self.steps

    def problems(self, state):
        """Range checks of a saved window (kernels do not check bounds)."""
        cap = state["window_coef"].shape[0]
        out = []
        if cap < 1:
            out.append("the window has no room")
        for name in ("window_local_dynamics", "window_presynaptic", "window_credit", "window_weight_index"):
            if state[name].shape[0] != cap:
                out.append(f"{name} holds {state[name].shape[0]} steps, window_coef {cap}")
        if state["window_weights"].shape[0] != cap + 1:
            out.append(f"window_weights holds {state['window_weights'].shape[0]} copies, not {cap + 1}")
        w, end, n_copies = state["window_steps"], state["credit_end"], state["n_weight_copies"]
        if not 0 <= w <= cap:
            out.append(f"window_steps = {w} outside [0, {cap}]")
        if not 0 <= end <= w:
            out.append(f"credit_end = {end} outside [0, window_steps]")
        if not 0 <= n_copies <= cap + 1:
            out.append(f"n_weight_copies = {n_copies} outside [0, {cap + 1}]")
        idx = state["window_weight_index"][: max(0, min(w, cap))]
        if idx.size and (idx.min() < 0 or idx.max() >= n_copies):
            out.append(f"window_weight_index outside [0, n_weight_copies = {n_copies})")
        return out


#: The state of a window learner, by public name.
_WINDOW_FIELDS = {
    "window_coef": "_window.coef", "window_local_dynamics": "_window.dloc", "window_presynaptic": "_window.z",
    "window_credit": "_window.c", "window_weights": "_window.theta", "window_weight_index": "_window.theta_idx",
    "window_steps": "_window.steps", "credit_end": "_window.credit_end", "n_weight_copies": "_window.n_copies",
}
_WINDOW_HISTORY = tuple(f"_window.{k}" for k in WindowArrays._fields)


class TBPTT(Learner, key="tbptt"):
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

    facing = "future"
    structure = "full"
    spec_number = "truncation"
    spec_examples = (10,)
    _state_fields = _WINDOW_FIELDS
    _memory_parts = {"history": _WINDOW_HISTORY}

    def __init__(self, cell, truncation: int, batch_size: int = None, parallel: bool = None):
        self.truncation = check_int(truncation, "truncation", minimum=1)
        super().__init__(cell, batch_size, parallel)

    def _allocate(self):
        self._window = Window(self, self.truncation)

    def _reset(self):
        self._window.reset()

    def _prepare_step(self):
        if self._window.full:
            self._window.restart()

    def _step_buffers(self):
        return self._window.buffers()

    def _after_step(self, coef, dloc, presyn):
        self._window.step_taken()

    def _backward(self, c):
        self._window.add_credit(c)

    def _grad(self):
        self._window.flush()
        return super()._grad()

    def _state_problems(self, state):
        return super()._state_problems(state) + self._window.problems(state)

    def _loop_state(self, steps):
        return self._window.loop_state()

    def _loop_done(self, parts, steps, pending):
        super()._loop_done(parts, steps, pending)
        self._window.loop_done(parts)

    def exact_for(self, n_steps):
        return self.truncation >= n_steps

    @property
    def name(self):
        return f"TBPTT({self.truncation})"


class BPTT(Learner, key="bptt"):
    """Back-propagation through time over everything since ``reset()`` (exact reference).

    Notes
    -----
    ``delta_T = c_T``, ``delta_{t-1} = c_{t-1} + D_t^T delta_t``,
    ``grad = sum_t delta_t I_t`` (Werbos 1990). The trajectory's Jacobians are
    stored (memory grows with the sequence); each ``grad()`` back-propagates
    the credits received since the previous ``grad()`` all the way to the
    first step after ``reset()``, so it is exact whenever it is called.
    """

    facing = "future"
    structure = "full"
    unbiased = True
    exact = True
    _state_fields = _WINDOW_FIELDS
    _resizable = tuple(k for k in _WINDOW_FIELDS if k.startswith("window_") and k != "window_steps")
    _memory_parts = {"history": _WINDOW_HISTORY}
    #: Steps the window holds before it first grows.
    initial_capacity = 16

    def _allocate(self):
        self._window = Window(self, self.initial_capacity)

    def _reset(self):
        self._window.reset()

    def _prepare_step(self):
        if self._window.full:
            self._window.grow()

    def _step_buffers(self):
        return self._window.buffers()

    def _after_step(self, coef, dloc, presyn):
        self._window.step_taken()

    def _backward(self, c):
        self._window.add_credit(c)

    def _grad(self):
        self._window.flush()
        return super()._grad()

    def _state_problems(self, state):
        return super()._state_problems(state) + self._window.problems(state)

    def _loop_state(self, steps):
        # Room for every step ahead (the loop cannot grow the window), by doubling as the steps would.
        w = self._window
        need = w.steps + steps
        if need > w.capacity:
            cap = w.capacity
            while cap < need:
                cap *= 2
            w.grow(cap)
        return w.loop_state()

    def _loop_done(self, parts, steps, pending):
        super()._loop_done(parts, steps, pending)
        self._window.loop_done(parts)

    def exact_for(self, n_steps):
        return True

    @property
    def name(self):
        return "BPTT"
