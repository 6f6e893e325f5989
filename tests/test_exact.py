"""The exact learners against the slow reference and against each other.

For every cell kind, with frozen weights, the gradient of
``L = sum_t c_t . s_t`` must be the same number whichever way it is computed:
``RTRL`` = ``BPTT`` = ``TBPTT(truncation >= T)`` = ``naive.rtrl`` =
``naive.bptt`` = central finite differences. ``TBPTT(k)`` with ``k < T`` is
checked against ``naive.truncated_bptt``; the gradient returned by the
history-keeping learners must not depend on when ``grad()`` is called.

Tolerances: float64 throughout. Library and reference compute the same sums
in a different order, so they agree to a few ulps of the largest term:
``EXACT`` (1e-9, relative to the gradient's largest entry). Finite
differences carry an O(eps^2) truncation error plus O(1e-16 / eps) rounding:
``FD`` (1e-6).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
import sparse_rtrl as sr
from sparse_rtrl.learners import exact
from conftest import CELL_KINDS, blas_form, cells, make_cell, random_sequence, run_learner

EXACT = 1e-9
FD = 1e-6

lengths = st.integers(1, 6)
seq_seeds = st.integers(0, 2**16)


def assert_close(actual, expected, rtol, what=""):
    """``|actual - expected| <= rtol * (|expected| + max(1, max|expected|))`` entrywise.

    The absolute part scales with the gradient's largest entry, so entries
    that are small by cancellation are judged against the size of the sum,
    not against themselves.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def naive_online(cell, xs, cs, params=None, window=None, mask=None):
    """Online ``sum_t c_t J_t`` with the reference Jacobians, step by step.

    ``J_t = mask * (D_t J_{t-1} + I_t)``; ``J`` restarts from zero at every
    multiple of ``window`` (truncation: the state entering a window is a
    constant). ``params[t]``, if given, is written into ``cell.params`` before
    step ``t``, so D and I are those of the weights in force at that step:
    the quantity an online learner accumulates while an optimiser changes
    the weights.
    """
    S, P = cell.n_state, cell.n_params
    s = np.zeros(S)
    J = np.zeros((S, P))
    g = np.zeros(P)
    for t in range(xs.shape[0]):
        if params is not None:
            cell.params[:] = params[t]
        if window is not None and t % window == 0:
            J = np.zeros((S, P))
        D = naive.dynamics_jacobian(cell, s, xs[t])
        I = naive.immediate_jacobian(cell, s, xs[t])
        J = D @ J + I
        if mask is not None:
            J = np.where(mask, J, 0.0)
        s = naive.step(cell, s, xs[t])
        g += cs[t] @ J
    return g


# ---------------------------------------------------------------------------
# All exact methods agree
# ---------------------------------------------------------------------------


@given(cell=cells(), T=lengths, seed=seq_seeds, extra=st.integers(0, 3))
def test_exact_learners_agree_with_reference(cell, T, seed, extra):
    xs, cs = random_sequence(cell, T, seed)
    ref, ref_states = naive.rtrl(cell, xs, cs)
    assert_close(naive.bptt(cell, xs, cs), ref, EXACT, "naive.bptt vs naive.rtrl")
    fd = naive.finite_difference_grad(cell, xs, cs)
    assert_close(ref, fd, FD, "naive.rtrl vs finite differences")

    learners = {
        "RTRL": sr.RTRL(cell),
        "BPTT": sr.BPTT(cell),
        f"TBPTT({T + extra})": sr.TBPTT(cell, truncation=T + extra),
    }
    for name, learner in learners.items():
        assert learner.exact_for(T), name
        states = []
        for x, c in zip(xs, cs):
            states.append(learner.forward(x))
            learner.backward(c)
        g = learner.grad()
        assert g.shape == (cell.n_params,) and g.dtype == np.float64, name
        assert_close(np.array(states), ref_states, EXACT, f"{name} states")
        assert_close(g, ref, EXACT, f"{name} vs naive.rtrl")
        assert_close(g, fd, FD, f"{name} vs finite differences")


@given(cell=cells(), T=st.integers(2, 6), seed=seq_seeds, data=st.data())
def test_tbptt_short_truncation_matches_reference(cell, T, seed, data):
    k = data.draw(st.integers(1, T - 1), label="truncation")
    xs, cs = random_sequence(cell, T, seed)
    learner = sr.TBPTT(cell, truncation=k)
    assert not learner.exact_for(T)
    g = run_learner(learner, xs, cs)
    ref = naive.truncated_bptt(cell, xs, cs, k)
    assert_close(g, ref, EXACT, f"TBPTT({k}) vs naive.truncated_bptt")
    # The windowed-RTRL form of the same quantity (J restarts each window).
    assert_close(g, naive_online(cell, xs, cs, window=k), EXACT, "TBPTT vs windowed RTRL")


