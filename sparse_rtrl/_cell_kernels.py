"""Compiled step kernels of the built-in cells.

Every cell kernel has the same signature so that learners (and fused loops)
can drive any cell without knowing which one it is::

    kernel(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians)

``args``      the cell's own NamedTuple of arrays and scalars (``Cell.kernel_args``)
``s_prev``    (B, S) states entering the step
``x``         (B, n_in) inputs
``s_next``    (B, S) written: the new states
``coef``      (B, S, G) written: ds_next[k] / d(pre-activation of gate g at unit(k))
``dloc``      (B, n, m, m) written: the unit-local block of D, the direct paths
              from state ``i + c n`` to ``i + a n`` that bypass the weights
              (the leak, the GRU's ``z h``, the LSTM's ``f c``)
``presyn``    (B, n_presyn) written: the presynaptic vector z = [h_prev; x; 1]

Neither Jacobian is formed here. Parameter ``p`` of gate ``g`` at unit ``i``
with presynaptic index ``src`` has ``I[k, p] = coef[k, g] * z[src]`` for each
state ``k`` of unit ``i`` that gate ``g`` touches (``CellStructure``), and
because a pre-activation depends on ``h_j`` only through its weight,
``D = D_local + sum over recurrent p of coef[k, g] theta_p e_k e_src^T``.
Learners use that factored form (``_learner_kernels``). When
``want_jacobians`` is False only ``s_next`` is written.

Each cell has a per-stream body (``_vanilla_stream``) and two drivers over
the batch: ``vanilla_kernel`` (serial) and ``vanilla_kernel_par`` (streams
spread over the cores with ``prange``); the results are identical.

Kernels never validate: the public wrappers in ``cells.py`` do.

Each ``overload`` below (a choice made from argument types when a kernel is
compiled) has a Python body that makes the same choice at run time, for
``NUMBA_DISABLE_JIT=1``.
"""

import numpy as np
from numba import prange, types, uint64

from ._jit import njit, overload, parallel_njit


@njit(math="gather")
def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


# tanh from one exp (|x| > 0.625) or a rational function (|x| <= 0.625), the
# Cephes construction: measured against libm over 2.2 million points, at most
# 2 ulp (float64) and 1 ulp (float32) apart, and 2.5x faster (11 vs 27 ns).
# NaN stays NaN, +-inf gives +-1.
_TP0, _TP1, _TP2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3
_TQ0, _TQ1, _TQ2 = 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3


def fast_tanh(x):
    """``tanh`` for compiled code (see the comment above); float32 stays float32."""
    if isinstance(x, np.float32):
        return _fast_tanh32(x)
    return _fast_tanh64(x)


def _fast_tanh32(x):
    ax = abs(x)
    if ax > np.float32(0.625):
        z = np.float32(1.0) - np.float32(2.0) / (np.exp(np.float32(2.0) * ax) + np.float32(1.0))
        return -z if x < 0 else z
    z = x * x
    return ((((np.float32(-5.70498872745e-3) * z + np.float32(2.06390887954e-2)) * z
              - np.float32(5.37397155531e-2)) * z + np.float32(1.33314422036e-1)) * z
            - np.float32(3.33332819422e-1)) * z * x + x


def _fast_tanh64(x):
    ax = abs(x)
    if ax > 0.625:
        z = 1.0 - 2.0 / (np.exp(2.0 * ax) + 1.0)
        return -z if x < 0 else z
    z = x * x
    return x + x * z * ((_TP0 * z + _TP1) * z + _TP2) / (((z + _TQ0) * z + _TQ1) * z + _TQ2)


@overload(fast_tanh)
def _fast_tanh_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return _fast_tanh32
    if isinstance(x, types.Float):
        return _fast_tanh64
    return None


