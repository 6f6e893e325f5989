"""Readouts: from the recurrent state to outputs, a loss, and the credit ``c_t``.

A readout turns the state ``s_t`` into an output ``y_t`` and a loss ``L_t``,
accumulates the gradient of ``L_t`` with respect to its own parameters, and
returns ``c_t = dL_t/ds_t``, the credit a learner's ``backward`` takes.
"""

import numpy as np

from .._validate import check_int, check_real_array, check_seed
from ..cells import Cell

LOSSES = ("mse", "cross_entropy")


class LinearReadout:
    """``y = V h + c`` from the hidden part ``h`` of the state, with its loss.

    Parameters
    ----------
    cell : Cell
        Fixes ``n_hidden``, the state size and the dtype.
    n_out : int
        Outputs (classes, for cross-entropy).
    loss : {"mse", "cross_entropy"}
        ``"mse"``: ``L = 0.5 |y - target|^2`` with a real target of shape
        ``(n_out,)``. ``"cross_entropy"``: softmax cross-entropy (nats) with
        an integer class target.
    seed : int or numpy.random.Generator
        ``V`` starts ~ N(0, 1/n_hidden); ``c`` starts at 0.
    feedback : {"transpose", "random"}
        How the output error reaches the state. ``"transpose"`` (default):
        through ``V^T``, the true credit ``dL/ds``. ``"random"``: through a
        fixed random matrix ``F`` drawn like ``V`` (feedback alignment,
        Lillicrap et al. 2016), as random e-prop and DNIb use it. ``V`` and
        ``c`` are trained by their true gradient either way.

    Attributes
    ----------
    params : ndarray
        ``V`` (row-major, ``n_out x n_hidden``) then ``c``; ``weights["V"]``
        and ``weights["c"]`` are views into it.

    Notes
    -----
    The credit is ``V^T dL/dy`` (or ``F^T dL/dy``) on ``h`` and zero on the
    rest of the state (the LSTM's ``c``). ``step`` accumulates
    ``dL/dparams``; ``grad()`` returns and clears it, like a learner's.
    """

    def __init__(self, cell, n_out, loss="mse", seed=0, feedback="transpose"):
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a sparse_rtrl Cell, got {type(cell).__name__}")
        self.n_out = check_int(n_out, "n_out", minimum=1)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        seed = check_seed(seed)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.loss = loss
        self.kind = LOSSES.index(loss)
        self.n_hidden = cell.n_hidden
        self.n_state = cell.n_state
        self.dtype = cell.dtype
        nV = self.n_out * self.n_hidden
        self._params = np.zeros(nV + self.n_out, dtype=self.dtype)
        self._params[:nV] = rng.normal(0.0, 1.0 / np.sqrt(self.n_hidden), size=nV)
        self.weights = {"V": self._params[:nV].reshape(self.n_out, self.n_hidden), "c": self._params[nV:]}
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
        self._no_int = np.zeros(1, dtype=np.int64)
        self._no_float = np.zeros((1, self.n_out), dtype=self.dtype)

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
        if self.kind == 0:
            tf = check_real_array(target, "target", shape + (self.n_out,), self.dtype)
            return tf.reshape(-1, self.n_out), np.zeros(tf.size // self.n_out, dtype=np.int64)
        arr = np.asarray(target)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"target must hold integer classes for cross_entropy, got dtype {arr.dtype}")
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
            ``(n_out,)`` / ``(B, n_out)`` reals for "mse"; an int / ``(B,)``
            ints for "cross_entropy".

        Returns
        -------
        loss : float
            Summed over the batch.
        credit : ndarray, same shape as ``s``
            ``dL/ds``, to pass to the learner's ``backward``.
        """
        from ._train_kernels import readout_step

        states, batched = self._states(s)
        tf, ti = self.targets(target, states.shape[0] if batched else None)
        y = np.empty((states.shape[0], self.n_out), dtype=self.dtype)
        credit = np.empty_like(states)
        loss = readout_step(self._params, self._feedback, self.n_out, self.kind, states, tf, ti, y, self._dy, credit,
                            self._acc)
        return float(loss), (credit if batched else credit[0])

    def predict(self, s):
        """Outputs ``y`` (logits for cross-entropy) for state(s) ``s``."""
        from ._train_kernels import readout_predict

        states, batched = self._states(s)
        y = np.empty((states.shape[0], self.n_out), dtype=self.dtype)
        readout_predict(self._params, self.n_out, states, y)
        return y if batched else y[0]

    def grad(self):
        """The accumulated gradient of the loss w.r.t. ``params``; clears it."""
        from ._train_kernels import take_vector

        out = np.empty_like(self._params)
        take_vector(self._acc, out)
        return out

    @property
    def feedback_weights(self):
        """The matrix that carries the output error to the state, ``(n_out, n_hidden)``:
        a view of ``V`` (``feedback="transpose"``) or the fixed random ``F``."""
        return self._feedback.reshape(self.n_out, self.n_hidden)

    def __repr__(self):
        return (f"LinearReadout(n_hidden={self.n_hidden}, n_out={self.n_out}, loss={self.loss!r}, "
                f"feedback={self.feedback!r})")
