"""Bad input gets a clear error, raised before any kernel runs.

Every case here is a ``ValueError`` or ``TypeError`` (``RuntimeError`` for a
call out of order) whose message names the offending argument. Learners must
also be left exactly as they were by a rejected call.
"""

import types

import numpy as np
import pytest
import scipy.sparse as sp

import sparse_rtrl as sr
from conftest import make_cell

KINDS = ("vanilla", "gru", "lstm")
CLASSES = {"vanilla": sr.VanillaRNN, "gru": sr.GRU, "lstm": sr.LSTM}
NAN, INF = float("nan"), float("inf")

# ---------------------------------------------------------------------------
# Cell construction
# ---------------------------------------------------------------------------

BAD_CELL_ARGS = [
    # (keyword, value, exception, the name the message must contain)
    ("n_in", 0, ValueError, "n_in"),
    ("n_in", -1, ValueError, "n_in"),
    ("n_in", 2.0, TypeError, "n_in"),
    ("n_in", 2.5, TypeError, "n_in"),
    ("n_in", True, TypeError, "n_in"),
    ("n_in", "2", TypeError, "n_in"),
    ("n_in", None, TypeError, "n_in"),
    ("n_hidden", 0, ValueError, "n_hidden"),
    ("n_hidden", -3, ValueError, "n_hidden"),
    ("n_hidden", 3.0, TypeError, "n_hidden"),
    ("n_hidden", True, TypeError, "n_hidden"),
    ("n_hidden", False, TypeError, "n_hidden"),
    ("density", 0, ValueError, "density"),
    ("density", 0.0, ValueError, "density"),
    ("density", -0.2, ValueError, "density"),
    ("density", 1.0000001, ValueError, "density"),
    ("density", 2, ValueError, "density"),
    ("density", NAN, ValueError, "density"),
    ("density", INF, ValueError, "density"),
    ("density", "0.5", TypeError, "density"),
    ("density", True, TypeError, "density"),
    ("density", [0.5], TypeError, "density"),
    ("input_density", 0.0, ValueError, "input_density"),
    ("input_density", 1.5, ValueError, "input_density"),
    ("input_density", NAN, ValueError, "input_density"),
    ("dtype", np.int32, TypeError, "dtype"),
    ("dtype", np.int64, TypeError, "dtype"),
    ("dtype", np.float16, TypeError, "dtype"),
    ("dtype", np.complex128, TypeError, "dtype"),
    ("dtype", np.complex64, TypeError, "dtype"),
    ("dtype", "int32", TypeError, "dtype"),
    ("dtype", object, TypeError, "dtype"),
    ("dtype", "not a dtype", TypeError, "dtype"),
    ("seed", -1, ValueError, "seed"),
    ("seed", 1.5, TypeError, "seed"),
    ("seed", 2.0, TypeError, "seed"),
    ("seed", "0", TypeError, "seed"),
    ("seed", True, TypeError, "seed"),
]


def build(kind, **overrides):
    kwargs = dict(n_in=2, n_hidden=3, density=0.5, seed=0, dtype=np.float64)
    kwargs.update(overrides)
    n_in = kwargs.pop("n_in")
    n_hidden = kwargs.pop("n_hidden")
    return CLASSES[kind](n_in, n_hidden, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("key, value, exc, name", BAD_CELL_ARGS, ids=lambda v: repr(v)[:20])
def test_bad_cell_argument(kind, key, value, exc, name):
    with pytest.raises(exc, match=name):
        build(kind, **{key: value})


@pytest.mark.parametrize("alpha, exc", [(0, ValueError), (0.0, ValueError), (-0.5, ValueError),
                                        (1.5, ValueError), (NAN, ValueError), (INF, ValueError),
                                        ("1", TypeError), (True, TypeError), (None, TypeError)])
def test_bad_alpha(alpha, exc):
    with pytest.raises(exc, match="alpha"):
        sr.VanillaRNN(2, 3, alpha=alpha)


@pytest.mark.parametrize("activation", ["relu", "Tanh", None, 1, ["tanh"]])
def test_bad_activation(activation):
    with pytest.raises(ValueError, match="activation"):
        sr.VanillaRNN(2, 3, activation=activation)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_bad_shared_pattern(kind, value):
    with pytest.raises(TypeError, match="shared_pattern"):
        build(kind, shared_pattern=value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(4, 4), (3, 4), (4, 3), (2, 2), (3, 2)])
