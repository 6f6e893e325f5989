"""Compiled kernels of KeRNL: the credit through its sensitivity matrix, and its perturbed copy.

The traces of RFLO and KeRNL (and SnAp-1's diagonal layout) are updated by
the one per-parameter trace kernel, ``_base_kernels.trace_update``: with the
same decays and credits the three give the same numbers, bit for bit. e-prop
runs on SnAp's kernels.

All kernels are batched: the leading axis of every per-stream array is the
stream ``b``. Each has a per-stream (or per-row) body and two drivers, a
serial one and a ``_par`` one that spreads the streams (rows) over the cores
with ``prange``; both give identical numbers. They never validate and never
allocate; the learners in ``local.py`` own the buffers.
"""

from typing import NamedTuple

import numpy as np
from numba import prange

from .._cell_kernels import cell_step
from .._jit import njit, parallel_njit
from ._base_kernels import trace_update
from ._loop_kernels import loop_hooks, zero


# -- KeRNL: credit through the sensitivity, and the perturbed copy ------------------


@njit
def _unit_credit_stream(b, c, A, u):
    ub = u[b]
    cb = c[b]
    for i in range(ub.shape[0]):
        ub[i] = 0.0
    for r in range(A.shape[0]):
        cr = cb[r]
        if cr != 0.0:
            Ar = A[r]
            for i in range(ub.shape[0]):
                ub[i] += cr * Ar[i]


@njit
def unit_credit(c, A, u):
    """``u[b] = c[b]^T A``: the credit of each unit's trace under ``J ~ A[k, i] B_p``.

    With ``A = I`` every term but one is an exact zero, so ``u = c`` exactly.
    """
    for b in range(u.shape[0]):
        _unit_credit_stream(b, c, A, u)


@parallel_njit
def unit_credit_par(c, A, u):
    """``unit_credit`` with the streams spread over the cores (same result)."""
    for b in prange(u.shape[0]):
        _unit_credit_stream(b, c, A, u)


@njit
def _kernl_perturb_stream(b, h, copy_next, normal, sigma, gamma, A, copy, omega, big_gamma, decay, err, row):
    n = h.shape[1]
    one = h.dtype.type(1.0)
    db = decay[b]
    ob = omega[b]
    gb = big_gamma[b]
    cb = copy[b]
    eb = err[b]
    rb = row[b]
    hb = h[b]
    nb = normal[b]
    cn = copy_next[b]
    for i in range(n):
        k = one - gamma[i]
        db[i] = k
        zeta = h.dtype.type(sigma * nb[i])
        # dOmega/dgamma, from the Omega of the previous step (Omega' = k Omega + zeta).
        gb[i] = k * gb[i] - ob[i]
        ob[i] = k * ob[i] + zeta
        cb[i] = cn[i] + zeta
    for r in range(n):
        Ar = A[r]
        acc = h.dtype.type(0.0)
        for j in range(n):
            acc += Ar[j] * ob[j]
        eb[r] = acc - (cb[r] - hb[r])
    for i in range(n):
        rb[i] = 0.0
    for r in range(n):
        er = eb[r]
        Ar = A[r]
        for i in range(n):
            rb[i] += er * Ar[i]


@njit
def kernl_perturb(h, copy_next, normal, sigma, gamma, A, copy, omega, big_gamma, decay, err, row):
    """One step of KeRNL's perturbation bookkeeping for every stream.

    ``copy_next`` is the copy's new state, computed from its perturbed state
    ``copy`` with this step's weights and input; ``normal`` (B, n) holds fresh
    N(0, 1) draws. With ``k = 1 - gamma`` (written to ``decay``) and
    ``zeta = sigma * normal``: ``Gamma <- k Gamma - Omega``,
    ``Omega <- k Omega + zeta``, ``copy <- copy_next + zeta``; then the
    prediction error ``err = A Omega - (copy - h)`` and ``row = err^T A``,
    both with the sensitivity ``A`` before this step's update.
    """
    for b in range(h.shape[0]):
        _kernl_perturb_stream(b, h, copy_next, normal, sigma, gamma, A, copy, omega, big_gamma, decay, err, row)


@parallel_njit
def kernl_perturb_par(h, copy_next, normal, sigma, gamma, A, copy, omega, big_gamma, decay, err, row):
    """``kernl_perturb`` with the streams spread over the cores (same result)."""
    for b in prange(h.shape[0]):
        _kernl_perturb_stream(b, h, copy_next, normal, sigma, gamma, A, copy, omega, big_gamma, decay, err, row)


