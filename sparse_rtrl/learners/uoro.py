"""UORO: Unbiased Online Recurrent Optimization (Tallec & Ollivier 2017)."""

import numpy as np

from .._validate import check_float, check_seed
from .base import Learner


class UORO(Learner, key="uoro"):
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

    structure = "rank one"
    stochastic = True
    unbiased = True
    _state_fields = {"state_factor": "_u", "param_factor": "_theta", "rng": "_rng"}
    _memory_parts = {"influence": ("_u", "_theta")}

    def __init__(self, cell, seed=0, batch_size: int = None, eps: float = 1e-7, parallel: bool = None):
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

    def _bind(self):
        from . import _uoro_kernels as k

        super()._bind()
        self._update = self._pick(k.uoro_update, k.uoro_update_par)
        self._accumulate = self._pick(k.uoro_accumulate, k.uoro_accumulate_par)

    def _reset(self):
        self._u[:] = 0.0
        self._theta[:] = 0.0

    def _after_step(self, coef, dloc, presyn):
        self._rng.random(out=self._uniform)
        self._update(self.cell.params, coef, dloc, presyn, self.cell.structure.segments, self._uniform, self._u,
                     self._theta, self._nu, self._nu_I, self._Du, self._gate_work, self.cell.dtype.type(self.eps))

    def _backward(self, c):
        self._accumulate(self._u, self._theta, c, self._acc)

    def _loop_state(self, steps):
        from ._uoro_kernels import UOROLoop

        return UOROLoop(self.cell.structure.segments, self._u, self._theta, self._nu, self._nu_I, self._Du,
                        self._gate_work, self.cell.dtype.type(self.eps))

    def _loop_draws(self):
        return "random", self.cell.n_state, np.float64
