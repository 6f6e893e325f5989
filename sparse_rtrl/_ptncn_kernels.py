"""Compiled kernels of :class:`sparse_rtrl.PTNCN` (one step: predict, compare, correct, update).

Kernels never validate: :mod:`sparse_rtrl.ptncn` checks and prepares every
argument first. Data travels in two NamedTuples: :class:`PTNCNArgs` (the
weights and settings) and :class:`PTNCNBuffers` (the carried state and the
per-step workspace, allocated once).

Layer-major flat buffers. Every per-unit quantity of the network (``y``,
``a``, ``z``, ``mu``, ``e``, ``d``, ``ev``) lives in one flat buffer of
``B * sum(sizes)`` entries: layer ``l`` (0 is the observation layer, ``x``)
occupies ``[B * offsets[l], B * offsets[l + 1])`` and is read as a C-ordered
``(B, sizes[l])`` block, so every product is one contiguous BLAS call
(``np.dot``). Layer 0 of ``y`` is the previous observation ``x_{t-1}``.

Weights sit in the flat parameter vector; ``layout[l - 1, k]`` gives
``(offset, rows, cols, kind, nnz, ptr)`` of matrix ``k`` (``W, E, M, U, V``)
of layer ``l`` (``U`` of the top layer has ``rows = 0``). A dense matrix
(``kind`` 0) is ``rows x cols`` values in row-major order, multiplied through
BLAS. A CSR matrix (``kind`` 1) stores ``nnz`` values: its row pointers are
``indptr[ptr:ptr + rows + 1]`` and the column of value ``params[offset + q]``
is ``indices[offset + q]``; its products and updates loop over the stored
entries only, and its update is formed only there. ``E_l`` of a CSR model has
the transposed pattern of ``W_l``: ``partner[offset_E + q]`` is the position
in ``params`` of the ``W_l`` entry that ``E_l``'s entry ``q`` mirrors.
"""

from typing import NamedTuple

import numpy as np

from ._cell_kernels import fast_tanh
from ._jit import njit

#: Activation codes, in the order of ``ptncn.ACTIVATIONS``.
TANH, RELU, HARD_TANH, IDENTITY, SIGN, STEP = range(6)
#: Output codes, in the order of ``ptncn.OUTPUTS``.
SOFTMAX, SIGMOID = range(2)
#: Matrix columns of ``layout``.
W, E, M, U, V = range(5)
#: Columns of a ``layout`` row.
OFFSET, ROWS, COLS, KIND, NNZ, PTR = range(6)
#: Values of the ``KIND`` column.
DENSE, CSR = 0, 1
#: Rules for ``Delta W_l`` (l >= 2) and ``Delta E_l``.
RULE_CODE, RULE_PAPER = 0, 1


class PTNCNArgs(NamedTuple):
    """The weights and settings a step reads."""

    params: np.ndarray       # (P,) flat weights
    layout: np.ndarray       # (L, 5, 6) int64: offset, rows, cols, kind, nnz, ptr per matrix
    indptr: np.ndarray       # int64: the CSR matrices' row pointers, concatenated (empty when all dense)
    indices: np.ndarray      # int32, parallel to params: column of each CSR value (empty when all dense)
    partner: np.ndarray      # int64, parallel to params: for E_l's CSR entries, W_l's mirror entry
    offsets: np.ndarray      # (L + 2,) int64: cumulative layer sizes, layer 0 first
    activation: np.int64
    output: np.int64
    beta: float
    gamma: float
    alpha_e: float
    clip: float              # <= 0: no clipping
    sparsity: float          # lambda of the sparsity term lambda * sign(a) in d
    w_rule: np.int64         # RULE_CODE: Delta W_l from ev_{l-1}; RULE_PAPER: from e_{l-1}
    e_rule: np.int64         # RULE_CODE: Delta E = gamma Delta W^T; RULE_PAPER: temporal error rule


