"""Memory accounting: ``learner.memory()`` against sizes computed from the cell.

The reference sizes below follow from each learner's documented state (its
influence or factors, its stored window) and the cell's dimensions alone.
"""

import numpy as np
import pytest

import sparse_rtrl as sr
from conftest import make_cell


CASES = [("vanilla", 0.3), ("gru", 0.2), ("lstm", 0.25)]


@pytest.mark.parametrize("kind,density", CASES)
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_influence_and_history_bytes(kind, density, batch, dtype):
    cell = make_cell(kind, 3, 9, density, seed=1, dtype=dtype)
    B = batch or 1
    it = np.dtype(dtype).itemsize
    S, P = cell.n_state, cell.n_params
    st = cell.structure

    rtrl = sr.RTRL(cell, batch_size=batch).memory()
    assert rtrl["influence"] == 2 * B * S * P * it  # J and the buffer it is updated into
    assert rtrl["history"] == 0

    for n in (1, 2, 3):
        snap = sr.SnAp(cell, n, batch_size=batch)
        mem = snap.memory()
        assert mem["influence"] == B * snap.mask_size * it
        assert mem["influence"] == B * snap.mask().nnz * it
        assert mem["plan"] > 0 and mem["history"] == 0

    assert sr.UORO(cell, seed=0, batch_size=batch).memory()["influence"] == B * (S + P) * it

    T = 5
    per_step = B * (S * st.n_gates + st.n_hidden * st.n_local ** 2 + st.n_presyn + S) * it
    tb = sr.TBPTT(cell, T, batch_size=batch).memory()
    assert tb["history"] == T * per_step + (T + 1) * st.n_rec_params * it + T * 8
    assert tb["influence"] == 0


def test_bptt_history_grows_with_the_sequence():
    cell = make_cell("gru", 2, 6, 0.5, seed=0)
    learner = sr.BPTT(cell)
    before = learner.memory()["history"]
    rng = np.random.default_rng(0)
    for _ in range(40):
        learner.forward(rng.normal(size=2))
    st = cell.structure
    # Capacity starts at 16 steps and doubles: 40 steps need 64.
    assert before == 16 * ((cell.n_state * st.n_gates + st.n_hidden * st.n_local ** 2 + st.n_presyn + cell.n_state) * 8
                           + st.n_rec_params * 8 + 8) + st.n_rec_params * 8
    per_step = (cell.n_state * st.n_gates + st.n_hidden * st.n_local ** 2 + st.n_presyn + cell.n_state) * 8
    assert learner.memory()["history"] == 64 * per_step + 65 * st.n_rec_params * 8 + 64 * 8


def test_cell_arrays_and_views_are_not_counted():
    cell = make_cell("gru", 3, 8, 0.3, seed=2, dtype=np.float32)
    learner = sr.SnAp(cell, 2)
    total = learner.nbytes
    assert total == sum(learner.memory().values())
    # Two learners on one cell: each counts only its own buffers.
    other = sr.SnAp(cell, 2)
    assert other.nbytes == total
    # The cell's parameters, its structure, and views of them (the uint32 view
    # of the presynaptic indices kept for the kernels) are the cell's memory.
    cell_bytes = cell.params.nbytes + sum(v.nbytes for v in vars(cell.structure).values()
                                          if isinstance(v, np.ndarray))
    core = learner._core
    own = (core.J.nbytes + learner._acc.nbytes + learner._state.nbytes + learner._next.nbytes
           + learner._coef.nbytes + learner._dloc.nbytes + learner._presyn.nbytes + core.dynamics.values.nbytes
           + core.scratch.nbytes + learner._no_credit.nbytes)
    plans = (sum(a.nbytes for a in learner._layout.plan) + learner._layout.block_params.nbytes
             + sum(a.nbytes for a in core.dynamics.plan) + core.chunk_ptr.nbytes + core.diag_entry.nbytes)
    assert own <= total < own + cell_bytes + plans + 1


def test_memory_scales_with_the_mask_not_with_s_times_p():
    cell = sr.GRU(4, 200, density=0.02, seed=0, dtype=np.float32)
    snap = sr.SnAp(cell, 2)
    dense = cell.n_state * cell.n_params * 4
    assert snap.memory()["influence"] < dense / 20
    assert snap.nbytes < dense / 5
