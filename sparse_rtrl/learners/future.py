"""Future-facing learners: F-BPTT and synthetic gradients (DNI, DNIb).

Past-facing learners (RTRL, SnAp, UORO) carry the influence of the
parameters on the state forward in time. Future-facing ones carry credit
backwards: the gradient of a step is ``delta_t^T I_t`` where ``delta_t`` is
the credit of step ``t``'s state for the losses of ``t`` and later
(Marschall, Cho & Savin 2020, "A unified framework of online learning
algorithms for training recurrent neural networks", JMLR 21). Online, the
later losses are not known yet: F-BPTT waits for ``T`` of them (its
gradients come ``T`` steps late), DNI predicts them with a learned linear
model (Jaderberg et al. 2017).
"""

from typing import NamedTuple

import numpy as np

from .._validate import check_float, check_int, check_real_array
from .base import Learner


class FutureWindow(NamedTuple):
    """F-BPTT's ring of stored steps, as its kernel reads it."""

    coef: np.ndarray  # (T, B, S, G)
    dloc: np.ndarray  # (T, B, n, m, m)
    z: np.ndarray  # (T, B, n_presyn)
    delta: np.ndarray  # (T, B, S): each stored step's credit so far
    theta: np.ndarray  # (T, n_rec): a ring of recurrent-weight copies
    theta_idx: np.ndarray  # (T,): the copy each stored step ran with


