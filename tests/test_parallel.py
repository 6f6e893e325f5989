"""Batched streams on all cores: identical to the serial path, bit for bit."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparse_rtrl as sr
from conftest import cells
from learner_table import LEARNERS as TABLE

LEARNERS = {name: spec.make for name, spec in TABLE.items()}


def cells_for(name):
    return cells(kinds=TABLE[name].cells)


@pytest.mark.parametrize("name", list(LEARNERS))
@given(data=st.data(), batch=st.integers(2, 5), seed=st.integers(0, 1000),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_parallel_equals_serial(name, data, batch, seed, dtype):
    cell = data.draw(cells_for(name), label="cell")
    cell = cell.astype(dtype)
    rng = np.random.default_rng(seed)
    T = 5
    xs = rng.normal(size=(T, batch, cell.n_in))
    cs = rng.normal(size=(T, batch, cell.n_state))
    results = []
    for parallel in (False, True):
        learner = LEARNERS[name](cell, batch_size=batch, parallel=parallel)
        assert learner.parallel is parallel
        states, grads = [], []
        for t in range(T):
            states.append(learner.forward(xs[t]))
            if t != 1:
                learner.backward(cs[t])
            if t == 2:
                grads.append(learner.grad())
        grads.append(learner.grad())
        results.append((np.array(states), grads))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


@given(cell=cells(), n=st.integers(2, 3), chunks=st.integers(1, 7), seed=st.integers(0, 1000),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_one_stream_split_over_cores_equals_serial(cell, n, chunks, seed, dtype):
    """SnAp-n on one stream with parallel=True cuts its groups into chunks
    updated in parallel: same numbers as the serial update, bit for bit."""
    from unittest import mock

    import sparse_rtrl.learners.snap as learners

    with mock.patch.object(learners, "_split_chunks", lambda: chunks):
        _check_split_equals_serial(cell.astype(dtype), n, seed)


def _check_split_equals_serial(cell, n, seed):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(5, cell.n_in))
    cs = rng.normal(size=(5, cell.n_state))
    results = []
    for parallel in (False, True):
        learner = sr.SnAp(cell, n, parallel=parallel)
        if parallel and not learner.diagonal:
            core = learner._core
            assert core.split and core.scratch.shape[0] == core.chunk_ptr.shape[0] - 1 >= 1
        out = []
        for t in range(5):
            out.append(learner.forward(xs[t]))
            if t != 1:
                learner.backward(cs[t])
            if t == 2:
                out.append(learner.grad())
        out.append(learner.grad())
        out.append(learner.influence().toarray())
        results.append(out)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_equal_chunks_cover_every_item_once():
    from sparse_rtrl.learners.snap import _equal_chunks

    work = np.array([5, 1, 1, 1, 9, 2, 2, 0, 3])
    for k in range(1, 12):
        ptr = _equal_chunks(work, k)
        assert ptr[0] == 0 and ptr[-1] == work.shape[0]
        assert np.all(np.diff(ptr) > 0) and ptr.shape[0] - 1 <= k
    assert _equal_chunks(np.array([7]), 4).tolist() == [0, 1]


def test_parallel_default_depends_on_work():
    small = sr.GRU(2, 4, seed=0)
    big = sr.GRU(8, 256, density=0.1, seed=0)
    assert sr.SnAp(small, 1, batch_size=8).parallel is False
    assert sr.SnAp(big, 1, batch_size=8).parallel is True
    assert sr.SnAp(big, 1).parallel is False  # one stream of SnAp-1: bound by memory, kept on one core
    assert sr.SnAp(big, 2).parallel is True  # one large stream of SnAp-2: its groups are split
    assert sr.SnAp(small, 2).parallel is False
    with pytest.raises(TypeError, match="parallel"):
        sr.SnAp(small, 1, batch_size=2, parallel="yes")


# Left out: UORO, KF-RTRL and R-KF-RTRL draw the numbers of all streams in
# one call, so a batch's streams see other draws than single learners would
# (test_kronecker checks their streams against single learners fed the same
# draws); KeRNL and DNI share one learned model across the streams of a batch.
INDEPENDENT_STREAMS = {k: v for k, v in LEARNERS.items() if not (TABLE[k].stochastic or TABLE[k].learned)}


@pytest.mark.parametrize("name", list(INDEPENDENT_STREAMS))
@given(data=st.data(), batch=st.integers(2, 4), parallel=st.booleans(), seed=st.integers(0, 1000),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_batched_streams_equal_single_streams_exactly(name, data, batch, parallel, seed, dtype):
    """Stream b of a batch is, bit for bit, a single-stream learner driven by
    stream b's data, and the batch's grad() is the sum of the single-stream
    gradients in stream order."""
    cell = data.draw(cells_for(name), label="cell")
    cell = cell.astype(dtype)
    rng = np.random.default_rng(seed)
    T = 4
    xs = rng.normal(size=(T, batch, cell.n_in))
    cs = rng.normal(size=(T, batch, cell.n_state))

    def drive(learner, x, c):
        states = []
        for t in range(T):
            states.append(learner.forward(x[t]))
            learner.backward(c[t])
        return np.array(states), learner.grad()

    states_b, g_b = drive(INDEPENDENT_STREAMS[name](cell, batch_size=batch, parallel=parallel), xs, cs)
    total = np.zeros(cell.n_params, dtype)
    for b in range(batch):
        states_1, g_1 = drive(INDEPENDENT_STREAMS[name](cell), xs[:, b], cs[:, b])
        np.testing.assert_array_equal(states_b[:, b], states_1)
        total = g_1.copy() if b == 0 else total + g_1
    np.testing.assert_array_equal(g_b, total)
