"""P-TNCN (``sr.PTNCN``): kernels against the float64 reference, the two-layer equations of ALGORITHMS.md,
learning with and without differentiable units, the state protocol, and argument checks.

``naive_ptncn.py`` is written from the equations with dense loops, one stream
at a time; the kernels run every stream at once through BLAS. They must agree
for every activation, 1 to 3 layers, batches, masks, both dtypes and every
option for the paper's variants.
"""

import json

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import naive_ptncn
import sparse_rtrl as sr
from sparse_rtrl import _ptncn_kernels
from sparse_rtrl.ptncn import ACTIVATIONS

DTYPES = (np.float32, np.float64)


def _dense(model, name, values):
    """Weight ``name`` with the given flat values, as a dense float64 matrix (zeros off its pattern)."""
    pattern = model.patterns[name]
    out = np.zeros(pattern.shape)
    out[pattern.rows(), pattern.indices] = values
    return out


def _weights64(model):
    return {name: _dense(model, name, model.params[model.weight_slice(name)]).tolist()
            for name in model.weight_names}


def _as_matrix(model, flat):
    return {name: _dense(model, name, flat[model.weight_slice(name)]) for name in model.weight_names}


def _masks(model):
    return {name: (model.patterns[name].to_dense() != 0).astype(float).tolist() for name in model.weight_names}


@st.composite
def ptncn_cases(draw):
    L = draw(st.integers(1, 3))
    n_x = draw(st.integers(1, 5))
    hidden = [draw(st.integers(1, 5)) for _ in range(L)]
    return dict(
        n_x=n_x, n_hidden=hidden,
        activation=draw(st.sampled_from(ACTIVATIONS)),
        output=draw(st.sampled_from(("softmax", "sigmoid"))),
        beta=draw(st.sampled_from((0.0, 0.1, 0.7))),
        gamma=draw(st.sampled_from((0.0, 1.0, 2.5))),
        alpha_e=draw(st.sampled_from((0.0, 0.001, 0.3))),
        clip=draw(st.sampled_from((None, 1.0, 0.01))),
        sparsity=draw(st.sampled_from((0.0, 0.05))),
        w_error=draw(st.sampled_from(("temporal", "prediction"))),
        e_update=draw(st.sampled_from(("transpose", "temporal"))),
        init_std=draw(st.sampled_from((0.05, 0.5))),
        density=draw(st.sampled_from((1.0, 1.0, 0.6, 0.25))),
        batch_size=draw(st.sampled_from((None, 1, 3))),
        dtype=draw(st.sampled_from(DTYPES)),
        seed=draw(st.integers(0, 2**16)),
    )


def _compare_with_naive(case, seed, steps=4, skip=lambda: None):
    """Run ``steps`` steps of ``sr.PTNCN(**case)`` beside the float64 reference, applying the updates between
    steps as an optimiser would, and compare predictions, states and updates. ``skip()`` is called where the
    comparison cannot hold (see the hypothesis test)."""
    model = sr.PTNCN(**case)
    L, B, dt = model.n_layers, case.get("batch_size") or 1, case.get("dtype", np.float64)
    rng = np.random.default_rng(seed)
    knobs = {k: case[k] for k in ("activation", "output", "beta", "gamma", "alpha_e", "clip", "sparsity",
                                  "w_error", "e_update") if k in case}
    carried = [naive_ptncn.zero_carried(model.sizes) for _ in range(B)]
    rtol = 1e-4 if dt == np.float32 else 1e-10
    for t in range(steps):
        weights = _weights64(model)
        if model.output == "softmax":
            X = np.eye(model.n_x)[rng.integers(0, model.n_x, B)]
        else:
            X = rng.random((B, model.n_x))
        mask = (rng.random(B) < 0.8).astype(float)
        X = X.astype(dt).astype(np.float64)
        want_pred, carried, deltas = naive_ptncn.batch_step(weights, carried, X.tolist(), mask.tolist(), L=L,
                                                            masks=_masks(model), **knobs)
        if dt == np.float32 and model.activation in ("sign", "step"):
            # A discontinuous unit may fall either side of 0 when float32 rounds differently.
            # The reference computes exactly 0 where float32 does too (all inputs zero).
            if not all(v == 0.0 or abs(v) > 1e-3 for c in carried for v in c["inputs"]):
                skip()
        xin = X if case.get("batch_size") else X[0]
        mask_in = mask if case.get("batch_size") else mask[0]
        pred = model.step(xin, mask=mask_in)
        got = model.grad()
        np.testing.assert_allclose(np.reshape(pred, (B, -1)), want_pred, rtol=rtol, atol=rtol)
        for l, state in enumerate(model.states, start=1):
            want = np.array([c["y"][l] for c in carried])
            np.testing.assert_allclose(np.reshape(state, want.shape), want, rtol=rtol, atol=rtol,
                                       err_msg=f"y_{l} at step {t}")
        for name, value in _as_matrix(model, got).items():
            np.testing.assert_allclose(value, np.array(deltas[name]), rtol=rtol * 10, atol=rtol * 10,
                                       err_msg=f"Delta {name} at step {t}")
        # The updates applied between steps, as an optimiser would (the reference reads the new weights).
        model.params -= (0.5 * got).astype(dt)


