"""Cells against the dense reference ``tests/naive.py``, and the cell contract.

Covers: ``step`` and both Jacobians (values and sparsity patterns) for
VanillaRNN (alpha = 1 and < 1), GRU and LSTM over random sizes, densities,
pattern sharing, input densities and both dtypes; ``params`` as a writable
view; purity of ``step``; sizes; batching; ``copy``/``astype``;
``from_weights``; ``pattern=``; seeding and ``shared_pattern``.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import naive
import sparse_rtrl as sr
from conftest import make_cell

KINDS = ("vanilla", "gru", "lstm")
GATED = ("gru", "lstm")
RECURRENT = {
    "vanilla": ("W",),
    "gru": ("W_hr", "W_hz", "W_hn"),
    "lstm": ("W_hi", "W_hf", "W_hg", "W_ho"),
}
INPUT = {
    "vanilla": ("U",),
    "gru": ("W_ir", "W_iz", "W_in"),
    "lstm": ("W_ii", "W_if", "W_ig", "W_io"),
}
N_BIASES = {"vanilla": 1, "gru": 4, "lstm": 4}
CLASSES = {"vanilla": sr.VanillaRNN, "gru": sr.GRU, "lstm": sr.LSTM}


def tol(dtype):
    """Tolerance of a cell's result against the float64 reference."""
    if np.dtype(dtype) == np.float64:
        return dict(rtol=1e-10, atol=1e-12)
    return dict(rtol=2e-5, atol=2e-6)


@st.composite
def cell_cases(draw, kinds=KINDS, dtypes=(np.float32, np.float64)):
    """A cell built from drawn options, plus a state and an input for it."""
    kind = draw(st.sampled_from(kinds))
    dtype = draw(st.sampled_from(dtypes))
    n_hidden = draw(st.integers(1, 6))
    n_in = draw(st.integers(1, 3))
    density = draw(st.sampled_from([0.1, 0.3, 1.0]) | st.floats(0.05, 1.0))
    seed = draw(st.integers(0, 2**16))
    kwargs = {}
    if kind == "vanilla":
        kwargs["alpha"] = draw(st.sampled_from([1.0, 0.5]) | st.floats(0.05, 1.0))
    else:
        kwargs["shared_pattern"] = draw(st.booleans())
    if draw(st.booleans()):
        kwargs["input_density"] = draw(st.floats(0.2, 1.0))
    cell = make_cell(kind, n_in, n_hidden, density, seed, dtype=dtype, **kwargs)
    if draw(st.booleans()):
        # Non-zero biases, so the bias columns of I and the gates are generic.
        rng = np.random.default_rng(seed + 1)
        for name in cell.weight_names:
            if not isinstance(cell.weights[name], sr.SparseWeight):
                cell.weights[name][:] = rng.normal(size=cell.n_hidden)
    rng = np.random.default_rng(seed + 2)
    scale = draw(st.sampled_from([0.0, 0.5, 2.0]))
    s = (rng.normal(scale=scale, size=cell.n_state)).astype(dtype)
    x = (rng.normal(size=cell.n_in)).astype(dtype)
    return cell, s, x


# ---------------------------------------------------------------------------
# Against the reference
# ---------------------------------------------------------------------------


@given(cell_cases())
def test_step_matches_naive(case):
    cell, s, x = case
    out = cell.step(s, x)
    assert out.shape == (cell.n_state,)
    assert out.dtype == cell.dtype
    np.testing.assert_allclose(out, naive.step(cell, s, x), **tol(cell.dtype))


@given(cell_cases())
def test_jacobians_match_naive(case):
    cell, s, x = case
    jac = cell.jacobians(s, x)
    S, P = cell.n_state, cell.n_params
    assert jac.dynamics.shape == (S, S) and jac.immediate.shape == (S, P)
    assert sp.issparse(jac.dynamics) and sp.issparse(jac.immediate)
    assert jac.state.dtype == cell.dtype
    assert jac.dynamics.dtype == cell.dtype and jac.immediate.dtype == cell.dtype
    np.testing.assert_allclose(jac.state, naive.step(cell, s, x), **tol(cell.dtype))
    np.testing.assert_array_equal(jac.state, cell.step(s, x))
    np.testing.assert_allclose(jac.dynamics.toarray(), naive.dynamics_jacobian(cell, s, x), **tol(cell.dtype))
    np.testing.assert_allclose(jac.immediate.toarray(), naive.immediate_jacobian(cell, s, x), **tol(cell.dtype))