# -- row products ---------------------------------------------------------------
#
# A weight matrix reaches a kernel either as its CSR triple (indptr, indices,
# data) or, when its pattern is dense, as a 2-D array (a view of its slice of
# the parameters). row_dot and friends pick the loop from the argument's type
# at compile time: contiguous rows get a reassociated loop that vectorises,
# sparse rows a scalar gather loop (``math="gather"``, see _jit). Choosing at
# run time instead, with a branch per row, was measured to slow every row.


@njit
def _dense_dot(row, v):
    acc = row.dtype.type(0.0)
    for k in range(row.shape[0]):
        acc += row[k] * v[k]
    return acc


@njit
def _dense_dot3(r0, r1, r2, v):
    a0 = r0.dtype.type(0.0)
    a1 = a0
    a2 = a0
    for k in range(v.shape[0]):
        vk = v[k]
        a0 += r0[k] * vk
        a1 += r1[k] * vk
        a2 += r2[k] * vk
    return a0, a1, a2


@njit
def _dense_dot4(r0, r1, r2, r3, v):
    a0 = r0.dtype.type(0.0)
    a1 = a0
    a2 = a0
    a3 = a0
    for k in range(v.shape[0]):
        vk = v[k]
        a0 += r0[k] * vk
        a1 += r1[k] * vk
        a2 += r2[k] * vk
        a3 += r3[k] * vk
    return a0, a1, a2, a3


@njit(math="gather")
def _sparse_dot(indptr, indices, data, i, v):
    acc = data.dtype.type(0.0)
    for e in range(uint64(indptr[i]), uint64(indptr[i + 1])):
        acc += data[e] * v[indices[e]]
    return acc


@njit(math="gather")
def _sparse_dot3(indptr, indices, d0, d1, d2, i, v):
    """Three matrices sharing one pattern: each ``v[j]`` is loaded once."""
    a0 = d0.dtype.type(0.0)
    a1 = a0
    a2 = a0
    for e in range(uint64(indptr[i]), uint64(indptr[i + 1])):
        vj = v[indices[e]]
        a0 += d0[e] * vj
        a1 += d1[e] * vj
        a2 += d2[e] * vj
    return a0, a1, a2


@njit(math="gather")
def _sparse_dot4(indptr, indices, d0, d1, d2, d3, i, v):
    """Four matrices sharing one pattern: each ``v[j]`` is loaded once."""
    a0 = d0.dtype.type(0.0)
    a1 = a0
    a2 = a0
    a3 = a0
    for e in range(uint64(indptr[i]), uint64(indptr[i + 1])):
        vj = v[indices[e]]
        a0 += d0[e] * vj
        a1 += d1[e] * vj
        a2 += d2[e] * vj
        a3 += d3[e] * vj
    return a0, a1, a2, a3


def _is_dense(data):
    return isinstance(data, types.Array) and data.ndim == 2


def row_dot(indptr, indices, data, i, v):
    """Row ``i`` of a matrix times ``v`` (compiled code only).

    ``data`` is the CSR values (1-D) or, for a dense matrix, the 2-D matrix
    itself (``indptr``/``indices`` then unused).
    """
    if data.ndim == 2:
        return _dense_dot(data[i], v)
    return _sparse_dot(indptr, indices, data, i, v)


@overload(row_dot)
def _row_dot_impl(indptr, indices, data, i, v):
    if _is_dense(data):
        return lambda indptr, indices, data, i, v: _dense_dot(data[i], v)
    return lambda indptr, indices, data, i, v: _sparse_dot(indptr, indices, data, i, v)


def row_dot3(p0, i0, d0, p1, i1, d1, p2, i2, d2, shared, i, v):
    """Row ``i`` of three matrices times ``v`` (compiled code only).

    ``shared`` is ``True`` when the three share one sparse pattern (each
    ``v[j]`` is then loaded once) and ``None`` when they do not: the two
    have different types, so the choice is made when the kernel is compiled.
    A run-time branch between the two loops was measured to slow the shared
    case 3x (GRU n=128: 8.5 -> 27 us per step).
    """
    if d0.ndim == 2 and d1.ndim == 2 and d2.ndim == 2:
        return _dense_dot3(d0[i], d1[i], d2[i], v)
    if d0.ndim == 1 and d1.ndim == 1 and d2.ndim == 1 and shared is True:
        return _sparse_dot3(p0, i0, d0, d1, d2, i, v)
    return row_dot(p0, i0, d0, i, v), row_dot(p1, i1, d1, i, v), row_dot(p2, i2, d2, i, v)


