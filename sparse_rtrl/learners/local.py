"""Local online learners: RFLO, KeRNL and e-prop.

Each keeps one eligibility trace per parameter (two for the parameters of the
LSTM's gates i, f, g), updated from quantities available at the parameter's
own unit, so a step costs ``O(P)`` like a BPTT step (KeRNL adds ``O(n^2)`` for
its sensitivity matrix), with no ``S x P`` influence matrix:

- :class:`RFLO` (Murray 2019): RTRL with ``D`` replaced by the leak
  ``(1 - alpha) I`` of a vanilla RNN.
- :class:`KeRNL` (Roth, Kanitscheider & Fiete 2019): RFLO with learned
  per-unit decays and a learned sensitivity matrix ``A`` mixing the units'
  credits, both fitted online to the effect of small noise on a perturbed
  copy of the network.
- :class:`EProp` (Bellec et al. 2020): SnAp-1's trace propagated by the
  unit-local part of ``D`` only (the leak, the GRU's ``z``, the LSTM's ``f``),
  for any cell.

Random feedback ("random" RFLO, random e-prop) is the readout's business, not
the learner's: ``sr.LinearReadout(cell, n_out, feedback="random")`` passes
``F^T dL/dy`` instead of ``V^T dL/dy`` to ``backward``; the learners below use
whatever credit they are given.
"""

import numpy as np

from .._validate import check_float, check_int, check_real_array, check_seed
from ..cells import Cell, VanillaRNN
from .base import DeferredUpdate, Learner
from .snap import CORE_FIELDS, CORE_MEMORY, SnApCore, default_parallel, snap_layout


class _UnitTrace(Learner):
    """One trace per parameter of a vanilla RNN, decayed per unit (RFLO, KeRNL).

    ``trace[p] <- decay[i] trace[p] + coef[i] z[src(p)]`` and
    ``grad[p] += u[i] trace[p]``, with ``i`` the unit of ``p``, ``decay`` from
    ``_decays()`` and the unit credit ``u`` from ``_unit_credit(c)``. Like
    SnAp, the trace update of a step waits for its ``backward`` so that update
    and accumulation share one pass over the trace; a ``forward`` with no
    ``backward`` in between applies it first.
    """

    structure = "diagonal"
    cells = ("vanilla",)
    _state_fields = {"trace": "_trace", "pending": "_deferred.pending"}
    _memory_parts = {"influence": ("_trace",)}

    @classmethod
    def supports(cls, cell):
        if isinstance(cell, VanillaRNN):
            return None
        return (f"{cls.__name__} needs a VanillaRNN cell (one gate per unit and the leak (1 - alpha) as the local "
                f"dynamics), got {type(cell).__name__}; EProp handles gated cells (GRU, LSTM)")

    def _allocate(self):
        st = self.cell.structure
        self._trace = np.zeros((self._B, st.n_params), self.cell.dtype)
        self._units = np.arange(st.n_hidden, dtype=np.int32)
        self._deferred = DeferredUpdate(self._apply, self._accumulate, self._no_credit)

    def _bind(self):
        from . import _base_kernels as k

        super()._bind()
        self._update = self._pick(k.trace_update, k.trace_update_par)
        self._accumulate_traces = self._pick(k.trace_accumulate, k.trace_accumulate_par)

    def _reset(self):
        self._trace[:] = 0.0
        self._deferred.reset()

    def _decays(self):
        """(B, n): each unit's trace decay this step."""
        raise NotImplementedError

    def _unit_credit(self, c):
        """(B, n): each unit's credit for its parameters' traces."""
        raise NotImplementedError

    def _apply(self, u, accumulate):
        self._update(self.cell.structure.segments, self._decays(), self._units, self._coef, self._presyn, u,
                     self._trace, self._acc, accumulate)

    def _accumulate(self, u):
        self._accumulate_traces(self.cell.structure.segments, u, self._trace, self._acc)

    def _prepare_step(self):
        self._deferred.settle()

    def _after_step(self, coef, dloc, presyn):
        self._deferred.step_taken()

    def _backward(self, c):
        self._deferred.credit(self._unit_credit(c))

    def _loop_state(self, steps):
        self._deferred.settle()
        return self._loop_parts()

    def _loop_parts(self):
        """The learner's loop-state NamedTuple (``_local_kernels``); anything pending is settled."""
        raise NotImplementedError

    def _loop_done(self, parts, steps, pending):
        super()._loop_done(parts, steps, pending)
        self._deferred.pending = pending

    def traces(self):
        """The eligibility trace ``B``, one number per parameter: (P,), or (B, P) when batched (a copy)."""
        self._deferred.settle()
        return self._output(self._trace)

    def exact_for(self, n_steps):
        # After one step the trace is the immediate Jacobian itself.
        return n_steps <= 1


