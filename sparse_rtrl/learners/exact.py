"""The exact references: RTRL, BPTT and TBPTT."""

import numpy as np

from .._validate import check_float, check_int, check_real_array, check_seed
from ..cells import Cell
from .base import Learner, _FormsDynamics, _load_kernel, PARALLEL_MIN_WORK, SPLIT_MIN_WORK


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
        from ._exact_kernels import snapshot_if_changed

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
