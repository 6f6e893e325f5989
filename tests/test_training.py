"""Readout, optimisers and the online loop (step by step and fused)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparse_rtrl as sr
from conftest import make_cell


# -- readout ---------------------------------------------------------------------------


def _readout_loss(readout, s, target):
    """Reference loss in float64 from the readout's weights, straight from the definition."""
    V = readout.weights["V"].astype(np.float64)
    c = readout.weights["bias"].astype(np.float64)
    y = V @ np.asarray(s, np.float64)[: readout.n_hidden] + c
    if readout.loss == "mse":
        return 0.5 * np.sum((y - target) ** 2)
    m = y.max()
    return np.log(np.sum(np.exp(y - m))) + m - y[target]


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("kind", ["vanilla", "lstm"])
def test_readout_loss_credit_and_gradient_match_finite_differences(loss, kind):
    cell = make_cell(kind, 2, 5, 0.5, seed=1)
    readout = sr.LinearReadout(cell, 3, loss=loss, seed=4)
    rng = np.random.default_rng(0)
    s = rng.normal(size=cell.n_state)
    target = rng.normal(size=3) if loss == "mse" else 2
    value, credit = readout.step(s, target)
    assert value == pytest.approx(_readout_loss(readout, s, target), rel=1e-12)
    eps = 1e-6
    fd_credit = np.array([
        (_readout_loss(readout, s + eps * e, target) - _readout_loss(readout, s - eps * e, target)) / (2 * eps)
        for e in np.eye(cell.n_state)
    ])
    np.testing.assert_allclose(credit, fd_credit, rtol=1e-6, atol=1e-9)
    assert np.all(credit[cell.n_hidden:] == 0)  # the LSTM's c is not read
    g = readout.grad()
    theta = readout.params.copy()
    fd = np.empty_like(theta)
    for p in range(theta.size):
        readout.params[p] = theta[p] + eps
        up = _readout_loss(readout, s, target)
        readout.params[p] = theta[p] - eps
        down = _readout_loss(readout, s, target)
        readout.params[p] = theta[p]
        fd[p] = (up - down) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    assert np.all(readout.grad() == 0)  # grad() clears


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_random_feedback_readout(loss):
    """Feedback alignment: the credit is F^T dL/dy with a fixed random F; the
    loss and the readout's own gradient are those of the transpose readout."""
    cell = make_cell("lstm", 2, 5, 0.5, seed=1)
    exact = sr.LinearReadout(cell, 3, loss=loss, seed=4)
    random = sr.LinearReadout(cell, 3, loss=loss, seed=4, feedback="random")
    np.testing.assert_array_equal(exact.params, random.params)  # V drawn first, the same
    F = random.feedback_weights.copy()
    assert F.shape == (3, 5) and not np.allclose(F, random.weights["V"])
    np.testing.assert_array_equal(exact.feedback_weights, exact.weights["V"])
    rng = np.random.default_rng(0)
    for _ in range(2):
        s = rng.normal(size=cell.n_state)
        target = rng.normal(size=3) if loss == "mse" else 1
        le, ce = exact.step(s, target)
        lr, cr = random.step(s, target)
        assert le == lr
        y = exact.predict(s)
        dy = y - target if loss == "mse" else np.exp(y - y.max()) / np.exp(y - y.max()).sum() - np.eye(3)[target]
        np.testing.assert_allclose(ce[:5], exact.weights["V"].T @ dy, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(cr[:5], F.T @ dy, rtol=1e-12, atol=1e-14)
        assert np.all(cr[5:] == 0)
        np.testing.assert_array_equal(exact.grad(), random.grad())
        exact.params[:] -= 0.1
        random.params[:] -= 0.1  # training V leaves F where it was
    np.testing.assert_array_equal(random.feedback_weights, F)
    with pytest.raises(ValueError, match="feedback"):
        sr.LinearReadout(cell, 3, feedback="symmetric")


def test_readout_batched_equals_per_stream_and_predict():
    cell = make_cell("gru", 2, 4, 1.0, seed=0)
    readout = sr.LinearReadout(cell, 3, loss="cross_entropy", seed=1)
    rng = np.random.default_rng(1)
    S = rng.normal(size=(4, cell.n_state))
    targets = np.array([0, 2, 1, 2])
    total, credits = readout.step(S, targets)
    g_batch = readout.grad()
    parts, g_sum = [], np.zeros_like(g_batch)
    for s, t in zip(S, targets):
        v, c = readout.step(s, int(t))
        parts.append(c)
        g_sum += readout.grad()
        assert readout.predict(s) == pytest.approx(readout.weights["V"] @ s[: cell.n_hidden] + readout.weights["bias"])
    assert total == pytest.approx(sum(_readout_loss(readout, s, t) for s, t in zip(S, targets)))
    np.testing.assert_allclose(credits, np.array(parts), rtol=1e-12)
    np.testing.assert_allclose(g_batch, g_sum, rtol=1e-12)


def test_readout_rejects_bad_input():
    cell = make_cell("vanilla", 2, 3, 1.0, seed=0)
    with pytest.raises(ValueError, match="loss"):
        sr.LinearReadout(cell, 2, loss="hinge")
    with pytest.raises(TypeError, match="cell"):
        sr.LinearReadout("cell", 2)
    with pytest.raises(ValueError, match="n_out"):
        sr.LinearReadout(cell, 0)
    mse = sr.LinearReadout(cell, 2)
    xent = sr.LinearReadout(cell, 2, loss="cross_entropy")
    with pytest.raises(ValueError, match="target"):
        mse.step(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="target"):
        mse.step(np.zeros(3), [np.nan, 0.0])
    with pytest.raises(ValueError, match="s"):
        mse.step(np.zeros(4), np.zeros(2))
    with pytest.raises(TypeError, match="integer"):
        xent.step(np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="classes"):
        xent.step(np.zeros(3), 2)
    with pytest.raises(ValueError, match="classes"):
        xent.step(np.zeros(3), -2)


def test_readout_class_minus_one_is_no_target():
    cell = make_cell("lstm", 2, 4, 1.0, seed=0)
    readout = sr.LinearReadout(cell, 3, loss="cross_entropy", seed=1)
    rng = np.random.default_rng(2)
    S = rng.normal(size=(3, cell.n_state))
    loss, credit = readout.step(S[0], -1)
    assert loss == 0.0 and np.all(credit == 0.0) and np.all(readout.grad() == 0.0)
    # In a batch, the stream without a target adds nothing; the others are unchanged.
    total, credits = readout.step(S, np.array([1, -1, 2]))
    g = readout.grad()
    l0, c0 = readout.step(S[0], 1)
    l2, c2 = readout.step(S[2], 2)
    assert total == pytest.approx(l0 + l2, rel=1e-12)
    np.testing.assert_array_equal(credits[1], 0.0)
    np.testing.assert_allclose(credits[[0, 2]], [c0, c2], rtol=1e-12)
    np.testing.assert_allclose(g, readout.grad(), rtol=1e-12)


# -- optimisers ------------------------------------------------------------------------


def _reference_sgd(p, grads, lr, momentum, nesterov, clip):
    v = np.zeros_like(p)
    for g in grads:
        n = np.linalg.norm(g)
        if clip and n > clip:
            g = g * (clip / n)
        if momentum:
            v = momentum * v + g
            step = g + momentum * v if nesterov else v
        else:
            step = g
        p = p - lr * step
    return p


def _reference_adam(p, grads, lr, b1, b2, eps, clip):
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        n = np.linalg.norm(g)
        if clip and n > clip:
            g = g * (clip / n)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return p


@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_reference(momentum, nesterov, clip):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=7), rng.normal(size=3)
    grads = [(rng.normal(size=7), rng.normal(size=3)) for _ in range(5)]
    opt = sr.SGD([a, b], lr=0.1, momentum=momentum, nesterov=nesterov, clip_norm=clip)
    start = np.concatenate([a, b])
    for ga, gb in grads:
        opt.step([ga, gb])
    expected = _reference_sgd(start, [np.concatenate(g) for g in grads], 0.1, momentum, nesterov, clip)
    np.testing.assert_allclose(np.concatenate([a, b]), expected, rtol=1e-12)


