"""Optimisers over flat parameter vectors: SGD (momentum, Nesterov) and Adam.

An optimiser holds a list of parameter arrays (``cell.params``,
``readout.params``, ...) and updates them in place from a list of gradients
of the same shapes. ``clip_norm`` rescales the gradients together when their
global norm exceeds it. Non-finite gradients are refused before anything
changes, so a diverging run stops with its parameters intact.

Its state (``state_dict``) is the update count, the per-parameter slots
(SGD's ``velocity``, Adam's moments ``mu`` and ``nu``) and the
hyperparameters, which a schedule may change during a run and which are
therefore restored with the state rather than compared.
"""

from typing import ClassVar, NamedTuple

import numpy as np

from .._validate import check_float
from ..registry import Registered
from ..state import Stateful

#: How the compiled optimiser step knows each optimiser.
SGD_CODE = 0
ADAM_CODE = 1


class OptimizerArgs(NamedTuple):
    """What the compiled step reads of an optimiser over two parameter vectors (the fused loop's view)."""

    code: np.int64
    lr: float
    momentum: float
    nesterov: bool
    beta1: float
    beta2: float
    eps: float
    clip: float
    s0a: np.ndarray
    s0b: np.ndarray
    s1a: np.ndarray
    s1b: np.ndarray


class Optimizer(Stateful, Registered):
    """Base class: parameter bookkeeping, gradient checks and clipping.

    A subclass names its per-parameter slots (``slot_names``) and its code for
    compiled loops, and defines ``_update``; its hyperparameters are its
    constructor's parameters, kept as attributes of the same name.
    """

    _family = "optimizer"
    _built_on = ("params",)
    code: ClassVar[int] = None
    #: Per-parameter state arrays, each a list with one array per parameter array.
    slot_names: ClassVar[tuple] = ()

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
        self.slots = {name: [np.zeros_like(p) for p in params] for name in self.slot_names}

    # -- state --------------------------------------------------------------------------
    def state_dict(self):
        return {"hyperparameters": self.config(), "n_updates": self.n_updates,
                **{name: [a.copy() for a in arrays] for name, arrays in self.slots.items()}}

    def load_state_dict(self, state):
        """Restore the update count, the slots and the hyperparameters (checked by the constructor's rules)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict (from state_dict()), got {type(state).__name__}")
        want = {"hyperparameters", "n_updates", *self.slot_names}
        missing, extra = sorted(want - set(state)), sorted(set(state) - want)
        if missing or extra:
            raise ValueError(f"state does not match this {type(self).__name__}: missing {missing}, unknown {extra}")
        hyper = state["hyperparameters"]
        if not isinstance(hyper, dict) or set(hyper) != set(self.settings()):
            raise ValueError(f"state['hyperparameters'] must name {sorted(self.settings())}")
        # The constructor's checks, on a throwaway optimizer, validate the saved hyperparameters.
        type(self)([np.zeros(1)], **hyper)
        n_updates = state["n_updates"]
        if isinstance(n_updates, (bool, np.bool_)) or not isinstance(n_updates, (int, np.integer)) or n_updates < 0:
            raise ValueError(f"state['n_updates'] must be an integer >= 0, got {n_updates!r}")
        for name in self.slot_names:
            saved, mine = state[name], self.slots[name]
            if not isinstance(saved, list) or len(saved) != len(mine):
                raise ValueError(f"state[{name!r}] must list {len(mine)} arrays, one per parameter array")
            for k, (s, m) in enumerate(zip(saved, mine)):
                if not isinstance(s, np.ndarray) or s.dtype != m.dtype or s.shape != m.shape:
                    raise ValueError(f"state[{name!r}][{k}] must be a {m.dtype} array of shape {m.shape}")
        for name in self.slot_names:
            for s, m in zip(state[name], self.slots[name]):
                np.copyto(m, s)
        for name, value in hyper.items():
            setattr(self, name, value)
        self.n_updates = int(n_updates)

    def _identity(self):
        # Hyperparameters are restored, not compared: what must match is the parameters' layout.
        return {"params": {"shapes": [[int(d) for d in p.shape] for p in self.params],
                           "dtypes": [p.dtype.name for p in self.params]}}

    # -- steps --------------------------------------------------------------------------
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
        from ._optim_kernels import clip_scale, sum_squares

        total = 0.0
        for g in grads:
            total += sum_squares(g)
        return clip_scale(total, 0.0 if self.clip_norm is None else self.clip_norm)

    def step(self, grads) -> None:
        """Update every parameter array in place from ``grads`` (same order and shapes)."""
        grads = self._check(grads)
        scale = self._scale(grads)
        self.n_updates += 1
        self._update(grads, scale)

    def _update(self, grads, scale):
        raise NotImplementedError(f"{type(self).__name__} defines no _update")

    def kernel_args(self):
        """The compiled step's view of this optimiser over two parameter vectors (see ``OptimizerArgs``)."""
        raise TypeError(f"{type(self).__name__} has no compiled step")

    def _slot_args(self):
        dt = self.params[0].dtype
        empty = np.zeros(0, dt)
        first = [arrays[0] for arrays in self.slots.values()] + [empty, empty]
        second = [arrays[1] for arrays in self.slots.values()] + [np.zeros(0, self.params[1].dtype)] * 2
        return first[0], first[1], second[0], second[1]


class SGD(Optimizer, key="sgd"):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v <- momentum v + g``; ``theta <- theta - lr v`` (or
    ``lr (g + momentum v)`` with Nesterov).
    """

    code = SGD_CODE
    slot_names = ("velocity",)

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False, clip_norm: float = None):
        self.lr = check_float(lr, "lr", 0.0, None, low_open=True)
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        super().__init__(params, clip_norm)

    def _update(self, grads, scale):
        from ._optim_kernels import sgd_update

        for p, g, vel in zip(self.params, grads, self.slots["velocity"]):
            sgd_update(p, g, vel, self.lr, self.momentum, self.nesterov, scale)

    def kernel_args(self):
        return OptimizerArgs(np.int64(self.code), float(self.lr), float(self.momentum), bool(self.nesterov), 0.9,
                             0.999, 1e-8, 0.0 if self.clip_norm is None else float(self.clip_norm), *self._slot_args())


class Adam(Optimizer, key="adam"):
    """Adam (Kingma & Ba 2015) with bias-corrected moments."""

    code = ADAM_CODE
    slot_names = ("mu", "nu")

    def __init__(self, params, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 clip_norm: float = None):
        self.lr = check_float(lr, "lr", 0.0, None, low_open=True)
        self.beta1 = check_float(beta1, "beta1", 0.0, 1.0, high_open=True)
        self.beta2 = check_float(beta2, "beta2", 0.0, 1.0, high_open=True)
        self.eps = check_float(eps, "eps", 0.0, None, low_open=True)
        super().__init__(params, clip_norm)

    def _update(self, grads, scale):
        from ._optim_kernels import adam_corrections, adam_update

        c1, c2 = adam_corrections(self.beta1, self.beta2, self.n_updates)
        for p, g, m1, m2 in zip(self.params, grads, self.slots["mu"], self.slots["nu"]):
            adam_update(p, g, m1, m2, self.lr, self.beta1, self.beta2, self.eps, c1, c2, scale)

    def kernel_args(self):
        return OptimizerArgs(np.int64(self.code), float(self.lr), 0.0, False, float(self.beta1), float(self.beta2),
                             float(self.eps), 0.0 if self.clip_norm is None else float(self.clip_norm),
                             *self._slot_args())