@settings(deadline=None)  # examples: the profile's (conftest.py); FIXED_CASES below cover every path
@given(case=ptncn_cases(), data=st.data())
def test_kernels_match_naive_reference(case, data):
    _compare_with_naive(case, data.draw(st.integers(0, 2**16)), skip=lambda: assume(False))


# Every path of the kernels once, deterministically (the pure-Python coverage run uses these): each activation
# and output, 1 to 3 layers, dense and sparse (density 0.6 on 6 to 9 units: rows and columns of four entries
# and more), both rules of the paper, both dtypes, the unbatched form, and a sparse step spread over the cores.
FIXED_CASES = {
    "dense-tanh": dict(n_x=5, n_hidden=[7, 6], activation="tanh", batch_size=3),
    "sparse-tanh32-paper-rules": dict(n_x=6, n_hidden=[9, 8], activation="tanh", output="sigmoid", clip=None,
                                      w_error="prediction", e_update="temporal", density=0.6, batch_size=3,
                                      dtype=np.float32, spread=True),
    "sparse-relu-3-layers": dict(n_x=5, n_hidden=[8, 7, 6], activation="relu", sparsity=0.05, alpha_e=0.3,
                                 density=0.6, init_std=0.5),
    "dense-hard-tanh-1-layer": dict(n_x=4, n_hidden=6, n_layers=1, activation="hard_tanh", e_update="temporal",
                                    clip=0.01, batch_size=1, dtype=np.float32),
    "sparse-sign": dict(n_x=6, n_hidden=[8, 8], activation="sign", w_error="prediction", density=0.6,
                        init_std=0.5, batch_size=3),
    "dense-step-3-layers": dict(n_x=4, n_hidden=[5, 4, 3], activation="step", sparsity=0.05, alpha_e=0.3,
                                output="sigmoid", batch_size=2),
    "sparse-identity-1-layer": dict(n_x=5, n_hidden=8, n_layers=1, activation="identity", density=0.6,
                                    dtype=np.float32, spread=True),
}


@pytest.mark.parametrize("name", FIXED_CASES)
def test_kernels_match_naive_reference_on_fixed_cases(name, monkeypatch):
    case = dict(FIXED_CASES[name])
    if case.pop("spread", False):
        # A model this small runs its loops in one thread; from 0 multiply-adds on, every model spreads them.
        monkeypatch.setattr(_ptncn_kernels, "SPREAD_WORK", 0)
    _compare_with_naive(case, seed=len(name), steps=3)