def _drive_with_grad_calls(learner, xs, cs, before, after):
    """Run the sequence calling grad() wherever ``before``/``after`` say; return the pieces."""
    pieces = []
    for t, (x, c) in enumerate(zip(xs, cs)):
        learner.forward(x)
        if before[t]:
            pieces.append(learner.grad())  # between forward and backward
        learner.backward(c)
        if after[t]:
            pieces.append(learner.grad())
    pieces.append(learner.grad())
    return pieces


@given(cell=cells(), T=lengths, seed=seq_seeds, data=st.data())
def test_tbptt_result_does_not_depend_on_when_grad_is_called(cell, T, seed, data):
    k = data.draw(st.integers(1, T + 1), label="truncation")
    before = data.draw(st.lists(st.booleans(), min_size=T, max_size=T), label="grad before backward")
    after = data.draw(st.lists(st.booleans(), min_size=T, max_size=T), label="grad after backward")
    xs, cs = random_sequence(cell, T, seed)
    once = run_learner(sr.TBPTT(cell, truncation=k), xs, cs)
    pieces = _drive_with_grad_calls(sr.TBPTT(cell, truncation=k), xs, cs, before, after)
    assert_close(np.sum(pieces, axis=0), once, EXACT, "sum of pieces vs one grad()")
    assert_close(once, naive.truncated_bptt(cell, xs, cs, k), EXACT, "TBPTT vs naive")


@given(cell=cells(), T=lengths, seed=seq_seeds, data=st.data())
@pytest.mark.parametrize("make", [sr.BPTT, sr.RTRL], ids=["BPTT", "RTRL"])
def test_exact_pieces_sum_to_the_whole(make, cell, T, seed, data):
    """A grad() mid-sequence returns exactly the credits received so far.

    Each piece is itself an exact gradient: that of the credits between two
    grad() calls, back-propagated to the start of the sequence.
    """
    before = data.draw(st.lists(st.booleans(), min_size=T, max_size=T), label="grad before backward")
    after = data.draw(st.lists(st.booleans(), min_size=T, max_size=T), label="grad after backward")
    xs, cs = random_sequence(cell, T, seed)
    pieces = _drive_with_grad_calls(make(cell), xs, cs, before, after)
    whole = naive.rtrl(cell, xs, cs)[0]
    assert_close(np.sum(pieces, axis=0), whole, EXACT, "sum of pieces vs naive.rtrl")

    # Expected piece boundaries: credits of steps [lo, hi) land in one piece.
    expected = []
    lo = 0
    for t in range(T):
        if before[t]:
            expected.append((lo, t))
            lo = t
        if after[t]:
            expected.append((lo, t + 1))
            lo = t + 1
    expected.append((lo, T))
    assert len(expected) == len(pieces)
    for (a, b), piece in zip(expected, pieces):
        part = np.zeros_like(cs)
        part[a:b] = cs[a:b]
        assert_close(piece, naive.rtrl(cell, xs, part)[0], EXACT, f"piece of steps [{a}, {b})")


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_long_sequences_grow_the_bptt_history(kind):
    """BPTT stores the whole trajectory: past its first buffer (16 steps) it must grow."""
    cell = make_cell(kind, 2, 3, 0.5, seed=3)
    T = 40
    xs, cs = random_sequence(cell, T, seed=5)
    ref = naive.rtrl(cell, xs, cs)[0]
    assert_close(run_learner(sr.BPTT(cell), xs, cs), ref, EXACT, "BPTT, T=40")
    assert_close(run_learner(sr.RTRL(cell), xs, cs), ref, EXACT, "RTRL, T=40")
    assert_close(run_learner(sr.TBPTT(cell, 40), xs, cs), ref, EXACT, "TBPTT(40), T=40")
    assert_close(run_learner(sr.TBPTT(cell, 7), xs, cs),
                 naive.truncated_bptt(cell, xs, cs, 7), EXACT, "TBPTT(7), T=40")
    # grad() at irregular points across the growth boundaries.
    learner = sr.BPTT(cell)
    total = np.zeros(cell.n_params)
    for t, (x, c) in enumerate(zip(xs, cs)):
        learner.forward(x)
        learner.backward(c)
        if t in (0, 15, 16, 17, 31, 33):
            total += learner.grad()
    total += learner.grad()
    assert_close(total, ref, EXACT, "BPTT pieces across growth")


# ---------------------------------------------------------------------------
# Cells built from user scipy matrices
# ---------------------------------------------------------------------------