@pytest.mark.parametrize("clip", [None, 0.3])
def test_adam_matches_reference(clip):
    rng = np.random.default_rng(1)
    a = rng.normal(size=6)
    grads = [rng.normal(size=6) for _ in range(6)]
    start = a.copy()
    opt = sr.Adam(a, lr=0.01, clip_norm=clip)
    for g in grads:
        opt.step(g)
    np.testing.assert_allclose(a, _reference_adam(start, grads, 0.01, 0.9, 0.999, 1e-8, clip), rtol=1e-10)


def test_optimizer_refuses_bad_gradients_and_arguments():
    a = np.zeros(3)
    opt = sr.SGD([a], lr=0.1)
    with pytest.raises(FloatingPointError, match="NaN"):
        opt.step([np.array([1.0, np.nan, 0.0])])
    assert np.all(a == 0)  # unchanged
    with pytest.raises(ValueError, match="shape"):
        opt.step([np.zeros(4)])
    with pytest.raises(ValueError, match="arrays"):
        opt.step([np.zeros(3), np.zeros(3)])
    with pytest.raises(ValueError, match="lr"):
        sr.SGD([a], lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        sr.SGD([a], lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="nesterov"):
        sr.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="clip_norm"):
        sr.SGD([a], lr=0.1, clip_norm=-1.0)
    with pytest.raises(ValueError, match="beta1"):
        sr.Adam([a], beta1=1.0)
    with pytest.raises(TypeError, match="params"):
        sr.SGD([[0.0, 1.0]], lr=0.1)