class FutureBPTT(Learner, key="fbptt"):
    """Future-facing truncated BPTT, F-BPTT(T) (Marschall, Cho & Savin 2020).

    Parameters
    ----------
    cell : Cell
    truncation : int >= 1
        ``T``: how many steps' credits (the step's own and ``T - 1`` later
        ones) a step collects before its gradient is emitted.
    batch_size : int, optional
    parallel : bool, optional
        Spread the streams of a batch over the cores (default: when the batch
        is large enough to gain from it). Results are identical either way.

    Notes
    -----
    Every step ``t`` back-propagates its credit ``c_t`` into the stored
    window of the last ``T`` steps: each stored step ``tau`` receives
    ``(D_t ... D_{tau+1})^T c_t``, so that after ``T`` steps

    ``delta_tau = sum_{t = tau}^{tau + T - 1} (D_t ... D_{tau+1})^T c_t``

    and its gradient ``delta_tau^T I_tau`` is added to the accumulator. Each
    ``D_t`` and ``I_t`` is that of step ``t``: its factors and, when the
    weights change between steps, its own copy of the recurrent weights (a
    copy is stored only when they changed). ``O(T (nnz(D) + S) + P)`` time
    and ``O(T (nnz(D) + S))`` memory per stream and step, like TBPTT(T).

    Unlike TBPTT, whose windows are consecutive blocks, every step here sees
    exactly ``T`` steps of future credit (a sliding window). Summed over a
    sequence, the result is ``sum_t c_t J_t^{(T)}`` with ``J^{(T)}`` the
    influence of the last ``T`` steps only; with ``T`` at least the sequence
    length and ``flush()`` at its end, it is the BPTT gradient.

    When a gradient is emitted. Steps are counted from ``reset()``: step
    ``k`` is the ``k``-th ``forward()``. A step's credit is the sum of the
    ``backward()`` calls made after its ``forward()`` (none: zero credit) and
    is complete at the next ``forward()``. That ``forward()`` (of step
    ``k + 1``), before advancing the state, back-propagates the credit of
    step ``k`` into the window, which completes step ``k - T + 1``: its
    gradient is emitted then. So the gradient of step ``k`` reaches the
    accumulator during ``forward()`` of step ``k + T``, and ``grad()``
    returns what was emitted since the last ``grad()`` or ``reset()``: it
    neither waits for nor completes anything. ``flush()`` ends the sequence
    early: it treats the current step's credit as complete, back-propagates
    it, and emits every stored step with the credit it has, oldest first.
    ``reset()`` discards the window unemitted. (Marschall et al.'s code
    emits a step in the same call that brings its last credit; here that
    credit may still grow until the next ``forward()``.)
    """

    facing = "future"
    structure = "full"
    spec_number = "truncation"
    spec_examples = (10,)
    _state_fields = {"window_coef": "_coef_hist", "window_local_dynamics": "_dloc_hist",
                     "window_presynaptic": "_z_hist", "window_credit": "_delta_hist", "window_weights": "_theta_hist",
                     "window_weight_index": "_theta_idx", "newest": "_newest", "count": "_count",
                     "credit_pending": "_credit", "weight_copy": "_copy", "flushed": "_flushed"}
    _memory_parts = {"history": ("_coef_hist", "_dloc_hist", "_z_hist", "_delta_hist", "_theta_hist", "_theta_idx")}

    def __init__(self, cell, truncation: int, batch_size: int = None, parallel: bool = None):
        self.truncation = check_int(truncation, "truncation", minimum=1)
        super().__init__(cell, batch_size, parallel)

    def _allocate(self):
        st = self.cell.structure
        T, B, dt = self.truncation, self._B, self.cell.dtype
        self._coef_hist = np.zeros((T, B, st.n_state, st.n_gates), dt)
        self._dloc_hist = np.zeros((T, B, st.n_hidden, st.n_local, st.n_local), dt)
        self._z_hist = np.zeros((T, B, st.n_presyn), dt)
        # delta of each stored step; the newest holds its own credit until the
        # next forward() back-propagates it.
        self._delta_hist = np.zeros((T, B, st.n_state), dt)
        # A ring of recurrent-weight copies: at most one per stored step, and
        # one in all while the weights do not change.
        self._theta_hist = np.zeros((T, st.n_rec_params), dt)
        self._theta_idx = np.zeros(T, np.int64)
        self._v = np.zeros((B, st.n_state), dt)
        self._scratch = np.zeros((B, st.n_state), dt)
        self._gate_work = np.zeros((B, st.n_hidden, st.n_gates), dt)
        self._window = FutureWindow(self._coef_hist, self._dloc_hist, self._z_hist, self._delta_hist,
                                    self._theta_hist, self._theta_idx)

    def _bind(self):
        from . import _future_kernels as k

        super()._bind()
        self._step_kernel = self._pick(k.fbptt_step, k.fbptt_step_par)
        self._keep_recurrent = k.keep_recurrent

    def _reset(self):
        self._delta_hist[:] = 0.0
        self._newest = self.truncation - 1  # slot of the newest stored step
        self._count = 0  # steps stored
        self._credit = False  # the newest step holds credit not yet back-propagated
        self._copy = -1  # the newest weight copy (-1: none)
        self._flushed = False

    def _run(self, propagate, n_emit):
        self._step_kernel(self.cell.structure.segments, self._window, np.int64(self._newest), np.int64(self._count),
                          propagate, np.int64(n_emit), self._v, self._scratch, self._gate_work, self._acc)
        self._credit = False

    def _prepare_step(self):
        full = self._count == self.truncation
        if self._credit or full:
            self._run(self._credit, 1 if full else 0)
        if full:
            self._count -= 1
        self._newest = (self._newest + 1) % self.truncation
        self._flushed = False

    def _step_buffers(self):
        w = self._newest
        return self._coef_hist[w], self._dloc_hist[w], self._z_hist[w]

    def _after_step(self, coef, dloc, presyn):
        self._copy = self._keep_recurrent(self.cell.params, self.cell.structure.n_rec_params, self._theta_hist,
                                          np.int64(self._copy))
        self._theta_idx[self._newest] = self._copy
        self._count += 1

    def _backward(self, c):
        if self._flushed:
            raise RuntimeError("backward() after flush() needs a forward() first: the flushed steps are emitted")
        self._delta_hist[self._newest] += c
        self._credit = True

    def flush(self):
        """End the sequence: emit every stored step with the credit it has.

        The current step's credit counts as complete: it is back-propagated
        through the window first. Steps are emitted oldest first; the window
        is then empty, so credits of later steps do not reach them. A
        ``backward()`` must follow a new ``forward()``.
        """
        if self._count:
            self._run(self._credit, self._count)
        self._count = 0
        self._credit = False
        self._flushed = True

    def end_sequence(self):
        """Flush: the stored steps' gradients enter the accumulator (see :meth:`flush`)."""
        self.flush()
        return True

    def _loop_state(self, steps):
        from ._future_kernels import FutureLoop

        counts = np.array([self._newest, self._count, self._credit, self._copy], np.int64)
        return FutureLoop(self.cell.structure.segments, self._window, self._v, self._scratch, self._gate_work,
                          counts, np.int64(self.cell.structure.n_rec_params), self._acc)

    def _loop_done(self, parts, steps, pending):
        super()._loop_done(parts, steps, pending)
        newest, count, credit, copy = (int(v) for v in parts.counts)
        self._newest, self._count, self._credit, self._copy = newest, count, bool(credit), copy
        if steps:
            self._flushed = False  # every step's preparation clears it

    @property
    def pending_steps(self):
        """Steps stored whose gradient has not been emitted yet (at most ``T``)."""
        return self._count

    def _state_problems(self, state):
        T = self.truncation
        out = super()._state_problems(state)
        if not 0 <= state["newest"] < T:
            out.append(f"newest = {state['newest']} outside [0, {T})")
        if not 0 <= state["count"] <= T:
            out.append(f"count = {state['count']} outside [0, {T}]")
        if not -1 <= state["weight_copy"] < T:
            out.append(f"weight_copy = {state['weight_copy']} outside [-1, {T})")
        idx = state["window_weight_index"]
        if idx.size and (idx.min() < 0 or idx.max() >= T):
            out.append(f"window_weight_index outside [0, {T})")
        return out

    def exact_for(self, n_steps):
        # grad() alone never holds the last T steps' gradients; flush() does.
        return False

    @property
    def name(self):
        return f"F-BPTT({self.truncation})"