@njit
def _kernl_learn_row(i, A, gamma, err, omega, big_gamma, row, step):
    Ai = A[i]
    for b in range(err.shape[0]):
        g = step * err[b, i]
        ob = omega[b]
        for j in range(Ai.shape[0]):
            Ai[j] -= g * ob[j]
    gi = gamma[i]
    for b in range(err.shape[0]):
        gi -= step * row[b, i] * big_gamma[b, i]
    # Clipped so that the decay k = 1 - gamma stays in [0, 1].
    zero = gamma.dtype.type(0.0)
    one = gamma.dtype.type(1.0)
    if gi < zero:
        gi = zero
    elif gi > one:
        gi = one
    gamma[i] = gi


@njit
def kernl_learn(A, gamma, err, omega, big_gamma, row, step):
    """``A -= step sum_b err_b Omega_b^T``; ``gamma -= step sum_b row_b * Gamma_b``,
    clipped to [0, 1]. Streams are summed in order, row by row of ``A``."""
    for i in range(A.shape[0]):
        _kernl_learn_row(i, A, gamma, err, omega, big_gamma, row, step)


@parallel_njit
def kernl_learn_par(A, gamma, err, omega, big_gamma, row, step):
    """``kernl_learn`` with the rows of ``A`` spread over the cores (same result:
    each row sums its streams in the same order)."""
    for i in prange(A.shape[0]):
        _kernl_learn_row(i, A, gamma, err, omega, big_gamma, row, step)


# -- the compiled online loop (``_loop_kernels``): RFLO and KeRNL -----------------------------
#
# Inside the loop every step's credit arrives before the next step, so the deferred trace update
# (``_UnitTrace._deferred``) always runs with its credit, in ``backward``: ``trace_update(..., True)``.
# The learners settle a pending update before the loop and write back the flag after it.


class RFLOLoop(NamedTuple):
    """What the compiled loop reads and writes of RFLO: the traces, and the leak (a view of the loop's
    ``dloc`` buffer, which the cell rewrites each step) as their decay."""

    seg: tuple
    leak: np.ndarray
    units: np.ndarray
    coef: np.ndarray
    presyn: np.ndarray
    trace: np.ndarray


@njit
def _rflo_backward(parts, theta, credit, acc):
    trace_update(parts.seg, parts.leak, parts.units, parts.coef, parts.presyn, credit, parts.trace, acc, True)


@njit
def _rflo_reset(parts):
    zero(parts.trace)


loop_hooks(RFLOLoop, backward=_rflo_backward, reset=_rflo_reset)


class KeRNLLoop(NamedTuple):
    """What the compiled loop reads and writes of KeRNL: the traces, the perturbed copy (stepped with the
    cell's ``kernel_args``) and its buffers, the sensitivity ``A`` and rates ``gamma`` with their
    bookkeeping; ``learn`` is ``lr > 0``, ``step`` is ``lr / sigma**2`` in the cell's dtype. The step's
    N(0, 1) numbers come as the loop's draws."""

    seg: tuple
    decay: np.ndarray
    units: np.ndarray
    coef: np.ndarray
    presyn: np.ndarray
    trace: np.ndarray
    cell_args: tuple
    x: np.ndarray
    copy: np.ndarray
    copy_next: np.ndarray
    copy_coef: np.ndarray
    copy_dloc: np.ndarray
    copy_presyn: np.ndarray
    sigma: float
    gamma: np.ndarray
    A: np.ndarray
    omega: np.ndarray
    big_gamma: np.ndarray
    err: np.ndarray
    row: np.ndarray
    u: np.ndarray
    learn: bool
    step: object


@njit
def _kernl_after_step(parts, theta, state, coef, dloc, presyn, draws):
    # The input of this step, as the cell stored it (plain loops: see ``_jit``).
    x = parts.x
    n = parts.copy.shape[1]
    for b in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[b, j] = presyn[b, n + j]
    # ``cell.advance`` with parallel=False and the Jacobian factors (its defaults here): the serial kernel.
    cell_step(parts.cell_args, parts.copy, x, parts.copy_next, parts.copy_coef, parts.copy_dloc, parts.copy_presyn,
              True)
    kernl_perturb(state, parts.copy_next, draws, parts.sigma, parts.gamma, parts.A, parts.copy, parts.omega,
                  parts.big_gamma, parts.decay, parts.err, parts.row)
    if parts.learn:
        kernl_learn(parts.A, parts.gamma, parts.err, parts.omega, parts.big_gamma, parts.row, parts.step)


@njit
def _kernl_backward(parts, theta, credit, acc):
    unit_credit(credit, parts.A, parts.u)
    trace_update(parts.seg, parts.decay, parts.units, parts.coef, parts.presyn, parts.u, parts.trace, acc, True)


@njit
def _kernl_reset(parts):
    """``KeRNL._reset`` after ``Learner.reset`` zeroed the state: the copy starts from it (zeros)."""
    zero(parts.trace)
    zero(parts.copy)
    zero(parts.omega)
    zero(parts.big_gamma)
    zero(parts.err)


loop_hooks(KeRNLLoop, after_step=_kernl_after_step, backward=_kernl_backward, reset=_kernl_reset)
