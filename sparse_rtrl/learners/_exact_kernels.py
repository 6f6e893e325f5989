"""Compiled kernels of the exact references: RTRL's dense influence and (T)BPTT's stored window.

Batched like ``_base_kernels`` (leading axis = stream), each with a serial
driver and a ``_par`` driver that spreads the streams over the cores (same
numbers). ``plan`` is an ``exact.RTRLPlan``, ``seg`` the cell's ``Segments``,
``window`` a ``exact.WindowArrays``.
"""

from typing import NamedTuple

import numpy as np
from numba import prange, uint64

from .._jit import njit, parallel_njit
from ._base_kernels import form_dynamics, gate_credit, take_grad
from ._loop_kernels import loop_hooks, zero


@njit
def _rtrl_update_stream(b, plan, dyn, coef, z, J, J_new, c, acc, accumulate, dense):
    dyn_ptr, dyn_idx, unit, gate, src, touch, n = plan
    n_touch = touch.shape[1]
    P = J.shape[2]
    Jb = J[b]
    Nb = J_new[b]
    d = dyn[b]
    if dense.shape[1] > 0:
        # D as a dense matrix (entries outside its pattern stay 0), and D J as one BLAS product.
        Db = dense[b]
        for k in range(Jb.shape[0]):
            for e in range(dyn_ptr[k], dyn_ptr[k + 1]):
                Db[k, dyn_idx[e]] = d[e]
        np.dot(Db, Jb, Nb)
    else:
        for k in range(Jb.shape[0]):
            row = Nb[k]
            row[:] = 0.0
            for e in range(dyn_ptr[k], dyn_ptr[k + 1]):
                dk = d[e]
                src_row = Jb[dyn_idx[e]]
                for p in range(P):
                    row[p] += dk * src_row[p]
    for p in range(P):
        g = gate[p]
        zp = z[b, src[p]]
        for m in range(n_touch):
            if touch[g, m]:
                k = unit[p] + m * n
                Nb[k, p] += coef[b, k, g] * zp
    if accumulate:
        accb = acc[b]
        for k in range(Nb.shape[0]):
            ck = c[b, k]
            if ck != 0.0:
                row = Nb[k]
                for p in range(P):
                    accb[p] += ck * row[p]


@njit
def rtrl_update(plan, dyn, coef, z, J, J_new, c, acc, accumulate, dense):
    """``J_new = D J + I`` for every stream; if ``accumulate``, ``acc += c J_new``. ``dense`` (B, S, S) is
    the scratch of the BLAS form of ``D J`` (zero outside D's pattern), or (B, 0, 0) for the sparse form."""
    for b in range(J.shape[0]):
        _rtrl_update_stream(b, plan, dyn, coef, z, J, J_new, c, acc, accumulate, dense)


@parallel_njit
def rtrl_update_par(plan, dyn, coef, z, J, J_new, c, acc, accumulate, dense):
    """``rtrl_update`` with the streams spread over the cores (same result)."""
    for b in prange(J.shape[0]):
        _rtrl_update_stream(b, plan, dyn, coef, z, J, J_new, c, acc, accumulate, dense)


@njit
def _dense_accumulate_stream(b, J, c, acc):
    accb = acc[b]
    for k in range(J.shape[1]):
        ck = c[b, k]
        if ck != 0.0:
            row = J[b, k]
            for p in range(J.shape[2]):
                accb[p] += ck * row[p]


@njit
def dense_accumulate(J, c, acc):
    """``acc[b] += c[b] J[b]`` for a dense influence ``J`` (B, S, P)."""
    for b in range(J.shape[0]):
        _dense_accumulate_stream(b, J, c, acc)


@parallel_njit
def dense_accumulate_par(J, c, acc):
    """``dense_accumulate`` with the streams spread over the cores (same result)."""
    for b in prange(J.shape[0]):
        _dense_accumulate_stream(b, J, c, acc)


# -- BPTT over a stored window ---------------------------------------------------


