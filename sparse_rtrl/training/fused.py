"""The compiled online loop, from Python: when it applies, and how a learner, readout and optimiser enter it.

``train_online`` runs here whenever it can: a learner with a compiled loop
(``Learner._loop_state``; every built-in learner has one) on a built-in
cell, with the linear readout and SGD or Adam (with a built-in schedule or
none, with or without weight decay). The compiled loop
(``_fused_kernels.fused_loop``) removes the Python call overhead that
dominates small networks and gives the step-by-step path's numbers.
"""

import numpy as np

#: Random numbers drawn ahead per call of the compiled loop, at most (the loop runs in chunks below it).
MAX_DRAWS = 1 << 22


def fused_obstacle(learner, readout, optimizer):
    """None when the compiled loop can run these, else why not (a sentence)."""
    from .._cell_kernels import built_in
    from .optim import Optimizer
    from .readouts import LinearReadout

    reason = learner._loop_obstacle()
    if reason is not None:
        return reason
    if not built_in(learner.cell.kernel_args):
        return f"the compiled loop knows the built-in cell kernels, not that of {type(learner.cell).__name__}"
    if type(readout).kernel_args is not LinearReadout.kernel_args:
        return f"the compiled loop knows the linear readout, not {type(readout).__name__}"
    if type(optimizer).kernel_args is Optimizer.kernel_args:
        return f"the compiled loop knows SGD and Adam, not {type(optimizer).__name__}"
    if optimizer.schedule is not None and not optimizer.schedule.compiled:
        return f"the compiled loop knows the built-in schedules, not {type(optimizer.schedule).__name__}"
    return None


def train_fused(learner, readout, optimizer, xs, ys_f, ys_i, resets, update_every):
    """Run the compiled loop; returns the losses, or raises ``DivergenceError`` as ``train_online`` does."""
    from ._fused_kernels import BAD_CREDIT, BAD_LOSS, FINISHED
    from .online import DivergenceError

    T = xs.shape[0]
    losses = np.empty(T)
    draw = learner._loop_draws()
    per_step = xs.shape[1] * (draw[1] if draw is not None else 0)
    chunk = max(1, MAX_DRAWS // per_step) if per_step else max(T, 1)
    block = np.zeros(1, np.int64)  # steps into the current update block, carried from chunk to chunk
    for lo in range(0, T, chunk):
        hi = min(T, lo + chunk)
        steps, what = _run(learner, readout, optimizer, xs[lo:hi], ys_f[lo:hi], ys_i[lo:hi], resets[lo:hi], block,
                           update_every, losses[lo:hi], draw)
        if what != FINISHED:
            # The bad step; for the gradient left at an episode's end, the last step before that end.
            step = lo + steps - 1
            kept = step if what in (BAD_LOSS, BAD_CREDIT) else step + 1
            raise DivergenceError(step, losses[:kept].copy(), what="loss" if what == BAD_LOSS else "gradient")
    return losses


def _run(learner, readout, optimizer, xs, ys_f, ys_i, resets, block, update_every, losses, draw):
    """One call of the compiled loop over ``xs``; returns ``(steps, what)`` (state written back either way)."""
    from ._fused_kernels import BAD_CREDIT, BAD_LOSS, fused_loop

    cell = learner.cell
    T, B = xs.shape[0], xs.shape[1]
    if draw is None:
        draws = np.empty((T, B, 0))
    else:
        method, k, dtype = draw
        rng = learner._rng
        saved = rng.bit_generator.state
        draws = np.empty((T, B, k), dtype)
        getattr(rng, method)(out=draws)
    # The most steps the learner holds within the call: one episode's at most (BPTT makes room for them).
    bounds = np.flatnonzero(resets)
    horizon = int(np.diff(np.concatenate([[0], bounds, [T]])).max()) if T else 0
    parts = learner._loop_state(horizon)
    buffers = (learner._state, learner._next, learner._coef, learner._dloc, learner._presyn, learner._acc,
               np.empty(cell.n_params, cell.dtype))
    n_updates = np.array([optimizer.n_updates], dtype=np.int64)
    steps, what = fused_loop(cell.kernel_args, cell.params, buffers, parts, readout.kernel_args(B),
                             optimizer.kernel_args(), n_updates, xs, ys_f, ys_i, draws, resets, block,
                             np.int64(update_every), True if learner.needs_jacobians else None, losses)
    optimizer.n_updates = int(n_updates[0])
    if draw is not None and steps < T:  # the generator as the step-by-step path leaves it: steps draws, no more
        rng.bit_generator.state = saved
        getattr(rng, method)(out=np.empty((steps, B, k), dtype))
    started = np.flatnonzero(resets[:steps])  # episodes begun (the learner reset) inside this call
    if started.size:
        learner.n_steps = 0
    since = int(steps - (started[-1] if started.size else 0))
    # A bad loss or credit: the step was taken, its credit never came (the update waits for it).
    learner._loop_done(parts, since, pending=what in (BAD_LOSS, BAD_CREDIT))
    return steps, what
