"""The sigmoid / Bernoulli cross-entropy readout loss ("bernoulli"): values, credit, stability, fused loop."""

import numpy as np
import pytest

import sparse_rtrl as sr
from sparse_rtrl.registry import LOSSES


def naive_bernoulli(V, b, h, t):
    """Straight from the definition: ``p = sigmoid(V h + b)``, ``L = -sum [t log p + (1 - t) log(1 - p)]``."""
    y = V @ h + b
    p = 1.0 / (1.0 + np.exp(-y))
    loss = -np.sum(t * np.log(p) + (1.0 - t) * np.log(1.0 - p))
    dy = p - t
    return loss, V.T @ dy, np.outer(dy, h), dy


def _readout(n_hidden=5, n_out=4, dtype=np.float64, seed=0, kind="vanilla"):
    cell = sr.registry.make_cell(kind, 3, n_hidden, 0.5, seed, dtype)
    return cell, sr.LinearReadout(cell, n_out, loss="bernoulli", seed=seed + 1)


def test_the_loss_is_in_the_table():
    assert LOSSES["bernoulli"] is sr.training.losses.Bernoulli
    assert LOSSES["bernoulli"].targets == "real"
    assert len({cls.code for cls in LOSSES.classes()}) == len(LOSSES)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [None, 3])
def test_loss_credit_and_gradient_match_the_naive_formula(dtype, batch):
    cell, readout = _readout(dtype=dtype)
    rng = np.random.default_rng(3)
    B = batch or 1
    s = rng.normal(size=(B, cell.n_state)).astype(dtype)
    t = rng.uniform(size=(B, readout.n_out)).astype(dtype)
    t[0, 0], t[0, 1] = 0.0, 1.0  # the ends of the range are targets too
    V = readout.weights["V"].astype(np.float64)
    bias = readout.weights["bias"].astype(np.float64)
    want_loss, want_credit, want_gV, want_gb = 0.0, np.zeros((B, cell.n_state)), 0.0, 0.0
    for k in range(B):
        loss, credit, gV, gb = naive_bernoulli(V, bias, s[k].astype(np.float64), t[k].astype(np.float64))
        want_loss += loss
        want_credit[k, :cell.n_hidden] = credit
        want_gV, want_gb = want_gV + gV, want_gb + gb
    args = (s, t) if batch else (s[0], t[0])
    loss, credit = readout.step(*args)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, want_loss, rtol=rtol)
    assert credit.dtype == dtype and credit.shape == (args[0].shape)
    np.testing.assert_allclose(credit.reshape(B, -1), want_credit, rtol=rtol, atol=rtol)
    grad = readout.grad()
    np.testing.assert_allclose(grad, np.concatenate([want_gV.ravel(), want_gb]), rtol=rtol, atol=rtol)
    assert readout.loss_of(*args) == loss  # evaluation computes the same number
    np.testing.assert_array_equal(readout.grad(), 0.0)  # loss_of accumulates nothing


