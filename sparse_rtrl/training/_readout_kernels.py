"""Compiled kernels of the linear readout: outputs, the losses, credits and gradients.

The step-by-step path (``LinearReadout.step``), the fused loop and evaluation
(``LinearReadout.loss``) all call these functions, so they give identical
numbers. The loss codes are those of ``losses.py``.
"""

import numpy as np

from .._jit import njit
from .losses import BERNOULLI, MSE


@njit
def _outputs(params, n_out, n_hidden, h, yb):
    """``y = V h + bias`` for one stream (``params`` holds ``V`` row-major, then the bias)."""
    for j in range(n_out):
        row = params[j * n_hidden:(j + 1) * n_hidden]
        acc = params[n_out * n_hidden + j]
        for i in range(n_hidden):
            acc += row[i] * h[i]
        yb[j] = acc


@njit
def loss_and_error(code, yb, target_f, target_i, dy, total):
    """``total`` plus the loss of outputs ``yb`` (one stream); ``dy`` = dL/dy.

    ``code`` ``MSE``: ``L = 0.5 |y - target_f|^2``; ``BERNOULLI``: sigmoid
    cross-entropy against ``target_f`` in [0, 1], in nats,
    ``L = sum_j softplus(y_j) - t_j y_j`` written as
    ``(1 - t) y + log1p(exp(-|y|))`` for ``y >= 0`` and
    ``-t y + log1p(exp(-|y|))`` below (float64; no overflow, and a sum of
    non-negative terms, so no cancellation where ``p`` is near ``t``),
    ``dy = sigmoid(y) - t``; else
    softmax cross-entropy with class ``target_i``, in nats (computed in
    float64, shifted by the max); a class of -1 means no target: no loss, and
    ``dy = 0``. The loss is added term by term to ``total`` (float64), in the
    order of the outputs.
    """
    n_out = yb.shape[0]
    if code == MSE:
        for j in range(n_out):
            d = yb[j] - target_f[j]
            dy[j] = d
            total += 0.5 * np.float64(d) * np.float64(d)
    elif code == BERNOULLI:
        for j in range(n_out):
            z = np.float64(yb[j])
            t = np.float64(target_f[j])
            e = np.exp(-abs(z))  # in (0, 1]: never overflows
            # Both terms >= 0 (t in [0, 1]): no cancellation, however the sum is associated.
            if z >= 0.0:
                total += (1.0 - t) * z + np.log1p(e)
                dy[j] = 1.0 / (1.0 + e) - t
            else:
                total += -t * z + np.log1p(e)
                dy[j] = e / (1.0 + e) - t
    elif target_i < 0:
        for j in range(n_out):
            dy[j] = 0.0
    else:
        k = target_i
        m = np.float64(yb[0])
        for j in range(1, n_out):
            m = max(m, np.float64(yb[j]))
        z = 0.0
        for j in range(n_out):
            z += np.exp(np.float64(yb[j]) - m)
        total += np.log(z) + m - np.float64(yb[k])
        for j in range(n_out):
            dy[j] = np.exp(np.float64(yb[j]) - m) / z - (1.0 if j == k else 0.0)
    return total


@njit
def readout_step(params, feedback, n_out, code, s, target_f, target_i, y, dy, credit, gacc):
    """Linear readout ``y = V h + bias`` of every stream, its loss and credit.

    ``params`` holds ``V`` (n_out x n_hidden, row-major) then the bias; ``h``
    is the first ``n_hidden`` entries of each state. Writes ``y`` (B, n_out)
    and ``credit`` (B, S) = ``feedback^T dL/dy`` (zero beyond ``h``), adds
    dL/dparams to ``gacc`` and returns the loss summed over the batch
    (float64). ``feedback`` (n_out * n_hidden, row-major) is ``V`` itself for
    the true credit dL/ds, or fixed random weights (feedback alignment).
    ``dy`` (n_out) is work space. A stream whose class is -1 adds no loss,
    credit or gradient.
    """
    n_hidden = (params.shape[0] - n_out) // n_out
    gV = gacc[: n_out * n_hidden]
    gb = gacc[n_out * n_hidden:]
    total = 0.0
    for b in range(s.shape[0]):
        h = s[b, :n_hidden]
        yb = y[b]
        _outputs(params, n_out, n_hidden, h, yb)
        total = loss_and_error(code, yb, target_f[b], target_i[b], dy, total)
        cb = credit[b]
        cb[:] = 0.0
        ch = cb[:n_hidden]
        for j in range(n_out):
            d = dy[j]
            gb[j] += d
            row = feedback[j * n_hidden:(j + 1) * n_hidden]
            grow = gV[j * n_hidden:(j + 1) * n_hidden]
            for i in range(n_hidden):
                ch[i] += row[i] * d
                grow[i] += d * h[i]
    return total


@njit
def readout_loss(params, n_out, code, s, target_f, target_i, y, dy):
    """The loss of every stream's outputs, summed (float64): ``readout_step`` without credit or gradient."""
    n_hidden = (params.shape[0] - n_out) // n_out
    total = 0.0
    for b in range(s.shape[0]):
        _outputs(params, n_out, n_hidden, s[b, :n_hidden], y[b])
        total = loss_and_error(code, y[b], target_f[b], target_i[b], dy, total)
    return total


@njit
def readout_predict(params, n_out, s, y):
    """Outputs ``y`` (B, n_out) of states ``s`` (B, S)."""
    n_hidden = (params.shape[0] - n_out) // n_out
    for b in range(s.shape[0]):
        _outputs(params, n_out, n_hidden, s[b, :n_hidden], y[b])


@njit
def take_vector(acc, out):
    """``out = acc`` and ``acc = 0``."""
    for i in range(out.shape[0]):  # not out[:] = acc: see _fused_kernels.fused_loop
        out[i] = acc[i]
        acc[i] = 0.0
