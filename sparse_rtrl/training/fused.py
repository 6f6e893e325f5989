"""The fused online loop, from Python: when it applies, and how a learner, readout and optimiser enter it.

``train_online`` runs here whenever it can: a learner with a SnAp core (SnAp,
e-prop) on a built-in cell, with the linear readout and SGD or Adam (with a
built-in schedule or none, with or without weight decay). The
compiled loop (``_fused_kernels.fused_snap``) removes the Python call overhead
that dominates small networks and gives the step-by-step path's numbers.
"""

import numpy as np


def fused_obstacle(learner, readout, optimizer):
    """None when the fused loop can run these, else why not (a sentence)."""
    from .._cell_kernels import built_in
    from .optim import Optimizer
    from .readouts import LinearReadout

    if learner.fused_parts() is None:
        return f"the fused loop runs the learners with a SnAp core (SnAp, e-prop); {learner.name} runs step by step"
    if not built_in(learner.cell.kernel_args):
        return f"the fused loop knows the built-in cell kernels, not that of {type(learner.cell).__name__}"
    if type(readout).kernel_args is not LinearReadout.kernel_args:
        return f"the fused loop knows the linear readout, not {type(readout).__name__}"
    if type(optimizer).kernel_args is Optimizer.kernel_args:
        return f"the fused loop knows SGD and Adam, not {type(optimizer).__name__}"
    if optimizer.schedule is not None and not optimizer.schedule.compiled:
        return f"the fused loop knows the built-in schedules, not {type(optimizer.schedule).__name__}"
    return None


def train_fused(learner, readout, optimizer, xs, ys_f, ys_i, update_every):
    """Run the fused loop; returns the losses, or raises ``DivergenceError`` as ``train_online`` does."""
    from ._fused_kernels import fused_snap
    from .online import DivergenceError

    cell = learner.cell
    core = learner.fused_parts()
    snap = core.kernel_state()
    buffers = (learner._state, learner._next, learner._coef, learner._dloc, learner._presyn, learner._acc,
               np.empty(cell.n_params, cell.dtype))
    n_updates = np.array([optimizer.n_updates], dtype=np.int64)
    losses = np.empty(xs.shape[0])
    updates, bad = fused_snap(cell.kernel_args, cell.params, buffers, snap, readout.kernel_args(xs.shape[1]),
                              optimizer.kernel_args(), n_updates, xs, ys_f, ys_i, np.int64(update_every), losses)
    optimizer.n_updates = int(n_updates[0])
    steps = xs.shape[0] if bad < 0 else bad + 1
    what = None if bad < 0 else ("loss" if not np.isfinite(losses[bad]) else "gradient")
    core.fused_done(steps, pending=what == "loss")
    if bad >= 0:
        raise DivergenceError(int(bad), losses[: bad if what == "loss" else bad + 1].copy(), what=what)
    return losses