class RFLO(_UnitTrace, key="rflo"):
    """Random-feedback local online learning (Murray, eLife 2019), for a VanillaRNN.

    Parameters
    ----------
    cell : VanillaRNN
        Gated cells are refused (``TypeError``): use :class:`EProp`.
    batch_size : int, optional
    parallel : bool, optional
        Spread the streams of a batch over the cores (default: when the batch
        is large enough to gain from it). Results are identical either way.

    Notes
    -----
    One trace per parameter ``p`` (unit ``i``, presynaptic ``j``,
    ``z = [h_prev; x; 1]``):

    ``B_p <- (1 - alpha) B_p + alpha phi'(a_i) z_j``,  ``grad_p += c_i B_p``.

    This is RTRL with ``D_t`` replaced by ``(1 - alpha) I``: the influence is
    approximated by ``J[k, p] ~ delta_ki B_p`` and the recurrent weights'
    part of ``D`` is dropped. The leak is read from the cell's local dynamics
    at every step. ``O(P)`` per stream and step.

    The "random feedback" of RFLO concerns the credit, not the trace: with
    ``sr.LinearReadout(cell, n_out, feedback="random")`` the credit passed to
    ``backward`` is ``F^T dL/dy`` for a fixed random ``F`` (Murray's rule);
    with the default readout it is the true ``dL/ds`` (symmetric feedback).
    On a VanillaRNN, RFLO equals :class:`EProp` and :class:`KeRNL` with
    ``lr=0`` and ``decay=alpha``.
    """

    def _allocate(self):
        super()._allocate()
        # D_local of a vanilla cell is its (n, 1, 1) leak block: a contiguous (B, n) view.
        self._leak = self._dloc.reshape(self._B, self.cell.n_hidden)

    def _decays(self):
        return self._leak

    def _unit_credit(self, c):
        return c

    def _loop_parts(self):
        from ._local_kernels import RFLOLoop

        return RFLOLoop(self.cell.structure.segments, self._leak, self._units, self._coef, self._presyn,
                        self._trace)

    @property
    def name(self):
        return "RFLO"


def _check_decay(decay, n, dtype):
    """A per-unit decay rate in [0, 1], from a number or an array of shape (n,)."""
    if np.ndim(decay) == 0:
        value = check_float(decay, "decay", 0.0, 1.0)
        return np.full(n, value, dtype=dtype)
    arr = np.array(check_real_array(decay, "decay", (n,), dtype), copy=True)
    if np.any(arr < 0.0) or np.any(arr > 1.0):
        raise ValueError(f"decay must lie in [0, 1], got values in [{arr.min()}, {arr.max()}]")
    return arr