@pytest.mark.parametrize("kind", KINDS)
def test_dynamics_structure_matches_naive(kind):
    @given(cell_cases(kinds=(kind,), dtypes=(np.float64,)))
    def check(case):
        cell, _, _ = case
        np.testing.assert_array_equal(cell.structure.dynamics.to_dense(), naive.dynamics_structure(cell))

    check()


@pytest.mark.parametrize("kind", KINDS)
def test_immediate_structure_matches_naive(kind):
    @given(cell_cases(kinds=(kind,), dtypes=(np.float64,)))
    def check(case):
        cell, _, _ = case
        np.testing.assert_array_equal(cell.structure.immediate_pattern().to_dense(),
                                      naive.immediate_structure(cell))

    check()


def test_lstm_dynamics_structure_of_c_from_own_h():
    # The pinpointed case of the LSTM disagreement with naive.dynamics_structure:
    # with no stored diagonal in W_hi/W_hf/W_hg, dc'_i/dh_i is identically 0;
    # naive.dynamics_structure still marks D[n + i, i] as structural.
    off_diag = sp.csr_matrix(np.ones((3, 3)) - np.eye(3))
    cell = sr.LSTM(1, 3, pattern=off_diag, seed=0)
    n = 3
    D = naive.dynamics_jacobian(cell, np.random.default_rng(0).normal(size=6), np.ones(1))
    assert np.all(np.diag(D[n:, :n]) == 0)  # numerically zero for every state
    np.testing.assert_array_equal(cell.structure.dynamics.to_dense(), naive.dynamics_structure(cell))


@given(cell_cases())
def test_jacobians_live_on_the_structural_patterns(case):
    # The returned matrices store exactly the structural pattern (explicit
    # zeros included, e.g. at s = 0), and every numerically nonzero entry of
    # the reference Jacobians lies inside it.
    cell, s, x = case
    jac = cell.jacobians(s, x)
    assert sr.Pattern.from_scipy(jac.dynamics) == cell.structure.dynamics
    assert sr.Pattern.from_scipy(jac.immediate) == cell.structure.immediate_pattern()
    D = naive.dynamics_jacobian(cell, s, x)
    I = naive.immediate_jacobian(cell, s, x)
    assert not np.any((D != 0) & ~cell.structure.dynamics.to_dense())
    assert not np.any((I != 0) & ~cell.structure.immediate_pattern().to_dense())


@pytest.mark.parametrize("kind, kwargs", [
    ("vanilla", dict(alpha=1.0)), ("vanilla", dict(alpha=0.3)),
    ("gru", dict(shared_pattern=True)), ("gru", dict(shared_pattern=False)),
    ("lstm", dict(shared_pattern=True)), ("lstm", dict(shared_pattern=False)),
])
def test_jacobians_match_finite_differences(kind, kwargs):
    cell = make_cell(kind, 3, 5, 0.4, 11, **kwargs)
    rng = np.random.default_rng(5)
    cell.params = rng.normal(scale=0.8, size=cell.n_params)
    s = rng.normal(size=cell.n_state)
    x = rng.normal(size=cell.n_in)
    jac = cell.jacobians(s, x)
    D_fd, I_fd = naive.finite_difference_jacobians(cell, s, x)
    np.testing.assert_allclose(jac.dynamics.toarray(), D_fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(jac.immediate.toarray(), I_fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.05])
