"""Learning-rate schedules and decoupled weight decay: values, both training paths, checkpoints, refusals."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparse_rtrl as sr
from sparse_rtrl import checkpoint as ck
from sparse_rtrl.training.schedules import Constant, Cosine, StepDecay
from test_checkpoint import assert_identical


# -- reference formulas, straight from the definitions ------------------------------------

def naive_multiplier(kind, t, warmup=0, every=1, factor=1.0, total=1, final=0.0):
    """The multiplier of update t (1-based) in plain Python."""
    if t <= warmup:
        return t / warmup
    u = t - warmup - 1  # updates after the warm-up, from 0
    if kind == "constant":
        return 1.0
    if kind == "step":
        return factor ** (u // every)
    progress = min(u / (total - warmup), 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def test_each_schedule_matches_its_formula():
    cases = [
        (Constant(), dict()),
        (Constant(warmup=4), dict(warmup=4)),
        (StepDecay(3, 0.5), dict(every=3, factor=0.5)),
        (StepDecay(every=2, factor=0.1, warmup=3), dict(every=2, factor=0.1, warmup=3)),
        (Cosine(20), dict(total=20)),
        (Cosine(total=12, final=0.1, warmup=5), dict(total=12, final=0.1, warmup=5)),
    ]
    for schedule, kw in cases:
        got = [schedule(t) for t in range(1, 30)]
        want = [naive_multiplier(schedule.key, t, **kw) for t in range(1, 30)]
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15, err_msg=repr(schedule))
        assert all(isinstance(v, float) for v in got)


@settings(max_examples=10, deadline=None)
@given(kind=st.sampled_from(["constant", "step", "cosine"]), warmup=st.integers(0, 6), every=st.integers(1, 5),
       factor=st.floats(0.01, 1.0), span=st.integers(1, 20), final=st.floats(0.0, 1.0), t=st.integers(1, 40))
def test_schedules_match_the_formula_anywhere(kind, warmup, every, factor, span, final, t):
    options = {"constant": {}, "step": dict(every=every, factor=factor),
               "cosine": dict(total=warmup + span, final=final)}[kind]
    schedule = sr.registry.make_schedule(kind, warmup=warmup, **options)
    assert schedule(t) == pytest.approx(naive_multiplier(kind, t, warmup=warmup, **options), rel=1e-13, abs=1e-15)


def test_warmup_then_schedule():
    s = Cosine(total=10, warmup=4, final=0.2)
    assert [s(t) for t in range(1, 5)] == [0.25, 0.5, 0.75, 1.0]  # linear, never a zero rate
    assert s(5) == 1.0  # the schedule's own course starts at 1
    assert 0.2 < s(10) < s(9) < 1.0  # the run's last update is just above final
    assert s(11) == s(1000) == 0.2
    assert [StepDecay(2, 0.5, warmup=2)(t) for t in range(1, 8)] == [0.5, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    assert [Constant(warmup=3)(t) for t in (1, 3, 4, 100)] == [1 / 3, 1.0, 1.0, 1.0]


def test_optimizer_rate_follows_its_schedule():
    params = [np.zeros(2)]
    opt = sr.SGD(params, lr=0.5, schedule=StepDecay(2, 0.5))
    assert [opt.lr_at(t) for t in (1, 2, 3, 5)] == [0.5, 0.5, 0.25, 0.125]
    assert opt.lr_at() == 0.5  # the next update's
    opt.step([np.ones(2)])
    opt.step([np.ones(2)])
    assert opt.n_updates == 2 and opt.lr_at() == 0.25
    np.testing.assert_array_equal(params[0], [-1.0, -1.0])
    opt.step([np.ones(2)])
    np.testing.assert_array_equal(params[0], [-1.25, -1.25])
    assert sr.Adam(params, lr=0.1).lr_at(1000) == 0.1


def test_weight_decay_is_decoupled():
    # SGD with momentum: the decay shrinks the parameters and never enters the velocity.
    p = [np.array([2.0, -4.0])]
    opt = sr.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.5, schedule=Constant(warmup=2))
    opt.step([np.zeros(2)])
    lr1 = 0.1 * 0.5
    np.testing.assert_array_equal(p[0], np.array([2.0, -4.0]) - lr1 * 0.5 * np.array([2.0, -4.0]))
    np.testing.assert_array_equal(opt.slots["velocity"][0], [0.0, 0.0])
    # Adam: the decay, then Adam's step on the decayed parameters, both at lr_t.
    q = [np.array([1.0, -1.0, 3.0])]
    g = np.array([0.5, 0.2, -1.0])
    adam = sr.Adam(q, lr=0.01, weight_decay=0.1)
    adam.step([g])
    m, v = 0.1 * g, 0.001 * g * g
    want = np.array([1.0, -1.0, 3.0])
    want = want - 0.01 * 0.1 * want
    want = want - 0.01 * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-8)
    np.testing.assert_allclose(q[0], want, rtol=1e-14)


def test_defaults_change_nothing():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=4) for _ in range(5)]
    for make in (lambda p, **kw: sr.SGD(p, lr=0.1, momentum=0.5, **kw), lambda p, **kw: sr.Adam(p, lr=0.1, **kw)):
        a, b = [np.linspace(-1, 1, 4)], [np.linspace(-1, 1, 4)]
        plain, scheduled = make(a), make(b, schedule=Constant(), weight_decay=0.0)
        for g in grads:
            plain.step([g])
            scheduled.step([g])
        assert_identical(b, a)


# -- the fused loop gives the step-by-step numbers -------------------------------------------

SCHEDULES = {
    "none": None,
    "warmup": Constant(warmup=3),
    "step": StepDecay(every=2, factor=0.5, warmup=1),
    "cosine": Cosine(total=8, final=0.1, warmup=2),
}


def _run(fused, opt, schedule, weight_decay, dtype, update_every, xs, ys):
    cell = sr.GRU(3, 6, density=0.5, seed=0, dtype=dtype)
    learner = sr.SnAp(cell, 1)
    readout = sr.LinearReadout(cell, 2, seed=1)
    params = [cell.params, readout.params]
    if opt == "sgd":
        optimizer = sr.SGD(params, lr=0.05, momentum=0.9, clip_norm=1.0, schedule=schedule, weight_decay=weight_decay)
    else:
        optimizer = sr.Adam(params, lr=0.01, schedule=schedule, weight_decay=weight_decay)
    # Two calls, so the update count carried between them is exercised too.
    losses = [sr.train_online(learner, readout, optimizer, xs[:7], ys[:7], update_every, fused=fused),
              sr.train_online(learner, readout, optimizer, xs[7:], ys[7:], update_every, fused=fused)]
    return [np.concatenate(losses), cell.params.copy(), readout.params.copy(), optimizer.n_updates,
            *[a.copy() for arrays in optimizer.slots.values() for a in arrays]]


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_fused_equals_step_by_step_with_schedules_and_decay(opt, schedule):
    rng = np.random.default_rng(5)
    xs, ys = rng.normal(size=(15, 3)), rng.normal(size=(15, 2))
    for dtype, update_every, weight_decay in ((np.float64, 1, 0.3), (np.float32, 2, 0.05)):
        step = _run(False, opt, SCHEDULES[schedule], weight_decay, dtype, update_every, xs, ys)
        fused = _run(True, opt, SCHEDULES[schedule], weight_decay, dtype, update_every, xs, ys)
        for a, b in zip(step, fused):
            np.testing.assert_array_equal(a, b)
        if weight_decay and schedule == "cosine":
            plain = _run(True, opt, None, 0.0, dtype, update_every, xs, ys)
            assert not np.array_equal(plain[1], fused[1])  # the settings did reach the fused loop


def test_a_python_schedule_runs_step_by_step_only():
    class Halving(sr.schedules.Schedule):
        def __call__(self, update):
            return 0.5 ** (update - 1)

    cell = sr.GRU(3, 4, density=0.5, seed=0)
    learner, readout = sr.SnAp(cell, 1), sr.LinearReadout(cell, 2)
    optimizer = sr.SGD([cell.params, readout.params], lr=0.1, schedule=Halving())
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    with pytest.raises(ValueError, match="built-in schedules"):
        sr.train_online(learner, readout, optimizer, xs, ys, fused=True)
    sr.train_online(learner, readout, optimizer, xs, ys)  # falls back to step by step
    assert optimizer.n_updates == 4 and optimizer.lr_at() == 0.1 / 16
    with pytest.raises(TypeError, match="key"):
        optimizer.config()


# -- checkpoints ----------------------------------------------------------------------------

@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_resume_through_a_checkpoint_is_bit_for_bit(tmp_path, opt):
    rng = np.random.default_rng(7)
    xs, ys = rng.normal(size=(14, 3)), rng.normal(size=(14, 2))

    def build():
        cell = sr.GRU(3, 6, density=0.5, seed=0)
        learner, readout = sr.SnAp(cell, 1), sr.LinearReadout(cell, 2, seed=1)
        cls = {"sgd": sr.SGD, "adam": sr.Adam}[opt]
        optimizer = cls([cell.params, readout.params], lr=0.05, schedule=Cosine(total=14, warmup=3, final=0.1),
                        weight_decay=0.1)
        return {"cell": cell, "learner": learner, "readout": readout, "optimizer": optimizer}

    whole = build()
    sr.train_online(whole["learner"], whole["readout"], whole["optimizer"], xs, ys)
    first = build()
    sr.train_online(first["learner"], first["readout"], first["optimizer"], xs[:6], ys[:6])
    ck.save(tmp_path / "run.ckpt", {k: ck.get_state(v) for k, v in first.items()})
    record = ck.load(tmp_path / "run.ckpt")
    assert record["optimizer"]["state"]["hyperparameters"]["schedule"] == {
        "name": "cosine", "total": 14, "final": 0.1, "warmup": 3}
    # Rebuilt without a schedule and with another decay: the saved settings come back with the state.
    resumed = build()
    resumed["optimizer"] = type(resumed["optimizer"])(resumed["optimizer"].params, lr=0.5)
    for key, obj in resumed.items():
        ck.set_state(obj, record[key])
    assert resumed["optimizer"].schedule == Cosine(total=14, warmup=3, final=0.1)
    assert resumed["optimizer"].weight_decay == 0.1 and resumed["optimizer"].n_updates == 6
    sr.train_online(resumed["learner"], resumed["readout"], resumed["optimizer"], xs[6:], ys[6:])
    assert_identical([resumed["cell"].params, resumed["readout"].params],
                     [whole["cell"].params, whole["readout"].params])


def test_config_rebuilds_the_optimizer_and_old_states_load():
    params = [np.zeros(3)]
    opt = sr.Adam(params, lr=0.02, schedule=StepDecay(5, 0.5, warmup=2), weight_decay=0.01)
    twin = sr.Adam([np.zeros(3)], **opt.config())
    assert twin.config() == opt.config() and twin.schedule == opt.schedule
    assert sr.registry.make_optimizer("adam", [np.zeros(3)], 0.02, **{k: v for k, v in opt.config().items()
                                                                      if k != "lr"}).config() == opt.config()
    # A state saved before schedules and weight decay existed names neither: it ran without them.
    state = opt.state_dict()
    del state["hyperparameters"]["schedule"], state["hyperparameters"]["weight_decay"]
    opt.load_state_dict(state)
    assert opt.schedule is None and opt.weight_decay == 0.0


# -- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make,error,name", [
    (lambda: Constant(warmup=-1), ValueError, "warmup"),
    (lambda: Constant(warmup=1.5), TypeError, "warmup"),
    (lambda: StepDecay(0), ValueError, "every"),
    (lambda: StepDecay(2, factor=0.0), ValueError, "factor"),
    (lambda: StepDecay(2, factor=1.5), ValueError, "factor"),
    (lambda: StepDecay(2, factor=float("nan")), ValueError, "factor"),
    (lambda: Cosine(0), ValueError, "total"),
    (lambda: Cosine(5, warmup=5), ValueError, "total"),
    (lambda: Cosine(5, final=-0.1), ValueError, "final"),
    (lambda: Cosine("10"), TypeError, "total"),
    (lambda: Constant()(0), ValueError, "update"),
    (lambda: sr.SGD([np.zeros(2)], lr=0.1, weight_decay=-1.0), ValueError, "weight_decay"),
    (lambda: sr.Adam([np.zeros(2)], weight_decay=float("inf")), ValueError, "weight_decay"),
    (lambda: sr.Adam([np.zeros(2)], weight_decay="0.1"), TypeError, "weight_decay"),
    (lambda: sr.Adam([np.zeros(2)], schedule=0.5), TypeError, "schedule"),
    (lambda: sr.Adam([np.zeros(2)], schedule="linear"), ValueError, "schedule"),
    (lambda: sr.Adam([np.zeros(2)], schedule={"total": 3}), ValueError, "name"),
    (lambda: sr.Adam([np.zeros(2)], lr=0.1).lr_at(0), ValueError, "update"),
    (lambda: sr.registry.make_schedule("cosine", total=10, every=3), ValueError, "every"),
    (lambda: sr.registry.make_schedule("exponential"), ValueError, "schedule"),
])
def test_bad_arguments_are_refused_by_name(make, error, name):
    with pytest.raises(error, match=name):
        make()


def test_a_saved_schedule_is_checked_before_anything_changes():
    opt = sr.SGD([np.zeros(2)], lr=0.1, schedule=Cosine(10))
    state = opt.state_dict()
    state["hyperparameters"]["schedule"] = {"name": "cosine", "total": 10, "final": 2.0, "warmup": 0}
    state["n_updates"] = 4
    with pytest.raises(ValueError, match="final"):
        opt.load_state_dict(state)
    assert opt.n_updates == 0 and opt.schedule == Cosine(10)