class KeRNL(_UnitTrace, key="kernl"):
    """Kernel RNN learning (Roth, Kanitscheider & Fiete, ICLR 2019), for a VanillaRNN.

    Parameters
    ----------
    cell : VanillaRNN
        Gated cells are refused (``TypeError``): use :class:`EProp`.
    lr : float >= 0
        Step size of the online fit of ``A`` and ``gamma``, in units of the
        normalised noise (see Notes); ``0`` switches that learning off.
    sigma : float > 0
        Standard deviation of the noise injected into the perturbed copy.
    seed : int or numpy.random.Generator
        Seed of the noise draws (one stream of draws per learner).
    decay : float or array of shape (n_hidden,) in [0, 1], optional
        Initial decay rates ``gamma``; default the cell's ``alpha``, so that
        an untrained KeRNL (``A = I``) is RFLO.
    batch_size : int, optional
    parallel : bool, optional
        Spread the streams of a batch (and the rows of ``A``) over the cores.
        Results are identical either way.

    Attributes
    ----------
    A : ndarray (n, n)
        The sensitivity matrix (a copy), starting at the identity.
    gamma : ndarray (n,)
        The per-unit decay rates (a copy).
    noise_loss : float
        ``|e|^2 / sigma^2`` of the last step, summed over the streams: how well
        ``A`` and ``gamma`` predict the perturbation (0 after ``reset()``).

    Notes
    -----
    The influence is approximated by ``J[k, p] ~ A[k, i] B_p`` (``i`` the unit
    of ``p``), with one trace per parameter and a learned decay per unit:

    ``B_p <- (1 - gamma_i) B_p + alpha phi'(a_i) z_j``,
    ``grad_p += (c^T A)_i B_p``.

    ``A`` and ``gamma`` model the sensitivity ``ds_t / ds_u ~ A diag((1 -
    gamma)^(t-u))`` and are fitted online to a perturbed copy of the network
    (Roth et al., Algorithm 1; the same bookkeeping as Marschall, Cho & Savin
    2020). Per step, with ``k = 1 - gamma``:

    1. the copy steps from its perturbed state ``h~`` with the same weights
       and input: ``h_copy = f(h~, x)``;
    2. fresh noise ``zeta ~ N(0, sigma^2 I)``; ``Gamma <- k Gamma - Omega``;
       ``Omega <- k Omega + zeta`` (``Omega`` is the noise filtered by the
       model's kernel, ``Gamma = dOmega/dgamma``); ``h~ <- h_copy + zeta``;
    3. prediction error ``e = A Omega - (h~ - h)``;
    4. ``A <- A - (lr / sigma^2) e Omega^T``;
       ``gamma <- clip(gamma - (lr / sigma^2) (e^T A) * Gamma, 0, 1)``, both
       with ``A`` before the update; these are gradient steps on
       ``|e|^2 / (2 sigma^2)``;
    5. the trace uses the ``k`` of this step (before the update); the
       gradient uses ``A`` after it.

    Decisions, each tested:

    - The error compares ``A Omega`` with the copy's state *including* this
      step's noise (``h~ = h_copy + zeta``), as in Roth et al., where the
      perturbed network is ``f(h~_{t-1}) + xi_t``. ``Omega`` contains
      ``zeta_t`` with weight 1 (the model's ``ds_t/ds_t = A`` term), so the
      observed perturbation must contain it too. Comparing instead with
      ``h_copy - h`` (the copy before this step's noise, as Marschall et
      al.'s code does) regresses on a term the target does not contain; on
      a network whose ``D`` is a constant diagonal, where ``A = I``,
      ``gamma = 1 - D_ii`` predicts every perturbation exactly, that version
      drifts away from it (a linear leak-only network with ``alpha = 0.5``:
      ``gamma ~ 0.2`` and ``A ~ 0.25 I`` instead of 0.5 and ``I``); ours
      stays there.
    - The steps are divided by ``sigma^2``: ``e`` and ``Omega`` both scale with
      ``sigma``, so the raw step ``lr e Omega^T`` would scale with ``sigma^2``
      (``1e-9`` per step for ``lr = sigma = 1e-3``). Normalised, ``lr`` means
      the same for every noise level, and ``sigma`` only sets how small (how
      linear) the perturbation is. In float32 keep ``sigma`` well above
      ``1e-7 |h|``, or ``h~ - h`` loses its digits.
    - ``gamma`` is clipped to ``[0, 1]`` after each update, so the trace's
      decay ``k = 1 - gamma`` stays in ``[0, 1]`` (it never grows or flips
      sign); Marschall's ``max(0, 1 - gamma)`` is then just ``1 - gamma``.
    - ``A`` and ``gamma`` are shared by the streams of a batch; their updates
      are summed over the streams, in stream order. Each stream has its own
      perturbed copy, ``Omega``, ``Gamma`` and trace.
    - ``reset()`` zeroes the traces, ``Omega`` and ``Gamma`` and restarts the
      copy at the network's state; it keeps ``A``, ``gamma`` (learned, like
      weights) and the noise generator's position.
    - The copy is driven by the weights in force at each step. In a chaotic
      network it drifts away from the network over long sequences (the
      linear model then fails); ``reset()`` brings it back.

    Cost per stream and step: ``O(P)`` for the trace, ``O(n^2)`` for ``A Omega``,
    ``e^T A``, ``c^T A`` and the update of ``A``, plus one step of the copy.
    """

    stochastic = True
    learned = True
    _state_fields = {"sensitivity": "_A", "decay_rates": "_gamma", "copy_state": "_copy", "omega": "_omega",
                     "omega_gamma_derivative": "_big_gamma", "trace_decay": "_decay", "error": "_err",
                     "rng": "_rng"}
    _memory_parts = {"influence": ("_trace", "_A"), "traces": ("_gamma", "_copy", "_omega", "_big_gamma")}

    def __init__(self, cell, lr: float = 1e-3, sigma: float = 1e-3, seed=0, decay=None, batch_size: int = None,
                 parallel: bool = None):
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a sparse_rtrl Cell, got {type(cell).__name__}")
        reason = self.supports(cell)
        if reason is not None:
            raise TypeError(reason)
        self.lr = check_float(lr, "lr", 0.0, None)
        self.sigma = check_float(sigma, "sigma", 0.0, None, low_open=True)
        step = self.lr / self.sigma ** 2
        if not step <= float(np.finfo(cell.dtype).max):
            raise ValueError(f"lr / sigma**2 = {step} overflows {cell.dtype}: use a larger sigma or a smaller lr")
        self._step = cell.dtype.type(step)
        self.seed = check_seed(seed)
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._initial_decay = _check_decay(cell.alpha if decay is None else decay, cell.n_hidden, cell.dtype)
        self.decay = decay
        super().__init__(cell, batch_size, parallel)

    def _allocate(self):
        super()._allocate()
        st = self.cell.structure
        B, n, dt = self._B, st.n_hidden, self.cell.dtype
        self._A = np.eye(n, dtype=dt)
        self._gamma = self._initial_decay.copy()
        self._copy = np.zeros((B, n), dt)
        self._copy_next = np.zeros((B, n), dt)
        self._copy_coef = np.zeros((B, n, st.n_gates), dt)
        self._copy_dloc = np.zeros((B, n, st.n_local, st.n_local), dt)
        self._copy_presyn = np.zeros((B, st.n_presyn), dt)
        self._x = np.zeros((B, st.n_in), dt)
        self._normal = np.zeros((B, n), np.float64)
        self._omega = np.zeros((B, n), dt)
        self._big_gamma = np.zeros((B, n), dt)
        self._decay = np.zeros((B, n), dt)
        self._err = np.zeros((B, n), dt)
        self._row = np.zeros((B, n), dt)
        self._u = np.zeros((B, n), dt)

    def _bind(self):
        from . import _local_kernels as k

        super()._bind()
        self._perturb = self._pick(k.kernl_perturb, k.kernl_perturb_par)
        self._learn = self._pick(k.kernl_learn, k.kernl_learn_par)
        self._credit_through_sensitivity = self._pick(k.unit_credit, k.unit_credit_par)

    def _reset(self):
        super()._reset()
        self._copy[:] = self._state
        self._omega[:] = 0.0
        self._big_gamma[:] = 0.0
        self._err[:] = 0.0

    def _after_step(self, coef, dloc, presyn):
        n = self.cell.n_hidden
        # The input of this step, as the cell stored it (validated, in the cell's dtype).
        np.copyto(self._x, presyn[:, n:n + self.cell.n_in])
        self.cell.advance(self._copy, self._x, self._copy_next, self._copy_coef, self._copy_dloc,
                          self._copy_presyn, self.parallel)
        self._rng.standard_normal(out=self._normal)
        self._perturb(self._state, self._copy_next, self._normal, self.sigma, self._gamma, self._A, self._copy,
                      self._omega, self._big_gamma, self._decay, self._err, self._row)
        if self.lr > 0.0:
            self._learn(self._A, self._gamma, self._err, self._omega, self._big_gamma, self._row, self._step)
        self._deferred.step_taken()

    def _decays(self):
        return self._decay

    def _unit_credit(self, c):
        self._credit_through_sensitivity(c, self._A, self._u)
        return self._u

    def _loop_parts(self):
        from ._local_kernels import KeRNLLoop

        return KeRNLLoop(self.cell.structure.segments, self._decay, self._units, self._coef, self._presyn,
                         self._trace, self.cell.kernel_args, self._x, self._copy, self._copy_next, self._copy_coef,
                         self._copy_dloc, self._copy_presyn, float(self.sigma), self._gamma, self._A, self._omega,
                         self._big_gamma, self._err, self._row, self._u, bool(self.lr > 0.0), self._step)

    def _loop_draws(self):
        # One N(0, 1) number per unit and stream each step, as ``_after_step`` draws them into ``_normal``
        # (float64 whatever the cell's dtype). Drawn T steps at once they are the same numbers.
        return "standard_normal", self.cell.n_hidden, self._normal.dtype

    @property
    def A(self):
        return self._A.copy()

    @property
    def gamma(self):
        return self._gamma.copy()

    @property
    def noise_loss(self):
        err = self._err.astype(np.float64)
        return float(np.sum(err * err)) / self.sigma ** 2

    def exact_for(self, n_steps):
        return n_steps <= 1 and bool(np.array_equal(self._A, np.eye(self.cell.n_hidden)))

    @property
    def name(self):
        return "KeRNL"


