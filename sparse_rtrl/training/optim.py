"""Optimisers over flat parameter vectors: SGD (momentum, Nesterov) and Adam.

An optimiser holds a list of parameter arrays (``cell.params``,
``readout.params``, ...) and updates them in place from a list of gradients
of the same shapes. ``clip_norm`` rescales the gradients together when their
global norm exceeds it. Non-finite gradients are refused before anything
changes, so a diverging run stops with its parameters intact.
"""

import numpy as np

from .._validate import check_float


class Optimizer:
    """Base class: parameter bookkeeping, gradient checks and clipping."""

    kind = None

    def __init__(self, params, clip_norm=None):
        if isinstance(params, np.ndarray):
            params = [params]
        params = list(params)
        if not params:
            raise ValueError("params must name at least one parameter array")
        for k, p in enumerate(params):
            if not isinstance(p, np.ndarray) or p.ndim != 1 or p.dtype.kind != "f":
                raise TypeError(f"params[{k}] must be a 1-D float array (e.g. cell.params)")
            if not p.flags.writeable or not p.flags.c_contiguous:
                raise ValueError(f"params[{k}] must be writable and contiguous")
        self.params = params
        self.clip_norm = None if clip_norm is None else check_float(clip_norm, "clip_norm", 0.0, None, low_open=True)
        self.n_updates = 0
        self._state = [tuple(np.zeros_like(p) for _ in range(self._n_slots)) for p in params]

    _n_slots = 1

    def _check(self, grads):
        if isinstance(grads, np.ndarray):
            grads = [grads]
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"grads must have {len(self.params)} arrays (one per parameter array), got {len(grads)}")
        out = []
        for k, (p, g) in enumerate(zip(self.params, grads)):
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"grads[{k}] must have shape {p.shape}, got {g.shape}")
            if g.dtype.kind not in "fiu":
                raise TypeError(f"grads[{k}] must hold real numbers, got dtype {g.dtype}")
            g = np.ascontiguousarray(g, dtype=p.dtype)
            if not np.isfinite(g).all():
                raise FloatingPointError(f"grads[{k}] contains NaN or infinity; parameters left unchanged")
            out.append(g)
        return out

    def _scale(self, grads):
        from ._train_kernels import clip_scale, sum_squares

        total = 0.0
        for g in grads:
            total += sum_squares(g)
        return clip_scale(total, 0.0 if self.clip_norm is None else self.clip_norm)

    def step(self, grads):
        """Update every parameter array in place from ``grads`` (same order and shapes)."""
        grads = self._check(grads)
        scale = self._scale(grads)
        self.n_updates += 1
        self._update(grads, scale)

    def _update(self, grads, scale):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v <- momentum v + g``; ``theta <- theta - lr v`` (or
    ``lr (g + momentum v)`` with Nesterov).
    """

    kind = 0

    def __init__(self, params, lr, momentum=0.0, nesterov=False, clip_norm=None):
        self.lr = check_float(lr, "lr", 0.0, None, low_open=True)
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        super().__init__(params, clip_norm)

    def _update(self, grads, scale):
        from ._train_kernels import sgd_update

        for p, g, (vel,) in zip(self.params, grads, self._state):
            sgd_update(p, g, vel, self.lr, self.momentum, self.nesterov, scale)

    def _hyper(self):
        return (self.lr, self.momentum, self.nesterov, 0.9, 0.999, 1e-8)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias-corrected moments."""

    kind = 1
    _n_slots = 2

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, clip_norm=None):
        self.lr = check_float(lr, "lr", 0.0, None, low_open=True)
        self.beta1 = check_float(beta1, "beta1", 0.0, 1.0, high_open=True)
        self.beta2 = check_float(beta2, "beta2", 0.0, 1.0, high_open=True)
        self.eps = check_float(eps, "eps", 0.0, None, low_open=True)
        super().__init__(params, clip_norm)

    def _update(self, grads, scale):
        from ._train_kernels import adam_corrections, adam_update

        c1, c2 = adam_corrections(self.beta1, self.beta2, self.n_updates)
        for p, g, (m1, m2) in zip(self.params, grads, self._state):
            adam_update(p, g, m1, m2, self.lr, self.beta1, self.beta2, self.eps, c1, c2, scale)

    def _hyper(self):
        return (self.lr, 0.0, False, self.beta1, self.beta2, self.eps)