@overload(row_dot3)
def _row_dot3_impl(p0, i0, d0, p1, i1, d1, p2, i2, d2, shared, i, v):
    dense = [_is_dense(d) for d in (d0, d1, d2)]
    if all(dense):
        return lambda p0, i0, d0, p1, i1, d1, p2, i2, d2, shared, i, v: _dense_dot3(d0[i], d1[i], d2[i], v)
    if not any(dense) and isinstance(shared, types.Boolean):
        return lambda p0, i0, d0, p1, i1, d1, p2, i2, d2, shared, i, v: _sparse_dot3(p0, i0, d0, d1, d2, i, v)
    return lambda p0, i0, d0, p1, i1, d1, p2, i2, d2, shared, i, v: (
        row_dot(p0, i0, d0, i, v), row_dot(p1, i1, d1, i, v), row_dot(p2, i2, d2, i, v))


def row_dot4(p0, i0, d0, p1, i1, d1, p2, i2, d2, p3, i3, d3, shared, i, v):
    """Row ``i`` of four matrices times ``v``; ``shared`` as in ``row_dot3``."""
    if d0.ndim == 2 and d1.ndim == 2 and d2.ndim == 2 and d3.ndim == 2:
        return _dense_dot4(d0[i], d1[i], d2[i], d3[i], v)
    if d0.ndim == 1 and d1.ndim == 1 and d2.ndim == 1 and d3.ndim == 1 and shared is True:
        return _sparse_dot4(p0, i0, d0, d1, d2, d3, i, v)
    return (row_dot(p0, i0, d0, i, v), row_dot(p1, i1, d1, i, v), row_dot(p2, i2, d2, i, v),
            row_dot(p3, i3, d3, i, v))


@overload(row_dot4)
def _row_dot4_impl(p0, i0, d0, p1, i1, d1, p2, i2, d2, p3, i3, d3, shared, i, v):
    dense = [_is_dense(d) for d in (d0, d1, d2, d3)]
    if all(dense):
        return lambda p0, i0, d0, p1, i1, d1, p2, i2, d2, p3, i3, d3, shared, i, v: _dense_dot4(
            d0[i], d1[i], d2[i], d3[i], v)
    if not any(dense) and isinstance(shared, types.Boolean):
        return lambda p0, i0, d0, p1, i1, d1, p2, i2, d2, p3, i3, d3, shared, i, v: _sparse_dot4(
            p0, i0, d0, d1, d2, d3, i, v)
    return lambda p0, i0, d0, p1, i1, d1, p2, i2, d2, p3, i3, d3, shared, i, v: (
        row_dot(p0, i0, d0, i, v), row_dot(p1, i1, d1, i, v), row_dot(p2, i2, d2, i, v),
        row_dot(p3, i3, d3, i, v))


@njit(math="gather")
def _fill_presyn(h, x, z):
    n = h.shape[0]
    n_in = x.shape[0]
    for j in range(n):
        z[j] = h[j]
    for j in range(n_in):
        z[n + j] = x[j]
    z[n + n_in] = 1.0


def activation(linear, a):
    """``(phi(a), phi'(a))``: tanh, or the identity when ``linear`` is True
    (``linear`` is True or None: the choice is made at compile time)."""
    if linear is True:
        return a, a - a + 1
    return _tanh_and_slope(a)


@overload(activation)
def _activation_impl(linear, a):
    if isinstance(linear, types.Boolean):
        return lambda linear, a: (a, a - a + 1)
    return lambda linear, a: _tanh_and_slope(a)