@st.composite
def user_pattern(draw, n_rows, n_cols):
    """A random boolean pattern, forced to have an empty row when it can."""
    cells_ = draw(st.lists(st.booleans(), min_size=n_rows * n_cols, max_size=n_rows * n_cols))
    pat = np.array(cells_, dtype=bool).reshape(n_rows, n_cols)
    if n_rows > 1:
        pat[draw(st.integers(0, n_rows - 1))] = False
    return pat


def csr_with_values(pat, rng, explicit_zero_fraction=0.0):
    """scipy CSR with the given pattern; some stored values may be exactly 0.0."""
    rows, cols = np.nonzero(pat)
    vals = rng.normal(scale=0.8, size=rows.size)
    vals[rng.random(rows.size) < explicit_zero_fraction] = 0.0
    indptr = np.zeros(pat.shape[0] + 1, dtype=np.int64)
    np.cumsum(pat.sum(axis=1), out=indptr[1:])
    m = sp.csr_matrix((vals, cols, indptr), shape=pat.shape)  # keeps explicit zeros
    assert m.nnz == rows.size
    return m


def _check_exact(cell, xs, cs):
    ref, _ = naive.rtrl(cell, xs, cs)
    assert_close(naive.finite_difference_grad(cell, xs, cs), ref, FD, "FD vs naive.rtrl")
    for learner in (sr.RTRL(cell), sr.BPTT(cell), sr.TBPTT(cell, xs.shape[0])):
        assert_close(run_learner(learner, xs, cs), ref, EXACT, repr(learner))


@given(
    kind=st.sampled_from(CELL_KINDS), n=st.integers(1, 5), n_in=st.integers(1, 3),
    T=lengths, seed=seq_seeds, data=st.data(),
)
def test_cell_from_user_pattern(kind, n, n_in, T, seed, data):
    pat = data.draw(user_pattern(n, n), label="recurrent pattern")
    rng = np.random.default_rng(seed)
    as_pattern = data.draw(st.booleans(), label="pass a sr.Pattern")
    given_pat = sr.Pattern.from_mask(pat) if as_pattern else csr_with_values(pat, rng)
    cell = make_cell(kind, n_in, n, None, seed, pattern=given_pat)
    for name, p in cell.patterns.items():
        if name == "W" or name.startswith("W_h"):
            np.testing.assert_array_equal(p.to_dense(), pat, err_msg=name)
    n_rec = 1 if kind == "vanilla" else (3 if kind == "gru" else 4)
    n_bias = {"vanilla": 1, "gru": 4, "lstm": 4}[kind]  # GRU has b_r, b_z, b_in, b_hn
    assert cell.n_params == n_rec * (pat.sum() + n * n_in) + n_bias * n
    xs, cs = random_sequence(cell, T, seed)
    _check_exact(cell, xs, cs)


@given(
    kind=st.sampled_from(CELL_KINDS), n=st.integers(1, 4), n_in=st.integers(1, 3),
    T=lengths, seed=seq_seeds, data=st.data(),
)
def test_cell_from_weights(kind, n, n_in, T, seed, data):
    """``Cell.from_weights``: patterns and values from the user's matrices.

    Every recurrent matrix gets its own pattern (with an empty row), input
    matrices are either dense arrays or sparse; some stored values are
    exactly 0.0 and must still be parameters.
    """
    rng = np.random.default_rng(seed)
    cls = {"vanilla": sr.VanillaRNN, "gru": sr.GRU, "lstm": sr.LSTM}[kind]
    weights, dense = {}, {}
    for name in cls.weight_names_for():
        if name == "W" or name.startswith("W_h"):
            pat = data.draw(user_pattern(n, n), label=name)
            weights[name] = csr_with_values(pat, rng, explicit_zero_fraction=0.3)
            dense[name] = weights[name].toarray()
        elif name == "U" or name.startswith("W_i"):
            if data.draw(st.booleans(), label=f"{name} sparse"):
                weights[name] = csr_with_values(data.draw(user_pattern(n, n_in), label=name), rng)
                dense[name] = weights[name].toarray()
            else:
                weights[name] = rng.normal(size=(n, n_in))
                dense[name] = weights[name]
        else:
            weights[name] = rng.normal(size=n)
            dense[name] = weights[name]
    kwargs = {"alpha": data.draw(st.floats(0.1, 1.0), label="alpha")} if kind == "vanilla" else {}
    cell = cls.from_weights(weights, **kwargs)
    assert (cell.n_in, cell.n_hidden) == (n_in, n)
    expected_p = sum(w.nnz if sp.issparse(w) else np.size(w) for w in weights.values())
    assert cell.n_params == expected_p  # explicit zeros are parameters
    for name, ref in dense.items():
        got = cell.weights[name]
        got = got.toarray() if hasattr(got, "toarray") else np.asarray(got)
        np.testing.assert_array_equal(got, ref, err_msg=name)
    for name, w in weights.items():
        if sp.issparse(w):
            np.testing.assert_array_equal(cell.patterns[name].to_dense(), _stored(w), err_msg=name)
    xs, cs = random_sequence(cell, T, seed)
    _check_exact(cell, xs, cs)


