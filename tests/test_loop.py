"""The compiled online loop runs every learner, with the step-by-step path's numbers bit for bit.

Every learner of the library's table that has a compiled loop (all of them)
is trained twice over the same stream, step by step and in compiled code,
in two calls (so state carried between calls is compared too), the second
in episodes (``resets``: the learner's sequence ended, the gradient left
applied and the learner reset inside the call, as the trainer runs episodic
tasks); losses,
parameters, states, pending gradients, update counts and the learner's whole
saved state must be equal, not close. Each specialisation of the loop costs
seconds of compilation, so each learner runs in one of two settings, taken
in turn down the learner table (both dtypes, both layouts and both
optimisers are covered, and every learner's hooks are compiled and
checked): a gated cell (where the learner runs on one) in float32, batched,
with Adam on a schedule and the cross-entropy; a vanilla cell in float64,
unbatched, with SGD and the squared error. Both update every 2 steps, so an
episode ends inside an update block.
"""

import numpy as np
import pytest

import sparse_rtrl as sr
from conftest import make_cell
from learner_table import LEARNERS

SETTINGS = {
    "gated-f32": dict(kind="gru", dtype=np.float32, batch=2, opt="adam", loss="cross_entropy", every=2),
    "vanilla-f64": dict(kind="vanilla", dtype=np.float64, batch=None, opt="sgd", loss="mse", every=2),
}
CASES = [(name, list(SETTINGS)[i % 2]) for i, name in enumerate(LEARNERS)]


def _build(name, setting):
    spec = LEARNERS[name]
    kind = setting["kind"] if setting["kind"] in spec.cells else spec.cells[0]
    cell = make_cell(kind, 3, 5, 0.6, seed=1, dtype=setting["dtype"])
    learner = spec.make(cell, batch_size=setting["batch"])
    readout = sr.LinearReadout(cell, 2, loss=setting["loss"], seed=2)
    params = [cell.params, readout.params]
    if setting["opt"] == "sgd":
        optimizer = sr.SGD(params, lr=0.05, momentum=0.9, clip_norm=1.0)
    else:
        optimizer = sr.Adam(params, lr=0.01, clip_norm=0.5, weight_decay=1e-3,
                            schedule=sr.training.schedules.Cosine(total=20, warmup=2))
    return cell, learner, readout, optimizer


def _stream(setting, T):
    rng = np.random.default_rng(5)
    lead = (T,) if setting["batch"] is None else (T, setting["batch"])
    xs = rng.normal(size=lead + (3,))
    ys = rng.normal(size=lead + (2,)) if setting["loss"] == "mse" else rng.integers(-1, 2, size=lead)
    return xs, ys


def _run(name, setting, fused):
    cell, learner, readout, optimizer = _build(name, setting)
    xs, ys = _stream(setting, 11)
    resets = np.zeros(6, dtype=bool)
    resets[[0, 3]] = True  # episodes of 3 steps: the first ends a partial update block when every = 2
    losses = [sr.train_online(learner, readout, optimizer, xs[:5], ys[:5], setting["every"], fused=fused),
              sr.train_online(learner, readout, optimizer, xs[5:], ys[5:], setting["every"], fused=fused,
                              resets=resets)]
    state = learner.state_dict()
    return dict(losses=np.concatenate(losses), cell=cell.params.copy(), readout=readout.params.copy(),
                state=learner.state, n_steps=learner.n_steps, updates=optimizer.n_updates,
                grad=learner.grad(), readout_grad=readout.grad(), saved=state)


def _assert_same(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, np.random.Generator):
        assert a.bit_generator.state == b.bit_generator.state, where
    elif isinstance(a, np.ndarray) or np.isscalar(a):
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where


@pytest.mark.parametrize("name,setting", CASES)
def test_compiled_loop_equals_step_by_step(name, setting):
    cell, learner, readout, optimizer = _build(name, SETTINGS[setting])
    assert sr.training.fused.fused_obstacle(learner, readout, optimizer) is None
    _assert_same(_run(name, SETTINGS[setting], False), _run(name, SETTINGS[setting], True))
