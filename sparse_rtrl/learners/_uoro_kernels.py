"""Compiled kernels of UORO, batched like ``_base_kernels`` (``seg``: the cell's ``Segments``)."""

from typing import NamedTuple

import numpy as np
from numba import prange

from .._jit import njit, parallel_njit
from ._base_kernels import dynamics_matvec, immediate_vjp
from ._loop_kernels import loop_hooks, zero


@njit(math="gather")
def _uoro_update_stream(b, theta_params, coef, dloc, z, seg, uniform, u, theta, nu, nu_I, Du, work, eps):
    nub = nu[b]
    for k in range(nub.shape[0]):
        nub[k] = 1.0 if uniform[b, k] < 0.5 else -1.0
    dynamics_matvec(theta_params, coef[b], dloc[b], seg, u[b], work[b], Du[b])
    vi = nu_I[b]
    vi[:] = 0.0
    immediate_vjp(nub, coef[b], z[b], seg, work[b], vi)
    n_theta = np.sqrt(np.sum(theta[b] * theta[b]))
    n_du = np.sqrt(np.sum(Du[b] * Du[b]))
    n_vi = np.sqrt(np.sum(vi * vi))
    n_nu = np.sqrt(np.float64(nub.shape[0]))
    rho0 = np.sqrt((n_theta + eps) / (n_du + eps))
    rho1 = np.sqrt((n_vi + eps) / (n_nu + eps))
    ub = u[b]
    for k in range(ub.shape[0]):
        ub[k] = rho0 * Du[b, k] + rho1 * nub[k]
    tb = theta[b]
    inv0 = 1.0 / rho0
    inv1 = 1.0 / rho1
    for p in range(tb.shape[0]):
        tb[p] = tb[p] * inv0 + vi[p] * inv1


@njit(math="gather")
def uoro_update(theta_params, coef, dloc, z, seg, uniform, u, theta, nu, nu_I, Du, work, eps):
    """One UORO step for every stream (Tallec & Ollivier 2017).

    ``uniform`` (B, S) holds fresh U(0, 1) draws, turned into random signs
    ``nu``. Then ``u' = rho0 D u + rho1 nu`` and
    ``theta' = theta / rho0 + (nu^T I) / rho1`` with
    ``rho0 = sqrt((|theta| + eps) / (|D u| + eps))`` and
    ``rho1 = sqrt((|nu^T I| + eps) / (|nu| + eps))``. The eps guards make
    ``rho = 1`` at the start (u = theta = 0) and whenever a norm vanishes.
    ``D u`` and ``nu^T I`` use the factored Jacobians; ``work`` is (B, n, G).
    """
    for b in range(u.shape[0]):
        _uoro_update_stream(b, theta_params, coef, dloc, z, seg, uniform, u, theta, nu, nu_I, Du, work, eps)


@parallel_njit(math="gather")
def uoro_update_par(theta_params, coef, dloc, z, seg, uniform, u, theta, nu, nu_I, Du, work, eps):
    """``uoro_update`` with the streams spread over the cores (same result)."""
    for b in prange(u.shape[0]):
        _uoro_update_stream(b, theta_params, coef, dloc, z, seg, uniform, u, theta, nu, nu_I, Du, work, eps)


@njit
def _uoro_accumulate_stream(b, u, theta, c, acc):
    s = np.sum(c[b] * u[b])
    if s != 0.0:
        for p in range(theta.shape[1]):
            acc[b, p] += s * theta[b, p]


@njit
def uoro_accumulate(u, theta, c, acc):
    """``acc[b] += (c[b] . u[b]) theta[b]``."""
    for b in range(u.shape[0]):
        _uoro_accumulate_stream(b, u, theta, c, acc)


@parallel_njit
def uoro_accumulate_par(u, theta, c, acc):
    """``uoro_accumulate`` with the streams spread over the cores (same result)."""
    for b in prange(u.shape[0]):
        _uoro_accumulate_stream(b, u, theta, c, acc)


# -- the compiled online loop (``_loop_kernels``) ---------------------------------------------


class UOROLoop(NamedTuple):
    """What the compiled loop reads and writes of UORO (the step's uniforms come as the loop's draws)."""

    seg: tuple
    u: np.ndarray
    theta: np.ndarray
    nu: np.ndarray
    nu_I: np.ndarray
    Du: np.ndarray
    gate_work: np.ndarray
    eps: object


@njit
def _loop_after_step(parts, theta, state, coef, dloc, presyn, draws):
    uoro_update(theta, coef, dloc, presyn, parts.seg, draws, parts.u, parts.theta, parts.nu, parts.nu_I, parts.Du,
                parts.gate_work, parts.eps)


@njit
def _loop_backward(parts, theta, credit, acc):
    uoro_accumulate(parts.u, parts.theta, credit, acc)


@njit
def _loop_reset(parts):
    zero(parts.u)
    zero(parts.theta)


loop_hooks(UOROLoop, after_step=_loop_after_step, backward=_loop_backward, reset=_loop_reset)