def test_vanilla_alpha(alpha):
    cell = sr.VanillaRNN(2, 4, density=0.5, alpha=alpha, seed=3)
    assert cell.alpha == alpha
    rng = np.random.default_rng(0)
    s, x = rng.normal(size=4), rng.normal(size=2)
    out = cell.step(s, x)
    a = cell.weights["W"].toarray() @ s + cell.weights["U"].toarray() @ x + cell.weights["b"]
    np.testing.assert_allclose(out, (1 - alpha) * s + alpha * np.tanh(a), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cell.jacobians(s, x).dynamics.toarray(),
                               naive.dynamics_jacobian(cell, s, x), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# params: a writable view
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_params_is_a_writable_view(kind):
    cell = make_cell(kind, 2, 4, 0.5, 0)
    params = cell.params
    assert params.shape == (cell.n_params,) and params.dtype == cell.dtype
    assert params.flags.writeable
    for name in cell.weight_names:
        w = cell.weights[name]
        data = w.data if isinstance(w, sr.SparseWeight) else w
        assert np.shares_memory(data, params), name
    rng = np.random.default_rng(1)
    s, x = rng.normal(size=cell.n_state), rng.normal(size=cell.n_in)
    before = cell.step(s, x)
    index = naive.param_index(cell)
    for p in (0, cell.n_params // 2, cell.n_params - 1):
        name, i, j = index[p]
        cell.params[p] = 0.75 + p
        w = cell.weights[name]
        value = w.toarray()[i, j] if j is not None else w[i]
        assert value == 0.75 + p, (name, i, j)
    after = cell.step(s, x)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, naive.step(cell, s, x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cell.jacobians(s, x).dynamics.toarray(),
                               naive.dynamics_jacobian(cell, s, x), rtol=1e-10, atol=1e-12)
    # Writing through a weight's view is seen in params too.
    first = cell.weight_names[0]
    cell.weights[first].data[0] = -3.5
    assert cell.params[cell.weight_slice(first)][0] == -3.5


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_params_setter_copies_in_place(kind, dtype):
    cell = make_cell(kind, 2, 4, 0.5, 0, dtype=dtype)
    view = cell.params
    rng = np.random.default_rng(2)
    s, x = rng.normal(size=cell.n_state), rng.normal(size=cell.n_in)
    before = cell.step(s, x)
    new = rng.normal(size=cell.n_params)  # float64 into either dtype
    cell.params = new
    assert cell.params is view  # same buffer: weight views stay attached
    np.testing.assert_array_equal(view, new.astype(dtype))
    after = cell.step(s, x)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, naive.step(cell, s, x), **tol(dtype))
    new[:] = 0.0  # the cell keeps its own copy
    np.testing.assert_allclose(cell.step(s, x), after)
    # Lists are accepted too.
    cell.params = list(np.ones(cell.n_params))
    assert np.all(cell.params == 1)


# ---------------------------------------------------------------------------
# step: pure, batched; init_state; sizes
# ---------------------------------------------------------------------------


@given(cell_cases())
def test_step_is_pure(case):
    cell, s, x = case
    params = cell.params.copy()
    s0, x0 = s.copy(), x.copy()
    out = cell.step(s, x)
    np.testing.assert_array_equal(s, s0)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(cell.params, params)
    assert not np.shares_memory(out, s) and not np.shares_memory(out, x)
    again = cell.step(s, x)
    np.testing.assert_array_equal(again, out)
    out[:] = 123.0  # the result is the caller's, not a cell buffer
    np.testing.assert_array_equal(cell.step(s, x), again)
    # jacobians() is pure too.
    cell.jacobians(s, x)
    np.testing.assert_array_equal(s, s0)
    np.testing.assert_array_equal(cell.params, params)
    np.testing.assert_array_equal(cell.step(s, x), again)


@pytest.mark.parametrize("kind", KINDS)
def test_step_accepts_read_only_and_non_contiguous_inputs(kind):
    cell = make_cell(kind, 3, 4, 0.5, 0)
    rng = np.random.default_rng(3)
    s, x = rng.normal(size=cell.n_state), rng.normal(size=cell.n_in)
    expected = cell.step(s, x)
    s_ro, x_ro = s.copy(), x.copy()
    s_ro.flags.writeable = False
    x_ro.flags.writeable = False
    np.testing.assert_array_equal(cell.step(s_ro, x_ro), expected)
    s_strided = np.repeat(s, 2)[::2]
    x_strided = np.repeat(x, 2)[::2]
    assert not s_strided.flags.c_contiguous
    np.testing.assert_array_equal(cell.step(s_strided, x_strided), expected)
    # Lists and integer arrays are converted.
    np.testing.assert_array_equal(cell.step(list(s), list(x)), expected)
    np.testing.assert_allclose(cell.step(np.zeros(cell.n_state, int), np.ones(cell.n_in, int)),
                               cell.step(np.zeros(cell.n_state), np.ones(cell.n_in)))


@given(cell_cases(), st.integers(1, 4))
def test_batched_step_equals_per_row_steps(case, B):
    cell, _, _ = case
    rng = np.random.default_rng(B)
    S = rng.normal(size=(B, cell.n_state)).astype(cell.dtype)
    X = rng.normal(size=(B, cell.n_in)).astype(cell.dtype)
    out = cell.step(S, X)
    assert out.shape == (B, cell.n_state) and out.dtype == cell.dtype
    for b in range(B):
        np.testing.assert_allclose(out[b], cell.step(S[b], X[b]), rtol=1e-6 if cell.dtype == np.float32 else 1e-13,
                                   atol=0)
        np.testing.assert_allclose(out[b], naive.step(cell, S[b], X[b]), **tol(cell.dtype))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_state(kind, dtype):
    cell = make_cell(kind, 2, 5, 0.5, 0, dtype=dtype)
    s = cell.init_state()
    assert s.shape == (cell.n_state,)
    assert s.dtype == np.dtype(dtype)
    assert np.all(s == 0)
    s[:] = 1.0
    assert np.all(cell.init_state() == 0)  # a fresh array each call


@pytest.mark.parametrize("n_in, n", [(1, 1), (3, 5), (7, 2)])
def test_sizes_dense(n_in, n):
    v = sr.VanillaRNN(n_in, n, density=1.0)
    g = sr.GRU(n_in, n, density=1.0)
    m = sr.LSTM(n_in, n, density=1.0)
    for cell in (v, g, m):
        assert (cell.n_in, cell.n_hidden) == (n_in, n)
    assert v.n_state == n and g.n_state == n and m.n_state == 2 * n
    assert v.n_params == n * n + n * n_in + n
    assert g.n_params == 3 * n * n + 3 * n * n_in + 4 * n
    assert m.n_params == 4 * n * n + 4 * n * n_in + 4 * n
    for cell in (v, g, m):
        assert cell.params.shape == (cell.n_params,)
        assert len(naive.param_index(cell)) == cell.n_params
        assert tuple(cell.weight_names) == naive.WEIGHT_NAMES[cell.key]


@given(st.sampled_from(KINDS), st.integers(1, 8), st.integers(1, 4), st.floats(0.05, 1.0),
       st.floats(0.2, 1.0), st.booleans())
def test_sizes_sparse(kind, n, n_in, density, input_density, shared):
    kwargs = {} if kind == "vanilla" else {"shared_pattern": shared}
    cell = make_cell(kind, n_in, n, density, 0, input_density=input_density, **kwargs)
    for name in RECURRENT[kind]:
        assert cell.weights[name].shape == (n, n)
        assert cell.weights[name].nnz == int(round(density * n * n))
    for name in INPUT[kind]:
        assert cell.weights[name].shape == (n, n_in)
        assert cell.weights[name].nnz == int(round(input_density * n * n_in))
    expected = (len(RECURRENT[kind]) * int(round(density * n * n))
                + len(INPUT[kind]) * int(round(input_density * n * n_in)) + N_BIASES[kind] * n)
    assert cell.n_params == expected
    assert len(naive.param_index(cell)) == cell.n_params


# ---------------------------------------------------------------------------
# copy, astype, from_weights
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind, kwargs", [
    ("vanilla", dict(alpha=0.4)), ("gru", dict(shared_pattern=False)), ("lstm", dict(shared_pattern=True)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_is_independent(kind, kwargs, dtype):
    cell = make_cell(kind, 2, 5, 0.4, 7, dtype=dtype, input_density=0.5, **kwargs)
    dup = cell.copy()
    assert type(dup) is type(cell) and dup.dtype == cell.dtype
    assert dup.patterns == cell.patterns
    np.testing.assert_array_equal(dup.params, cell.params)
    assert dup.structure.dynamics == cell.structure.dynamics
    for key, value in kwargs.items():
        assert getattr(dup, key) == value
    assert not np.shares_memory(dup.params, cell.params)
    rng = np.random.default_rng(0)
    s, x = rng.normal(size=cell.n_state), rng.normal(size=cell.n_in)
    np.testing.assert_array_equal(dup.step(s, x), cell.step(s, x))
    original = cell.params.copy()
    before = cell.step(s, x)
    dup.params[:] = 0.0
    np.testing.assert_array_equal(cell.params, original)
    np.testing.assert_array_equal(cell.step(s, x), before)
    cell.params[:] = 1.0
    assert np.all(dup.params == 0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("src, dst", [(np.float64, np.float32), (np.float32, np.float64), (np.float64, np.float64)])
def test_astype(kind, src, dst):
    kwargs = dict(alpha=0.6) if kind == "vanilla" else dict(shared_pattern=False)
    cell = make_cell(kind, 3, 4, 0.5, 2, dtype=src, **kwargs)
    new = cell.astype(dst)
    assert new.dtype == np.dtype(dst) and new.params.dtype == np.dtype(dst)
    assert cell.dtype == np.dtype(src)  # the original is untouched
    assert new.patterns == cell.patterns
    np.testing.assert_array_equal(new.params, cell.params.astype(dst))
    for key, value in kwargs.items():
        assert getattr(new, key) == value
    assert not np.shares_memory(new.params, cell.params)
    rng = np.random.default_rng(0)
    s, x = rng.normal(size=cell.n_state), rng.normal(size=cell.n_in)
    out = new.step(s, x)
    assert out.dtype == np.dtype(dst)
    np.testing.assert_allclose(out, cell.step(s, x), rtol=1e-5, atol=1e-6)
    new.params[:] = 0.0
    assert np.any(cell.params != 0)


def weights_dict(cell):
    """``{name: scipy CSR or bias copy}`` of an existing cell."""
    return {name: (w.to_scipy() if isinstance(w, sr.SparseWeight) else np.array(w))
            for name, w in cell.weights.items()}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_weights_round_trip(kind, dtype):
    kwargs = dict(alpha=0.7) if kind == "vanilla" else dict(shared_pattern=False)
    cell = make_cell(kind, 3, 5, 0.4, 4, dtype=dtype, input_density=0.6, **kwargs)
    rng = np.random.default_rng(1)
    cell.params = rng.normal(size=cell.n_params)
    # A stored weight that is exactly zero stays a parameter.
    first = RECURRENT[kind][0]
    cell.weights[first].data[0] = 0.0
    hyper = dict(alpha=0.7) if kind == "vanilla" else {}
    new = type(cell).from_weights(weights_dict(cell), dtype=dtype, **hyper)
    assert new.dtype == np.dtype(dtype)
    assert new.n_params == cell.n_params
    assert new.patterns == cell.patterns
    np.testing.assert_array_equal(new.params, cell.params)
    s, x = rng.normal(size=cell.n_state), rng.normal(size=cell.n_in)
    np.testing.assert_array_equal(new.step(s, x), cell.step(s, x))
    if kind == "vanilla":
        assert new.alpha == 0.7


@pytest.mark.parametrize("kind", KINDS)
def test_from_weights_accepts_coo_csc_and_dense(kind):
    cell = make_cell(kind, 2, 4, 0.5, 9)
    w = weights_dict(cell)
    w[RECURRENT[kind][0]] = w[RECURRENT[kind][0]].tocoo()
    w[RECURRENT[kind][-1]] = w[RECURRENT[kind][-1]].tocsc()
    w[INPUT[kind][0]] = w[INPUT[kind][0]].toarray()  # dense: fully stored
    new = type(cell).from_weights(w)
    assert new.weights[RECURRENT[kind][0]].pattern == cell.weights[RECURRENT[kind][0]].pattern
    assert new.weights[RECURRENT[kind][-1]].pattern == cell.weights[RECURRENT[kind][-1]].pattern
    assert new.weights[INPUT[kind][0]].pattern == sr.Pattern.dense((4, 2))
    rng = np.random.default_rng(0)
    s, x = rng.normal(size=cell.n_state), rng.normal(size=cell.n_in)
    np.testing.assert_allclose(new.step(s, x), cell.step(s, x), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# pattern=, seeds, shared_pattern
# ---------------------------------------------------------------------------


def _user_pattern(n):
    """A scipy CSR with an empty row and a stored explicit zero."""
    rows = np.array([0, 0, 2, 3, 3])
    cols = np.array([1, 3, 0, 2, 3])
    vals = np.array([1.0, 0.0, 2.0, 3.0, 0.0])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", ["csr", "coo", "pattern"])
def test_pattern_fixes_the_recurrent_structure(kind, fmt):
    m = _user_pattern(4)
    expected = np.zeros((4, 4), dtype=bool)
    expected[[0, 0, 2, 3, 3], [1, 3, 0, 2, 3]] = True
    given = {"csr": m, "coo": m.tocoo(), "pattern": sr.Pattern.from_scipy(m)}[fmt]
    cell = CLASSES[kind](2, 4, pattern=given, seed=0)
    for name in RECURRENT[kind]:
        np.testing.assert_array_equal(cell.weights[name].pattern.to_dense(), expected, err_msg=name)
    for name in INPUT[kind]:
        assert cell.weights[name].pattern == sr.Pattern.dense((4, 2)), name
    assert cell.n_params == (len(RECURRENT[kind]) * 5 + len(INPUT[kind]) * 8 + N_BIASES[kind] * 4)
    # The same pattern with another seed: same structure, other values.
    other = CLASSES[kind](2, 4, pattern=given, seed=1)
    assert other.patterns == cell.patterns
    assert not np.array_equal(other.params, cell.params)


@pytest.mark.parametrize("kind", GATED)
def test_pattern_dict_sets_named_matrices(kind):
    names = RECURRENT[kind]
    eye = sp.identity(4, format="csr")
    given = {names[0]: _user_pattern(4), names[1]: eye}
    cell = CLASSES[kind](2, 4, pattern=given, seed=0)
    assert cell.weights[names[0]].pattern == sr.Pattern.from_scipy(_user_pattern(4))
    assert cell.weights[names[1]].pattern == sr.Pattern.diagonal(4)
    for name in names[2:]:
        assert cell.weights[name].pattern == sr.Pattern.dense((4, 4))  # no density given: dense
    union = np.zeros((4, 4), dtype=bool)
    for name in names:
        union |= cell.weights[name].pattern.to_dense()
    if kind == "gru":
        np.testing.assert_array_equal(cell.structure.dynamics.to_dense(), union | np.eye(4, dtype=bool))


@pytest.mark.parametrize("kind", KINDS)
def test_density_reproducible_by_seed_and_differs_across_seeds(kind):
    a = make_cell(kind, 3, 12, 0.2, 5, input_density=0.5)
    b = make_cell(kind, 3, 12, 0.2, 5, input_density=0.5)
    assert a.patterns == b.patterns
    np.testing.assert_array_equal(a.params, b.params)
    others = [make_cell(kind, 3, 12, 0.2, s, input_density=0.5) for s in (6, 7, 8)]
    for o in others:
        for name in RECURRENT[kind] + INPUT[kind]:
            assert o.weights[name].pattern != a.weights[name].pattern, name
    # A Generator works as a seed and is consumed.
    rng = np.random.default_rng(5)
    c1 = make_cell(kind, 3, 12, 0.2, rng)
    c2 = make_cell(kind, 3, 12, 0.2, rng)
    assert c1.patterns != c2.patterns


@pytest.mark.parametrize("kind", GATED)
def test_shared_pattern(kind):
    n = 12
    shared = make_cell(kind, 4, n, 0.2, 3, shared_pattern=True, input_density=0.5)
    first = shared.weights[RECURRENT[kind][0]].pattern
    assert first.nnz == int(round(0.2 * n * n))
    for name in RECURRENT[kind]:
        assert shared.weights[name].pattern == first, name
    first_in = shared.weights[INPUT[kind][0]].pattern
    for name in INPUT[kind]:
        assert shared.weights[name].pattern == first_in, name

    independent = make_cell(kind, 4, n, 0.2, 3, shared_pattern=False, input_density=0.5)
    pats = [independent.weights[name].pattern for name in RECURRENT[kind]]
    assert len(set(pats)) == len(pats)
    pats_in = [independent.weights[name].pattern for name in INPUT[kind]]
    assert len(set(pats_in)) == len(pats_in)
    for p in pats:
        assert p.nnz == int(round(0.2 * n * n))
    # D's h-h block is the union of the recurrent patterns (plus the diagonal).
    union = np.eye(n, dtype=bool)
    for p in pats:
        union |= p.to_dense()
    np.testing.assert_array_equal(independent.structure.dynamics.to_dense()[:n, :n], union)
    assert independent.structure.dynamics.nnz > shared.structure.dynamics.nnz


def test_cell_does_not_change_the_users_pattern_matrix():
    for kind in KINDS:
        m = _user_pattern(4)
        copy = m.copy()
        CLASSES[kind](2, 4, pattern=m)
        np.testing.assert_array_equal(m.indices, copy.indices)
        np.testing.assert_array_equal(m.data, copy.data)
        assert m.indices.flags.writeable and m.indptr.flags.writeable, kind