# -- the online loop -------------------------------------------------------------------


def _setup(kind, n_hidden, density, snap_n, loss, opt, batch, dtype, seed=0, feedback="transpose"):
    cell = make_cell(kind, 3, n_hidden, density, seed=seed, dtype=dtype)
    learner = sr.SnAp(cell, snap_n, batch_size=batch)
    readout = sr.LinearReadout(cell, 2, loss=loss, seed=seed + 1, feedback=feedback)
    if opt == "sgd":
        optimizer = sr.SGD([cell.params, readout.params], lr=0.05, momentum=0.9, clip_norm=1.0)
    else:
        optimizer = sr.Adam([cell.params, readout.params], lr=0.01, clip_norm=0.5)
    return cell, learner, readout, optimizer


def _stream(loss, T, batch, seed):
    rng = np.random.default_rng(seed)
    lead = (T,) if batch is None else (T, batch)
    xs = rng.normal(size=lead + (3,))
    ys = rng.normal(size=lead + (2,)) if loss == "mse" else rng.integers(-1, 2, size=lead)  # -1: no target
    return xs, ys


@settings(max_examples=6)  # each example compiles a loop; every learner's is also checked in test_loop.py
@given(
    kind=st.sampled_from(["vanilla", "gru", "lstm"]),
    snap_n=st.integers(1, 3),
    loss=st.sampled_from(["mse", "cross_entropy"]),
    opt=st.sampled_from(["sgd", "adam"]),
    batch=st.sampled_from([None, 3]),
    dtype=st.sampled_from([np.float32, np.float64]),
    update_every=st.integers(1, 3),
    density=st.sampled_from([0.3, 1.0]),
    feedback=st.sampled_from(["transpose", "random"]),
)
def test_fused_loop_equals_step_by_step_exactly(kind, snap_n, loss, opt, batch, dtype, update_every, density,
                                                feedback):
    xs, ys = _stream(loss, 13, batch, seed=2)
    results = []
    for fused in (False, True):
        cell, learner, readout, optimizer = _setup(kind, 5, density, snap_n, loss, opt, batch, dtype,
                                                   feedback=feedback)
        # Two calls, so state carried between calls is compared too.
        losses = [sr.train_online(learner, readout, optimizer, xs[:6], ys[:6], update_every, fused=fused),
                  sr.train_online(learner, readout, optimizer, xs[6:], ys[6:], update_every, fused=fused)]
        results.append((np.concatenate(losses), cell.params.copy(), readout.params.copy(), learner.state,
                        learner.grad(), readout.grad(), optimizer.n_updates, learner.n_steps))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_online_training_learns_a_delay_task():
    # Output the previous input: needs one step of memory.
    rng = np.random.default_rng(0)
    T = 4000
    xs = rng.normal(size=(T, 1))
    ys = np.vstack([[[0.0]], xs[:-1]])
    cell = sr.VanillaRNN(1, 16, density=0.5, seed=0)
    learner = sr.SnAp(cell, 2)
    readout = sr.LinearReadout(cell, 1, seed=0)
    optimizer = sr.Adam([cell.params, readout.params], lr=3e-3)
    losses = sr.train_online(learner, readout, optimizer, xs, ys)
    first, last = losses[:200].mean(), losses[-500:].mean()
    assert last < 0.2 * first, (first, last)