@njit
def _tanh_and_slope(a):
    t = fast_tanh(a)
    return t, 1 - t * t


@njit(math="gather")
def _vanilla_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb):
    (W_ptr, W_idx, W_val, U_ptr, U_idx, U_val, b, alpha, linear) = args
    n = s_prev.shape[1]
    one = s_prev.dtype.type(1.0)
    h = s_prev[bb]
    xb = x[bb]
    for i in range(n):
        a = b[i] + row_dot(W_ptr, W_idx, W_val, i, h) + row_dot(U_ptr, U_idx, U_val, i, xb)
        t, slope = activation(linear, a)
        s_next[bb, i] = (one - alpha) * h[i] + alpha * t
        if want_jacobians:
            coef[bb, i, 0] = alpha * slope
            dloc[bb, i, 0, 0] = one - alpha
    if want_jacobians:
        _fill_presyn(h, xb, presyn[bb])


@njit(math="gather")
def vanilla_kernel(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    for bb in range(s_prev.shape[0]):
        _vanilla_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb)


@parallel_njit(math="gather")
def vanilla_kernel_par(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    for bb in prange(s_prev.shape[0]):
        _vanilla_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb)


@njit(math="gather")
def _gru_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb):
    (
        Whr_p, Whr_i, Whr_d, Whz_p, Whz_i, Whz_d, Whn_p, Whn_i, Whn_d,
        Wir_p, Wir_i, Wir_d, Wiz_p, Wiz_i, Wiz_d, Win_p, Win_i, Win_d,
        b_r, b_z, b_in, b_hn, shared_h, shared_x,
    ) = args
    n = s_prev.shape[1]
    one = s_prev.dtype.type(1.0)
    h = s_prev[bb]
    xb = x[bb]
    for i in range(n):
        h_r, h_z, h_n = row_dot3(Whr_p, Whr_i, Whr_d, Whz_p, Whz_i, Whz_d, Whn_p, Whn_i, Whn_d, shared_h, i, h)
        x_r, x_z, x_n = row_dot3(Wir_p, Wir_i, Wir_d, Wiz_p, Wiz_i, Wiz_d, Win_p, Win_i, Win_d, shared_x, i, xb)
        a_r = b_r[i] + h_r + x_r
        a_z = b_z[i] + h_z + x_z
        a_hn = b_hn[i] + h_n
        a_in = b_in[i] + x_n
        r = _sigmoid(a_r)
        z = _sigmoid(a_z)
        c = fast_tanh(a_in + r * a_hn)
        s_next[bb, i] = (one - z) * c + z * h[i]
        if want_jacobians:
            # dh'/d(pre-activation) of each gate; the candidate's
            # pre-activation is a_in + r * a_hn, so the recurrent half
            # (gate 3) is scaled by r and the reset gate (gate 0) by a_hn.
            dc = (one - z) * (one - c * c)
            g_r = dc * a_hn * r * (one - r)
            g_z = (h[i] - c) * z * (one - z)
            g_hn = dc * r
            coef[bb, i, 0] = g_r
            coef[bb, i, 1] = g_z
            coef[bb, i, 2] = dc
            coef[bb, i, 3] = g_hn
            dloc[bb, i, 0, 0] = z
    if want_jacobians:
        _fill_presyn(h, xb, presyn[bb])


@njit(math="gather")
def gru_kernel(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    for bb in range(s_prev.shape[0]):
        _gru_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb)


@parallel_njit(math="gather")
def gru_kernel_par(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    for bb in prange(s_prev.shape[0]):
        _gru_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb)


