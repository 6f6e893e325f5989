"""Compiled kernels of KF-RTRL and reverse KF-RTRL (Kronecker-factored influence).

Both learners keep, per stream, two dense factors ``A`` and ``B`` of a
Kronecker-factored influence estimate and update them once per step from
the dynamics Jacobian ``D`` (formed on its CSR pattern by
``_learner_kernels.form_dynamics``), the unit gains ``d = coef[:, 0]`` and the
presynaptic vector ``z = [h_prev; x; 1]``.

All kernels are batched (leading axis = stream ``b``) with a serial driver
``k`` and a ``prange`` driver ``k_par`` around one ``_k_stream`` body, so the
two give identical numbers. They never validate and never allocate: the
wrappers in ``kronecker.py`` own every buffer.

Random signs arrive as ``uniform`` draws in [0, 1) (float64, drawn in Python
from the learner's generator); a draw ``< 0.5`` is the sign ``+1``, any
other ``-1``.
"""

from typing import NamedTuple

import numpy as np

from numba import prange, uint64

from .._jit import njit, parallel_njit
from ._base_kernels import form_dynamics
from ._loop_kernels import loop_hooks, zero

# Rounding must not depend on where a stream body is compiled: each one is
# compiled more than once (a signed index under ``range``, an unsigned one
# under ``prange``, inlined into different drivers), and a stream's numbers
# must be the same in a batch, alone, serial or parallel. Reassociation and
# approximate reciprocals let each copy round differently, and so does
# contraction of ``a * b + c * d``, which can be fused two ways. Under the
# default fastmath set a batched RKF-RTRL stream was once seen to differ from
# the single stream by one ulp in ``B`` (in ``src * inv0 + v * z``, the likely
# cause; not reproduced since). So the kernels are strict IEEE
# (``math="strict"``), except the multiply-add loops whose every product has
# the form ``acc += a * b`` (``D B``, its norm, ``c^T B``: ``math="contract"``).
# Such a sum can be fused only one way, into an FMA, and the FMAs made the step
# about 25% faster (n = 128, float32).


@njit(math="contract")
def _dynamics_times(dyn_ptr, dyn_idx, dyn, M, out, dense):
    """``out = D M`` for one stream (D in CSR, M and out dense row-major); returns ``||out||_F^2``.

    Row ``k`` of the product is a sum of rows of ``M``, one per stored entry
    of row ``k`` of ``D``: the inner loop streams contiguous rows, so the
    cost is ``nnz(D) * M.shape[1]`` multiply-adds. With a dense scratch
    ``dense`` (S x S, zero outside D's pattern; empty: not used) the product
    is one BLAS call instead (the learners choose, as ``exact.blas_form``).
    """
    width = M.shape[1]
    sq = out.dtype.type(0.0)
    if dense.shape[0] > 0:
        for k in range(out.shape[0]):
            for e in range(dyn_ptr[k], dyn_ptr[k + 1]):
                dense[k, dyn_idx[e]] = dyn[e]
        np.dot(dense, M, out)
        for k in range(out.shape[0]):
            sq += _row_sum_squares(out[k])
        return sq
    for k in range(out.shape[0]):
        row = out[k]
        for c in range(width):
            row[c] = 0.0
        for e in range(uint64(dyn_ptr[k]), uint64(dyn_ptr[k + 1])):
            # No test for dk == 0: a slice made inside a branch keeps its
            # reference counting and the loop ran 2x slower.
            dk = dyn[e]
            src = M[dyn_idx[e]]
            for c in range(width):
                row[c] += dk * src[c]
        sq += _row_sum_squares(row)
    return sq