JACOBIANS = ("exact", "learned")


class DNI(Learner, key="dni"):
    """Synthetic gradients with a linear credit model (DNI; Marschall et al.'s online form).

    Parameters
    ----------
    cell : Cell
    lr : float >= 0
        SGD rate of the synthetic-credit model ``A`` on its bootstrap loss.
    fix_interval : int >= 1
        The frozen copy ``A'`` used in the targets is refreshed to ``A``
        after every ``fix_interval``-th update of ``A``.
    jacobian : {"exact", "learned"}
        ``D`` in the bootstrapped target: the cell's exact ``D_t``, or a
        learned linear estimate ``Jhat`` (DNIb, see :class:`DNIb`).
    jacobian_lr : float >= 0
        SGD rate of ``Jhat`` (used only with ``jacobian="learned"``).
    batch_size : int, optional
    parallel : bool, optional
        Spread the streams of a batch (and the rows of the shared models)
        over the cores. Results are identical either way.

    Attributes
    ----------
    A, A_frozen : ndarray, read-only views, shape (S, S + n_in + 1)
        The synthetic-credit model and its frozen copy.
    jacobian_estimate : ndarray, read-only view (S, S), or None
        ``Jhat`` with ``jacobian="learned"``.
    n_updates : int
        Updates of ``A`` since construction or ``reset_models()``.

    Notes
    -----
    A linear model predicts the credit of future losses from the state and
    its context: ``chat_t = A f_t``, ``f_t = [s_t; x_t; 1]``. The gradient
    of step ``t`` is ``(c_t + chat_t)^T I_t``. ``A`` is trained online by SGD
    on ``0.5 |A f_t - target_t|^2`` with the bootstrapped target

    ``target_t = D_{t+1}^T (c_{t+1} + A' f_{t+1})``,

    available one step later; ``A'`` is a frozen copy of ``A`` (as a target
    network), refreshed every ``fix_interval`` updates. With a batch, ``A``
    (and ``Jhat``) is one model shared by the streams, its gradient summed
    over them: a batch is not the sum of independent single-stream learners.

    Decisions, against ALGORITHMS.md's wording:

    - ``chat_t`` is the credit of the losses *after* step ``t`` only, and the
      gradient adds the known ``c_t``. ALGORITHMS.md's "target
      ``c_t + chat_{t+1} D_{t+1}``, gradient ``(c_t + chat_t) I_t``" mixes this
      with the other convention, that of Marschall et al.'s code, where the
      model predicts the total credit including ``c_t`` (target
      ``c_t + D_{t+1}^T chat'_{t+1}``, gradient ``chat_t^T I_t``). The two
      differ by a change of variable (total = ``c_t`` + future), but the
      total asks a linear model to reproduce ``c_t`` itself, which is linear
      in the features only when they hold the label (their ``[a; y*; 1]``).
      Ours hold no label, so ``c_t`` is kept exact and the model is asked
      only for the future. Its fixed point on a linear network is the closed
      form ``M = D^T (Q + M) D`` (tested).
    - The context is the input ``x_t`` where ALGORITHMS.md writes the label
      ``y*_t``: the learner's API carries no labels.
    - ``A`` and ``Jhat`` start at zero (Marschall et al.'s code draws ``A`` at
      random and starts ``Jhat`` at ``W_rec``). With ``A = 0`` the first
      gradients are those of the current credit alone, ``c_t^T I_t`` (what
      F-BPTT(1) gives), instead of carrying the bias of a random model; both
      models are linear regressions, so there is no symmetry to break; and a
      zero ``Jhat`` is defined for every cell, where gated cells have no
      single ``W_rec``. (Jaderberg et al. also start the last layer of their
      synthetic-gradient models at zero: unverified.) Hence no seed: the
      learner draws no random numbers.
    - ``reset()`` starts a new sequence (state, stored step, accumulator) and
      keeps ``A``, ``A'``, ``Jhat`` and the update count: they are learned
      across sequences, like the cell's weights. ``reset_models()`` returns
      them to zero, ``set_model()`` loads given ones.

    Order of operations. ``forward()`` of step ``t + 1`` first completes step
    ``t`` (its credit ``c_t`` is the sum of its ``backward()`` calls): it
    forms the target of step ``t - 1`` (when the sequence has one) with
    ``D_t`` from step ``t``'s factors and recurrent weights, and updates
    ``A`` (and maybe ``A'``). Then it advances the state, forms
    ``chat_{t+1} = A f_{t+1}`` with the updated ``A`` and, with
    ``jacobian="learned"``, updates ``Jhat`` on the pair
    ``(s_t, s_{t+1})`` (``Jhat -= jacobian_lr (Jhat s_t - s_{t+1}) s_t^T``;
    from the second step of a sequence on). The gradient of a step is in
    the accumulator once its ``backward()`` has been called: the first call
    adds ``(c + chat_t)^T I_t``, later ones ``c^T I_t``; a step without
    ``backward()`` adds ``chat_t^T I_t`` at the next ``forward()`` or
    ``grad()``, whichever comes first. The last step of a sequence has no
    target: ``reset()`` forms none.

    Cost per stream and step: ``O(S (S + n_in) + nnz(D) + P)`` (plus
    ``O(S^2)`` for ``Jhat``); the models are dense, ``S x (S + n_in + 1)``
    and ``S x S``.
    """

    facing = "future"
    structure = "synthetic"
    learned = True
    _state_fields = {"model": "_A", "model_frozen": "_A_frozen", "jacobian_model": "_J_hat", "features": "_feat",
                     "features_previous": "_feat_prev", "synthetic_credit": "_chat", "credit": "_credit",
                     "model_error": "_err", "step_weights": "_theta_step", "model_updates": "_n_updates",
                     "has_loss": "_has_loss", "chat_pending": "_pending_chat"}
    _memory_parts = {
        "traces": ("_A", "_A_frozen", "_J_hat", "_chat", "_credit"),
        "history": ("_feat", "_feat_prev", "_theta_step"),
    }

    def __init__(self, cell, lr: float = 1e-2, fix_interval: int = 5, jacobian: str = "exact",
                 jacobian_lr: float = 1e-2, batch_size: int = None, parallel: bool = None):
        self.lr = check_float(lr, "lr", 0.0, None)
        self.fix_interval = check_int(fix_interval, "fix_interval", minimum=1)
        if not isinstance(jacobian, str) or jacobian not in JACOBIANS:
            raise ValueError(f"jacobian must be one of {JACOBIANS}, got {jacobian!r}")
        self.jacobian = jacobian
        self.jacobian_lr = check_float(jacobian_lr, "jacobian_lr", 0.0, None)
        super().__init__(cell, batch_size, parallel)

    @property
    def _learned(self):
        return self.jacobian == "learned"

    def _allocate(self):
        st = self.cell.structure
        B, dt, S = self._B, self.cell.dtype, st.n_state
        F = S + st.n_in + 1
        self._A = np.zeros((S, F), dt)
        self._A_frozen = np.zeros((S, F), dt)
        self._J_hat = np.zeros((S, S) if self._learned else (0, 0), dt)
        self._feat = np.zeros((B, F), dt)
        self._feat_prev = np.zeros((B, F), dt)
        self._chat = np.zeros((B, S), dt)
        self._credit = np.zeros((B, S), dt)
        self._err = np.zeros((B, S), dt)
        self._jac_err = np.zeros((B, S), dt)
        self._v = np.zeros((B, S), dt)
        self._theta_step = np.zeros(st.n_rec_params if not self._learned else 0, dt)
        self._gate_work = np.zeros((B, st.n_hidden, st.n_gates), dt)
        self._lr = dt.type(self.lr)
        self._jacobian_lr = dt.type(self.jacobian_lr)
        self._n_updates = 0
        self._has_loss = False

    def _bind(self):
        from . import _future_kernels as k

        super()._bind()
        self._emit_kernel = self._pick(k.dni_emit, k.dni_emit_par)
        self._train_kernel = self._pick(k.dni_train, k.dni_train_par)
        self._features = self._pick(k.dni_features, k.dni_features_par)
        self._train_jacobian = self._pick(k.jacobian_train, k.jacobian_train_par)

    def _reset(self):
        self._credit[:] = 0.0
        self._pending_chat = False  # chat_t^T I_t not yet emitted

    def _emit(self, c, with_chat):
        self._emit_kernel(c, self._chat, with_chat, self._coef, self._presyn, self.cell.structure.segments, self._v,
                          self._gate_work, self._acc)
        if with_chat:
            self._pending_chat = False

    def _prepare_step(self):
        if self._pending_chat:
            self._emit(self._no_credit, True)
        if self.n_steps >= 2:
            self._train()
        self._feat, self._feat_prev = self._feat_prev, self._feat
        self._credit[:] = 0.0

    def _train(self):
        """Update ``A`` on the target of step ``t - 1`` (step ``t`` is complete)."""
        self._train_kernel(not self._learned, self._theta_step, self._coef, self._dloc, self.cell.structure.segments,
                           self._J_hat, self._A, self._A_frozen, self._credit, self._feat, self._feat_prev, self._lr,
                           self._v, self._gate_work, self._err)
        self._has_loss = True
        self._n_updates += 1
        if self._n_updates % self.fix_interval == 0:
            self._A_frozen[:] = self._A

    def _after_step(self, coef, dloc, presyn):
        st = self.cell.structure
        self._features(self._state, presyn, np.int64(st.n_hidden), self._A, self._feat, self._chat)
        if self._learned:
            if self.n_steps >= 2:
                self._train_jacobian(self._J_hat, self._feat_prev, self._state, self._jacobian_lr, self._jac_err)
        else:
            # D_t is formed at the next forward(), maybe after an optimiser
            # step: keep the recurrent weights this step ran with.
            self._theta_step[:] = self.cell.params[: st.n_rec_params]
        self._pending_chat = True

    def _backward(self, c):
        self._credit += c
        self._emit(c, self._pending_chat)

    def _grad(self):
        if self._pending_chat:
            self._emit(self._no_credit, True)
        return super()._grad()

    def _loop_state(self, steps):
        from ._future_kernels import DNILoop

        st = self.cell.structure
        counts = np.array([self.n_steps, self._n_updates, self._has_loss, self._pending_chat, 0], np.int64)
        return DNILoop(st.segments, True if self._learned else None, not self._learned, self._A, self._A_frozen,
                       self._J_hat, self._feat, self._feat_prev, self._chat, self._credit, self._err, self._jac_err,
                       self._v, self._theta_step, self._gate_work, self._coef, self._dloc, self._presyn,
                       self._no_credit, self._acc, self._lr, self._jacobian_lr, np.int64(st.n_hidden),
                       np.int64(self.fix_interval), counts)

    def _loop_done(self, parts, steps, pending):
        super()._loop_done(parts, steps, pending)
        _, n_updates, has_loss, pending_chat, flip = (int(v) for v in parts.counts)
        self._n_updates, self._has_loss, self._pending_chat = n_updates, bool(has_loss), bool(pending_chat)
        if flip:
            self._feat, self._feat_prev = self._feat_prev, self._feat

    # -- the models -------------------------------------------------------------
    @staticmethod
    def _read_only(arr):
        view = arr.view()
        view.flags.writeable = False
        return view

    @property
    def A(self):
        """The synthetic-credit model ``A`` (S, S + n_in + 1): a read-only view."""
        return self._read_only(self._A)

    @property
    def A_frozen(self):
        """The frozen copy ``A'`` used in the bootstrapped targets: a read-only view."""
        return self._read_only(self._A_frozen)

    @property
    def jacobian_estimate(self):
        """``Jhat`` (S, S), a read-only view, with ``jacobian="learned"``; else None."""
        return self._read_only(self._J_hat) if self._learned else None

    @property
    def n_updates(self):
        return self._n_updates

    @property
    def synthetic_loss(self):
        """``0.5 sum_b |A f_{t-1} - target_{t-1}|^2`` of the last update of ``A``
        (with ``A`` before that update), or None before the first one."""
        if not self._has_loss:
            return None
        err = self._err.astype(np.float64)
        return 0.5 * float(np.sum(err * err))

    def synthetic_credit(self, s, x):
        """``A [s; x; 1]``: the model's credit of future losses for state ``s`` after input ``x``.

        Parameters
        ----------
        s : array_like, shape (S,) or (B, S)
        x : array_like, shape (n_in,) or (B, n_in)

        Returns
        -------
        ndarray, shape (S,) or (B, S), in the cell's dtype
        """
        st = self.cell.structure
        s, x, batched = self.cell.check_state_input(s, x)
        A = self._A
        out = s @ A[:, : st.n_state].T + x @ A[:, st.n_state: st.n_state + st.n_in].T + A[:, -1]
        return out if batched else out[0]

    def set_model(self, A, jacobian_estimate=None):
        """Load a synthetic-credit model (and ``A' := A``); with ``jacobian="learned"``, maybe ``Jhat``.

        Parameters
        ----------
        A : array_like, shape (S, S + n_in + 1)
        jacobian_estimate : array_like, shape (S, S), optional
            Only with ``jacobian="learned"``; None keeps the current ``Jhat``.
        """
        A = check_real_array(A, "A", self._A.shape, self.cell.dtype)
        if jacobian_estimate is not None:
            if not self._learned:
                raise ValueError('jacobian_estimate needs jacobian="learned"; this learner uses the exact D')
            J = check_real_array(jacobian_estimate, "jacobian_estimate", self._J_hat.shape, self.cell.dtype)
            self._J_hat[:] = J
        self._A[:] = A
        self._A_frozen[:] = A

    def reset_models(self):
        """Return ``A``, ``A'`` and ``Jhat`` to zero and the update count to 0."""
        self._A[:] = 0.0
        self._A_frozen[:] = 0.0
        self._J_hat[:] = 0.0
        self._n_updates = 0
        self._has_loss = False

    @property
    def name(self):
        return "DNIb" if self._learned else "DNI"


class DNIb(DNI, key="dnib"):
    """DNIb: DNI whose bootstrapped targets use a learned linear Jacobian ``Jhat``.

    ``DNIb(cell, ...)`` is ``DNI(cell, ..., jacobian="learned")``: ``D_{t+1}``
    in the target is replaced by ``Jhat``, trained online by regression on
    the transitions, ``Jhat s_{t-1} ~ s_t`` (SGD with rate ``jacobian_lr``).

    The other half of DNIb in Marschall et al. (2020), output weights
    replaced by fixed random feedback, belongs to the readout: pair this
    learner with ``sr.LinearReadout(cell, n_out, feedback="random")``, whose
    credit ``c_t = F^T dL/dy`` uses a fixed random ``F``.

    Parameters
    ----------
    cell : Cell
    lr, fix_interval, jacobian_lr, batch_size, parallel
        As for :class:`DNI`.
    """

    def __init__(self, cell, lr: float = 1e-2, fix_interval: int = 5, jacobian_lr: float = 1e-2,
                 batch_size: int = None, parallel: bool = None):
        super().__init__(cell, lr=lr, fix_interval=fix_interval, jacobian="learned", jacobian_lr=jacobian_lr,
                         batch_size=batch_size, parallel=parallel)
