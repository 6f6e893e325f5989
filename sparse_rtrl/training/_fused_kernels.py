"""The fused online loop: a SnAp-core learner, a linear readout and an optimiser, all in compiled code.

It calls the same kernels, in the same order, as the step-by-step path
(``Learner.forward``/``backward``/``grad``, ``LinearReadout.step``,
``Optimizer.step``), so both give identical numbers. Every argument is a
NamedTuple of the object it comes from (``SnApKernelState``,
``ReadoutArgs``, ``OptimizerArgs``, the cell's ``kernel_args``), and each
choice between code paths is made by type when the loop is compiled.
"""

import numpy as np
from numba import types

from .._cell_kernels import cell_step
from .._jit import njit, overload
from ..learners._base_kernels import form_dynamics, take_grad, trace_update
from ..learners._snap_kernels import snap_update, take_block_grad
from ._optim_kernels import optimizer_step, sum_squares
from ._readout_kernels import readout_step, take_vector


@njit
def fused_snap(cell_args, theta, buffers, snap, ro, opt, n_updates, xs, ys_f, ys_i, update_every, losses):
    """Run ``xs.shape[0]`` online steps of a SnAp-core learner entirely in compiled code.

    Each step: the cell's step and Jacobian factors, D on the entries the
    learner reads, the readout's loss and credit, the influence update with
    gradient accumulation, and every ``update_every`` steps the optimiser on
    both parameter vectors (at its scheduled rate, after its weight decay).
    ``buffers`` is ``(state, next, coef, dloc, presyn, acc, grad)`` of the
    learner; ``n_updates`` a one-element array, the optimiser's update count.

    Returns ``(updates, bad_step)``: optimiser steps taken, and the step at
    which the loss (or the gradient about to be applied) stopped being
    finite, or -1. On a bad step the loop stops before changing parameters.
    """
    state, nxt, coef, dloc, presyn, acc, g_cell = buffers
    r_params, r_feedback, n_out, code, y, dy, credit, r_acc, g_read = ro
    updates = 0
    for t in range(xs.shape[0]):
        cell_step(cell_args, state, xs[t], nxt, coef, dloc, presyn, True)
        # Plain loops: a slice assignment from an array compiles numba's formatted shape-mismatch error
        # (about 3 s of compilation per dimensionality, measured), for a copy whose shapes always match.
        for b in range(state.shape[0]):
            for k in range(state.shape[1]):
                state[b, k] = nxt[b, k]
        form_dynamics(theta, coef, dloc, snap.dyn_plan, snap.dyn)
        losses[t] = readout_step(r_params, r_feedback, n_out, code, state, ys_f[t], ys_i[t], y, dy, credit, r_acc)
        if not np.isfinite(losses[t]):
            return updates, t
        snap_step(snap.diagonal, snap, coef, presyn, credit, acc)
        if (t + 1) % update_every == 0:
            snap_take_grad(snap.diagonal, acc, snap.block_params, g_cell)
            take_vector(r_acc, g_read)
            total_sq = sum_squares(g_cell) + sum_squares(g_read)
            if not np.isfinite(total_sq):
                return updates, t
            n_updates[0] += 1
            optimizer_step(opt, n_updates[0], total_sq, theta, g_cell, r_params, g_read)
            updates += 1
    return updates, -1


def snap_step(diagonal, snap, coef, presyn, credit, acc):
    """The influence update with gradient accumulation, in the diagonal layout (SnAp-1 in
    parameter order: the per-parameter trace kernel, decay ``D_ii``) or the block layout.

    ``diagonal`` is ``True`` or ``None``: two types, so only one layout is
    compiled into the loop. Both compiled behind a run-time flag made the
    float32 loop 35% slower (32-unit vanilla RNN: 4.0 -> 5.4 us per step).
    """
    if diagonal is True:
        trace_update(snap.seg, snap.dyn, snap.diag_entry, coef, presyn, credit, snap.J, acc, True)
    else:
        snap_update(snap.plan, snap.dyn, coef, presyn, credit, snap.J, snap.scratch, acc, True)


@overload(snap_step)
def _snap_step_impl(diagonal, snap, coef, presyn, credit, acc):
    if isinstance(diagonal, types.Boolean):
        def diag(diagonal, snap, coef, presyn, credit, acc):
            trace_update(snap.seg, snap.dyn, snap.diag_entry, coef, presyn, credit, snap.J, acc, True)
        return diag

    def block(diagonal, snap, coef, presyn, credit, acc):
        snap_update(snap.plan, snap.dyn, coef, presyn, credit, snap.J, snap.scratch, acc, True)
    return block


def snap_take_grad(diagonal, acc, block_params, out):
    """The accumulator in parameter order (``diagonal`` as in ``snap_step``)."""
    if diagonal is True:
        take_grad(acc, out)
    else:
        take_block_grad(acc, block_params, out)


@overload(snap_take_grad)
def _snap_take_grad_impl(diagonal, acc, block_params, out):
    if isinstance(diagonal, types.Boolean):
        return lambda diagonal, acc, block_params, out: take_grad(acc, out)
    return lambda diagonal, acc, block_params, out: take_block_grad(acc, block_params, out)