class EProp(Learner, key="eprop"):
    """e-prop (Bellec et al., Nature Communications 2020), for any cell.

    Parameters
    ----------
    cell : Cell
        VanillaRNN, GRU or LSTM.
    batch_size : int, optional
    parallel : bool, optional
        As for :class:`~sparse_rtrl.SnAp`. Results are identical either way.

    Notes
    -----
    The eligibility traces are the influence restricted to each parameter's
    own unit (SnAp-1's mask, ``mask1``), propagated by the unit-local
    dynamics ``D_local`` only, never through the recurrent weights:

    ``e_t = mask1 * (D_local_t e_{t-1} + I_t)``,  ``grad += c_t e_t``.

    ``D_local`` is the part of ``D`` that bypasses the weights: the leak
    ``(1 - alpha)`` of a vanilla RNN, the GRU's ``z`` (from ``z * h``), and for
    the LSTM ``dc'/dc = f`` and ``dh'/dc = o tanh'(c') f``. For the LSTM each
    parameter of gates i, f, g keeps two traces (on ``h_i`` and ``c_i``),
    Bellec et al.'s eligibility vector; output-gate parameters keep one.

    This is SnAp-1 with the weights' contributions left out of ``D``: the
    learner runs on SnAp's influence core (``snap.SnApCore``) with a formed
    ``D`` that holds ``D_local`` only (a dynamics plan with no weight runs),
    and so shares SnAp's kernels, layout, ``mask()`` and ``influence()``
    (which returns the eligibility traces).
    When no unit feeds itself through a stored weight (no ``W_ii``), SnAp-1
    reads only local entries of ``D`` and the two are the same learner; on a
    VanillaRNN, e-prop is :class:`RFLO`. ``O(P)`` per stream and step.

    Symmetric e-prop takes the true credit ``c = dL_t/ds_t`` (the default
    ``sr.LinearReadout``); random e-prop is the same learner fed by
    ``sr.LinearReadout(cell, n_out, feedback="random")``, whose credit is
    ``F^T dL/dy`` for a fixed random ``F``. Bellec et al.'s learning signal is
    exactly this per-step credit: the loss's partial derivative with respect
    to the state, without the future's contribution through the network.
    ``train_online`` runs it in SnAp's fused loop, with the same numbers as
    step by step.
    """

    structure = "diagonal"
    _state_fields = CORE_FIELDS
    _memory_parts = CORE_MEMORY

    def __init__(self, cell, batch_size: int = None, parallel: bool = None):
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a sparse_rtrl Cell, got {type(cell).__name__}")
        self._layout = snap_layout(cell.structure, 1)
        super().__init__(cell, batch_size, parallel)

    def _default_parallel(self, B):
        split = default_parallel(self._layout, B)
        return super()._default_parallel(B) if split is None else split

    def _allocate(self):
        self._core = SnApCore(self, self._layout, local_only=True)

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
    def diagonal(self):
        """True when each parameter keeps one trace (see :attr:`SnAp.diagonal`)."""
        return self._layout.diagonal

    def exact_for(self, n_steps):
        # After one step the traces are the immediate Jacobian itself.
        return n_steps <= 1

    @property
    def name(self):
        return "e-prop"

    def mask(self):
        """SnAp-1's mask: each parameter's own unit (:class:`~sparse_rtrl.Pattern`, S x P)."""
        return self._core.mask()

    def influence(self, stream=0):
        """The eligibility traces of one stream, as a ``scipy.sparse.csr_matrix`` (S x P)."""
        stream = check_int(stream, "stream", minimum=0, maximum=self._B - 1)
        return self._core.influence(stream)