@njit(math="gather")
def _lstm_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb):
    (
        Whi_p, Whi_i, Whi_d, Whf_p, Whf_i, Whf_d, Whg_p, Whg_i, Whg_d, Who_p, Who_i, Who_d,
        Wii_p, Wii_i, Wii_d, Wif_p, Wif_i, Wif_d, Wig_p, Wig_i, Wig_d, Wio_p, Wio_i, Wio_d,
        b_i, b_f, b_g, b_o, shared_h, shared_x,
    ) = args
    n = s_prev.shape[1] // 2
    one = s_prev.dtype.type(1.0)
    h = s_prev[bb, :n]
    c = s_prev[bb, n:]
    xb = x[bb]
    for i in range(n):
        h_i, h_f, h_g, h_o = row_dot4(Whi_p, Whi_i, Whi_d, Whf_p, Whf_i, Whf_d, Whg_p, Whg_i, Whg_d,
                                      Who_p, Who_i, Who_d, shared_h, i, h)
        x_i, x_f, x_g, x_o = row_dot4(Wii_p, Wii_i, Wii_d, Wif_p, Wif_i, Wif_d, Wig_p, Wig_i, Wig_d,
                                      Wio_p, Wio_i, Wio_d, shared_x, i, xb)
        a_i = b_i[i] + h_i + x_i
        a_f = b_f[i] + h_f + x_f
        a_g = b_g[i] + h_g + x_g
        a_o = b_o[i] + h_o + x_o
        gi = _sigmoid(a_i)
        gf = _sigmoid(a_f)
        gg = fast_tanh(a_g)
        go = _sigmoid(a_o)
        c_new = gf * c[i] + gi * gg
        tc = fast_tanh(c_new)
        s_next[bb, i] = go * tc
        s_next[bb, n + i] = c_new
        if want_jacobians:
            # dc'/d(pre-activation) of gates i, f, g; the output gate does
            # not touch c'. h' = o tanh(c') scales those by k = o (1 - tanh^2).
            dci = gg * gi * (one - gi)
            dcf = c[i] * gf * (one - gf)
            dcg = gi * (one - gg * gg)
            k = go * (one - tc * tc)
            dho = tc * go * (one - go)
            coef[bb, n + i, 0] = dci
            coef[bb, n + i, 1] = dcf
            coef[bb, n + i, 2] = dcg
            coef[bb, n + i, 3] = 0.0
            coef[bb, i, 0] = k * dci
            coef[bb, i, 1] = k * dcf
            coef[bb, i, 2] = k * dcg
            coef[bb, i, 3] = dho
            # local block [[dh'/dh, dh'/dc], [dc'/dh, dc'/dc]] of unit i
            dloc[bb, i, 0, 0] = 0.0
            dloc[bb, i, 0, 1] = k * gf
            dloc[bb, i, 1, 0] = 0.0
            dloc[bb, i, 1, 1] = gf
    if want_jacobians:
        _fill_presyn(h, xb, presyn[bb])



@njit(math="gather")
def lstm_kernel(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    for bb in range(s_prev.shape[0]):
        _lstm_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb)


@parallel_njit(math="gather")
def lstm_kernel_par(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    for bb in prange(s_prev.shape[0]):
        _lstm_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb)


# -- any built-in cell, chosen by the type of its arguments ------------------------------

def _kernels_by_args():
    from .cells import GRUArgs, LSTMArgs, VanillaArgs

    return {VanillaArgs: vanilla_kernel, GRUArgs: gru_kernel, LSTMArgs: lstm_kernel}


def cell_step(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    """The step of a built-in cell, chosen by the type of ``args`` (its ``kernel_args`` NamedTuple).

    For compiled loops that run any built-in cell: a direct call of the chosen
    kernel keeps the caller cacheable, which passing the kernel as a
    first-class argument would not. Other cells' argument types are refused
    when the caller is compiled (``training.fused`` checks first).
    """
    _kernels_by_args()[type(args)](args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians)


def built_in(args):
    """Whether ``cell_step`` knows the cell whose ``kernel_args`` are ``args``."""
    return type(args) in _kernels_by_args()


@overload(cell_step)
def _cell_step_impl(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    kernel = _kernels_by_args().get(getattr(args, "instance_class", None))
    if kernel is None:
        return None

    def impl(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
        kernel(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians)

    return impl