@njit(math="gather")
def snapshot_if_changed(theta, n_rec, theta_hist, n_snap):
    """Keep a copy of the recurrent weights when they differ from the last copy.

    Returns the number of stored copies; the current weights are copy
    ``n_snap - 1`` afterwards. Cheap when nothing changed (one compare pass).
    """
    if n_snap > 0:
        last = theta_hist[n_snap - 1]
        same = True
        for p in range(n_rec):
            if last[p] != theta[p]:
                same = False
                break
        if same:
            return n_snap
    dst = theta_hist[n_snap]
    for p in range(n_rec):
        dst[p] = theta[p]
    return n_snap + 1


@njit(math="gather")
def _bptt_window_stream(b, seg, window, t_stop, delta, scratch, u, acc):
    seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg = seg
    coef_hist, dloc_hist, z_hist, c_hist, theta_hist, theta_idx = window
    m = touch.shape[1]
    dl = delta[b]
    dl[:] = 0.0
    ub = u[b]
    accb = acc[b]
    out = scratch[b]
    for t in range(t_stop - 1, -1, -1):
        ct = c_hist[t, b]
        for k in range(dl.shape[0]):
            dl[k] += ct[k]
        gate_credit(dl, coef_hist[t, b], touch, n, ub)
        zt = z_hist[t, b]
        if t > 0:
            dl_t = dloc_hist[t, b]
            for i in range(n):
                for c in range(m):
                    acc_c = dl.dtype.type(0.0)
                    for a in range(m):
                        acc_c += dl_t[i, a, c] * dl[i + a * n]
                    out[i + c * n] = acc_c
            th = theta_hist[theta_idx[t]]
            for s in range(n_rec_seg):
                val = ub[seg_unit[s], seg_gate[s]]
                if val != 0.0:
                    for p in range(uint64(seg_ptr[s]), uint64(seg_ptr[s + 1])):
                        j = src[p]
                        accb[p] += val * zt[j]
                        out[j] += val * th[p]
            first = n_rec_seg
        else:
            first = 0
        for s in range(first, seg_unit.shape[0]):
            val = ub[seg_unit[s], seg_gate[s]]
            if val != 0.0:
                for p in range(uint64(seg_ptr[s]), uint64(seg_ptr[s + 1])):
                    accb[p] += val * zt[src[p]]
        if t > 0:
            for k in range(dl.shape[0]):  # not dl[:] = out: see _fused_kernels.fused_loop
                dl[k] = out[k]


@njit(math="gather")
def bptt_window(seg, window, t_stop, delta, scratch, u, acc):
    """Back-propagate the stored credits of steps ``[0, t_stop)`` of a window.

    The state entering the window is a constant (truncation), so the backward
    pass stops at the window's first step. Step ``t`` uses the recurrent
    weights it ran with (``theta_hist[theta_idx[t]]``). One pass over the
    parameters per step does both ``acc += delta I_t`` and
    ``delta <- D_t^T delta``, from the factored forms.
    """
    for b in range(delta.shape[0]):
        _bptt_window_stream(b, seg, window, t_stop, delta, scratch, u, acc)


@parallel_njit(math="gather")
def bptt_window_par(seg, window, t_stop, delta, scratch, u, acc):
    """``bptt_window`` with the streams spread over the cores (same result)."""
    for b in prange(delta.shape[0]):
        _bptt_window_stream(b, seg, window, t_stop, delta, scratch, u, acc)


# -- the compiled online loop (``_loop_kernels``) ---------------------------------------------


class RTRLLoop(NamedTuple):
    """What the compiled loop reads and writes of RTRL: the influence and its double buffer, D's values and
    the plans (``flip[0]`` odd: the current influence is in ``J_new``, as after an odd number of swaps)."""

    plan: tuple
    dyn_plan: tuple
    dyn: np.ndarray
    coef: np.ndarray
    presyn: np.ndarray
    J: np.ndarray
    J_new: np.ndarray
    dense: np.ndarray
    flip: np.ndarray


