"""SnAp-n: the structural mask, the masked recursion, and its exact cases.

The reference is ``naive.snap_mask`` (reach sets over ``naive.dynamics_structure``)
and ``naive.masked_rtrl``. ``test_structure_matches_generic_values`` checks that
structure itself against the nonzero pattern of ``naive.dynamics_jacobian`` at
random weights and points: an edge the cell does not have (such as a
``D[c_i, h_i]`` of an LSTM whose gate matrices store no ``(i, i)`` entry, which
an earlier ``naive.py`` marked) would give SnAp-n entries it must drop.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import naive
import sparse_rtrl as sr
from conftest import CELL_KINDS, cells, make_cell, random_sequence, run_learner

EXACT = 1e-9
n_values = st.integers(1, 3)
lengths = st.integers(1, 6)
seq_seeds = st.integers(0, 2**16)


def assert_close(actual, expected, rtol, what=""):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def naive_masked_influence(cell, xs, mask):
    """``J_T`` of the masked recursion ``J_t = mask * (D_t J_{t-1} + I_t)``."""
    s = np.zeros(cell.n_state)
    J = np.zeros((cell.n_state, cell.n_params))
    for x in xs:
        J = np.where(mask, naive.dynamics_jacobian(cell, s, x) @ J + naive.immediate_jacobian(cell, s, x), 0.0)
        s = naive.step(cell, s, x)
    return J


@given(cell=cells(), seed=seq_seeds)
def test_structure_matches_generic_values(cell, seed):
    """The structural D is exactly the nonzeros of D at generic values (plus the diagonal)."""
    rng = np.random.default_rng(seed)
    probe = cell.copy()
    seen = np.eye(cell.n_state, dtype=bool)
    for _ in range(3):
        probe.params[:] = rng.normal(size=probe.n_params)
        s = rng.normal(scale=0.8, size=cell.n_state)
        x = rng.normal(size=cell.n_in)
        seen |= naive.dynamics_jacobian(probe, s, x) != 0.0
    np.testing.assert_array_equal(naive.dynamics_structure(cell), seen)
    # The library's D pattern is this structure too.
    np.testing.assert_array_equal(cell.structure.dynamics.to_dense(), seen)


# ---------------------------------------------------------------------------
# Mask
# ---------------------------------------------------------------------------


@given(cell=cells(), n=n_values)
def test_mask_is_the_structural_reach(cell, n):
    learner = sr.SnAp(cell, n)
    mask = learner.mask()
    assert mask.shape == (cell.n_state, cell.n_params)
    dense = mask.to_dense()
    expected = naive.snap_mask(cell, n)
    np.testing.assert_array_equal(dense, expected)
    assert learner.mask_size == mask.nnz == int(expected.sum())
    # Monotone in n, and R_1 is the immediate structure.
    nxt = sr.SnAp(cell, n + 1).mask().to_dense()
    assert not np.any(dense & ~nxt)
    assert not np.any(naive.immediate_structure(cell) & ~dense)
    # saturated <=> the mask stops growing.
    assert learner.saturated == bool(np.array_equal(dense, nxt))


def test_lstm_without_self_connections_never_links_h_i_to_c_i():
    """Chain pattern, no W_h*[i, i]: an output-gate parameter of unit i reaches c_i never.

    (It touches h_i; c_i depends on h only through the gate matrices.)
    """
    W = sp.csr_matrix(np.eye(3, k=-1))
    cell = sr.LSTM(1, 3, pattern=W, seed=0)
    mask = sr.SnAp(cell, 6).mask().to_dense()
    np.testing.assert_array_equal(mask, naive.snap_mask(cell, 6))
    out_gate = np.arange(cell.n_params)[cell.weight_slice("b_o")]
    for i, p in enumerate(out_gate):
        assert mask[i, p] and not mask[3 + i, p]


# ---------------------------------------------------------------------------
# Gradient and influence
# ---------------------------------------------------------------------------


@given(cell=cells(), n=n_values, T=lengths, seed=seq_seeds)
def test_snap_grad_matches_masked_recursion(cell, n, T, seed):
    xs, cs = random_sequence(cell, T, seed)
    learner = sr.SnAp(cell, n)
    g = run_learner(learner, xs, cs)
    assert g.shape == (cell.n_params,) and g.dtype == np.float64
    mask = naive.snap_mask(cell, n)
    assert_close(g, naive.masked_rtrl(cell, xs, cs, mask), EXACT, f"SnAp-{n} vs naive.masked_rtrl")
    if T == 1 or learner.saturated:
        # One step: J_1 = I_1 lies inside R_1, so every n is exact.
        assert learner.exact_for(T)
        assert_close(g, naive.rtrl(cell, xs, cs)[0], EXACT, f"SnAp-{n} exact case vs naive.rtrl")


@given(cell=cells(), n=n_values, T=lengths, seed=seq_seeds, data=st.data())
def test_influence_matches_masked_recursion(cell, n, T, seed, data):
    """``influence()`` is J_T, on the mask; peeking at it never changes the gradient."""
    xs, cs = random_sequence(cell, T, seed)
    peek = data.draw(st.lists(st.booleans(), min_size=T, max_size=T), label="influence() before backward")
    learner = sr.SnAp(cell, n)
    for t in range(T):
        learner.forward(xs[t])
        if peek[t]:
            J_mid = learner.influence()
            assert_close(J_mid.toarray(), naive_masked_influence(cell, xs[: t + 1], naive.snap_mask(cell, n)),
                         EXACT, f"influence() at step {t}")
        learner.backward(cs[t])
    J = learner.influence()
    assert sp.issparse(J) and J.shape == (cell.n_state, cell.n_params)
    mask = naive.snap_mask(cell, n)
    assert not np.any((J.toarray() != 0) & ~mask)
    assert_close(J.toarray(), naive_masked_influence(cell, xs, mask), EXACT, "influence() at the end")
    assert_close(learner.grad(), naive.masked_rtrl(cell, xs, cs, mask), EXACT, "grad after influence()")
    # RTRL's dense influence is the unmasked J_T.
    rtrl = sr.RTRL(cell)
    run_learner(rtrl, xs, cs)
    assert_close(rtrl.influence(), naive_masked_influence(cell, xs, np.ones_like(mask)), EXACT, "RTRL influence")


@given(cell=cells(), n=n_values, seed=seq_seeds, data=st.data())
def test_batched_influence_per_stream(cell, n, seed, data):
    T = data.draw(st.integers(1, 4), label="T")
    B = data.draw(st.integers(1, 3), label="batch size")
    rng = np.random.default_rng(seed)
    xb = rng.normal(size=(T, B, cell.n_in))
    cb = rng.normal(size=(T, B, cell.n_state))
    learner = sr.SnAp(cell, n, batch_size=B)
    for x, c in zip(xb, cb):
        learner.forward(x)
        learner.backward(c)
    mask = naive.snap_mask(cell, n)
    for b in range(B):
        assert_close(learner.influence(stream=b).toarray(), naive_masked_influence(cell, xb[:, b], mask),
                     EXACT, f"influence of stream {b}")
    expected = sum(naive.masked_rtrl(cell, xb[:, b], cb[:, b], mask) for b in range(B))
    assert_close(learner.grad(), expected, EXACT, "batched SnAp grad")


# ---------------------------------------------------------------------------
# Exact cases
# ---------------------------------------------------------------------------


@given(cell=cells(), T=lengths, seed=seq_seeds)
def test_snap_with_large_n_is_rtrl(cell, T, seed):
    xs, cs = random_sequence(cell, T, seed)
    ref = naive.rtrl(cell, xs, cs)[0]
    learner = sr.SnAp(cell, cell.n_state + 1)
    assert learner.saturated and learner.exact and learner.exact_for(T)
    np.testing.assert_array_equal(learner.mask().to_dense(), naive.snap_mask(cell, cell.n_state + 1))
    assert_close(run_learner(learner, xs, cs), ref, EXACT, "SnAp-(S+1) vs naive.rtrl")
    # And the smallest saturated n gives the same.
    for n in range(1, cell.n_state + 2):
        small = sr.SnAp(cell, n)
        if small.saturated:
            assert_close(run_learner(small, xs, cs), ref, EXACT, f"saturated SnAp-{n} vs naive.rtrl")
            break
    else:
        raise AssertionError("no n <= S + 1 saturates")


@given(cell=cells(), n=st.integers(1, 4), seed=seq_seeds, data=st.data())
def test_snap_is_exact_for_sequences_no_longer_than_n(cell, n, seed, data):
    """``J_t`` is supported on ``R_t``, so for ``T <= n`` the mask never bites."""
    T = data.draw(st.integers(1, n), label="T")
    xs, cs = random_sequence(cell, T, seed)
    learner = sr.SnAp(cell, n)
    assert_close(run_learner(learner, xs, cs), naive.rtrl(cell, xs, cs)[0], EXACT, f"SnAp-{n}, T={T}")
    # exact_for may be conservative, but never claims exactness it lacks.
    for T_long in range(1, 8):
        if learner.exact_for(T_long):
            xs, cs = random_sequence(cell, T_long, seed + 1)
            assert_close(run_learner(sr.SnAp(cell, n), xs, cs), naive.rtrl(cell, xs, cs)[0], EXACT,
                         f"SnAp-{n}.exact_for({T_long})")


@given(kind=st.sampled_from(["vanilla", "gru"]), n_hidden=st.integers(1, 6), n_in=st.integers(1, 3),
       T=lengths, seed=seq_seeds, use_pattern_class=st.booleans())
def test_snap1_on_diagonal_recurrence_is_rtrl(kind, n_hidden, n_in, T, seed, use_pattern_class):
    diag = sr.Pattern.diagonal(n_hidden) if use_pattern_class else sp.identity(n_hidden, format="csr")
    cell = make_cell(kind, n_in, n_hidden, None, seed, pattern=diag)
    np.testing.assert_array_equal(cell.structure.dynamics.to_dense(), np.eye(n_hidden, dtype=bool))
    xs, cs = random_sequence(cell, T, seed)
    learner = sr.SnAp(cell, 1)
    assert learner.saturated
    assert learner.mask_size == cell.n_params  # one entry per parameter
    assert_close(run_learner(learner, xs, cs), naive.rtrl(cell, xs, cs)[0], EXACT, "SnAp-1, diagonal D")


@given(n_hidden=st.integers(1, 5), n_in=st.integers(1, 3), T=st.integers(2, 6), seed=seq_seeds)
def test_lstm_diagonal_recurrence_needs_snap2(n_hidden, n_in, T, seed):
    """LSTM with diagonal W_h*: the output gate reaches c_i in a second hop.

    SnAp-1 is not saturated; SnAp-2 is, and equals RTRL.
    """
    cell = sr.LSTM(n_in, n_hidden, pattern=sr.Pattern.diagonal(n_hidden), seed=seed)
    xs, cs = random_sequence(cell, T, seed)
    assert not sr.SnAp(cell, 1).saturated
    snap2 = sr.SnAp(cell, 2)
    assert snap2.saturated
    assert_close(run_learner(snap2, xs, cs), naive.rtrl(cell, xs, cs)[0], EXACT, "SnAp-2, diagonal LSTM")


def chain_pattern(n):
    """Directed path 0 -> 1 -> ... -> n-1: unit i+1 reads unit i (W[i+1, i] stored)."""
    return sp.csr_matrix(np.eye(n, k=-1))


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_chain_graph_is_exact_exactly_from_diameter_plus_one(kind):
    """Path 0->1->2->3 has diameter 3; SnAp-n is exact iff n >= 4.

    A parameter of unit 0 influences unit 3 after three hops, i.e. at the
    fourth step; ``R_n`` includes unit 3 only from n = 4 (``R_1`` is zero hops).
    """
    cell = make_cell(kind, 2, 4, None, seed=7, pattern=chain_pattern(4))
    T = 6
    xs, cs = random_sequence(cell, T, seed=11)
    ref = naive.rtrl(cell, xs, cs)[0]
    scale = np.max(np.abs(ref))
    for n in range(1, 7):
        learner = sr.SnAp(cell, n)
        g = run_learner(learner, xs, cs)
        assert learner.saturated == (n >= 4), n
        assert learner.exact_for(T) == (n >= 4), n
        assert_close(g, naive.masked_rtrl(cell, xs, cs, naive.snap_mask(cell, n)), EXACT, f"SnAp-{n}")
        if n >= 4:
            assert_close(g, ref, EXACT, f"SnAp-{n} on the chain vs RTRL")
        else:
            assert np.max(np.abs(g - ref)) > 1e-6 * scale, f"SnAp-{n} should not be exact on the chain"


# ---------------------------------------------------------------------------
# The mask is structural
# ---------------------------------------------------------------------------


@given(cell=cells(), n=n_values, T=lengths, seed=seq_seeds, data=st.data())
def test_zero_values_do_not_change_the_mask(cell, n, T, seed, data):
    """Weights set to exactly 0.0 and zero inputs: same mask, still the masked recursion."""
    before = sr.SnAp(cell, n).mask()
    zeroed = cell.copy()
    which = data.draw(st.lists(st.booleans(), min_size=cell.n_params, max_size=cell.n_params),
                      label="zero these parameters")
    zeroed.params[np.array(which, dtype=bool)] = 0.0
    learner = sr.SnAp(zeroed, n)
    assert learner.mask() == before
    assert learner.mask_size == before.nnz
    xs, cs = random_sequence(zeroed, T, seed)
    xs[: data.draw(st.integers(0, T), label="leading zero inputs")] = 0.0
    mask = naive.snap_mask(zeroed, n)
    assert_close(run_learner(learner, xs, cs), naive.masked_rtrl(zeroed, xs, cs, mask), EXACT,
                 "SnAp with zeros vs naive.masked_rtrl")
    # Zeroing weights of a live learner's cell never changes its plan either.
    live = sr.SnAp(cell, n)
    cell.params[:] = 0.0
    assert live.mask() == before


def test_explicit_zero_entries_are_structural():
    """A stored 0.0 in a user matrix still links its units (from_weights)."""
    n = 3
    W = sp.csr_matrix((np.array([0.0, 0.0]), np.array([0, 1]), np.array([0, 0, 1, 2])), shape=(n, n))
    assert W.nnz == 2  # W[1, 0] and W[2, 1] stored as explicit zeros: a chain
    cell = sr.VanillaRNN.from_weights({"W": W, "U": np.ones((n, 1)), "b": np.zeros(n)})
    chain = np.eye(n, dtype=bool) | np.eye(n, k=-1, dtype=bool)
    np.testing.assert_array_equal(cell.structure.dynamics.to_dense(), chain)
    learner = sr.SnAp(cell, 2)
    assert not learner.saturated
    assert sr.SnAp(cell, 3).saturated
    np.testing.assert_array_equal(learner.mask().to_dense(), naive.snap_mask(cell, 2))