class PTNCNBuffers(NamedTuple):
    """Carried state (``y``, ``ev``) and workspace, each a flat layer-major buffer (see the module docstring)."""

    y: np.ndarray            # carried corrected states; layer 0 is x_{t-1}
    y_new: np.ndarray
    a: np.ndarray            # pre-activations
    z: np.ndarray            # predicted states phi(a)
    mu: np.ndarray           # predictions of the layer below (layer 0: x_hat)
    e: np.ndarray            # prediction errors (layer 0: e_x)
    d: np.ndarray            # corrections
    ev: np.ndarray           # temporal errors z - y (carried: the paper's rule for E reads the previous step's)
    ev_prev: np.ndarray
    tmp: np.ndarray          # one (B, n) block of scratch
    left_t: np.ndarray       # two (n, B) blocks of scratch: a CSR product's operands, stream index last,
    right_t: np.ndarray      # so that its inner loops run over the streams contiguously
    delta: np.ndarray        # one update matrix of scratch
    acc: np.ndarray          # (P,) accumulated updates


@njit
def block(buf, offsets, B, l):
    """Layer ``l`` of a flat layer-major buffer, as a ``(B, n_l)`` C-ordered view."""
    lo = B * offsets[l]
    hi = B * offsets[l + 1]
    return buf[lo:hi].reshape((B, offsets[l + 1] - offsets[l]))


@njit
def matrix(params, layout, l, k):
    """Matrix ``k`` of layer ``l`` (1-based) as a 2-D view of ``params``."""
    off = layout[l - 1, k, OFFSET]
    r = layout[l - 1, k, ROWS]
    c = layout[l - 1, k, COLS]
    return params[off:off + r * c].reshape((r, c))


@njit
def apply_activation(code, a, out):
    """``out = phi(a)`` elementwise (``out`` may be ``a``)."""
    B, n = a.shape
    if code == TANH:
        # One branch outside the loops; the Cephes tanh of the cells (2 ulp, 2.5x faster than libm's).
        for b in range(B):
            for i in range(n):
                out[b, i] = fast_tanh(a[b, i])
        return
    for b in range(B):
        for i in range(n):
            v = a[b, i]
            if code == RELU:
                out[b, i] = v if v > 0.0 else 0.0
            elif code == HARD_TANH:
                out[b, i] = -1.0 if v < -1.0 else (1.0 if v > 1.0 else v)
            elif code == IDENTITY:
                out[b, i] = v
            elif code == SIGN:
                out[b, i] = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0)
            else:  # STEP: the authors' gte, 1 where a >= 0
                out[b, i] = 1.0 if v >= 0.0 else 0.0


@njit
def apply_output(code, logits):
    """Softmax over each row, or the logistic function elementwise, in place."""
    B, n = logits.shape
    for b in range(B):
        if code == SOFTMAX:
            top = logits[b, 0]
            for i in range(1, n):
                if logits[b, i] > top:
                    top = logits[b, i]
            total = 0.0
            for i in range(n):
                v = np.exp(logits[b, i] - top)
                logits[b, i] = v
                total += v
            for i in range(n):
                logits[b, i] = logits[b, i] / total
        else:
            for i in range(n):
                v = logits[b, i]
                if v >= 0.0:
                    logits[b, i] = 1.0 / (1.0 + np.exp(-v))
                else:
                    ev = np.exp(v)
                    logits[b, i] = ev / (1.0 + ev)


@njit
def add_product(left, w, out, tmp):
    """``out += left @ w`` through ``tmp`` (same shape as ``out``)."""
    np.dot(left, w, tmp)
    B, n = out.shape
    for b in range(B):
        for i in range(n):
            out[b, i] += tmp[b, i]


@njit
def transposed(src, buf):
    """``src`` (B, n) copied into ``buf`` as an (n, B) C-ordered array."""
    B, n = src.shape
    out = buf[:B * n].reshape((n, B))
    for b in range(B):
        for i in range(n):
            out[i, b] = src[b, i]
    return out


@njit
def product(args, buf, l, k, left, out, tmp, add):
    """``out = left @ matrix`` (``add``: ``out += left @ matrix``) for matrix ``k`` of layer ``l``."""
    lay = args.layout[l - 1, k]
    if lay[KIND] == DENSE:
        if add:
            add_product(left, matrix(args.params, args.layout, l, k), out, tmp)
        else:
            np.dot(left, matrix(args.params, args.layout, l, k), out)
        return
    B, c = out.shape
    off = lay[OFFSET]
    ptr = lay[PTR]
    left_t = transposed(left, buf.left_t)
    out_t = buf.right_t[:B * c].reshape((c, B))
    out_t[:, :] = 0.0
    for i in range(lay[ROWS]):
        row = left_t[i]
        for q in range(args.indptr[ptr + i], args.indptr[ptr + i + 1]):
            # Row views indexed by the bare loop variable: contiguous, so the stream loop vectorises.
            target = out_t[np.uint64(args.indices[off + q])]
            w = args.params[off + q]
            for b in range(B):
                target[b] += w * row[b]
    for b in range(B):
        for j in range(c):
            if add:
                out[b, j] += out_t[j, b]
            else:
                out[b, j] = out_t[j, b]