@njit
def _rtrl_after_step(parts, theta, state, coef, dloc, presyn, draws):
    form_dynamics(theta, coef, dloc, parts.dyn_plan, parts.dyn)


@njit
def _rtrl_backward(parts, theta, credit, acc):
    if parts.flip[0] == 0:
        rtrl_update(parts.plan, parts.dyn, parts.coef, parts.presyn, parts.J, parts.J_new, credit, acc, True,
                    parts.dense)
    else:
        rtrl_update(parts.plan, parts.dyn, parts.coef, parts.presyn, parts.J_new, parts.J, credit, acc, True,
                    parts.dense)
    parts.flip[0] ^= 1


@njit
def _rtrl_reset(parts):
    zero(parts.J if parts.flip[0] == 0 else parts.J_new)


loop_hooks(RTRLLoop, after_step=_rtrl_after_step, backward=_rtrl_backward, reset=_rtrl_reset)


class WindowLoop(NamedTuple):
    """What the compiled loop reads and writes of a BPTT window: TBPTT, and BPTT with room made for the
    steps ahead (never full inside the loop). ``counts`` holds the window's ``steps``, ``credit_end`` and
    ``n_copies``; ``acc`` is the learner's accumulator, which a full window is back-propagated into."""

    seg: tuple
    window: tuple
    delta: np.ndarray
    scratch: np.ndarray
    gate_work: np.ndarray
    counts: np.ndarray
    n_rec: np.int64
    acc: np.ndarray


@njit
def _window_flush(parts):
    """``Window.flush``: back-propagate the stored credits into the accumulator."""
    end = parts.counts[1]
    if end == 0:
        return
    bptt_window(parts.seg, parts.window, end, parts.delta, parts.scratch, parts.gate_work, parts.acc)
    zero(parts.window.c[:end])
    parts.counts[1] = 0


@njit
def _window_prepare(parts, theta):
    """``Window.restart`` when the window is full."""
    counts = parts.counts
    if counts[0] == parts.window.coef.shape[0]:
        _window_flush(parts)
        counts[0] = 0
        n_copies = counts[2]
        if n_copies > 1:
            hist = parts.window.theta
            for p in range(hist.shape[1]):
                hist[0, p] = hist[n_copies - 1, p]
            counts[2] = 1


@njit
def window_buffers(parts, coef, dloc, presyn):
    """The ``buffers`` hook of a window whose next slot is ``counts[0]`` (TBPTT and BPTT; F-BPTT's ring)."""
    w = parts.counts[0]
    return parts.window.coef[w], parts.window.dloc[w], parts.window.z[w]


@njit
def _window_after_step(parts, theta, state, coef, dloc, presyn, draws):
    """``Window.step_taken``."""
    counts = parts.counts
    w = counts[0]
    counts[2] = snapshot_if_changed(theta, parts.n_rec, parts.window.theta, counts[2])
    parts.window.theta_idx[w] = counts[2] - 1
    zero(parts.window.c[w])
    counts[0] = w + 1


@njit
def _window_backward(parts, theta, credit, acc):
    """``Window.add_credit``."""
    w = parts.counts[0] - 1
    c = parts.window.c
    for b in range(c.shape[1]):
        for k in range(c.shape[2]):
            c[w, b, k] += credit[b, k]
    parts.counts[1] = parts.counts[0]


@njit
def _window_grad(parts, theta, acc, out):
    _window_flush(parts)
    take_grad(acc, out)


@njit
def _window_reset(parts):
    """``Window.reset``."""
    parts.counts[0] = 0
    parts.counts[1] = 0
    parts.counts[2] = 0
    zero(parts.window.c)


loop_hooks(WindowLoop, prepare=_window_prepare, buffers=window_buffers, after_step=_window_after_step,
           backward=_window_backward, grad=_window_grad, reset=_window_reset)
