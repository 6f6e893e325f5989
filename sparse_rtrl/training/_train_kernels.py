"""Compiled kernels of readouts, optimisers and the fused online loop.

The step-by-step Python path (``LinearReadout.step``, ``SGD.step``, ...) and
the fused loop call exactly these functions, so both give identical numbers.
"""

import numpy as np
from numba import types
from numba.extending import overload

from .._cell_kernels import gru_kernel, lstm_kernel, vanilla_kernel
from .._jit import njit
from ..learners._base_kernels import form_dynamics, take_grad
from ..learners._snap_kernels import snap_diag_update, snap_update, take_block_grad

MSE = 0
CROSS_ENTROPY = 1
SGD = 0
ADAM = 1


# -- readout -----------------------------------------------------------------------


@njit
def readout_step(params, feedback, n_out, kind, s, target_f, target_i, y, dy, credit, gacc):
    """Linear readout ``y = V h + c`` of every stream, its loss and credit.

    ``params`` holds ``V`` (n_out x n_hidden, row-major) then ``c``; ``h`` is
    the first ``n_hidden`` entries of each state. Writes ``y`` (B, n_out) and
    ``credit`` (B, S) = ``feedback^T dL/dy`` (zero beyond ``h``), adds
    dL/dparams to ``gacc`` and returns the loss summed over the batch
    (float64). ``feedback`` (n_out * n_hidden, row-major) is ``V`` itself for
    the true credit dL/ds, or fixed random weights (feedback alignment).
    ``dy`` (n_out) is work space.

    ``kind`` 0: ``L = 0.5 |y - target_f|^2``; 1: softmax cross-entropy with
    class ``target_i``, in nats (computed in float64, shifted by the max); a
    class of -1 means no target: the stream adds no loss, credit or gradient.
    """
    n_hidden = (params.shape[0] - n_out) // n_out
    V = params[: n_out * n_hidden]
    bias = params[n_out * n_hidden:]
    gV = gacc[: n_out * n_hidden]
    gb = gacc[n_out * n_hidden:]
    total = 0.0
    for b in range(s.shape[0]):
        h = s[b, :n_hidden]
        yb = y[b]
        for j in range(n_out):
            row = V[j * n_hidden:(j + 1) * n_hidden]
            acc = bias[j]
            for i in range(n_hidden):
                acc += row[i] * h[i]
            yb[j] = acc
        if kind == MSE:
            for j in range(n_out):
                d = yb[j] - target_f[b, j]
                dy[j] = d
                total += 0.5 * np.float64(d) * np.float64(d)
        elif target_i[b] < 0:
            # No target at this step: no loss, no credit, no gradient.
            for j in range(n_out):
                dy[j] = 0.0
        else:
            k = target_i[b]
            m = np.float64(yb[0])
            for j in range(1, n_out):
                m = max(m, np.float64(yb[j]))
            z = 0.0
            for j in range(n_out):
                z += np.exp(np.float64(yb[j]) - m)
            total += np.log(z) + m - np.float64(yb[k])
            for j in range(n_out):
                dy[j] = np.exp(np.float64(yb[j]) - m) / z - (1.0 if j == k else 0.0)
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
def readout_predict(params, n_out, s, y):
    n_hidden = (params.shape[0] - n_out) // n_out
    for b in range(s.shape[0]):
        for j in range(n_out):
            acc = params[n_out * n_hidden + j]
            for i in range(n_hidden):
                acc += params[j * n_hidden + i] * s[b, i]
            y[b, j] = acc


@njit
def take_vector(acc, out):
    """``out = acc`` and ``acc = 0``."""
    out[:] = acc
    acc[:] = 0.0


# -- optimisers --------------------------------------------------------------------


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
def optimizer_step(kind, lr, momentum, nesterov, beta1, beta2, eps, clip, t, total_sq,
                   p0, g0, s0a, s0b, p1, g1, s1a, s1b):
    """One step of SGD or Adam on two parameter vectors with a shared clip.

    ``t`` is the 1-based step count (Adam's bias correction); ``total_sq`` the
    squared global gradient norm.
    """
    scale = clip_scale(total_sq, clip)
    if kind == SGD:
        sgd_update(p0, g0, s0a, lr, momentum, nesterov, scale)
        sgd_update(p1, g1, s1a, lr, momentum, nesterov, scale)
    else:
        c1, c2 = adam_corrections(beta1, beta2, t)
        adam_update(p0, g0, s0a, s0b, lr, beta1, beta2, eps, c1, c2, scale)
        adam_update(p1, g1, s1a, s1b, lr, beta1, beta2, eps, c1, c2, scale)


# -- the fused online loop -----------------------------------------------------------