@pytest.mark.parametrize("fused", [False, True])
def test_divergence_stops_with_parameters_intact(fused):
    cell, learner, readout, optimizer = _setup("vanilla", 4, 1.0, 1, "mse", "sgd", None, np.float64)
    xs, ys = _stream("mse", 10, None, seed=0)
    ys = ys.copy()
    ys[6] = 1e300  # the loss overflows at step 6
    sr.train_online(learner, readout, optimizer, xs[:6], ys[:6], fused=fused)
    before = (cell.params.copy(), readout.params.copy())
    with pytest.raises(sr.DivergenceError) as info:
        sr.train_online(learner, readout, optimizer, xs[6:], ys[6:], fused=fused)
    assert info.value.step == 0
    assert "became NaN or infinite" in str(info.value)
    np.testing.assert_array_equal(cell.params, before[0])
    np.testing.assert_array_equal(readout.params, before[1])


def test_train_online_falls_back_and_refuses_impossible_fusion():
    cell = make_cell("gru", 3, 4, 0.5, seed=0)
    readout = sr.LinearReadout(cell, 2)
    xs, ys = _stream("mse", 5, 2, seed=0)
    rtrl = sr.RTRL(cell, batch_size=2, parallel=True)  # spreads its streams: runs step by step
    optimizer = sr.SGD([cell.params, readout.params], lr=0.01)
    losses = sr.train_online(rtrl, readout, optimizer, xs, ys)
    assert losses.shape == (5,) and np.all(np.isfinite(losses))
    with pytest.raises(ValueError, match="fused.*parallel"):
        sr.train_online(rtrl, readout, optimizer, xs, ys, fused=True)
    xs, ys = _stream("mse", 5, None, seed=0)
    snap = sr.SnAp(cell, 1)
    with pytest.raises(ValueError, match="optimizer"):
        sr.train_online(snap, readout, sr.SGD([readout.params], lr=0.1), xs, ys)
    with pytest.raises(ValueError, match="inputs"):
        sr.train_online(snap, readout, optimizer, xs[:, :2], ys)
    with pytest.raises(ValueError, match="targets"):
        sr.train_online(snap, readout, optimizer, xs, ys[:3])
    with pytest.raises(ValueError, match="update_every"):
        sr.train_online(snap, readout, optimizer, xs, ys, update_every=0)
    other = sr.LinearReadout(make_cell("gru", 3, 6, 0.5, seed=0), 2)
    with pytest.raises(ValueError, match="readout"):
        sr.train_online(snap, other, optimizer, xs, ys)