@njit(math="contract")
def _row_sum_squares(v):
    """``sum(v * v)`` in a fixed order: eight interleaved partial sums (a short
    dependency chain) combined pairwise, then the tail."""
    zero = v.dtype.type(0.0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    m = uint64(v.shape[0]) // uint64(8) * uint64(8)
    for c in range(uint64(0), m, uint64(8)):
        s0 += v[c] * v[c]
        s1 += v[c + 1] * v[c + 1]
        s2 += v[c + 2] * v[c + 2]
        s3 += v[c + 3] * v[c + 3]
        s4 += v[c + 4] * v[c + 4]
        s5 += v[c + 5] * v[c + 5]
        s6 += v[c + 6] * v[c + 6]
        s7 += v[c + 7] * v[c + 7]
    total = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    for c in range(m, uint64(v.shape[0])):
        total += v[c] * v[c]
    return total


@njit(math="strict")
def _sum_squares(v):
    sq = v.dtype.type(0.0)
    for k in range(v.shape[0]):
        sq += v[k] * v[k]
    return sq


@njit(math="strict")
def _sign(u):
    return 1.0 if u < 0.5 else -1.0


# -- KF-RTRL ----------------------------------------------------------------------


@njit(math="strict")
def _kf_update_stream(b, dyn_ptr, dyn_idx, dyn, coef, z, uniform, A, B, DB, eps, dense):
    dt = A.dtype.type
    nu0 = dt(_sign(uniform[b, 0]))
    nu1 = dt(_sign(uniform[b, 1]))
    Ab = A[b]
    Bb = B[b]
    DBb = DB[b]
    zb = z[b]
    cb = coef[b]
    sq_db = _dynamics_times(dyn_ptr, dyn_idx, dyn[b], Bb, DBb, dense[b])
    sq_d = dt(0.0)
    for k in range(Bb.shape[0]):
        sq_d += cb[k, 0] * cb[k, 0]
    rho0 = np.sqrt((np.sqrt(sq_db) + eps) / (np.sqrt(_sum_squares(Ab)) + eps))
    rho1 = np.sqrt((np.sqrt(sq_d) + eps) / (np.sqrt(_sum_squares(zb)) + eps))
    a0 = nu0 * rho0
    a1 = nu1 * rho1
    for j in range(Ab.shape[0]):
        Ab[j] = a0 * Ab[j] + a1 * zb[j]
    b0 = nu0 / rho0
    b1 = nu1 / rho1
    for k in range(Bb.shape[0]):
        row = Bb[k]
        src = DBb[k]
        for i in range(row.shape[0]):
            row[i] = b0 * src[i]
        row[k] += b1 * cb[k, 0]


@njit(math="strict")
def kf_update(dyn_ptr, dyn_idx, dyn, coef, z, uniform, A, B, DB, eps, dense):
    """One KF-RTRL step for every stream (Mujika, Meier & Steger 2018).

    ``A' = nu0 rho0 A + nu1 rho1 z``, ``B' = nu0 (D B) / rho0 + nu1 diag(d) / rho1``
    with ``rho0 = sqrt((||D B|| + eps) / (||A|| + eps))``,
    ``rho1 = sqrt((||d|| + eps) / (||z|| + eps))``, ``d = coef[:, 0]``,
    signs from ``uniform`` (B, 2). ``A`` is (B, n_presyn), ``B`` and the work
    array ``DB`` are (B, S, n); ``dense`` (B, S, S) is the scratch of the BLAS
    form of ``D B``, or (B, 0, 0).
    """
    for b in range(A.shape[0]):
        _kf_update_stream(b, dyn_ptr, dyn_idx, dyn, coef, z, uniform, A, B, DB, eps, dense)


@parallel_njit(math="strict")
def kf_update_par(dyn_ptr, dyn_idx, dyn, coef, z, uniform, A, B, DB, eps, dense):
    """``kf_update`` with the streams spread over the cores (same result)."""
    for b in prange(A.shape[0]):
        _kf_update_stream(b, dyn_ptr, dyn_idx, dyn, coef, z, uniform, A, B, DB, eps, dense)


@njit(math="contract")
def _credit_times(c, M, u):
    """``u = c^T M`` (M dense, S x width): a sum of contiguous rows."""
    for i in range(u.shape[0]):
        u[i] = 0.0
    for k in range(M.shape[0]):
        ck = c[k]
        row = M[k]  # outside the branch: no reference counting per row
        if ck != 0.0:
            for i in range(u.shape[0]):
                u[i] += ck * row[i]


@njit(math="strict")
def _kf_gather(seg, a, u, accb):
    # acc[p] += (c^T B)[unit(p)] * A[src(p)]: one row segment shares its unit.
    seg_ptr, seg_unit, src = seg.seg_ptr, seg.seg_unit, seg.src
    for s in range(seg_unit.shape[0]):
        val = u[seg_unit[s]]
        if val != 0.0:
            for p in range(uint64(seg_ptr[s]), uint64(seg_ptr[s + 1])):
                accb[p] += val * a[src[p]]


@njit(math="strict")
def _kf_accumulate_stream(b, seg, A, B, c, u, acc):
    _credit_times(c[b], B[b], u[b])
    _kf_gather(seg, A[b], u[b], acc[b])


@njit(math="strict")
def kf_accumulate(seg, A, B, c, u, acc):
    """``acc[b, p] += A[b, src(p)] * (c[b]^T B[b])[unit(p)]``; ``u`` is (B, n) work."""
    for b in range(A.shape[0]):
        _kf_accumulate_stream(b, seg, A, B, c, u, acc)


@parallel_njit(math="strict")
def kf_accumulate_par(seg, A, B, c, u, acc):
    """``kf_accumulate`` with the streams spread over the cores (same result)."""
    for b in prange(A.shape[0]):
        _kf_accumulate_stream(b, seg, A, B, c, u, acc)


# -- Reverse KF-RTRL --------------------------------------------------------------


@njit(math="strict")
def _rkf_update_stream(b, dyn_ptr, dyn_idx, dyn, coef, z, uniform, A, B, DB, eps, dense):
    dt = A.dtype.type
    Ab = A[b]
    Bb = B[b]
    DBb = DB[b]
    zb = z[b]
    cb = coef[b]
    ub = uniform[b]
    sq_db = _dynamics_times(dyn_ptr, dyn_idx, dyn[b], Bb, DBb, dense[b])
    # |nu * d| = |d| and |nu| = sqrt(n): the signs drop out of rho1.
    sq_nd = dt(0.0)
    for i in range(Ab.shape[0]):
        sq_nd += cb[i, 0] * cb[i, 0]
    sq_nu = dt(Ab.shape[0])
    rho0 = np.sqrt((np.sqrt(sq_db) + eps) / (np.sqrt(_sum_squares(Ab)) + eps))
    rho1 = np.sqrt((np.sqrt(sq_nd) * np.sqrt(_sum_squares(zb)) + eps) / (np.sqrt(sq_nu) + eps))
    for i in range(Ab.shape[0]):
        Ab[i] = rho0 * Ab[i] + rho1 * dt(_sign(ub[i]))
    inv0 = dt(1.0) / rho0
    inv1 = dt(1.0) / rho1
    for k in range(Bb.shape[0]):
        row = Bb[k]
        src = DBb[k]
        v = dt(_sign(ub[k])) * cb[k, 0] * inv1
        for j in range(row.shape[0]):
            row[j] = src[j] * inv0 + v * zb[j]


@njit(math="strict")
def rkf_update(dyn_ptr, dyn_idx, dyn, coef, z, uniform, A, B, DB, eps, dense):
    """One reverse KF-RTRL step for every stream (Marschall, Cho & Savin 2020).

    ``A' = rho0 A + rho1 nu``, ``B' = (D B) / rho0 + (nu * d) z^T / rho1`` with
    ``rho0 = sqrt((||D B|| + eps) / (||A|| + eps))``,
    ``rho1 = sqrt((||nu * d|| ||z|| + eps) / (||nu|| + eps))``, ``d = coef[:, 0]``,
    signs ``nu`` from ``uniform`` (B, n). ``A`` is (B, n), ``B`` and the work
    array ``DB`` are (B, S, n_presyn); ``dense`` as in ``kf_update``.
    """
    for b in range(A.shape[0]):
        _rkf_update_stream(b, dyn_ptr, dyn_idx, dyn, coef, z, uniform, A, B, DB, eps, dense)


@parallel_njit(math="strict")
def rkf_update_par(dyn_ptr, dyn_idx, dyn, coef, z, uniform, A, B, DB, eps, dense):
    """``rkf_update`` with the streams spread over the cores (same result)."""
    for b in prange(A.shape[0]):
        _rkf_update_stream(b, dyn_ptr, dyn_idx, dyn, coef, z, uniform, A, B, DB, eps, dense)


@njit(math="strict")
def _rkf_gather(seg, a, u, accb):
    # acc[p] += A[unit(p)] * (c^T B)[src(p)]: one row segment shares its unit.
    seg_ptr, seg_unit, src = seg.seg_ptr, seg.seg_unit, seg.src
    for s in range(seg_unit.shape[0]):
        val = a[seg_unit[s]]
        if val != 0.0:
            for p in range(uint64(seg_ptr[s]), uint64(seg_ptr[s + 1])):
                accb[p] += val * u[src[p]]


@njit(math="strict")
def _rkf_accumulate_stream(b, seg, A, B, c, u, acc):
    _credit_times(c[b], B[b], u[b])
    _rkf_gather(seg, A[b], u[b], acc[b])


@njit(math="strict")
def rkf_accumulate(seg, A, B, c, u, acc):
    """``acc[b, p] += A[b, unit(p)] * (c[b]^T B[b])[src(p)]``; ``u`` is (B, n_presyn) work."""
    for b in range(A.shape[0]):
        _rkf_accumulate_stream(b, seg, A, B, c, u, acc)


@parallel_njit(math="strict")
def rkf_accumulate_par(seg, A, B, c, u, acc):
    """``rkf_accumulate`` with the streams spread over the cores (same result)."""
    for b in prange(A.shape[0]):
        _rkf_accumulate_stream(b, seg, A, B, c, u, acc)


# -- the compiled online loop (``_loop_kernels``) ---------------------------------------------


class KFLoop(NamedTuple):
    """What the compiled loop reads and writes of KF-RTRL: D's pattern, plan and values, the factors and their
    work arrays (the step's uniforms come as the loop's draws)."""

    dyn_ptr: np.ndarray
    dyn_idx: np.ndarray
    dyn_plan: tuple
    dyn: np.ndarray
    A: np.ndarray
    B: np.ndarray
    DB: np.ndarray
    dense: np.ndarray
    seg: tuple
    u: np.ndarray
    eps: object


class RKFLoop(KFLoop):
    """What the compiled loop reads and writes of reverse KF-RTRL: the fields of ``KFLoop``, in a type
    of its own, which picks its hooks."""


@njit
def _kf_after_step(parts, theta, state, coef, dloc, presyn, draws):
    form_dynamics(theta, coef, dloc, parts.dyn_plan, parts.dyn)
    kf_update(parts.dyn_ptr, parts.dyn_idx, parts.dyn, coef, presyn, draws, parts.A, parts.B, parts.DB, parts.eps,
              parts.dense)


@njit
def _kf_backward(parts, theta, credit, acc):
    kf_accumulate(parts.seg, parts.A, parts.B, credit, parts.u, acc)


@njit
def _rkf_after_step(parts, theta, state, coef, dloc, presyn, draws):
    form_dynamics(theta, coef, dloc, parts.dyn_plan, parts.dyn)
    rkf_update(parts.dyn_ptr, parts.dyn_idx, parts.dyn, coef, presyn, draws, parts.A, parts.B, parts.DB, parts.eps,
               parts.dense)


@njit
def _rkf_backward(parts, theta, credit, acc):
    rkf_accumulate(parts.seg, parts.A, parts.B, credit, parts.u, acc)


@njit
def _factors_reset(parts):
    zero(parts.A)
    zero(parts.B)


loop_hooks(KFLoop, after_step=_kf_after_step, backward=_kf_backward, reset=_factors_reset)
loop_hooks(RKFLoop, after_step=_rkf_after_step, backward=_rkf_backward, reset=_factors_reset)
