"""The compiled online loop: a learner, a linear readout and an optimiser, all in compiled code.

It calls the same kernels, in the same order, as the step-by-step path
(``Learner.forward``/``backward``/``grad``, ``LinearReadout.step``,
``Optimizer.step``), so both give identical numbers. Every argument is a
NamedTuple of the object it comes from (the learner's loop state, see
``learners._loop_kernels``; ``ReadoutArgs``; ``OptimizerArgs``; the cell's
``kernel_args``), and each choice between code paths (which learner, which
cell, which optimiser) is made by type when the loop is compiled.
"""

import numpy as np
from numba import types

from .._cell_kernels import cell_step
from .._jit import njit, overload
from ..learners._loop_kernels import (loop_after_step, loop_backward, loop_buffers, loop_end_sequence, loop_grad,
                                      loop_prepare, loop_reset, zero)
from ._optim_kernels import optimizer_step, sum_squares
from ._readout_kernels import readout_step, take_vector


#: What stopped the loop: nothing, a loss, the gradient of an update, the gradient left at an episode's end,
#: a credit (a finite float32 loss can still overflow its gradient).
FINISHED, BAD_LOSS, BAD_GRADIENT, BAD_END, BAD_CREDIT = 0, 1, 2, 3, 4


@njit
def _finite(a):
    for b in range(a.shape[0]):
        for k in range(a.shape[1]):
            if not np.isfinite(a[b, k]):
                return False
    return True


def step_cell(jacobians, cell_args, s_prev, x, s_next, coef, dloc, presyn):
    """The cell's step, with its Jacobian factors when ``jacobians`` is ``True`` (not when ``None``).

    Two types, so that the flag reaches the cell's kernel as a constant: passed
    as a run-time bool it made the loop 1.5-2 us per step slower (32-unit
    vanilla RNN, SnAp-1), its branches no longer folded away.
    """
    cell_step(cell_args, s_prev, x, s_next, coef, dloc, presyn, jacobians is True)


@overload(step_cell)
def _step_cell_impl(jacobians, cell_args, s_prev, x, s_next, coef, dloc, presyn):
    if isinstance(jacobians, types.NoneType):
        return lambda jacobians, cell_args, s_prev, x, s_next, coef, dloc, presyn: cell_step(
            cell_args, s_prev, x, s_next, coef, dloc, presyn, False)
    return lambda jacobians, cell_args, s_prev, x, s_next, coef, dloc, presyn: cell_step(
        cell_args, s_prev, x, s_next, coef, dloc, presyn, True)


@njit
def _nonzero(a):
    for i in range(a.shape[0]):
        if a[i] != 0.0:  # NaN too, as np.any
            return True
    return False


@njit
def _update(opt, n_updates, theta, g_cell, r_params, g_read):
    """The optimiser's step on both gradients; False (nothing changed) when they are not finite."""
    total_sq = sum_squares(g_cell) + sum_squares(g_read)
    if not np.isfinite(total_sq):
        return False
    n_updates[0] += 1
    optimizer_step(opt, n_updates[0], total_sq, theta, g_cell, r_params, g_read)
    return True


@njit
def fused_loop(cell_args, theta, buffers, parts, ro, opt, n_updates, xs, ys_f, ys_i, draws, resets, block,
               update_every, jacobians, losses):
    """Run ``xs.shape[0]`` online steps of a learner entirely in compiled code.

    Each step: the learner's preparation, the cell's step and Jacobian factors
    (written where the learner keeps them), the learner's update of what it
    carries forward (with the step's random numbers ``draws[t]``), the
    readout's loss and credit, the learner's use of the credit, and every
    ``update_every`` steps the optimiser on both parameter vectors (at its
    scheduled rate, after its weight decay). ``buffers`` is ``(state, next,
    coef, dloc, presyn, acc, grad)`` of the learner; ``n_updates`` a
    one-element array, the optimiser's update count; ``jacobians`` ``True``
    when the cell computes its Jacobian factors, ``None`` when not; ``block`` a one-element array, the
    steps taken into the current block of ``update_every`` (0 at the start of
    each ``train_online`` call and each episode).

    Where ``resets[t]`` is true an episode ends before step ``t``, as the
    trainer ends one: the learner's ``end_sequence``; when that emitted, or
    updates come every ``update_every > 1`` steps, the gradient left is
    applied (if any entry is nonzero); then the learner is reset (state,
    accumulator and what it carries zeroed). So one call runs many episodes.

    Returns ``(steps, what)``: the steps taken (the last one possibly without
    its credit) and what stopped the loop (``FINISHED``, or ``BAD_LOSS`` /
    ``BAD_CREDIT`` / ``BAD_GRADIENT`` at step ``steps - 1``, ``BAD_END``
    before step ``steps``). On a bad loss or gradient the loop stops before changing
    parameters.
    """
    state, nxt, coef, dloc, presyn, acc, g_cell = buffers
    r_params, r_feedback, n_out, code, y, dy, credit, r_acc, g_read = ro
    for t in range(xs.shape[0]):
        if resets[t]:
            if loop_end_sequence(parts, theta, acc) or update_every > 1:
                loop_grad(parts, theta, acc, g_cell)
                take_vector(r_acc, g_read)
                if _nonzero(g_cell) or _nonzero(g_read):
                    if not _update(opt, n_updates, theta, g_cell, r_params, g_read):
                        return t, BAD_END
            zero(state)
            zero(acc)
            loop_reset(parts)
            block[0] = 0
        loop_prepare(parts, theta)
        coef_t, dloc_t, presyn_t = loop_buffers(parts, coef, dloc, presyn)
        step_cell(jacobians, cell_args, state, xs[t], nxt, coef_t, dloc_t, presyn_t)
        # Plain loops: a slice assignment from an array compiles numba's formatted shape-mismatch error
        # (about 3 s of compilation per dimensionality, measured), for a copy whose shapes always match.
        for b in range(state.shape[0]):
            for k in range(state.shape[1]):
                state[b, k] = nxt[b, k]
        loop_after_step(parts, theta, state, coef_t, dloc_t, presyn_t, draws[t])
        losses[t] = readout_step(r_params, r_feedback, n_out, code, state, ys_f[t], ys_i[t], y, dy, credit, r_acc)
        if not np.isfinite(losses[t]):
            return t + 1, BAD_LOSS
        if not _finite(credit):
            return t + 1, BAD_CREDIT
        loop_backward(parts, theta, credit, acc)
        block[0] += 1
        if block[0] == update_every:
            block[0] = 0
            loop_grad(parts, theta, acc, g_cell)
            take_vector(r_acc, g_read)
            if not _update(opt, n_updates, theta, g_cell, r_params, g_read):
                return t + 1, BAD_GRADIENT
    return xs.shape[0], FINISHED