@pytest.mark.parametrize("e_update, w_error", [("transpose", "temporal"), ("temporal", "prediction")])
def test_sparse_step_does_not_depend_on_the_number_of_threads(e_update, w_error, monkeypatch):
    """Every output of a spread loop is one iteration's, summed in a fixed order: the loops run as one task,
    spread over 1 thread and over 2 give the same bits (so that a resumed run repeats an uninterrupted one on
    any machine). The 2-thread run needs numba started with at least 2 threads; the others run everywhere."""
    import numba

    seq, _ = _symbol_stream(8, 6)
    before = numba.get_num_threads()
    settings = [(1 << 62, 1), (0, 1)] + ([(0, 2)] if numba.config.NUMBA_NUM_THREADS >= 2 else [])
    runs = []
    try:
        for spread_work, threads in settings:
            monkeypatch.setattr(_ptncn_kernels, "SPREAD_WORK", spread_work)
            numba.set_num_threads(threads)
            model = sr.PTNCN(6, n_hidden=[40, 30], density=0.3, batch_size=6, seed=0, dtype=np.float32,
                             e_update=e_update, w_error=w_error, init_std=0.3)
            assert model._args.spread == (spread_work == 0)
            runs.append([(model.step_symbols(s), model.grad(), *model.states) for s in seq])
    finally:
        numba.set_num_threads(before)
    for other in runs[1:]:
        for one, two in zip(runs[0], other):
            for a, b in zip(one, two):
                np.testing.assert_array_equal(a, b)


def _clip(d, radius=1.0):
    n = np.linalg.norm(d)
    return d * (radius / n) if n > radius else d


