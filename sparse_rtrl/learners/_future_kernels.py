"""Compiled kernels of the future-facing learners: F-BPTT and DNI.

Batched like ``_base_kernels``: the leading axis of every per-stream
array is the stream ``b``, each kernel has a serial driver and a ``_par``
driver that spreads the streams (or, for a model shared by the streams, its
rows) over the cores, with identical results. Kernels never validate and
never allocate; the learners in ``future.py`` own the buffers.

``seg`` is the cell's ``Segments`` (row segments, presynaptic indices, gate
touch, units, recurrent segments); ``window`` a ``future.FutureWindow``.

The end of the module holds the learners' compiled-loop hooks
(``_loop_kernels``): ``FutureLoop`` (F-BPTT) and ``DNILoop`` (DNI, DNIb).
"""

from typing import NamedTuple

import numpy as np
from numba import prange, types

from .._jit import njit, overload, parallel_njit
from ._base_kernels import dynamics_rmatvec, immediate_vjp, take_grad
from ._exact_kernels import window_buffers  # the slot counts[0] of a window: the same for F-BPTT's ring
from ._loop_kernels import loop_hooks, zero


@njit(math="gather")
def keep_recurrent(theta, n_rec, theta_hist, last):
    """Copy the recurrent weights into the ring ``theta_hist`` unless they equal copy ``last``.

    Returns the index of the copy in force (``last`` when nothing changed;
    ``last = -1`` means no copy yet). One compare pass when nothing changed.
    """
    if last >= 0:
        prev = theta_hist[last]
        same = True
        for p in range(n_rec):
            if prev[p] != theta[p]:
                same = False
                break
        if same:
            return last
    nxt = last + 1
    if nxt == theta_hist.shape[0]:
        nxt = 0
    dst = theta_hist[nxt]
    for p in range(n_rec):
        dst[p] = theta[p]
    return nxt


# -- F-BPTT ------------------------------------------------------------------------


@njit(math="gather")
def _fbptt_stream(b, seg, window, newest, count, propagate, n_emit, v, scratch, u, acc):
    coef_hist, dloc_hist, z_hist, delta_hist, theta_hist, theta_idx = window
    cap = delta_hist.shape[0]
    ub = u[b]
    if propagate and count > 1:
        vb = v[b]
        out = scratch[b]
        own = delta_hist[newest, b]
        live = False
        for k in range(vb.shape[0]):
            vb[k] = own[k]
            if own[k] != 0.0:
                live = True
        later = newest
        j = 1
        while live and j < count:
            slot = newest - j
            if slot < 0:
                slot += cap
            dynamics_rmatvec(theta_hist[theta_idx[later]], coef_hist[later, b], dloc_hist[later, b], seg, vb, ub,
                             out)
            d = delta_hist[slot, b]
            live = False
            for k in range(vb.shape[0]):
                d[k] += out[k]
                vb[k] = out[k]
                if out[k] != 0.0:
                    live = True
            later = slot
            j += 1
    oldest = newest - count + 1
    if oldest < 0:
        oldest += cap
    accb = acc[b]
    for e in range(n_emit):
        slot = oldest + e
        if slot >= cap:
            slot -= cap
        d = delta_hist[slot, b]
        immediate_vjp(d, coef_hist[slot, b], z_hist[slot, b], seg, ub, accb)
        for k in range(d.shape[0]):
            d[k] = 0.0


@njit(math="gather")
def fbptt_step(seg, window, newest, count, propagate, n_emit, v, scratch, u, acc):
    """Propagate the newest step's credit into the window, then emit the oldest steps.

    The window is a ring of ``count`` steps ending at slot ``newest``. With
    ``propagate``, the credit held by the newest step (its own ``c``) is
    carried back through the window: ``v <- D_later^T v`` and
    ``delta[earlier] += v``, each step's ``D`` from its own factors and its
    own copy of the recurrent weights (``theta_hist[theta_idx[slot]]``); it
    stops early once ``v`` is zero. Then the ``n_emit`` oldest steps add
    ``delta^T I`` to ``acc`` and their ``delta`` is zeroed.
    """
    for b in range(acc.shape[0]):
        _fbptt_stream(b, seg, window, newest, count, propagate, n_emit, v, scratch, u, acc)