def test_pattern_with_wrong_shape(kind, shape):
    with pytest.raises(ValueError, match="pattern"):
        build(kind, density=None, pattern=sp.random(*shape, density=0.5, format="csr", random_state=0))
    with pytest.raises(ValueError, match="pattern"):
        build(kind, density=None, pattern=sr.Pattern.dense(shape))


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_pattern_dict_with_wrong_shape_names_the_matrix(kind):
    name = {"gru": "W_iz", "lstm": "W_io"}[kind]
    with pytest.raises(ValueError, match=name):
        build(kind, density=None, pattern={name: sp.identity(3, format="csr")})  # needs (3, 2)


@pytest.mark.parametrize("kind", KINDS)
def test_pattern_and_density_both_given(kind):
    with pytest.raises(ValueError, match="density") as info:
        build(kind, density=0.5, pattern=sp.identity(3, format="csr"))
    assert "pattern" in str(info.value)


@pytest.mark.parametrize("kind, unknown", [
    ("vanilla", "W_hr"), ("vanilla", "b"), ("gru", "W_hx"), ("gru", "b_r"), ("gru", "W"),
    ("lstm", "W_hz"), ("lstm", "b_o"), ("lstm", "U"),
])
def test_pattern_dict_naming_an_unknown_matrix(kind, unknown):
    with pytest.raises(ValueError, match=unknown):
        build(kind, density=None, pattern={unknown: sp.identity(3, format="csr")})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [np.eye(3), "csr", 3, [[1, 0, 0]] * 3])
def test_pattern_of_the_wrong_type(kind, bad):
    with pytest.raises(TypeError, match="pattern"):
        build(kind, density=None, pattern=bad)


@pytest.mark.parametrize("kind", KINDS)
def test_pattern_with_unsorted_or_duplicate_indices(kind):
    unsorted = sp.csr_matrix((np.ones(3), np.array([2, 0, 1]), np.array([0, 3, 3, 3])), shape=(3, 3))
    assert not unsorted.has_sorted_indices
    with pytest.raises(ValueError, match="indices"):
        build(kind, density=None, pattern=unsorted)
    duplicate = sp.csr_matrix((np.ones(2), np.array([1, 1]), np.array([0, 0, 2, 2])), shape=(3, 3))
    with pytest.raises(ValueError, match="indices"):
        build(kind, density=None, pattern=duplicate)


@pytest.mark.parametrize("kind", KINDS)
def test_astype_bad_dtype(kind):
    cell = build(kind)
    for dtype in (np.int32, np.float16, np.complex128):
        with pytest.raises(TypeError, match="dtype"):
            cell.astype(dtype)


@pytest.mark.parametrize("kind", ["vanilla", "gru"])
def test_from_weights_bad_input(kind):
    cell = build(kind)
    good = {name: (w.to_scipy() if isinstance(w, sr.SparseWeight) else np.array(w))
            for name, w in cell.weights.items()}
    rec = cell.weight_names[0]
    bias = cell.weight_names[-1]
    with pytest.raises(TypeError, match="weights"):
        type(cell).from_weights(list(good.values()))
    missing = dict(good)
    del missing[bias]
    with pytest.raises(ValueError, match=bias):
        type(cell).from_weights(missing)
    for value, exc in [(np.zeros(4), ValueError), (np.full(3, NAN), ValueError), (np.zeros(3, complex), TypeError)]:
        with pytest.raises(exc, match=bias):
            type(cell).from_weights({**good, bias: value})
    inp = {"vanilla": "U", "gru": "W_ir"}[kind]
    with pytest.raises(ValueError, match=inp):  # (n_hidden + 1) x n_in
        type(cell).from_weights({**good, inp: sp.random(4, 2, density=0.5, format="csr")})
    nan_w = good[rec].copy()
    nan_w.data[0] = NAN
    with pytest.raises(ValueError, match=rec):
        type(cell).from_weights({**good, rec: nan_w})


