"""Readouts: from the recurrent state to outputs, a loss, and the credit ``c_t``.

A readout turns the state ``s_t`` into an output ``y_t`` and a loss ``L_t``,
accumulates the gradient of ``L_t`` with respect to its own parameters, and
returns ``c_t = dL_t/ds_t``, the credit a learner's ``backward`` takes.
"""

from typing import NamedTuple

import numpy as np

from .._validate import check_int, check_real_array, check_seed
from ..cells import Cell
from ..registry import LOSSES, Registered
from ..state import Stateful
from . import losses  # noqa: F401  (fills the loss table)

__all__ = ["LinearReadout", "Readout"]


class ReadoutArgs(NamedTuple):
    """What the compiled readout reads and writes (the fused loop's view of a readout)."""

    params: np.ndarray
    feedback: np.ndarray
    n_out: np.int64
    loss_code: np.int64
    y: np.ndarray  # (B, n_out) work
    dy: np.ndarray  # (n_out,) work
    credit: np.ndarray  # (B, S) written
    acc: np.ndarray  # the gradient accumulator
    grad: np.ndarray  # (n_params,): where the accumulated gradient is taken


class Readout(Stateful, Registered):
    """Base of the readouts (the table ``registry.READOUTS``)."""

    _family = "readout"


class LinearReadout(Readout, key="linear"):
    """``y = V h + bias`` from the hidden part ``h`` of the state, with its loss.

    Parameters
    ----------
    cell : Cell
        Fixes ``n_hidden``, the state size and the dtype.
    n_out : int
        Outputs (classes, for cross-entropy).
    loss : {"mse", "cross_entropy", "bernoulli"}
        A key of the loss table (:mod:`sparse_rtrl.training.losses`).
        ``"mse"``: ``L = 0.5 |y - target|^2`` with a real target of shape
        ``(n_out,)``. ``"cross_entropy"``: softmax cross-entropy (nats) with
        an integer class target. ``"bernoulli"``: sigmoid cross-entropy
        (nats), ``p = sigmoid(y)``,
        ``L = -sum_k [t_k log p_k + (1 - t_k) log(1 - p_k)]``, with a real
        target of shape ``(n_out,)`` in [0, 1] (pixel intensities), computed
        stably for any logit; ``dL/dy = p - t``.
    seed : int or numpy.random.Generator
        ``V`` starts ~ N(0, 1/n_hidden); the bias starts at 0.
    feedback : {"transpose", "random"}
        How the output error reaches the state. ``"transpose"`` (default):
        through ``V^T``, the true credit ``dL/ds``. ``"random"``: through a
        fixed random matrix ``F`` drawn like ``V`` (feedback alignment,
        Lillicrap et al. 2016), as random e-prop and DNIb use it. ``V`` and
        the bias are trained by their true gradient either way.

    Attributes
    ----------
    params : ndarray
        ``V`` (row-major, ``n_out x n_hidden``) then the bias;
        ``weights["V"]`` and ``weights["bias"]`` are views into it.

    Notes
    -----
    The credit is ``V^T dL/dy`` (or ``F^T dL/dy``) on ``h`` and zero on the
    rest of the state (the LSTM's ``c``). ``step`` accumulates
    ``dL/dparams``; ``grad()`` returns and clears it, like a learner's.
    """

    _built_on = ("cell",)
    _state_fields = {"params": "_params", "accumulator": "_acc", "feedback_weights": "_feedback"}

    def __init__(self, cell: Cell, n_out: int, loss: str = "mse", seed=0, feedback: str = "transpose"):
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a sparse_rtrl Cell, got {type(cell).__name__}")
        self.n_out = check_int(n_out, "n_out", minimum=1)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES.keys()}, got {loss!r}")
        seed = check_seed(seed)
        self.seed = seed
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.loss = loss
        self._loss = LOSSES[loss]
        self.n_hidden = cell.n_hidden
        self.n_state = cell.n_state
        self.dtype = cell.dtype
        nV = self.n_out * self.n_hidden
        self._params = np.zeros(nV + self.n_out, dtype=self.dtype)
        self._params[:nV] = rng.normal(0.0, 1.0 / np.sqrt(self.n_hidden), size=nV)
        self.weights = {"V": self._params[:nV].reshape(self.n_out, self.n_hidden), "bias": self._params[nV:]}
        if feedback == "transpose":
            self._feedback = self._params[:nV]
        elif feedback == "random":
            self._feedback = rng.normal(0.0, 1.0 / np.sqrt(self.n_hidden), size=nV).astype(self.dtype)
            self._feedback.flags.writeable = False
        else:
            raise ValueError(f"feedback must be 'transpose' or 'random', got {feedback!r}")
        self.feedback = feedback
        self._acc = np.zeros_like(self._params)
        self._dy = np.zeros(self.n_out, dtype=self.dtype)

    def state_dict(self):
        state = super().state_dict()
        if self.feedback == "transpose":
            del state["feedback_weights"]  # a view of V: it is in params
        return state

    def load_state_dict(self, state):
        if self.feedback == "transpose" and isinstance(state, dict):
            state = dict(state, feedback_weights=self._feedback)
        super().load_state_dict(state)

    def _identity(self):
        return {"config": self._compared_config(), "cell": {"n_hidden": self.n_hidden, "n_state": self.n_state,
                                                  "dtype": self.dtype.name}}

    @property
    def params(self):
        return self._params

    @params.setter
    def params(self, value):
        self._params[:] = check_real_array(value, "params", self._params.shape, self.dtype)

    @property
    def n_params(self):
        return self._params.shape[0]

    def _states(self, s):
        arr = np.asarray(s)
        if arr.ndim == 2:
            return check_real_array(s, "s", (arr.shape[0], self.n_state), self.dtype), True
        return check_real_array(s, "s", (self.n_state,), self.dtype)[None], False

    def targets(self, target, batch):
        """Validate ``target`` for a batch of ``batch`` streams; returns (float, int) arrays."""
        shape = (batch,) if batch is not None else ()
        if self._loss.targets == "real":
            tf = check_real_array(target, "target", shape + (self.n_out,), self.dtype)
            self._loss.check_targets(tf, "target")
            return tf.reshape(-1, self.n_out), np.zeros(tf.size // self.n_out, dtype=np.int64)
        arr = np.asarray(target)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"target must hold integer classes for {self.loss}, got dtype {arr.dtype}")
        if arr.shape != shape:
            raise ValueError(f"target must have shape {shape}, got {arr.shape}")
        if arr.size and (arr.min() < -1 or arr.max() >= self.n_out):
            raise ValueError(f"target classes must lie in [0, {self.n_out}), or be -1 for no target")
        ti = np.ascontiguousarray(arr, dtype=np.int64).reshape(-1)
        return np.zeros((ti.shape[0], self.n_out), dtype=self.dtype), ti

    def step(self, s, target):
        """Loss of the state(s) ``s`` against ``target``; accumulate the gradient.

        Parameters
        ----------
        s : array_like, shape (S,) or (B, S)
        target : array_like
            ``(n_out,)`` / ``(B, n_out)`` reals for "mse" (in [0, 1] for
            "bernoulli"); an int / ``(B,)`` ints for "cross_entropy".

        Returns
        -------
        loss : float
            Summed over the batch.
        credit : ndarray, same shape as ``s``
            ``dL/ds``, to pass to the learner's ``backward``.
        """
        from ._readout_kernels import readout_step

        states, batched = self._states(s)
        tf, ti = self.targets(target, states.shape[0] if batched else None)
        y = np.empty((states.shape[0], self.n_out), dtype=self.dtype)
        credit = np.empty_like(states)
        loss = readout_step(self._params, self._feedback, self.n_out, self._loss.code, states, tf, ti, y, self._dy,
                            credit, self._acc)
        return float(loss), (credit if batched else credit[0])

    def loss_of(self, s, target):
        """The loss of state(s) ``s`` against ``target``, summed over the batch; nothing is accumulated.

        The same compiled loss as :meth:`step` (what the trainer evaluates with).
        """
        from ._readout_kernels import readout_loss

        states, batched = self._states(s)
        tf, ti = self.targets(target, states.shape[0] if batched else None)
        y = np.empty((states.shape[0], self.n_out), dtype=self.dtype)
        dy = np.empty(self.n_out, dtype=self.dtype)
        return float(readout_loss(self._params, self.n_out, self._loss.code, states, tf, ti, y, dy))

    def predict(self, s):
        """Outputs ``y`` (logits for cross-entropy and bernoulli: ``sigmoid(y)`` is then the prediction) for
        state(s) ``s``."""
        from ._readout_kernels import readout_predict

        states, batched = self._states(s)
        y = np.empty((states.shape[0], self.n_out), dtype=self.dtype)
        readout_predict(self._params, self.n_out, states, y)
        return y if batched else y[0]

    def grad(self):
        """The accumulated gradient of the loss w.r.t. ``params``; clears it."""
        from ._readout_kernels import take_vector

        out = np.empty_like(self._params)
        take_vector(self._acc, out)
        return out

    def kernel_args(self, batch):
        """The compiled readout's arrays for ``batch`` streams (work arrays fresh; no copies of the rest)."""
        return ReadoutArgs(self._params, self._feedback, np.int64(self.n_out), np.int64(self._loss.code),
                           np.empty((batch, self.n_out), self.dtype), self._dy,
                           np.empty((batch, self.n_state), self.dtype), self._acc,
                           np.empty(self.n_params, self.dtype))

    @property
    def feedback_weights(self):
        """The matrix that carries the output error to the state, ``(n_out, n_hidden)``:
        a view of ``V`` (``feedback="transpose"``) or the fixed random ``F``."""
        return self._feedback.reshape(self.n_out, self.n_hidden)

    def __repr__(self):
        return (f"LinearReadout(n_hidden={self.n_hidden}, n_out={self.n_out}, loss={self.loss!r}, "
                f"feedback={self.feedback!r})")