@parallel_njit(math="gather")
def fbptt_step_par(seg, window, newest, count, propagate, n_emit, v, scratch, u, acc):
    """``fbptt_step`` with the streams spread over the cores (same result)."""
    for b in prange(acc.shape[0]):
        _fbptt_stream(b, seg, window, newest, count, propagate, n_emit, v, scratch, u, acc)


# -- DNI -------------------------------------------------------------------------


@njit(math="gather")
def _emit_stream(b, c, chat, with_chat, coef, z, seg, v, u, acc):
    vb = v[b]
    if with_chat:
        for k in range(vb.shape[0]):
            vb[k] = c[b, k] + chat[b, k]
    else:
        for k in range(vb.shape[0]):
            vb[k] = c[b, k]
    immediate_vjp(vb, coef[b], z[b], seg, u[b], acc[b])


@njit(math="gather")
def dni_emit(c, chat, with_chat, coef, z, seg, v, u, acc):
    """``acc += (c + chat)^T I`` (``with_chat``) or ``acc += c^T I``, every stream."""
    for b in range(acc.shape[0]):
        _emit_stream(b, c, chat, with_chat, coef, z, seg, v, u, acc)


@parallel_njit(math="gather")
def dni_emit_par(c, chat, with_chat, coef, z, seg, v, u, acc):
    """``dni_emit`` with the streams spread over the cores (same result)."""
    for b in prange(acc.shape[0]):
        _emit_stream(b, c, chat, with_chat, coef, z, seg, v, u, acc)


@njit
def _features_stream(b, state, z, n, model, feat, chat):
    S = state.shape[1]
    fb = feat[b]
    for k in range(S):
        fb[k] = state[b, k]
    # z = [h_prev; x; 1]: its tail is the context [x; 1] of the step.
    for j in range(z.shape[1] - n):
        fb[S + j] = z[b, n + j]
    for k in range(S):
        row = model[k]
        acc = fb.dtype.type(0.0)
        for j in range(fb.shape[0]):
            acc += row[j] * fb[j]
        chat[b, k] = acc


@njit(math="gather")
def dni_features(state, z, n, model, feat, chat):
    """``feat = [s; x; 1]`` (the tail of ``z`` is ``[x; 1]``) and ``chat = A feat``, every stream."""
    for b in range(feat.shape[0]):
        _features_stream(b, state, z, n, model, feat, chat)


@parallel_njit(math="gather")
def dni_features_par(state, z, n, model, feat, chat):
    """``dni_features`` with the streams spread over the cores (same result)."""
    for b in prange(feat.shape[0]):
        _features_stream(b, state, z, n, model, feat, chat)


@njit
def _bootstrap_stream(b, exact, theta, coef, dloc, seg, jac, model, frozen, credit, feat, feat_prev, v, u, err):
    vb = v[b]
    fb = feat[b]
    for k in range(vb.shape[0]):
        row = frozen[k]
        acc = credit[b, k]
        for j in range(fb.shape[0]):
            acc += row[j] * fb[j]
        vb[k] = acc
    eb = err[b]
    if exact:
        dynamics_rmatvec(theta, coef[b], dloc[b], seg, vb, u[b], eb)
    else:
        for j in range(eb.shape[0]):
            eb[j] = 0.0
        for k in range(vb.shape[0]):
            vk = vb[k]
            row = jac[k]
            for j in range(eb.shape[0]):
                eb[j] += row[j] * vk
    fp = feat_prev[b]
    for k in range(eb.shape[0]):
        row = model[k]
        pred = fp.dtype.type(0.0)
        for j in range(fp.shape[0]):
            pred += row[j] * fp[j]
        eb[k] = pred - eb[k]