# ---------------------------------------------------------------------------
# cell.step, cell.jacobians, cell.params
# ---------------------------------------------------------------------------


def bad_step_inputs(cell):
    """(s, x, exception, name in the message) for a cell with n_in = 2."""
    S, n_in = cell.n_state, cell.n_in
    s, x = np.zeros(S), np.zeros(n_in)
    nan_s = s.copy()
    nan_s[0] = NAN
    inf_x = x.copy()
    inf_x[-1] = INF
    return [
        (np.zeros(S + 1), x, ValueError, "s"),
        (np.zeros(S - 1), x, ValueError, "s"),
        (np.zeros((1, 1, S)), x, ValueError, "s"),
        (np.float64(0.0), x, ValueError, "s"),
        (s, np.zeros(n_in + 1), ValueError, "x"),
        (s, np.zeros(0), ValueError, "x"),
        (s, np.zeros((1, n_in)), ValueError, "x"),  # batched x with an unbatched s
        (s, 1.0, ValueError, "x"),
        (np.zeros((3, S)), np.zeros((2, n_in)), ValueError, "x"),  # batch sizes differ
        (np.zeros((3, S)), np.zeros(n_in), ValueError, "x"),
        (np.zeros((2, S + 1)), np.zeros((2, n_in)), ValueError, "s"),
        (nan_s, x, ValueError, "s"),
        (s, inf_x, ValueError, "x"),
        (s, -inf_x, ValueError, "x"),
        (np.full((2, S), NAN), np.zeros((2, n_in)), ValueError, "s"),
        (np.zeros((2, S)), np.stack([x, inf_x]), ValueError, "x"),
        (s.astype(complex), x, TypeError, "s"),
        (s, x.astype(np.complex64), TypeError, "x"),
        ("a" * S, x, TypeError, "s"),
        (s, np.array(["1"] * n_in), TypeError, "x"),
        (s, np.array([None] * n_in), TypeError, "x"),
        (s, np.array([1.0] * (n_in - 1) + [None], dtype=object), TypeError, "x"),
        (s, None, TypeError, "x"),
        (np.array([{}] * S), x, TypeError, "s"),
    ]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", range(24))
def test_step_bad_input(kind, case):
    cell = build(kind)
    cases = bad_step_inputs(cell)
    assert len(cases) == 24
    s, x, exc, name = cases[case]
    params = cell.params.copy()
    with pytest.raises(exc, match=rf"\b{name}\b"):
        cell.step(s, x)
    if np.asarray(s).ndim <= 1:  # one state: jacobians() checks it the same way
        with pytest.raises(exc, match=rf"\b{name}\b"):
            cell.jacobians(s, x)
    np.testing.assert_array_equal(cell.params, params)