@njit
def clip_factor(delta, scale, clip):
    """The factor (at most 1) that brings the norm of ``scale * delta`` (flat) to at most ``clip``
    (1 when ``clip <= 0``): ``tf.clip_by_norm``'s rule."""
    if clip <= 0.0:
        return 1.0
    total = 0.0
    for i in range(delta.shape[0]):
        total += delta[i] * delta[i]
    norm = scale * np.sqrt(total)
    if norm > clip:
        return clip / norm
    return 1.0


@njit
def accumulate(acc, off, delta, factor):
    """``acc[off:off + delta.size] += factor * delta`` (``delta`` flat)."""
    for i in range(delta.shape[0]):
        acc[off + i] += factor * delta[i]


@njit
def accumulate_transposed(acc, off, delta, factor):
    """``acc[off:off + delta.size] += factor * delta.T`` (row-major in the transposed shape)."""
    r, c = delta.shape
    for j in range(c):
        base = off + j * r
        for i in range(r):
            acc[base + i] += factor * delta[i, j]


@njit
def outer_update(args, buf, acc, pre, err, k, l, B, delta_buf, scale):
    """Accumulate ``clip(scale * pre^T err) / B`` into matrix ``k`` of layer ``l`` (on its stored entries).

    Returns the raw product ``pre^T err`` on the stored entries (a flat view of ``delta_buf``) and the
    factor that was applied to it before the division by ``B``.
    """
    lay = args.layout[l - 1, k]
    r = lay[ROWS]
    c = lay[COLS]
    nnz = lay[NNZ]
    delta = delta_buf[:nnz]
    if lay[KIND] == DENSE:
        np.dot(pre.T, err, delta.reshape((r, c)))
    else:
        off = lay[OFFSET]
        ptr = lay[PTR]
        pre_t = transposed(pre, buf.left_t)
        err_t = transposed(err, buf.right_t)
        for i in range(r):
            row = pre_t[i]
            for q in range(args.indptr[ptr + i], args.indptr[ptr + i + 1]):
                col = err_t[np.uint64(args.indices[off + q])]
                total = 0.0
                for b in range(B):
                    total += row[b] * col[b]
                delta[q] = total
    factor = scale * clip_factor(delta, abs(scale), args.clip)
    accumulate(acc, lay[OFFSET], delta, factor / B)
    return delta, factor


@njit
def accumulate_mirror(args, acc, l, delta_w, factor):
    """``Delta E_l += factor * Delta W_l^T``, from ``Delta W_l`` on W's stored entries (flat)."""
    lay = args.layout[l - 1, E]
    off = lay[OFFSET]
    if lay[KIND] == DENSE:
        accumulate_transposed(acc, off, delta_w.reshape((lay[COLS], lay[ROWS])), factor)
    else:
        w_off = args.layout[l - 1, W, OFFSET]
        for q in range(lay[NNZ]):
            acc[off + q] += factor * delta_w[args.partner[off + q] - w_off]


