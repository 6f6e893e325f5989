"""Optimisers over flat parameter vectors: SGD (momentum, Nesterov) and Adam, with learning-rate
schedules and decoupled weight decay.

An optimiser holds a list of parameter arrays (``cell.params``,
``readout.params``, ...) and updates them in place from a list of gradients
of the same shapes. ``clip_norm`` rescales the gradients together when their
global norm exceeds it. Non-finite gradients are refused before anything
changes, so a diverging run stops with its parameters intact.

Update ``t`` (1 for the first; ``n_updates`` counts them) uses the learning
rate ``lr_t = lr * schedule(t)`` (:mod:`sparse_rtrl.training.schedules`; no schedule
is ``lr`` throughout). With ``weight_decay > 0`` it first shrinks every
parameter of every array it holds, biases and readout included:
``theta <- theta - lr_t * weight_decay * theta``, decoupled from the
gradient (Loshchilov & Hutter 2019, AdamW): the decay enters neither the
momentum nor Adam's moments. Then comes the optimiser's own step with
``lr_t``. To decay only some arrays, give those to one optimiser and the rest
to another.

Its state (``state_dict``) is the update count, the per-parameter slots
(SGD's ``velocity``, Adam's moments ``mu`` and ``nu``) and the
hyperparameters (the schedule's settings among them), which are restored with
the state rather than compared. The schedule needs nothing else: where a run
stands in it is the update count.
"""

from typing import ClassVar, NamedTuple

import numpy as np

from .._validate import check_float, check_int
from ..registry import Registered
from ..state import Stateful
from .schedules import Constant, ScheduleArgs, as_schedule, schedule_config

__all__ = ["Adam", "Optimizer", "SGD"]

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
    #: The schedule (``Constant()``'s args when there is none: a multiplier of exactly 1).
    schedule: ScheduleArgs
    weight_decay: float
    s0a: np.ndarray
    s0b: np.ndarray
    s1a: np.ndarray
    s1b: np.ndarray

#: What the compiled step reads when the optimiser has no schedule.
_NO_SCHEDULE = Constant().kernel_args()


class Optimizer(Stateful, Registered):
    """Base class: parameter bookkeeping, gradient checks and clipping.

    A subclass names its per-parameter slots (``slot_names``) and its code for
    compiled loops, and defines ``_update(grads, scale, lr)`` (``lr`` is the
    scheduled rate of this update); its hyperparameters are its constructor's
    parameters, kept as attributes of the same name, ``schedule`` and
    ``weight_decay`` among them (passed on to this constructor).
    """

    _family = "optimizer"
    _built_on = ("params",)
    code: ClassVar[int] = None
    #: Per-parameter state arrays, each a list with one array per parameter array.
    slot_names: ClassVar[tuple] = ()
    #: Settings added after states were first saved, with the values those states ran with.
    _LATER_SETTINGS: ClassVar[dict] = {"schedule": None, "weight_decay": 0.0}

    def __init__(self, params, clip_norm=None, schedule=None, weight_decay=0.0):
        self.schedule = as_schedule(schedule)
        self.weight_decay = check_float(weight_decay, "weight_decay", 0.0, None)
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
    def config(self) -> dict:
        """The settings that rebuild this optimiser (JSON-able); the schedule as ``{"name": key, **settings}``."""
        out = {}
        for name in self.settings():
            try:
                value = getattr(self, name)
            except AttributeError:
                raise TypeError(
                    f"{type(self).__name__} takes the setting {name!r} but keeps no attribute of that name: "
                    f"store it as self.{name} so that config() and checkpoints carry it") from None
            out[name] = schedule_config(value) if name == "schedule" else value
        return out

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
        if isinstance(hyper, dict):
            # States saved before schedules and weight decay existed had neither: they trained without.
            hyper = {**{k: v for k, v in self._LATER_SETTINGS.items() if k in self.settings()}, **hyper}
        if not isinstance(hyper, dict) or set(hyper) != set(self.settings()):
            raise ValueError(f"state['hyperparameters'] must name {sorted(self.settings())}")
        # The constructor's checks, on a throwaway optimizer, validate the saved hyperparameters.
        probe = type(self)([np.zeros(1)], **hyper)
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
        for name in hyper:
            setattr(self, name, getattr(probe, name))
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
        """Update every parameter array in place from ``grads`` (same order and shapes).

        The update counts first (``n_updates``), then runs at the scheduled
        rate of that count, after the weight decay if there is any.
        """
        grads = self._check(grads)
        scale = self._scale(grads)
        self.n_updates += 1
        lr = self.lr_at(self.n_updates)
        if self.weight_decay != 0.0:
            from ._optim_kernels import decay_params

            # One product, rounded as the compiled step rounds it (``_optim_kernels.scheduled_rates``).
            rate = lr * self.weight_decay
            for p in self.params:
                decay_params(p, rate)
        self._update(grads, scale, lr)

    def lr_at(self, update: int = None) -> float:
        """The learning rate of update number ``update`` (1 is the first; default: the next, ``n_updates + 1``)."""
        update = self.n_updates + 1 if update is None else check_int(update, "update", minimum=1)
        if self.schedule is None:
            return self.lr
        # lr times the multiplier: one IEEE product, as in the compiled step.
        return self.lr * self.schedule(update)

    def _update(self, grads, scale, lr):
        raise NotImplementedError(f"{type(self).__name__} defines no _update")

    def kernel_args(self):
        """The compiled step's view of this optimiser over two parameter vectors (see ``OptimizerArgs``)."""
        raise TypeError(f"{type(self).__name__} has no compiled step")

    def _schedule_args(self):
        return _NO_SCHEDULE if self.schedule is None else self.schedule.kernel_args()

    def _slot_args(self):
        """``s0a, s0b, s1a, s1b``: the first two slots of the two parameter arrays (empty where there are fewer)."""
        dt = self.params[0].dtype
        empty = np.zeros(0, dt)
        first = [arrays[0] for arrays in self.slots.values()] + [empty, empty]
        second = [arrays[1] for arrays in self.slots.values()] + [np.zeros(0, self.params[1].dtype)] * 2
        return {"s0a": first[0], "s0b": first[1], "s1a": second[0], "s1b": second[1]}


