"""Online training loops: a weight update every ``k`` steps, no stored history.

:func:`train_online` drives a learner, a readout and an optimiser over a
stream of inputs and targets. It runs the whole loop in compiled code
(``fused=True``, see ``fused.py``) for every built-in learner on a built-in
cell, which removes the Python call overhead that dominates small networks;
the compiled loop calls the same kernels in the same order as the
step-by-step path and gives identical numbers.
"""

import numpy as np

from .._validate import check_int, check_real_array
from ..learners.base import Learner
from ..registry import LOSSES
from .fused import fused_obstacle, train_fused
from .optim import Optimizer
from .readouts import LinearReadout

__all__ = ["DivergenceError", "train_online"]


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or gradient.

    Attributes
    ----------
    step : int
        Index (within the call) of the step that diverged. Parameters were not
        changed by that step.
    losses : ndarray
        Losses of the steps before it.
    """

    def __init__(self, step, losses, what="loss"):
        self.step = step
        self.losses = losses
        #: What stopped being finite: ``"loss"`` or ``"gradient"``.
        self.what = what
        super().__init__(f"the {what} became NaN or infinite at step {step} of this stream "
                         f"(parameters are as they were before that step)")


def _check_stream(learner, readout, inputs, targets):
    cell = learner.cell
    B = learner.batch_size
    inp = np.asarray(inputs)
    lead = (inp.shape[0],) if inp.ndim >= 1 else ()
    shape = lead + ((B,) if B is not None else ()) + (cell.n_in,)
    xs = check_real_array(inputs, "inputs", shape, cell.dtype)
    T = xs.shape[0]
    if LOSSES[readout.loss].targets == "real":
        ys_f = check_real_array(targets, "targets", (T,) + ((B,) if B else ()) + (readout.n_out,), cell.dtype)
        LOSSES[readout.loss].check_targets(ys_f, "targets")
        ys_f = ys_f.reshape(T, B or 1, readout.n_out)
        ys_i = np.zeros((T, B or 1), dtype=np.int64)
    else:
        tg = np.asarray(targets)
        if tg.dtype.kind not in "iu":
            raise TypeError(f"targets must hold integer classes for {readout.loss}, got dtype {tg.dtype}")
        want = (T,) + ((B,) if B else ())
        if tg.shape != want:
            raise ValueError(f"targets must have shape {want}, got {tg.shape}")
        if tg.size and (tg.min() < -1 or tg.max() >= readout.n_out):
            raise ValueError(f"targets must be classes in [0, {readout.n_out}), or -1 for no target")
        ys_i = np.ascontiguousarray(tg, dtype=np.int64).reshape(T, B or 1)
        ys_f = np.zeros((T, B or 1, readout.n_out), dtype=cell.dtype)
    return xs.reshape(T, B or 1, cell.n_in), ys_f, ys_i


def train_online(learner, readout, optimizer, inputs, targets, update_every: int = 1,
                 fused: bool = None, resets=None) -> np.ndarray:
    """Train online over a stream: forward, loss, backward; an update every ``update_every`` steps.

    Parameters
    ----------
    learner : Learner
        Continues from its current state (call ``reset()`` first for a new sequence).
    readout : LinearReadout
        Built on the learner's cell.
    optimizer : Optimizer
        Over ``[learner.cell.params, readout.params]``, in that order.
    inputs : array_like, shape (T, n_in), or (T, B, n_in) for a batched learner
    targets : array_like
        ``(T, n_out)`` / ``(T, B, n_out)`` reals for "mse" (in [0, 1] for
        "bernoulli"); ``(T,)`` / ``(T, B)`` ints for "cross_entropy".
    update_every : int
        Steps per update (1 is fully online). Gradient accumulated by a final
        partial block stays in the learner and readout for the next call.
    resets : array_like of bool, shape (T,), optional
        Episodes in one call: where ``resets[t]`` is true, an episode ends
        before step ``t`` (the learner's ``end_sequence``; the gradient
        emitted, or left in a partial block, applied if any entry is
        nonzero) and the learner is reset. Blocks of
        ``update_every`` steps restart with each episode. The trainer runs
        episodic tasks (copy) this way, many episodes per compiled call.
    fused : bool or None
        Run in compiled code. Default: whenever possible (a built-in learner
        on a built-in cell, the linear readout, SGD or Adam, on one core: a
        learner built with ``parallel=True`` runs step by step). ``True``
        raises if it is not possible, saying why.

    Returns
    -------
    ndarray, shape (T,)
        Loss of each step, summed over the batch.

    Raises
    ------
    DivergenceError
        A loss or gradient stopped being finite; the run stops at that step
        with the parameters it had before it. Every learner, dtype and path
        (step by step or fused) reports it this way.
    """
    if not isinstance(learner, Learner):
        raise TypeError(f"learner must be a sparse_rtrl Learner, got {type(learner).__name__}")
    if not isinstance(readout, LinearReadout):
        raise TypeError(f"readout must be a LinearReadout, got {type(readout).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a sparse_rtrl Optimizer, got {type(optimizer).__name__}")
    cell = learner.cell
    if readout.n_state != cell.n_state or readout.dtype != cell.dtype:
        raise ValueError("readout must be built on the learner's cell (same state size and dtype)")
    if len(optimizer.params) != 2 or optimizer.params[0] is not cell.params or optimizer.params[1] is not readout.params:
        raise ValueError("optimizer must be built over [learner.cell.params, readout.params], in that order")
    update_every = check_int(update_every, "update_every", minimum=1)
    xs, ys_f, ys_i = _check_stream(learner, readout, inputs, targets)
    if resets is None:
        resets = np.zeros(xs.shape[0], dtype=bool)
    else:
        resets = np.asarray(resets)
        if resets.dtype != bool:
            raise TypeError(f"resets must be an array of bools, got dtype {resets.dtype}")
        if resets.shape != (xs.shape[0],):
            raise ValueError(f"resets must have shape ({xs.shape[0]},) (one per step), got {resets.shape}")
    reason = fused_obstacle(learner, readout, optimizer)
    if fused is None:
        fused = reason is None
    elif fused and reason is not None:
        raise ValueError(f"fused=True is not possible here: {reason}")
    if fused:
        return train_fused(learner, readout, optimizer, xs, ys_f, ys_i, resets, update_every)
    return _train_steps(learner, readout, optimizer, xs, ys_f, ys_i, resets, update_every)


def _end_episode(learner, readout, optimizer, update_every):
    """An episode ends: the learner's ``end_sequence``, then, when that emitted or updates come every
    ``update_every > 1`` steps, the gradient left applied (if any entry is nonzero).

    Raises ``FloatingPointError`` (from the optimiser, parameters unchanged)
    when that gradient is not finite. The learner is not reset.
    """
    emitted = learner.end_sequence()
    if update_every == 1 and not emitted:
        return
    grads = [learner.grad(), readout.grad()]
    if any(np.any(g) for g in grads):
        optimizer.step(grads)


def _train_steps(learner, readout, optimizer, xs, ys_f, ys_i, resets, update_every):
    batched = learner.batch_size is not None
    real = LOSSES[readout.loss].targets == "real"
    T = xs.shape[0]
    losses = np.empty(T)
    block = 0
    for t in range(T):
        if resets[t]:
            try:
                _end_episode(learner, readout, optimizer, update_every)
            except FloatingPointError:
                raise DivergenceError(t - 1, losses[:t].copy(), what="gradient") from None
            learner.reset()
            block = 0
        x = xs[t] if batched else xs[t, 0]
        target = (ys_f[t] if batched else ys_f[t, 0]) if real else (ys_i[t] if batched else ys_i[t, 0])
        s = learner.forward(x)
        losses[t], c = readout.step(s, target)
        if not np.isfinite(losses[t]):
            raise DivergenceError(t, losses[:t].copy())
        if not np.isfinite(c).all():  # a finite loss can still overflow its gradient (float32)
            raise DivergenceError(t, losses[:t].copy(), what="gradient")
        learner.backward(c)
        block += 1
        if block == update_every:
            block = 0
            grads = [learner.grad(), readout.grad()]
            try:
                optimizer.step(grads)
            except FloatingPointError:
                raise DivergenceError(t, losses[: t + 1].copy(), what="gradient") from None
    return losses