@pytest.mark.parametrize("kind", KINDS)
def test_jacobians_refuses_a_batch(kind):
    cell = build(kind)
    with pytest.raises(ValueError, match="jacobians|batch"):
        cell.jacobians(np.zeros((2, cell.n_state)), np.zeros((2, cell.n_in)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("delta", [-1, 1, 100])
def test_params_wrong_length(kind, delta):
    cell = build(kind)
    before = cell.params.copy()
    with pytest.raises(ValueError, match="params"):
        cell.params = np.zeros(cell.n_params + delta)
    np.testing.assert_array_equal(cell.params, before)


@pytest.mark.parametrize("kind", KINDS)
def test_params_bad_values(kind):
    cell = build(kind)
    before = cell.params.copy()
    P = cell.n_params
    nan = np.zeros(P)
    nan[-1] = NAN
    cases = [
        (np.zeros((1, P)), ValueError), (np.zeros((P, 1)), ValueError), (0.0, ValueError),
        (nan, ValueError), (np.full(P, INF), ValueError), (np.zeros(P, complex), TypeError),
        (np.array(["0"] * P), TypeError), (np.array([None] * P), TypeError),
    ]
    for value, exc in cases:
        with pytest.raises(exc, match="params"):
            cell.params = value
        np.testing.assert_array_equal(cell.params, before)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_params_overflowing_float32_is_refused():
    cell = build("vanilla", dtype=np.float32)
    with pytest.raises(ValueError, match="params"):
        cell.params = np.full(cell.n_params, 1e39)  # finite in float64, inf in float32


# ---------------------------------------------------------------------------
# Learners: construction
# ---------------------------------------------------------------------------

LEARNERS = {
    "RTRL": lambda cell, **kw: sr.RTRL(cell, **kw),
    "BPTT": lambda cell, **kw: sr.BPTT(cell, **kw),
    "TBPTT": lambda cell, **kw: sr.TBPTT(cell, truncation=3, **kw),
    "SnAp": lambda cell, **kw: sr.SnAp(cell, n=2, **kw),
    "UORO": lambda cell, **kw: sr.UORO(cell, seed=0, **kw),
}


@pytest.fixture(scope="module")
def gru():
    return make_cell("gru", 2, 4, 0.5, 0)


@pytest.mark.parametrize("learner", LEARNERS)
@pytest.mark.parametrize("not_a_cell", [
    "gru", None, 3, sr.GRU, sr.Pattern.dense((2, 2)),
    types.SimpleNamespace(n_in=2, n_hidden=3, n_state=3, n_params=5, key="vanilla"),
], ids=["str", "None", "int", "class", "Pattern", "duck"])
def test_learner_needs_a_cell(learner, not_a_cell):
    with pytest.raises(TypeError, match="cell"):
        LEARNERS[learner](not_a_cell)


@pytest.mark.parametrize("learner", LEARNERS)
@pytest.mark.parametrize("batch_size, exc", [(0, ValueError), (-2, ValueError), (2.0, TypeError),
                                             (True, TypeError), ("2", TypeError)])
def test_bad_batch_size(gru, learner, batch_size, exc):
    with pytest.raises(exc, match="batch_size"):
        LEARNERS[learner](gru, batch_size=batch_size)


@pytest.mark.parametrize("n, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (2.0, TypeError),
                                    (True, TypeError), ("2", TypeError), (None, TypeError)])
def test_snap_bad_n(gru, n, exc):
    with pytest.raises(exc, match=r"\bn\b"):
        sr.SnAp(gru, n=n)
    with pytest.raises(exc, match=r"\bn\b"):
        sr.SnAp(gru, n, batch_size=2)


@pytest.mark.parametrize("truncation, exc", [(0, ValueError), (-3, ValueError), (1.5, TypeError),
                                             (3.0, TypeError), (None, TypeError), (True, TypeError),
                                             ("3", TypeError)])
def test_tbptt_bad_truncation(gru, truncation, exc):
    with pytest.raises(exc, match="truncation"):
        sr.TBPTT(gru, truncation=truncation)


def test_tbptt_needs_truncation(gru):
    with pytest.raises(TypeError):
        sr.TBPTT(gru)


@pytest.mark.parametrize("eps, exc", [(0, ValueError), (0.0, ValueError), (-1e-7, ValueError),
                                      (NAN, ValueError), (INF, ValueError), ("1e-7", TypeError),
                                      (None, TypeError)])
def test_uoro_bad_eps(gru, eps, exc):
    with pytest.raises(exc, match="eps"):
        sr.UORO(gru, eps=eps)


@pytest.mark.parametrize("seed, exc", [(-1, ValueError), (1.5, TypeError), ("0", TypeError), (True, TypeError)])
def test_uoro_bad_seed(gru, seed, exc):
    with pytest.raises(exc, match="seed"):
        sr.UORO(gru, seed=seed)


# ---------------------------------------------------------------------------
# Learners: forward / backward / influence
# ---------------------------------------------------------------------------

B = 3


def bad_forward_inputs(cell, batched):
    """(x, exception) for forward() of a learner on ``cell``."""
    n_in = cell.n_in
    shape = (B, n_in) if batched else (n_in,)
    x = np.zeros(shape)
    nan = x.copy()
    nan.flat[-1] = NAN
    inf = x.copy()
    inf.flat[0] = INF
    wrong = [np.zeros(n_in), np.zeros((B + 1, n_in)), np.zeros((B, n_in + 1)), np.zeros((1, n_in))] if batched \
        else [np.zeros(n_in + 1), np.zeros(n_in - 1), np.zeros((1, n_in)), np.float64(0.0)]
    return [(w, ValueError) for w in wrong] + [
        (nan, ValueError), (inf, ValueError), (-inf, ValueError),
        (x.astype(complex), TypeError), (x.astype(object), TypeError),
        (np.full(shape, "0"), TypeError), (None, TypeError),
    ]


N_BAD_FORWARD = 11


@pytest.mark.parametrize("learner", LEARNERS)
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
@pytest.mark.parametrize("case", range(N_BAD_FORWARD))
def test_forward_bad_input(gru, learner, batched, case):
    lrn = LEARNERS[learner](gru, batch_size=B if batched else None)
    cases = bad_forward_inputs(gru, batched)
    assert len(cases) == N_BAD_FORWARD
    x, exc = cases[case]
    with pytest.raises(exc, match=r"\bx\b"):
        lrn.forward(x)
    # And after some steps, too.
    lrn.forward(np.ones((B, gru.n_in)) if batched else np.ones(gru.n_in))
    with pytest.raises(exc, match=r"\bx\b"):
        lrn.forward(x)


def bad_backward_inputs(cell, batched):
    S = cell.n_state
    shape = (B, S) if batched else (S,)
    c = np.zeros(shape)
    nan = c.copy()
    nan.flat[1] = NAN
    inf = c.copy()
    inf.flat[-1] = -INF
    wrong = [np.zeros(S), np.zeros((B - 1, S)), np.zeros((B, S + 1))] if batched \
        else [np.zeros(S + 1), np.zeros(S - 1), np.zeros((1, S))]
    return [(w, ValueError) for w in wrong] + [
        (nan, ValueError), (inf, ValueError), (c.astype(complex), TypeError), (c.astype(object), TypeError),
    ]


N_BAD_BACKWARD = 7


@pytest.mark.parametrize("learner", LEARNERS)
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
@pytest.mark.parametrize("case", range(N_BAD_BACKWARD))
def test_backward_bad_input(gru, learner, batched, case):
    lrn = LEARNERS[learner](gru, batch_size=B if batched else None)
    lrn.forward(np.ones((B, gru.n_in)) if batched else np.ones(gru.n_in))
    cases = bad_backward_inputs(gru, batched)
    assert len(cases) == N_BAD_BACKWARD
    c, exc = cases[case]
    with pytest.raises(exc, match=r"\bc\b"):
        lrn.backward(c)


@pytest.mark.parametrize("learner", LEARNERS)
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_backward_before_forward(gru, learner, batched):
    lrn = LEARNERS[learner](gru, batch_size=B if batched else None)
    c = np.zeros((B, gru.n_state)) if batched else np.zeros(gru.n_state)
    x = np.ones((B, gru.n_in)) if batched else np.ones(gru.n_in)
    with pytest.raises(RuntimeError, match="forward"):
        lrn.backward(c)
    lrn.forward(x)
    lrn.backward(c)
    lrn.reset()
    with pytest.raises(RuntimeError, match="forward"):
        lrn.backward(c)
    # A rejected forward is not a step either.
    with pytest.raises(ValueError):
        lrn.forward(x * NAN)
    with pytest.raises(RuntimeError, match="forward"):
        lrn.backward(c)


@pytest.mark.parametrize("stream, exc", [(1, ValueError), (-1, ValueError), (5, ValueError),
                                         (0.0, TypeError), (True, TypeError), ("0", TypeError)])
def test_snap_influence_stream_out_of_range_unbatched(gru, stream, exc):
    lrn = sr.SnAp(gru, n=2)
    lrn.forward(np.ones(2))
    with pytest.raises(exc, match="stream"):
        lrn.influence(stream=stream)
    assert lrn.influence(stream=0).shape == (gru.n_state, gru.n_params)


@pytest.mark.parametrize("stream, exc", [(B, ValueError), (-1, ValueError), (1.0, TypeError)])
def test_snap_influence_stream_out_of_range_batched(gru, stream, exc):
    lrn = sr.SnAp(gru, n=2, batch_size=B)
    lrn.forward(np.ones((B, 2)))
    with pytest.raises(exc, match="stream"):
        lrn.influence(stream=stream)
    assert lrn.influence(stream=B - 1).shape == (gru.n_state, gru.n_params)


# ---------------------------------------------------------------------------
# A rejected call leaves the learner untouched
# ---------------------------------------------------------------------------


def _drive(lrn, xs, cs):
    for x, c in zip(xs, cs):
        lrn.forward(x)
        lrn.backward(c)


def _sequence(cell, batched, T, seed):
    rng = np.random.default_rng(seed)
    lead = (T, B) if batched else (T,)
    return rng.normal(size=lead + (cell.n_in,)), rng.normal(size=lead + (cell.n_state,))


@pytest.mark.parametrize("learner", LEARNERS)
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_rejected_forward_changes_nothing(gru, learner, batched):
    xs, cs = _sequence(gru, batched, 5, 1)
    for case, (bad, exc) in enumerate(bad_forward_inputs(gru, batched)):
        a = LEARNERS[learner](gru, batch_size=B if batched else None)
        ref = LEARNERS[learner](gru, batch_size=B if batched else None)
        _drive(a, xs[:2], cs[:2])
        _drive(ref, xs[:2], cs[:2])
        # Steps 0 and 1 are done; step 2's forward is pending its backward.
        a.forward(xs[2])
        ref.forward(xs[2])
        state = a.state
        with pytest.raises(exc):
            a.forward(bad)
        assert a.n_steps == ref.n_steps == 3, case
        np.testing.assert_array_equal(a.state, state, err_msg=str(case))
        a.backward(cs[2])
        ref.backward(cs[2])
        _drive(a, xs[3:], cs[3:])
        _drive(ref, xs[3:], cs[3:])
        np.testing.assert_array_equal(a.state, ref.state, err_msg=str(case))
        np.testing.assert_array_equal(a.grad(), ref.grad(), err_msg=str(case))


@pytest.mark.parametrize("learner", LEARNERS)
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_rejected_backward_changes_nothing(gru, learner, batched):
    xs, cs = _sequence(gru, batched, 4, 2)
    for case, (bad, exc) in enumerate(bad_backward_inputs(gru, batched)):
        a = LEARNERS[learner](gru, batch_size=B if batched else None)
        ref = LEARNERS[learner](gru, batch_size=B if batched else None)
        for lrn in (a, ref):
            _drive(lrn, xs[:2], cs[:2])
            lrn.forward(xs[2])
        with pytest.raises(exc):
            a.backward(bad)
        for lrn in (a, ref):
            lrn.backward(cs[2])
            _drive(lrn, xs[3:], cs[3:])
        np.testing.assert_array_equal(a.state, ref.state, err_msg=str(case))
        np.testing.assert_array_equal(a.grad(), ref.grad(), err_msg=str(case))


@pytest.mark.parametrize("kind", ["vanilla", "lstm"])
@pytest.mark.parametrize("learner", LEARNERS)
def test_rejected_forward_changes_nothing_other_cells(kind, learner):
    cell = make_cell(kind, 2, 3, 0.6, 4, dtype=np.float32)
    xs, cs = _sequence(cell, True, 4, 3)
    bad = xs[1].copy()
    bad[1, 0] = NAN  # one bad stream: the good streams must not advance either
    a = LEARNERS[learner](cell, batch_size=B)
    ref = LEARNERS[learner](cell, batch_size=B)
    _drive(a, xs[:1], cs[:1])
    _drive(ref, xs[:1], cs[:1])
    state = a.state
    with pytest.raises(ValueError, match=r"\bx\b"):
        a.forward(bad)
    np.testing.assert_array_equal(a.state, state)
    _drive(a, xs[1:], cs[1:])
    _drive(ref, xs[1:], cs[1:])
    np.testing.assert_array_equal(a.grad(), ref.grad())


@pytest.mark.parametrize("learner", LEARNERS)
@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_forward_overflowing_float32_is_refused(learner):
    cell = make_cell("gru", 2, 3, 0.6, 4, dtype=np.float32)
    lrn = LEARNERS[learner](cell)
    with pytest.raises(ValueError, match=r"\bx\b"):
        lrn.forward(np.array([1e39, 0.0]))  # finite in float64, inf in float32
    assert lrn.n_steps == 0