def test_credit_and_gradient_match_finite_differences():
    cell, readout = _readout(n_hidden=6, n_out=3, kind="lstm")  # the credit is zero on the LSTM's c
    rng = np.random.default_rng(5)
    s = rng.normal(size=cell.n_state)
    t = rng.uniform(size=readout.n_out)
    _, credit = readout.step(s, t)
    grad = readout.grad()
    eps = 1e-6
    for i in range(cell.n_state):
        d = np.zeros_like(s)
        d[i] = eps
        fd = (readout.loss_of(s + d, t) - readout.loss_of(s - d, t)) / (2 * eps)
        assert credit[i] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    assert np.all(credit[cell.n_hidden:] == 0.0)
    params = readout.params.copy()
    for i in range(readout.n_params):
        readout.params[i] = params[i] + eps
        up = readout.loss_of(s, t)
        readout.params[i] = params[i] - eps
        down = readout.loss_of(s, t)
        readout.params[i] = params[i]
        assert grad[i] == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_stay_finite_and_exact(dtype):
    cell, readout = _readout(n_hidden=2, n_out=6, dtype=dtype)
    big = 1e4 if dtype == np.float64 else 1e30
    readout.weights["V"][:] = 0.0
    readout.weights["V"][:, 0] = [big, -big, big, -big, big, -big]
    readout.weights["bias"][:] = 0.0
    s = np.array([1.0, 0.0], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.5], dtype=dtype)
    loss, credit = readout.step(s, t)
    # Right answers: ~0, ~0, big, big, big / 2, big / 2; dL/dy = sigmoid(y) - t = 0, 0, 1, -1, 0.5, -0.5.
    assert np.isfinite(loss) and loss == pytest.approx(3 * np.float64(big), rel=1e-6)
    assert np.all(np.isfinite(credit))
    np.testing.assert_allclose(readout.grad()[readout.n_params - 6:], [0.0, 0.0, 1.0, -1.0, 0.5, -0.5], atol=1e-6)
    # Confident and right: the loss is tiny but not rounded away to a negative number or NaN.
    readout.weights["V"][:, 0] = 40.0
    loss, _ = readout.step(s, np.ones(6, dtype=dtype))
    assert 0.0 < loss == pytest.approx(6 * np.log1p(np.exp(-40.0)), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_fused_loop_equals_step_by_step_bit_for_bit(dtype, batch, opt):
    rng = np.random.default_rng(2)
    lead = (13,) if batch is None else (13, batch)
    xs = rng.normal(size=lead + (3,))
    ys = rng.uniform(size=lead + (4,))
    ys[ys < 0.2] = 0.0  # pixels: exact zeros and ones among the targets
    ys[ys > 0.8] = 1.0
    results = []
    for fused in (False, True):
        cell = sr.VanillaRNN(3, 6, density=0.4, seed=0, dtype=dtype)
        learner = sr.SnAp(cell, 1, batch_size=batch)
        readout = sr.LinearReadout(cell, 4, loss="bernoulli", seed=1)
        if opt == "sgd":
            optimizer = sr.SGD([cell.params, readout.params], lr=0.05, momentum=0.9)
        else:
            optimizer = sr.Adam([cell.params, readout.params], lr=0.01, clip_norm=0.5)
        losses = [sr.train_online(learner, readout, optimizer, xs[:6], ys[:6], 2, fused=fused),
                  sr.train_online(learner, readout, optimizer, xs[6:], ys[6:], 2, fused=fused)]
        results.append((np.concatenate(losses), cell.params.copy(), readout.params.copy(), learner.state,
                        learner.grad(), readout.grad()))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    assert np.all(results[0][0] > 0.0)


def test_it_learns_pixels():
    # Predict the next frame of a blinking 4-pixel pattern (a period of 2 steps): needs one step of memory.
    frames = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    xs = np.tile(frames, (600, 1))
    ys = np.roll(xs, -1, axis=0)
    cell = sr.VanillaRNN(4, 8, density=0.5, seed=0)
    readout = sr.LinearReadout(cell, 4, loss="bernoulli", seed=0)
    optimizer = sr.Adam([cell.params, readout.params], lr=0.02)
    losses = sr.train_online(sr.SnAp(cell, 1), readout, optimizer, xs, ys)
    assert losses[:20].mean() > 1.5 and losses[-100:].mean() < 0.1, (losses[:20].mean(), losses[-100:].mean())


@pytest.mark.parametrize("bad", [1.5, -0.25, np.nan, np.inf])
def test_bad_targets_are_refused_naming_the_argument(bad):
    cell, readout = _readout()
    s = np.zeros(cell.n_state)
    t = np.full(readout.n_out, 0.5)
    t[1] = bad
    with pytest.raises(ValueError, match="target"):
        readout.step(s, t)
    with pytest.raises(ValueError, match="target"):
        readout.loss_of(s, t)
    np.testing.assert_array_equal(readout.grad(), 0.0)
    learner = sr.SnAp(cell, 1)
    optimizer = sr.SGD([cell.params, readout.params], lr=0.1)
    before = cell.params.copy(), readout.params.copy()
    ys = np.full((4, readout.n_out), 0.5)
    ys[2, 1] = bad
    for fused in (False, True):
        with pytest.raises(ValueError, match="targets"):
            sr.train_online(learner, readout, optimizer, np.zeros((4, 3)), ys, fused=fused)
    np.testing.assert_array_equal(cell.params, before[0])
    np.testing.assert_array_equal(readout.params, before[1])
    with pytest.raises(ValueError, match="target must have shape"):
        readout.step(s, 1)  # a class is no target for bernoulli
    # mse keeps taking any finite real
    mse = sr.LinearReadout(cell, readout.n_out, loss="mse")
    if np.isfinite(bad):
        assert np.isfinite(mse.step(s, t)[0])