@njit
def _descend_rows(lo, hi, model, err, feat, lr):
    # A[i, :] -= lr * sum_b err[b, i] feat[b, :len(row)], streams in order:
    # the same arithmetic whichever rows a thread takes.
    for i in range(lo, hi):
        row = model[i]
        for b in range(err.shape[0]):
            g = lr * err[b, i]
            if g != 0.0:
                fb = feat[b]
                for j in range(row.shape[0]):
                    row[j] -= g * fb[j]


@njit(math="gather")
def dni_train(exact, theta, coef, dloc, seg, jac, model, frozen, credit, feat, feat_prev, lr, v, u, err):
    """One SGD step of the synthetic-credit model on the previous step's bootstrapped target.

    Per stream: ``v = c_t + A' f_t``, ``target = D_t^T v`` (``exact``, from
    the factored form with step ``t``'s recurrent weights ``theta``) or
    ``Jhat^T v``; ``err = A f_{t-1} - target``. Then, for the model shared
    by the streams, ``A -= lr * sum_b err_b f_{t-1,b}^T``.
    """
    for b in range(err.shape[0]):
        _bootstrap_stream(b, exact, theta, coef, dloc, seg, jac, model, frozen, credit, feat, feat_prev, v, u, err)
    _descend_rows(0, model.shape[0], model, err, feat_prev, lr)


@parallel_njit(math="gather")
def dni_train_par(exact, theta, coef, dloc, seg, jac, model, frozen, credit, feat, feat_prev, lr, v, u, err):
    """``dni_train`` with the streams, then the model's rows, spread over the cores (same result)."""
    for b in prange(err.shape[0]):
        _bootstrap_stream(b, exact, theta, coef, dloc, seg, jac, model, frozen, credit, feat, feat_prev, v, u, err)
    for i in prange(model.shape[0]):
        _descend_rows(i, i + 1, model, err, feat_prev, lr)


@njit
def _transition_error_stream(b, jac, prev, state, err):
    S = state.shape[1]
    pb = prev[b]
    for k in range(S):
        row = jac[k]
        acc = state.dtype.type(0.0)
        for j in range(S):
            acc += row[j] * pb[j]
        err[b, k] = acc - state[b, k]


@njit(math="gather")
def jacobian_train(jac, prev, state, lr, err):
    """One SGD step of the linear transition model: ``err_b = Jhat s_{t-1,b} - s_{t,b}``,
    ``Jhat -= lr * sum_b err_b s_{t-1,b}^T``. ``prev`` may be wider than ``S``
    (the features ``[s; x; 1]``): only its first ``S`` columns are read."""
    for b in range(err.shape[0]):
        _transition_error_stream(b, jac, prev, state, err)
    _descend_rows(0, jac.shape[0], jac, err, prev, lr)


@parallel_njit(math="gather")
def jacobian_train_par(jac, prev, state, lr, err):
    """``jacobian_train`` with the streams, then the model's rows, spread over the cores (same result)."""
    for b in prange(err.shape[0]):
        _transition_error_stream(b, jac, prev, state, err)
    for i in prange(jac.shape[0]):
        _descend_rows(i, i + 1, jac, err, prev, lr)


# -- the compiled online loop (``_loop_kernels``) ---------------------------------------------


class FutureLoop(NamedTuple):
    """What the compiled loop reads and writes of F-BPTT. ``counts`` holds ``newest``, ``count``,
    ``credit`` (the newest step holds credit not yet back-propagated: 0 or 1) and ``copy`` (the newest
    weight copy), written back by ``FutureBPTT._loop_done``; ``acc`` is the learner's accumulator, which
    a full window emits into when the next step is prepared."""

    seg: tuple
    window: tuple
    v: np.ndarray
    scratch: np.ndarray
    gate_work: np.ndarray
    counts: np.ndarray
    n_rec: np.int64
    acc: np.ndarray


@njit
def _future_prepare(parts, theta):
    """``FutureBPTT._prepare_step``: the newest step's credit back-propagated, a full window's oldest
    step emitted, and the next slot taken."""
    counts = parts.counts
    T = parts.window.delta.shape[0]
    full = counts[1] == T
    if counts[2] != 0 or full:
        n_emit = np.int64(1) if full else np.int64(0)
        fbptt_step(parts.seg, parts.window, counts[0], counts[1], counts[2] != 0, n_emit, parts.v, parts.scratch,
                   parts.gate_work, parts.acc)
        counts[2] = 0
    if full:
        counts[1] -= 1
    counts[0] = (counts[0] + 1) % T


