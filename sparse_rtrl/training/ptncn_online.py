"""Online training of a :class:`~sparse_rtrl.PTNCN` over a stream, and the bridge from next-step tasks.

The P-TNCN is a generative model: at every step it predicts the observation,
sees it, corrects its states and forms its local updates. It trains on the
tasks whose target at each step is the input of the next one (next-step
prediction: ``task.next_step``, true for ``charlm`` and ``bouncing``), with
the same information a recurrent network with a readout gets: the first
input of a sequence primes the model (a step without learning, the authors'
``t' = 1``), then each target is an observation.
"""

import numpy as np

from .._validate import check_int, check_real_array
from .online import DivergenceError
from .optim import Optimizer

__all__ = ["train_ptncn", "segment_observations"]


def _check_model(model):
    from ..ptncn import PTNCN

    if not isinstance(model, PTNCN):
        raise TypeError(f"model must be a sparse_rtrl.PTNCN, got {type(model).__name__}")


def train_ptncn(model, optimizer, observations, mask=None, update_every: int = 1) -> np.ndarray:
    """Run a P-TNCN over a stream of observations, an optimiser update every ``update_every`` steps.

    Parameters
    ----------
    model : PTNCN
        Continues from its current state (``reset()`` and a priming step first
        for a new sequence: see :func:`segment_observations`).
    optimizer : Optimizer or None
        Over ``[model.params]``. None evaluates: the model predicts and
        corrects its states, and forms no update.
    observations : array_like, shape (T, n_x), or (T, B, n_x) for a batched model
        One-hot symbols (``output="softmax"``) or pixels in [0, 1] (``"sigmoid"``).
    mask : array_like, shape (T,) or (T, B), optional
        1 for a real observation, 0 for padding (no error, no update, no loss).
    update_every : int
        Steps per optimiser update. Updates left in a final partial block stay
        in the model's accumulator (``model.grad()`` hands them over).

    Returns
    -------
    ndarray, shape (T,)
        The loss of each step's prediction (nats, summed over the streams: see
        :meth:`PTNCN.loss`), made before the observation was seen.

    Raises
    ------
    DivergenceError
        A prediction or an update stopped being finite; the parameters are
        those before that step's update.
    """
    _check_model(model)
    learn = optimizer is not None
    if learn:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a sparse_rtrl Optimizer or None, got {type(optimizer).__name__}")
        if len(optimizer.params) != 1 or optimizer.params[0] is not model.params:
            raise ValueError("optimizer must be built over [model.params]")
    update_every = check_int(update_every, "update_every", minimum=1)
    B = model.batch_size
    obs = np.asarray(observations)
    T = obs.shape[0] if obs.ndim else 0
    shape = (T,) + ((B,) if B is not None else ()) + (model.n_x,)
    xs = check_real_array(observations, "observations", shape, model.dtype).reshape(T, B or 1, model.n_x)
    if mask is None:
        ms = np.ones((T, B or 1), model.dtype)
    else:
        ms = check_real_array(mask, "mask", (T,) + ((B,) if B is not None else ()), model.dtype)
        if ms.size and (ms.min() < 0.0 or ms.max() > 1.0):
            raise ValueError("mask must lie in [0, 1] (1: a real observation, 0: padding)")
        ms = ms.reshape(T, B or 1)
    losses = np.empty(T)
    for t in range(T):
        x, m = xs[t], ms[t]
        prediction = model._run(x, m, learn)
        losses[t] = model._loss(prediction.reshape(x.shape), x, m)
        if not np.isfinite(losses[t]):
            raise DivergenceError(t, losses[:t].copy())
        if learn and (t + 1) % update_every == 0:
            try:
                optimizer.step([model.grad()])
            except FloatingPointError:
                raise DivergenceError(t, losses[:t + 1].copy(), what="gradient") from None
    return losses


def segment_observations(task, seg, dtype=None):
    """A next-step task's segment as a P-TNCN sees it: ``(first, observations, mask)``.

    ``first`` is the segment's first input (prime a reset model with
    ``model.step(first, learn=False)``), ``observations[t]`` the target of
    step ``t`` (the input of step ``t + 1``: one-hot for classes, else the
    values) and ``mask[t]`` 0 where a class target is ``-1`` (padding).
    Shapes follow the task's: ``(n,)``/``(T, n)``/``(T,)`` unbatched,
    ``(B, n)``/``(T, B, n)``/``(T, B)`` batched.
    """
    if not getattr(task, "next_step", False):
        raise ValueError(f"the {task.name!r} task is not next-step prediction (its targets are not its next "
                         f"inputs): a P-TNCN trains on next-step tasks such as charlm and bouncing")
    dtype = np.dtype(task.dtype if dtype is None else dtype)
    targets = np.asarray(seg.targets)
    if task.loss == "cross_entropy":
        real = targets >= 0
        obs = np.zeros(targets.shape + (task.n_out,), dtype)
        idx = np.nonzero(real)
        obs[idx + (targets[idx],)] = 1.0
        mask = real.astype(dtype)
    else:
        obs = targets.astype(dtype, copy=False)
        mask = np.ones(targets.shape[:-1], dtype)
    return np.asarray(seg.inputs[0], dtype), obs, mask
