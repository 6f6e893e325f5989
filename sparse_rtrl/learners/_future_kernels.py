"""Compiled kernels of the future-facing learners: F-BPTT and DNI.

Batched like ``_base_kernels``: the leading axis of every per-stream
array is the stream ``b``, each kernel has a serial driver and a ``_par``
driver that spreads the streams (or, for a model shared by the streams, its
rows) over the cores, with identical results. Kernels never validate and
never allocate; the learners in ``future.py`` own the buffers.

``seg`` is the cell's ``Segments`` (row segments, presynaptic indices, gate
touch, units, recurrent segments); ``window`` a ``future.FutureWindow``.
"""

from numba import prange

from .._jit import njit, parallel_njit
from ._base_kernels import dynamics_rmatvec, immediate_vjp


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