class SGD(Optimizer, key="sgd"):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v <- momentum v + g``; ``theta <- theta - lr_t v`` (or
    ``lr_t (g + momentum v)`` with Nesterov), after the decoupled weight
    decay ``theta <- theta - lr_t weight_decay theta``.

    Parameters
    ----------
    params : ndarray or list of ndarray
        The 1-D float arrays updated in place (e.g. ``[cell.params, readout.params]``).
    lr : float
        The base learning rate (> 0).
    momentum : float
        In [0, 1).
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0``).
    clip_norm : float or None
        Rescale the gradients together when their global norm exceeds it.
    schedule : Schedule, dict or None
        The learning-rate schedule (:mod:`sparse_rtrl.training.schedules`): ``lr_t = lr *
        schedule(t)``. None: ``lr`` throughout.
    weight_decay : float
        Decoupled weight decay (>= 0), applied to every parameter held; 0 (the
        default) skips it.
    """

    code = SGD_CODE
    slot_names = ("velocity",)

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False, clip_norm: float = None,
                 schedule=None, weight_decay: float = 0.0):
        self.lr = check_float(lr, "lr", 0.0, None, low_open=True)
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        super().__init__(params, clip_norm, schedule, weight_decay)

    def _update(self, grads, scale, lr):
        from ._optim_kernels import sgd_update

        for p, g, vel in zip(self.params, grads, self.slots["velocity"]):
            sgd_update(p, g, vel, lr, self.momentum, self.nesterov, scale)

    def kernel_args(self):
        return OptimizerArgs(code=np.int64(self.code), lr=float(self.lr), momentum=float(self.momentum),
                             nesterov=bool(self.nesterov), beta1=0.9, beta2=0.999, eps=1e-8,
                             clip=0.0 if self.clip_norm is None else float(self.clip_norm),
                             schedule=self._schedule_args(), weight_decay=float(self.weight_decay),
                             **self._slot_args())


class Adam(Optimizer, key="adam"):
    """Adam (Kingma & Ba 2015) with bias-corrected moments; with ``weight_decay`` > 0, AdamW
    (Loshchilov & Hutter 2019).

    ``theta <- theta - lr_t mu_hat / (sqrt(nu_hat) + eps)``, after the
    decoupled weight decay ``theta <- theta - lr_t weight_decay theta``.

    Parameters
    ----------
    params : ndarray or list of ndarray
        The 1-D float arrays updated in place (e.g. ``[cell.params, readout.params]``).
    lr : float
        The base learning rate (> 0).
    beta1, beta2 : float
        Decay rates of the moments, in [0, 1).
    eps : float
        Added to the root of the second moment (> 0).
    clip_norm : float or None
        Rescale the gradients together when their global norm exceeds it.
    schedule : Schedule, dict or None
        The learning-rate schedule (:mod:`sparse_rtrl.training.schedules`): ``lr_t = lr *
        schedule(t)``. None: ``lr`` throughout.
    weight_decay : float
        Decoupled weight decay (>= 0), applied to every parameter held; 0 (the
        default) skips it.
    """

    code = ADAM_CODE
    slot_names = ("mu", "nu")

    def __init__(self, params, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 clip_norm: float = None, schedule=None, weight_decay: float = 0.0):
        self.lr = check_float(lr, "lr", 0.0, None, low_open=True)
        self.beta1 = check_float(beta1, "beta1", 0.0, 1.0, high_open=True)
        self.beta2 = check_float(beta2, "beta2", 0.0, 1.0, high_open=True)
        self.eps = check_float(eps, "eps", 0.0, None, low_open=True)
        super().__init__(params, clip_norm, schedule, weight_decay)

    def _update(self, grads, scale, lr):
        from ._optim_kernels import adam_corrections, adam_update

        # np.int64, as the fused loop passes it: run as Python, the corrections are then numpy floats in both paths.
        c1, c2 = adam_corrections(self.beta1, self.beta2, np.int64(self.n_updates))
        for p, g, m1, m2 in zip(self.params, grads, self.slots["mu"], self.slots["nu"]):
            adam_update(p, g, m1, m2, lr, self.beta1, self.beta2, self.eps, c1, c2, scale)

    def kernel_args(self):
        return OptimizerArgs(code=np.int64(self.code), lr=float(self.lr), momentum=0.0, nesterov=False,
                             beta1=float(self.beta1), beta2=float(self.beta2), eps=float(self.eps),
                             clip=0.0 if self.clip_norm is None else float(self.clip_norm),
                             schedule=self._schedule_args(), weight_decay=float(self.weight_decay),
                             **self._slot_args())