def _stored(m):
    """Boolean pattern of the stored entries of a scipy matrix (explicit zeros included)."""
    out = np.zeros(m.shape, dtype=bool)
    coo = m.tocoo()
    out[coo.row, coo.col] = True
    return out


# ---------------------------------------------------------------------------
# Weights changed between steps (online learning)
# ---------------------------------------------------------------------------


@given(cell=cells(), T=st.integers(2, 6), seed=seq_seeds, data=st.data())
def test_weights_changed_between_steps(cell, T, seed, data):
    """Learners read ``cell.params`` at every step.

    With the weights changed before some steps, RTRL and BPTT must return
    ``sum_t c_t J_t`` where ``D_t``, ``I_t`` use the weights of step ``t``,
    TBPTT(k) the same with J restarted per window, and the states must follow
    the changing weights.
    """
    rng = np.random.default_rng(seed)
    xs, cs = random_sequence(cell, T, seed)
    base = cell.params.copy()
    schedule = [base.copy()]
    for _ in range(1, T):
        nxt = schedule[-1].copy()
        if data.draw(st.booleans(), label="change weights before this step"):
            nxt += rng.normal(scale=0.3, size=nxt.shape)
        schedule.append(nxt)
    k = data.draw(st.integers(1, T), label="truncation")
    for make, window in ((sr.RTRL, None), (sr.BPTT, None), (lambda c: sr.TBPTT(c, k), k)):
        cell.params[:] = base
        learner = make(cell)
        states = []
        for t in range(T):
            cell.params[:] = schedule[t]
            states.append(learner.forward(xs[t]))
            learner.backward(cs[t])
        g = learner.grad()
        expected_states = []
        s = np.zeros(cell.n_state)
        for t in range(T):
            cell.params[:] = schedule[t]
            s = naive.step(cell, s, xs[t])
            expected_states.append(s)
        assert_close(np.array(states), np.array(expected_states), EXACT, f"{learner!r} states")
        ref = naive_online(cell, xs, cs, params=schedule, window=window)
        assert_close(g, ref, EXACT, f"{learner!r} with changing weights")


# ---------------------------------------------------------------------------
# RTRL's two forms of D J: walking D's stored entries, and one BLAS product
# ---------------------------------------------------------------------------


@settings(max_examples=8)  # every draw pays for compiled variants of the cell; the forms are what is tested
@given(cell=cells(), T=lengths, seed=seq_seeds, batch=st.sampled_from([None, 3]), parallel=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_rtrl_blas_form_matches_reference(cell, T, seed, batch, parallel, dtype):
    cell = cell.astype(dtype)
    B = batch or 1
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(T, B, cell.n_in)).astype(dtype)
    cs = rng.normal(size=(T, B, cell.n_state)).astype(dtype)
    forms = {}
    for blas in (True, False):
        with blas_form(blas):
            learner = sr.RTRL(cell, batch_size=batch, parallel=parallel)
        assert (learner._D_dense.size > 0) == blas
        for x, c in zip(xs, cs):
            learner.forward(x if batch else x[0])
            learner.backward(c if batch else c[0])
        forms[blas] = learner.grad(), learner.influence()
    tol = 2e-4 if dtype == np.float32 else EXACT
    ref = sum(naive.rtrl(cell.astype(np.float64), xs[:, b].astype(np.float64), cs[:, b].astype(np.float64))[0]
              for b in range(B))
    assert_close(forms[True][0], ref, tol, "BLAS form vs naive.rtrl")
    assert_close(forms[True][0], forms[False][0], tol, "BLAS form vs walking D")
    assert_close(forms[True][1], forms[False][1], tol, "influence, BLAS form vs walking D")


def test_rtrl_takes_the_blas_form_on_large_dense_cells_only():
    dense = sr.VanillaRNN(2, exact.DENSE_MIN_STATES, density=1.0, seed=0)
    sparse = sr.VanillaRNN(2, exact.DENSE_MIN_STATES, density=0.05, seed=0)
    small = sr.VanillaRNN(2, exact.DENSE_MIN_STATES - 1, density=1.0, seed=0)
    S = dense.n_state
    assert sr.RTRL(dense)._D_dense.shape == (1, S, S)
    assert sr.RTRL(sparse)._D_dense.size == 0 and sr.RTRL(small)._D_dense.size == 0
    memory = sr.RTRL(dense).memory()
    assert memory["influence"] == 2 * S * dense.n_params * 8 and memory["workspace"] >= S * S * 8
