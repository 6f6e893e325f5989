"""Compiled kernels of the optimisers and their schedules. The step-by-step path (``SGD.step``,
``Adam.step``, ``Schedule.__call__``) and the fused loop call exactly these functions, so both give
identical numbers. The codes are ``optim.py``'s and ``schedules.py``'s.

The schedule and the weight decay are compiled with IEEE arithmetic (``math="strict"``): their
numbers must not depend on whether they run alone (called from Python) or inlined into the fused
loop, where a fast-math flag could let LLVM fuse or reorder them with the code around them.
"""

import numpy as np

from .._jit import njit
from .optim import SGD_CODE
from .schedules import COSINE_CODE, STEP_CODE


@njit
def sum_squares(g):
    total = 0.0
    for p in range(g.shape[0]):
        total += np.float64(g[p]) * np.float64(g[p])
    return total


@njit
def clip_scale(total_sq, clip):
    """Factor that brings the global gradient norm down to ``clip`` (1 if under, or clip <= 0)."""
    if clip <= 0.0:
        return 1.0
    norm = np.sqrt(total_sq)
    if norm <= clip:
        return 1.0
    return clip / norm


@njit
def sgd_update(param, grad, velocity, lr, momentum, nesterov, scale):
    """``v = momentum v + g``; ``p -= lr (g + momentum v)`` (Nesterov) or ``lr v``."""
    for p in range(param.shape[0]):
        g = grad[p] * scale
        if momentum != 0.0:
            v = momentum * velocity[p] + g
            velocity[p] = v
            step = g + momentum * v if nesterov else v
        else:
            step = g
        param[p] -= lr * step


@njit
def adam_update(param, grad, m1, m2, lr, beta1, beta2, eps, correction1, correction2, scale):
    """Adam (Kingma & Ba 2015) with bias corrections ``1 - beta^t`` given."""
    for p in range(param.shape[0]):
        g = grad[p] * scale
        a = beta1 * m1[p] + (1.0 - beta1) * g
        b = beta2 * m2[p] + (1.0 - beta2) * g * g
        m1[p] = a
        m2[p] = b
        param[p] -= lr * (a / correction1) / (np.sqrt(b / correction2) + eps)


@njit
def adam_corrections(beta1, beta2, t):
    """Adam's bias corrections ``1 - beta^t`` (one implementation for both paths)."""
    return 1.0 - beta1 ** t, 1.0 - beta2 ** t


@njit(math="strict")
def schedule_factor(schedule, t):
    """The multiplier of the base learning rate at update ``t`` (1-based) of a ``schedules.ScheduleArgs``.

    ``t / warmup`` during the warm-up; then, counting ``u = t - warmup - 1``
    from 0: ``factor ** (u // every)`` (step decay), ``final + (1 - final)
    (1 + cos(pi min(u / (total - warmup), 1))) / 2`` (cosine), or 1.
    """
    k = t - 1
    if k < schedule.warmup:
        return (k + 1) / schedule.warmup
    u = k - schedule.warmup
    if schedule.code == STEP_CODE:
        return schedule.factor ** np.float64(u // schedule.every)
    if schedule.code == COSINE_CODE:
        progress = min(u / (schedule.total - schedule.warmup), 1.0)
        return schedule.final + (1.0 - schedule.final) * (0.5 * (1.0 + np.cos(np.pi * progress)))
    return 1.0


@njit(math="strict")
def scheduled_rates(opt, t):
    """``(lr_t, lr_t * weight_decay)`` of update ``t``: two IEEE products, as ``Optimizer.step`` forms them.

    ``float`` changes nothing compiled; run as Python (``NUMBA_DISABLE_JIT=1``) it makes the rates Python
    floats, as in ``Optimizer.step``, which numpy multiplies with float32 arrays in float32, not float64.
    """
    lr = opt.lr * float(schedule_factor(opt.schedule, t))
    return lr, lr * opt.weight_decay


@njit(math="strict")
def decay_params(param, rate):
    """Decoupled weight decay: ``p -= rate p`` with ``rate = lr_t * weight_decay``."""
    for p in range(param.shape[0]):
        param[p] -= rate * param[p]


@njit
def optimizer_step(opt, t, total_sq, p0, g0, p1, g1):
    """One step of SGD or Adam on two parameter vectors with a shared clip, a schedule and weight decay.

    ``opt`` is an ``optim.OptimizerArgs``; ``t`` the 1-based update count
    (the schedule's and Adam's bias correction's); ``total_sq`` the squared
    global gradient norm. The same steps, in the same order, as ``Optimizer.step``.
    """
    scale = clip_scale(total_sq, opt.clip)
    lr, decay = scheduled_rates(opt, t)
    if opt.weight_decay != 0.0:
        decay_params(p0, decay)
        decay_params(p1, decay)
    if opt.code == SGD_CODE:
        sgd_update(p0, g0, opt.s0a, lr, opt.momentum, opt.nesterov, scale)
        sgd_update(p1, g1, opt.s1a, lr, opt.momentum, opt.nesterov, scale)
    else:
        c1, c2 = adam_corrections(opt.beta1, opt.beta2, t)
        adam_update(p0, g0, opt.s0a, opt.s0b, lr, opt.beta1, opt.beta2, opt.eps, c1, c2, scale)
        adam_update(p1, g1, opt.s1a, opt.s1b, lr, opt.beta1, opt.beta2, opt.eps, c1, c2, scale)