@njit
def ptncn_step(args, buf, x, mask, learn):
    """One step of every stream: predict ``x`` from the carried state, correct the states, and (``learn``)
    accumulate the clipped local updates divided by the batch size into ``buf.acc``. Leaves the prediction
    ``x_hat`` in layer 0 of ``buf.mu`` and the corrected states in ``buf.y`` (layer 0 becomes ``x``)."""
    off = args.offsets
    L = off.shape[0] - 2
    B = x.shape[0]
    # 1. predict from the carried states
    for l in range(1, L + 1):
        a = block(buf.a, off, B, l)
        tmp = buf.tmp[:a.size].reshape(a.shape)
        product(args, buf, l, M, block(buf.y, off, B, l - 1), a, tmp, False)
        if l < L:
            product(args, buf, l, U, block(buf.y, off, B, l + 1), a, tmp, True)
        product(args, buf, l, V, block(buf.y, off, B, l), a, tmp, True)
        apply_activation(args.activation, a, block(buf.z, off, B, l))
    for l in range(1, L + 1):
        mu = block(buf.mu, off, B, l - 1)
        product(args, buf, l, W, block(buf.z, off, B, l), mu, buf.tmp[:mu.size].reshape(mu.shape), False)
    apply_output(args.output, block(buf.mu, off, B, 0))
    # 2. errors, masked per stream
    for l in range(0, L):
        e = block(buf.e, off, B, l)
        mu = block(buf.mu, off, B, l)
        target = x if l == 0 else block(buf.z, off, B, l)
        for b in range(B):
            for i in range(e.shape[1]):
                e[b, i] = (mu[b, i] - target[b, i]) * mask[b]
    # 3-4. corrections through the error weights, corrected states, temporal errors
    for l in range(1, L + 1):
        d = block(buf.d, off, B, l)
        product(args, buf, l, E, block(buf.e, off, B, l - 1), d, buf.tmp[:d.size].reshape(d.shape), False)
        a = block(buf.a, off, B, l)
        if l < L:
            e_here = block(buf.e, off, B, l)
            for b in range(B):
                for i in range(d.shape[1]):
                    d[b, i] -= args.alpha_e * e_here[b, i]
        if args.sparsity != 0.0:
            for b in range(B):
                for i in range(d.shape[1]):
                    v = a[b, i]
                    d[b, i] += args.sparsity * (1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0))
        y_new = block(buf.y_new, off, B, l)
        for b in range(B):
            for i in range(d.shape[1]):
                y_new[b, i] = a[b, i] - args.beta * d[b, i]
        apply_activation(args.activation, y_new, y_new)
        z = block(buf.z, off, B, l)
        ev = block(buf.ev, off, B, l)
        for b in range(B):
            for i in range(d.shape[1]):
                ev[b, i] = (z[b, i] - y_new[b, i]) * mask[b]
    # 5. local updates
    if learn:
        for l in range(1, L + 1):
            z = block(buf.z, off, B, l)
            if l == 1:
                below = block(buf.e, off, B, 0)
            elif args.w_rule == RULE_CODE:
                below = block(buf.ev, off, B, l - 1)
            else:
                below = block(buf.e, off, B, l - 1)
            delta, factor = outer_update(args, buf, buf.acc, z, below, W, l, B, buf.delta, 1.0)
            if args.e_rule == RULE_CODE:
                # E_l follows the clipped Delta W_l, transposed and scaled by gamma, then is clipped itself.
                e_factor = args.gamma * factor
                e_factor *= clip_factor(delta, abs(e_factor), args.clip)
                accumulate_mirror(args, buf.acc, l, delta, e_factor / B)
            else:
                # The paper's temporal rule: Delta E_l = -gamma e_{l-1}^T (ev_l(t) - ev_l(t-1)).
                ev = block(buf.ev, off, B, l)
                ev_prev = block(buf.ev_prev, off, B, l)
                change = buf.tmp[:ev.size].reshape(ev.shape)
                for b in range(B):
                    for i in range(ev.shape[1]):
                        change[b, i] = ev[b, i] - ev_prev[b, i]
                outer_update(args, buf, buf.acc, block(buf.e, off, B, l - 1), change, E, l, B, buf.delta,
                             -args.gamma)
            ev = block(buf.ev, off, B, l)
            outer_update(args, buf, buf.acc, block(buf.y, off, B, l - 1), ev, M, l, B, buf.delta, 1.0)
            if l < L:
                outer_update(args, buf, buf.acc, block(buf.y, off, B, l + 1), ev, U, l, B, buf.delta, 1.0)
            outer_update(args, buf, buf.acc, block(buf.y, off, B, l), ev, V, l, B, buf.delta, 1.0)
    # carry: y <- corrected states, layer 0 <- x; ev_prev <- ev
    y0 = block(buf.y, off, B, 0)
    for b in range(B):
        for i in range(y0.shape[1]):
            y0[b, i] = x[b, i]
    lo = B * off[1]
    for k in range(lo, buf.y.shape[0]):
        buf.y[k] = buf.y_new[k]
    for k in range(buf.ev.shape[0]):
        buf.ev_prev[k] = buf.ev[k]