@njit
def _future_after_step(parts, theta, state, coef, dloc, presyn, draws):
    """``FutureBPTT._after_step``: the step's recurrent weights (a copy when they changed)."""
    counts = parts.counts
    counts[3] = keep_recurrent(theta, parts.n_rec, parts.window.theta, counts[3])
    parts.window.theta_idx[counts[0]] = counts[3]
    counts[1] += 1


@njit
def _future_backward(parts, theta, credit, acc):
    """``FutureBPTT._backward`` (never after a flush inside the loop: each step is prepared first)."""
    counts = parts.counts
    d = parts.window.delta
    w = counts[0]
    for b in range(d.shape[1]):
        for k in range(d.shape[2]):
            d[w, b, k] += credit[b, k]
    counts[2] = 1


@njit
def _future_end_sequence(parts, theta, acc):
    """``FutureBPTT.flush``: every stored step emitted with the credit it has."""
    counts = parts.counts
    if counts[1]:
        fbptt_step(parts.seg, parts.window, counts[0], counts[1], counts[2] != 0, counts[1], parts.v, parts.scratch,
                   parts.gate_work, parts.acc)
    counts[1] = 0
    counts[2] = 0
    return True


@njit
def _future_reset(parts):
    """``FutureBPTT._reset``."""
    zero(parts.window.delta)
    counts = parts.counts
    counts[0] = parts.window.delta.shape[0] - 1
    counts[1] = 0
    counts[2] = 0
    counts[3] = -1


loop_hooks(FutureLoop, prepare=_future_prepare, buffers=window_buffers, after_step=_future_after_step,
           backward=_future_backward, end_sequence=_future_end_sequence, reset=_future_reset)


class DNILoop(NamedTuple):
    """What the compiled loop reads and writes of DNI and DNIb.

    ``counts`` holds ``n_steps`` (counted here, as the step-by-step path counts them when its kernels run),
    the update count of ``A``, ``has_loss``, ``pending_chat`` and ``flip`` (odd: the features and the
    previous features have swapped places, as after an odd number of swaps), written back by
    ``DNI._loop_done``. ``learned`` is ``True`` (DNIb: ``Jhat`` is trained) or ``None`` (DNI: the step's
    recurrent weights are kept), two types, so each loop holds only its own path. ``coef``, ``dloc`` and
    ``presyn`` are the learner's per-step buffers (where the cell writes its factors).
    """

    seg: tuple
    learned: object
    exact: bool
    A: np.ndarray
    A_frozen: np.ndarray
    J_hat: np.ndarray
    feat: np.ndarray
    feat_prev: np.ndarray
    chat: np.ndarray
    credit: np.ndarray
    err: np.ndarray
    jac_err: np.ndarray
    v: np.ndarray
    theta_step: np.ndarray
    gate_work: np.ndarray
    coef: np.ndarray
    dloc: np.ndarray
    presyn: np.ndarray
    no_credit: np.ndarray
    acc: np.ndarray
    lr: object
    jacobian_lr: object
    n_hidden: np.int64
    fix_interval: np.int64
    counts: np.ndarray


_N_STEPS, _N_UPDATES, _HAS_LOSS, _PENDING, _FLIP = range(5)


@njit
def _dni_pending_chat(parts):
    """``chat_t^T I_t`` when it has not been emitted (``DNI._emit(no_credit, True)``)."""
    counts = parts.counts
    if counts[_PENDING] != 0:
        dni_emit(parts.no_credit, parts.chat, True, parts.coef, parts.presyn, parts.seg, parts.v, parts.gate_work,
                 parts.acc)
        counts[_PENDING] = 0