@njit
def fused_snap(cell_args, theta, lrn, ro, opt, xs, ys_f, ys_i, update_every, losses):
    """Run ``xs.shape[0]`` online steps of a SnAp learner entirely in compiled code.

    Each step: the cell's step and Jacobian factors, D on the mask's entries,
    the readout's loss and credit, the SnAp update with gradient accumulation,
    and every ``update_every`` steps the optimiser on both parameter vectors.
    The same kernels, in the same order, as the step-by-step path.

    Returns ``(updates, bad_step)``: optimiser steps taken, and the step at
    which the loss (or the gradient about to be applied) stopped being
    finite, or -1. On a bad step the loop stops before changing parameters.
    """
    (state, nxt, coef, dloc, presyn, dyn, run_row, run_gate, run_param, run_ptr, run_entry, local_entry,
     diagonal, seg_ptr, seg_unit, seg_gate, src, diag_entry,
     row_ptr, rows, col_ptr, col_gate, col_src, inf_ptr, plan_ptr, plan_col, plan_entry, seed_ptr, seed_local,
     block_params, J, scratch, acc, g_cell) = lrn
    (r_params, r_feedback, n_out, kind, y, dy, credit, r_acc, g_read) = ro
    (o_kind, lr, momentum, nesterov, beta1, beta2, eps, clip, o_t, s0a, s0b, s1a, s1b) = opt
    updates = 0
    for t in range(xs.shape[0]):
        cell_step(cell_args, state, xs[t], nxt, coef, dloc, presyn, True)
        state[:, :] = nxt
        form_dynamics(theta, coef, dloc, run_row, run_gate, run_param, run_ptr, run_entry, local_entry, dyn)
        losses[t] = readout_step(r_params, r_feedback, n_out, kind, state, ys_f[t], ys_i[t], y, dy, credit, r_acc)
        if not np.isfinite(losses[t]):
            return updates, t
        snap_step(diagonal, seg_ptr, seg_unit, seg_gate, src, diag_entry,
                  row_ptr, rows, col_ptr, col_gate, col_src, inf_ptr, plan_ptr, plan_col, plan_entry,
                  seed_ptr, seed_local, dyn, coef, presyn, credit, J, scratch, acc)
        if (t + 1) % update_every == 0:
            snap_take_grad(diagonal, acc, block_params, g_cell)
            take_vector(r_acc, g_read)
            total_sq = sum_squares(g_cell) + sum_squares(g_read)
            if not np.isfinite(total_sq):
                return updates, t
            o_t[0] += 1
            optimizer_step(o_kind, lr, momentum, nesterov, beta1, beta2, eps, clip, o_t[0], total_sq,
                           theta, g_cell, s0a, s0b, r_params, g_read, s1a, s1b)
            updates += 1
    return updates, -1


def snap_step(diagonal, seg_ptr, seg_unit, seg_gate, src, diag_entry,
              row_ptr, rows, col_ptr, col_gate, col_src, inf_ptr, plan_ptr, plan_col, plan_entry,
              seed_ptr, seed_local, dyn, coef, presyn, credit, J, scratch, acc):
    """SnAp's update with gradient accumulation, in its diagonal (SnAp-1,
    parameter order) or block layout.

    ``diagonal`` is ``True`` or ``None``: two types, so only one layout is
    compiled into the loop. Both compiled behind a run-time flag made the
    float32 loop 35% slower (32-unit vanilla RNN: 4.0 -> 5.4 us per step).
    """
    raise NotImplementedError("snap_step is only callable from compiled code")


@overload(snap_step, jit_options={"cache": True})
def _snap_step_impl(diagonal, seg_ptr, seg_unit, seg_gate, src, diag_entry,
                    row_ptr, rows, col_ptr, col_gate, col_src, inf_ptr, plan_ptr, plan_col, plan_entry,
                    seed_ptr, seed_local, dyn, coef, presyn, credit, J, scratch, acc):
    if isinstance(diagonal, types.Boolean):
        def diag(diagonal, seg_ptr, seg_unit, seg_gate, src, diag_entry,
                 row_ptr, rows, col_ptr, col_gate, col_src, inf_ptr, plan_ptr, plan_col, plan_entry,
                 seed_ptr, seed_local, dyn, coef, presyn, credit, J, scratch, acc):
            snap_diag_update(seg_ptr, seg_unit, seg_gate, src, diag_entry, dyn, coef, presyn, credit, J, acc, True)
        return diag

    def block(diagonal, seg_ptr, seg_unit, seg_gate, src, diag_entry,
              row_ptr, rows, col_ptr, col_gate, col_src, inf_ptr, plan_ptr, plan_col, plan_entry,
              seed_ptr, seed_local, dyn, coef, presyn, credit, J, scratch, acc):
        snap_update(row_ptr, rows, col_ptr, col_gate, col_src, inf_ptr, plan_ptr, plan_col, plan_entry,
                    seed_ptr, seed_local, dyn, coef, presyn, credit, J, scratch, acc, True)
    return block


def snap_take_grad(diagonal, acc, block_params, out):
    """The SnAp accumulator in parameter order (``diagonal`` as in ``snap_step``)."""
    raise NotImplementedError("snap_take_grad is only callable from compiled code")


@overload(snap_take_grad, jit_options={"cache": True})
def _snap_take_grad_impl(diagonal, acc, block_params, out):
    if isinstance(diagonal, types.Boolean):
        return lambda diagonal, acc, block_params, out: take_grad(acc, out)
    return lambda diagonal, acc, block_params, out: take_block_grad(acc, block_params, out)


def cell_step(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    """Step of a built-in cell, chosen at compile time from its argument tuple."""
    raise NotImplementedError("cell_step is only callable from compiled code")


@overload(cell_step, jit_options={"cache": True})
def _cell_step_impl(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    # The built-in cells' kernel_args tuples differ in length (see cells.py);
    # a direct call of the chosen kernel keeps fused_snap cacheable, which
    # passing the kernel as a first-class argument would not.
    kernels = {VANILLA_ARGS: vanilla_kernel, GRU_ARGS: gru_kernel, LSTM_ARGS: lstm_kernel}
    kernel = kernels.get(len(args.types))
    if kernel is None:
        return None

    def impl(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
        kernel(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians)

    return impl


#: Lengths of the built-in cells' kernel_args tuples.
VANILLA_ARGS = 9
GRU_ARGS = 24
LSTM_ARGS = 30
