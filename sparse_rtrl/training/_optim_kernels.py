"""Compiled kernels of the optimisers. The step-by-step path (``SGD.step``, ``Adam.step``) and the
fused loop call exactly these functions, so both give identical numbers. The codes are ``optim.py``'s."""

import numpy as np

from .._jit import njit
from .optim import SGD_CODE


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


@njit
def optimizer_step(opt, t, total_sq, p0, g0, p1, g1):
    """One step of SGD or Adam on two parameter vectors with a shared clip.

    ``opt`` is an ``optim.OptimizerArgs``; ``t`` the 1-based step count
    (Adam's bias correction); ``total_sq`` the squared global gradient norm.
    """
    code, lr, momentum, nesterov, beta1, beta2, eps, clip, s0a, s0b, s1a, s1b = opt
    scale = clip_scale(total_sq, clip)
    if code == SGD_CODE:
        sgd_update(p0, g0, s0a, lr, momentum, nesterov, scale)
        sgd_update(p1, g1, s1a, lr, momentum, nesterov, scale)
    else:
        c1, c2 = adam_corrections(beta1, beta2, t)
        adam_update(p0, g0, s0a, s0b, lr, beta1, beta2, eps, c1, c2, scale)
        adam_update(p1, g1, s1a, s1b, lr, beta1, beta2, eps, c1, c2, scale)