@njit
def _dni_prepare(parts, theta):
    """``DNI._prepare_step``: the pending emission, the update of ``A`` (and maybe ``A'``) on the previous
    step's target, the features' swap and the credit zeroed."""
    counts = parts.counts
    _dni_pending_chat(parts)
    if counts[_N_STEPS] >= 2:
        if counts[_FLIP] == 0:
            feat, prev = parts.feat, parts.feat_prev
        else:
            feat, prev = parts.feat_prev, parts.feat
        dni_train(parts.exact, parts.theta_step, parts.coef, parts.dloc, parts.seg, parts.J_hat, parts.A,
                  parts.A_frozen, parts.credit, feat, prev, parts.lr, parts.v, parts.gate_work, parts.err)
        counts[_HAS_LOSS] = 1
        counts[_N_UPDATES] += 1
        if counts[_N_UPDATES] % parts.fix_interval == 0:
            A, frozen = parts.A, parts.A_frozen
            for i in range(A.shape[0]):
                for j in range(A.shape[1]):
                    frozen[i, j] = A[i, j]
    counts[_FLIP] ^= 1
    zero(parts.credit)


def dni_model_step(learned, parts, theta, state, feat_prev):
    """After the features: DNIb (``learned`` is ``True``) trains ``Jhat`` on the pair ``(s_{t-1}, s_t)``
    from a sequence's second step on; DNI (``None``) keeps the recurrent weights the step ran with.

    Two types, so only one path is compiled into a loop (see ``_snap_kernels.snap_step``).
    """
    if learned is True:
        if parts.counts[_N_STEPS] >= 2:
            jacobian_train(parts.J_hat, feat_prev, state, parts.jacobian_lr, parts.jac_err)
    else:
        keep = parts.theta_step
        for p in range(keep.shape[0]):
            keep[p] = theta[p]


@overload(dni_model_step)
def _dni_model_step_impl(learned, parts, theta, state, feat_prev):
    if isinstance(learned, types.Boolean):
        def train_jacobian(learned, parts, theta, state, feat_prev):
            if parts.counts[_N_STEPS] >= 2:
                jacobian_train(parts.J_hat, feat_prev, state, parts.jacobian_lr, parts.jac_err)
        return train_jacobian

    def keep_weights(learned, parts, theta, state, feat_prev):
        keep = parts.theta_step
        for p in range(keep.shape[0]):
            keep[p] = theta[p]
    return keep_weights


@njit
def _dni_after_step(parts, theta, state, coef, dloc, presyn, draws):
    """``DNI._after_step`` (the step counted first, as ``Learner.forward`` counts it before)."""
    counts = parts.counts
    counts[_N_STEPS] += 1
    if counts[_FLIP] == 0:
        feat, prev = parts.feat, parts.feat_prev
    else:
        feat, prev = parts.feat_prev, parts.feat
    dni_features(state, presyn, parts.n_hidden, parts.A, feat, parts.chat)
    dni_model_step(parts.learned, parts, theta, state, prev)
    counts[_PENDING] = 1


@njit
def _dni_backward(parts, theta, credit, acc):
    """``DNI._backward``: the credit kept for the target, and emitted (with ``chat`` on the first call)."""
    counts = parts.counts
    c = parts.credit
    for b in range(c.shape[0]):
        for k in range(c.shape[1]):
            c[b, k] += credit[b, k]
    with_chat = counts[_PENDING] != 0
    dni_emit(credit, parts.chat, with_chat, parts.coef, parts.presyn, parts.seg, parts.v, parts.gate_work, acc)
    if with_chat:
        counts[_PENDING] = 0


@njit
def _dni_grad(parts, theta, acc, out):
    """``DNI._grad``: the pending emission, then the accumulator in parameter order."""
    _dni_pending_chat(parts)
    take_grad(acc, out)


@njit
def _dni_reset(parts):
    """``Learner.reset`` (the step count) and ``DNI._reset``; the models are kept."""
    parts.counts[_N_STEPS] = 0
    zero(parts.credit)
    parts.counts[_PENDING] = 0


loop_hooks(DNILoop, prepare=_dni_prepare, after_step=_dni_after_step, backward=_dni_backward, grad=_dni_grad,
           reset=_dni_reset)