def test_defaults_are_the_two_layer_equations_of_algorithms_md():
    """The defaults (two layers, tanh, softmax, beta 0.1, gamma 1, alpha_e 0.001, clip 1) follow
    ALGORITHMS.md's five steps, written here in numpy for a batch, on a stream with padding."""
    B, n_x = 4, 6
    model = sr.PTNCN(n_x, n_hidden=[7, 5], batch_size=B, seed=3)
    assert model.n_layers == 2 and model.activation == "tanh" and model.output == "softmax"
    assert (model.beta, model.gamma, model.alpha_e, model.clip) == (0.1, 1.0, 0.001, 1.0)
    assert set(model.weight_names) == {"W1", "E1", "M1", "U1", "V1", "W2", "E2", "M2", "V2"}
    beta, gamma, alpha_e = 0.1, 1.0, 0.001
    w = {k: v.copy() for k, v in model.weights.items()}
    for k, v in w.items():  # N(0, 0.05^2) initial weights
        assert abs(v.std() - 0.05) < 0.03, k
    rng = np.random.default_rng(0)
    x_prev, y1, y2 = np.zeros((B, n_x)), np.zeros((B, 7)), np.zeros((B, 5))
    opt = sr.SGD(model.params, lr=0.075, momentum=0.95, nesterov=True)
    for t in range(5):
        sym = rng.integers(-1, n_x, B)
        x = np.zeros((B, n_x))
        x[sym >= 0, sym[sym >= 0]] = 1.0
        m = (sym >= 0).astype(float)[:, None]
        # 1. predict
        a2 = y1 @ w["M2"] + y2 @ w["V2"]
        z2 = np.tanh(a2)
        mu1 = z2 @ w["W2"]
        a1 = x_prev @ w["M1"] + y2 @ w["U1"] + y1 @ w["V1"]
        z1 = np.tanh(a1)
        logits = z1 @ w["W1"]
        x_hat = np.exp(logits - logits.max(1, keepdims=True))
        x_hat /= x_hat.sum(1, keepdims=True)
        # 2. errors
        e1 = (mu1 - z1) * m
        ex = (x_hat - x) * m
        # 3. corrections
        d2 = e1 @ w["E2"]
        d1 = ex @ w["E1"] - alpha_e * e1
        # 4. corrected states, temporal errors
        y2_new = np.tanh(a2 - beta * d2)
        y1_new = np.tanh(a1 - beta * d1)
        ev2 = (z2 - y2_new) * m
        ev1 = (z1 - y1_new) * m
        # 5. updates, each clipped to norm 1 and divided by the batch size
        dW1, dW2 = _clip(z1.T @ ex), _clip(z2.T @ ev1)
        want = {"W1": dW1, "W2": dW2, "E1": _clip(gamma * dW1.T), "E2": _clip(gamma * dW2.T),
                "M1": _clip(x_prev.T @ ev1), "U1": _clip(y2.T @ ev1), "V1": _clip(y1.T @ ev1),
                "M2": _clip(y1.T @ ev2), "V2": _clip(y2.T @ ev2)}
        pred = model.step_symbols(sym)
        np.testing.assert_allclose(pred, x_hat, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(model.states[0], y1_new, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(model.states[1], y2_new, rtol=1e-12, atol=1e-14)
        got = _as_matrix(model, model.grad())
        for k in want:
            np.testing.assert_allclose(got[k], want[k] / B, rtol=1e-10, atol=1e-14, err_msg=k)
        # The authors' optimiser: Nesterov momentum with the updates as gradients.
        opt.step(np.concatenate([got[k].ravel() for k in model.weight_names]))
        w = {k: v.copy() for k, v in model.weights.items()}
        x_prev, y1, y2 = x, y1_new, y2_new


def test_masked_streams_take_no_update_and_symbols_match_one_hot():
    """-1 symbols are zero rows with mask 0; a stream that is always padding adds nothing to the updates
    (without clipping, a batch of 3 with one such stream updates by 2/3 of the batch of the other 2)."""
    a = sr.PTNCN(5, n_hidden=[4, 3], batch_size=3, seed=1, clip=None)
    b = sr.PTNCN(5, n_hidden=[4, 3], batch_size=3, seed=1, clip=None)
    two = sr.PTNCN(5, n_hidden=[4, 3], batch_size=2, seed=1, clip=None)
    for t, sym in enumerate(([0, 4, -1], [2, -1, -1], [1, 3, -1], [4, 4, -1])):
        pa = a.step_symbols(np.array(sym))
        x = np.zeros((3, 5))
        for k, s in enumerate(sym):
            if s >= 0:
                x[k, s] = 1.0
        mask = (np.array(sym) >= 0).astype(float)
        pb = b.step(x, mask=mask)
        np.testing.assert_array_equal(pa, pb)
        p2 = two.step(x[:2], mask=mask[:2])
        np.testing.assert_allclose(pa[:2], p2, rtol=1e-13)
        ga, gb, g2 = a.grad(), b.grad(), two.grad()
        np.testing.assert_array_equal(ga, gb)
        np.testing.assert_allclose(ga, g2 * 2 / 3, rtol=1e-12, atol=1e-15)
        assert t == 0 or np.abs(ga).sum() > 0


def _symbol_stream(T, B, K=6, seed=0):
    """A noisy cycle: the next symbol is the successor with probability about 0.9."""
    rng = np.random.default_rng(seed)
    P = np.full((K, K), 0.02)
    P[np.arange(K), (np.arange(K) + 1) % K] += 0.9
    P /= P.sum(1, keepdims=True)
    seq = np.zeros((T, B), np.int64)
    seq[0] = rng.integers(0, K, B)
    cum = P.cumsum(1)
    for t in range(1, T):
        seq[t] = np.minimum((cum[seq[t - 1]] < rng.random((B, 1))).sum(1), K - 1)
    freq = np.bincount(seq.ravel(), minlength=K) / seq.size
    freq = freq[freq > 0]
    return seq, float(-(freq * np.log(freq)).sum())


def _train(model, seq, lr=0.075):
    opt = sr.SGD(model.params, lr=lr, momentum=0.95, nesterov=True)
    eye = np.eye(model.n_x)
    losses = []
    for t in range(seq.shape[0]):
        pred = model.step_symbols(seq[t], learn=t > 0)
        losses.append(model.loss(pred, eye[seq[t]]) / seq.shape[1])
        if t > 0:
            opt.step(model.grad())
    return np.array(losses)


@pytest.mark.parametrize("activation", ["tanh", "sign"])
def test_learns_a_symbol_stream_well_below_the_unigram_baseline(activation):
    """With ``sign`` units no derivative exists: the model still learns, since LRA uses none."""
    seq, unigram = _symbol_stream(1500, 8)
    losses = _train(sr.PTNCN(6, n_hidden=32, batch_size=8, seed=0, activation=activation), seq)
    assert np.isfinite(losses).all()
    late = losses[-300:].mean()
    assert late < 0.6 * unigram, (late, unigram)
    assert late < losses[1:100].mean()


def test_float32_learns_like_float64():
    seq, unigram = _symbol_stream(600, 4)
    l64 = _train(sr.PTNCN(6, n_hidden=16, batch_size=4, seed=0), seq)
    l32 = _train(sr.PTNCN(6, n_hidden=16, batch_size=4, seed=0, dtype=np.float32), seq)
    assert abs(l32[-200:].mean() - l64[-200:].mean()) < 0.05 * unigram


def test_pixels_with_sigmoid_output():
    """Pixel frames: a bar moving across 8 pixels, predicted with a sigmoid output."""
    model = sr.PTNCN(8, n_hidden=24, output="sigmoid", seed=0)
    opt = sr.SGD(model.params, lr=0.075, momentum=0.95, nesterov=True)
    frames = np.eye(8)[np.arange(800) % 8]
    losses = []
    for t, x in enumerate(frames):
        pred = model.step(x, learn=t > 0)
        losses.append(model.loss(pred, x))
        if t > 0:
            opt.step(model.grad())
    mean_frame = np.full(8, 1 / 8)
    baseline = model.loss(mean_frame, frames[0])
    assert np.mean(losses[-100:]) < 0.5 * baseline


def _run(model, opt, seq, start, stop):
    out = []
    for t in range(start, stop):
        out.append(model.step_symbols(seq[t], learn=t > 0))
        if t > 0:
            opt.step(model.grad())
    return np.array(out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("e_update", ["transpose", "temporal"])
def test_state_round_trip_continues_bit_identically(dtype, e_update):
    seq, _ = _symbol_stream(40, 3)
    settings = dict(n_x=6, n_hidden=[8, 5, 4], batch_size=3, seed=2, dtype=dtype, e_update=e_update)
    a = sr.PTNCN(**settings)
    opt_a = sr.SGD(a.params, lr=0.075, momentum=0.95, nesterov=True)
    _run(a, opt_a, seq, 0, 20)
    a.step_symbols(seq[20])  # an accumulated update not yet taken is part of the state
    saved, saved_opt = a.state_dict(), opt_a.state_dict()
    json.dumps(a.config())
    b = sr.registry.MODELS["ptncn"](**{**a.config(), "seed": 99})
    opt_b = sr.SGD(b.params, lr=0.075, momentum=0.95, nesterov=True)
    b.load_state_dict(saved)
    opt_b.load_state_dict(saved_opt)
    assert b.n_steps == a.n_steps == 21
    opt_a.step(a.grad())
    opt_b.step(b.grad())
    np.testing.assert_array_equal(_run(a, opt_a, seq, 21, 40), _run(b, opt_b, seq, 21, 40))
    np.testing.assert_array_equal(a.params, b.params)
    for sa, sb in zip(a.states, b.states):
        np.testing.assert_array_equal(sa, sb)


def test_state_protocol_refuses_what_does_not_fit():
    a = sr.PTNCN(6, n_hidden=[8, 5], seed=0)
    state = a.state_dict()
    assert set(state) == {"params", "previous_input", "states", "temporal_errors", "accumulator", "n_steps"}
    with pytest.raises(ValueError, match="params"):
        sr.PTNCN(6, n_hidden=[8, 6], seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="params"):
        sr.PTNCN(6, n_hidden=[8, 5], seed=0, dtype=np.float32).load_state_dict(state)
    with pytest.raises(ValueError, match="n_steps"):
        a.load_state_dict({**state, "n_steps": -1})
    with pytest.raises(ValueError, match="missing"):
        a.load_state_dict({k: v for k, v in state.items() if k != "states"})


def test_construction_registry_and_memory():
    m = sr.PTNCN(5, n_hidden=[4, 3], seed=7)
    assert sr.registry.MODELS["ptncn"] is sr.PTNCN
    assert sr.registry.class_id(sr.PTNCN) == "model/ptncn"
    again = sr.PTNCN(**m.config())
    np.testing.assert_array_equal(m.params, again.params)
    assert m.n_params == sum(w.size for w in m.weights.values()) == m.params.size
    shapes = {k: v.shape for k, v in m.weights.items()}
    assert shapes == {"W1": (4, 5), "E1": (5, 4), "M1": (5, 4), "U1": (3, 4), "V1": (4, 4),
                      "W2": (3, 4), "E2": (4, 3), "M2": (4, 3), "V2": (3, 3)}
    # weights are views of params: an optimiser step changes them
    m.params[m.weight_slice("V2")] = 1.0
    assert (m.weights["V2"] == 1.0).all()
    mem = m.memory()
    assert mem["weights"] >= m.params.nbytes and mem["accumulator"] == m.params.nbytes
    assert m.nbytes == sum(mem.values())
    one = sr.PTNCN(5, n_hidden=4, n_layers=1, seed=0)
    assert one.weight_names == ("W1", "E1", "M1", "V1") and one.sizes == (5, 4)
    three = sr.PTNCN(5, n_hidden=(6, 5, 4), seed=0)
    assert three.n_layers == 3 and "U2" in three.weight_names and "U3" not in three.weight_names
    assert "n_x=5" in repr(m)
    with pytest.raises(KeyError, match="U2"):
        m.weight_slice("U2")


def test_unbatched_shapes_and_reset():
    m = sr.PTNCN(4, n_hidden=[3, 2], seed=0)
    assert m.step(np.eye(4)[1]).shape == (4,)
    assert m.step_symbols(2).shape == (4,)
    assert [s.shape for s in m.states] == [(3,), (2,)]
    assert m.grad().shape == (m.n_params,)
    first = sr.PTNCN(4, n_hidden=[3, 2], seed=0).step(np.eye(4)[1])
    m.reset()
    assert m.n_steps == 0 and not np.abs(m.grad()).any()
    np.testing.assert_array_equal(m.step(np.eye(4)[1]), first)


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(n_x=0), ValueError, "n_x"),
    (dict(n_x=2.5), TypeError, "n_x"),
    (dict(n_hidden=0), ValueError, "n_hidden"),
    (dict(n_hidden=[4, 0]), ValueError, r"n_hidden\[1\]"),
    (dict(n_hidden=[]), ValueError, "n_hidden"),
    (dict(n_hidden="4"), TypeError, "n_hidden"),
    (dict(n_hidden=[4, 4], n_layers=3), ValueError, "n_layers"),
    (dict(n_layers=0), ValueError, "n_layers"),
    (dict(activation="sigmoidish"), ValueError, "activation"),
    (dict(activation=None), TypeError, "activation"),
    (dict(output="tanh"), ValueError, "output"),
    (dict(beta=-0.1), ValueError, "beta"),
    (dict(gamma=-1.0), ValueError, "gamma"),
    (dict(gamma=float("nan")), ValueError, "gamma"),
    (dict(alpha_e=-0.001), ValueError, "alpha_e"),
    (dict(clip=0.0), ValueError, "clip"),
    (dict(sparsity=-1.0), ValueError, "sparsity"),
    (dict(w_error="other"), ValueError, "w_error"),
    (dict(e_update="other"), ValueError, "e_update"),
    (dict(init_std=0.0), ValueError, "init_std"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_bad_settings_raise_naming_the_argument(kwargs, error, name):
    settings = {"n_x": 4, **kwargs}
    with pytest.raises(error, match=name):
        sr.PTNCN(**settings)


def test_bad_inputs_raise_before_any_kernel_runs():
    m = sr.PTNCN(4, n_hidden=[3, 2], batch_size=2, seed=0)
    before = m.state_dict()
    bad = [
        (lambda: m.step(np.zeros(4)), ValueError, "x"),
        (lambda: m.step(np.zeros((2, 5))), ValueError, "x"),
        (lambda: m.step(np.full((2, 4), np.nan)), ValueError, "x"),
        (lambda: m.step(np.zeros((2, 4), complex)), TypeError, "x"),
        (lambda: m.step(np.zeros((2, 4)), mask=[1.0]), ValueError, "mask"),
        (lambda: m.step(np.zeros((2, 4)), mask=[1.0, 2.0]), ValueError, "mask"),
        (lambda: m.step(np.zeros((2, 4)), mask=[1.0, np.inf]), ValueError, "mask"),
        (lambda: m.step(np.zeros((2, 4)), learn=1), TypeError, "learn"),
        (lambda: m.step_symbols([0, 4]), ValueError, "symbols"),
        (lambda: m.step_symbols([0, -2]), ValueError, "symbols"),
        (lambda: m.step_symbols([0.0, 1.0]), TypeError, "symbols"),
        (lambda: m.step_symbols([0, 1, 2]), ValueError, "symbols"),
        (lambda: sr.PTNCN(4, output="sigmoid").step_symbols(1), ValueError, "step_symbols"),
        (lambda: setattr(m, "params", np.zeros(3)), ValueError, "params"),
    ]
    for call, error, name in bad:
        with pytest.raises(error, match=name):
            call()
    after = m.state_dict()
    for k in before:
        if isinstance(before[k], list):
            for u, v in zip(before[k], after[k]):
                np.testing.assert_array_equal(u, v, err_msg=k)
        else:
            np.testing.assert_array_equal(before[k], after[k], err_msg=k)


def test_checkpoint_file_resumes_bit_identically(tmp_path):
    seq, _ = _symbol_stream(30, 2)
    settings = dict(n_x=6, n_hidden=[5, 4], batch_size=2, seed=4, dtype=np.float32)
    a = sr.PTNCN(**settings)
    opt_a = sr.SGD(a.params, lr=0.075, momentum=0.95, nesterov=True)
    _run(a, opt_a, seq, 0, 12)
    path = tmp_path / "run.ckpt"
    sr.checkpoint.save(path, {"model": sr.checkpoint.get_state(a), "optimizer": sr.checkpoint.get_state(opt_a)})
    ckpt = sr.checkpoint.load(path)
    assert ckpt["model"]["class"] == "model/ptncn"
    b = sr.PTNCN(**settings)
    opt_b = sr.SGD(b.params, lr=0.075, momentum=0.95, nesterov=True)
    sr.checkpoint.set_state(b, ckpt["model"])
    sr.checkpoint.set_state(opt_b, ckpt["optimizer"])
    np.testing.assert_array_equal(_run(a, opt_a, seq, 12, 30), _run(b, opt_b, seq, 12, 30))
    np.testing.assert_array_equal(a.params, b.params)
    with pytest.raises(ValueError, match="beta"):
        sr.checkpoint.set_state(sr.PTNCN(**settings, beta=0.2), ckpt["model"])


def test_sparse_model_stores_and_updates_only_its_patterns():
    m = sr.PTNCN(6, n_hidden=[20, 12], density=0.2, batch_size=4, seed=0)
    dense = sr.PTNCN(6, n_hidden=[20, 12], batch_size=4, seed=0)
    assert m.n_params < 0.3 * dense.n_params
    for name in m.weight_names:
        assert m.weights[name].nnz == m.patterns[name].nnz
        assert m.params[m.weight_slice(name)].size == m.patterns[name].nnz
    for l in (1, 2):  # E_l mirrors W_l entry for entry
        np.testing.assert_array_equal(m.patterns[f"E{l}"].to_dense(), m.patterns[f"W{l}"].to_dense().T)
    assert m.memory()["weights"] == m.params.nbytes
    assert m.memory()["structure"] > 0
    # The patterns are part of what a saved state must match: another seed draws others.
    other = sr.PTNCN(6, n_hidden=[20, 12], density=0.2, batch_size=4, seed=1)
    record = sr.checkpoint.get_state(m)
    if other.n_params == m.n_params:
        with pytest.raises(ValueError, match="structure"):
            sr.checkpoint.set_state(other, record)
    twin = sr.PTNCN(6, n_hidden=[20, 12], density=0.2, batch_size=4, seed=0)
    sr.checkpoint.set_state(twin, record)


def test_sparse_model_learns():
    seq, unigram = _symbol_stream(1500, 8)
    losses = _train(sr.PTNCN(6, n_hidden=64, density=0.25, batch_size=8, seed=0), seq)
    assert losses[-300:].mean() < 0.6 * unigram


@pytest.mark.parametrize("option, changed", [
    (dict(w_error="prediction"), {"W2", "E2", "W3", "E3"}),
    (dict(e_update="temporal"), {"E1", "E2", "E3"}),
])
def test_paper_variants_change_exactly_what_they_say(option, changed):
    """From the same weights and state, a variant of the update rules changes only the updates it names
    (with ``e_update="transpose"``, E follows W)."""
    seq, _ = _symbol_stream(6, 3)
    base = sr.PTNCN(6, n_hidden=[5, 4, 3], batch_size=3, seed=0, init_std=0.3)
    for t in range(5):
        base.step_symbols(seq[t])
    base.grad()
    variant = sr.PTNCN(6, n_hidden=[5, 4, 3], batch_size=3, seed=0, init_std=0.3, **option)
    variant.load_state_dict(base.state_dict())
    np.testing.assert_array_equal(base.step_symbols(seq[5]), variant.step_symbols(seq[5]))
    for a, b in zip(base.states, variant.states):
        np.testing.assert_array_equal(a, b)
    got_base, got_variant = _as_matrix(base, base.grad()), _as_matrix(variant, variant.grad())
    for name in base.weight_names:
        same = np.array_equal(got_base[name], got_variant[name])
        assert same == (name not in changed), name


def test_sparsity_term_moves_the_corrected_states():
    """``lambda sign(a)`` enters the corrections: zero while the pre-activations are (the first step), then
    the corrected states differ, and so the next predictions."""
    seq, _ = _symbol_stream(3, 2)
    a = sr.PTNCN(6, n_hidden=[5, 4], batch_size=2, seed=0)
    b = sr.PTNCN(6, n_hidden=[5, 4], batch_size=2, seed=0, sparsity=0.05)
    np.testing.assert_array_equal(a.step_symbols(seq[0]), b.step_symbols(seq[0]))
    np.testing.assert_array_equal(a.states[0], b.states[0])
    np.testing.assert_array_equal(a.step_symbols(seq[1]), b.step_symbols(seq[1]))
    assert not np.array_equal(a.states[0], b.states[0])
    assert not np.array_equal(a.step_symbols(seq[2]), b.step_symbols(seq[2]))


def test_float32_tanh_is_within_six_ulp():
    """The vectorising float32 tanh of the P-TNCN (a rational function, no exp) against float64 tanh."""
    tiny = np.geomspace(np.finfo(np.float32).tiny, 1.0, 2001)
    x = np.concatenate([np.linspace(-12, 12, 200001), tiny, -tiny, [0.0, -0.0, 7.9, -7.9, 400.0, -400.0]])
    x = x.astype(np.float32)
    out = np.empty_like(x)
    _ptncn_kernels.apply_activation(_ptncn_kernels.TANH, x, out)
    ref = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert (np.abs(out - ref) / ulp).max() <= 6
    assert np.all(np.sign(out) == np.sign(x)) and np.abs(out).max() <= 1.0


def test_float32_tanh_keeps_nan_and_saturates():
    x = np.array([np.inf, -np.inf, np.nan, 9.5, -9.5, 1e-5, -0.0], np.float32)
    _ptncn_kernels.apply_activation(_ptncn_kernels.TANH, x, x)
    np.testing.assert_array_equal(x[[0, 1, 3, 4, 5, 6]], np.float32([1, -1, 1, -1, 1e-5, -0.0]))
    assert np.isnan(x[2]) and np.signbit(x[6])
