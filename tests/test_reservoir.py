"""Echo-state reservoirs: ``VanillaRNN.reservoir`` and the ESN (reservoir + ReadoutOnly + LinearReadout)."""

import numpy as np
import pytest

import sparse_rtrl as sr
from sparse_rtrl import cells


def radius(cell):
    return np.max(np.abs(np.linalg.eigvals(cell.weights["W"].toarray().astype(np.float64))))


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-6)])
@pytest.mark.parametrize("rho", [0.5, 0.9, 1.3])
def test_the_spectral_radius_is_as_asked(dtype, rtol, rho):
    cell = sr.VanillaRNN.reservoir(3, 40, spectral_radius=rho, density=0.2, seed=1, dtype=dtype)
    assert isinstance(cell, sr.VanillaRNN) and cell.dtype == dtype
    assert radius(cell) == pytest.approx(rho, rel=rtol)


def test_a_large_reservoir_is_rescaled_through_arpack(monkeypatch):
    n = cells._DENSE_EIGVALS_MAX + 100
    cell = sr.VanillaRNN.reservoir(2, n, spectral_radius=0.95, density=0.02, seed=3)
    assert radius(cell) == pytest.approx(0.95, rel=1e-8)
    # the same reservoir as the dense path would give, to rounding
    monkeypatch.setattr(cells, "_DENSE_EIGVALS_MAX", n)
    dense = sr.VanillaRNN.reservoir(2, n, spectral_radius=0.95, density=0.02, seed=3)
    np.testing.assert_allclose(cell.params, dense.params, rtol=1e-8)


def test_input_scaling_leak_density_and_bias():
    cell = sr.VanillaRNN.reservoir(5, 60, spectral_radius=0.9, input_scaling=0.25, leak=0.3, density=0.1, seed=0,
                                   input_density=0.5, bias_scaling=0.1)
    U = cell.weights["U"].data
    assert np.all(np.abs(U) <= 0.25) and np.abs(U).max() > 0.2  # uniform on [-0.25, 0.25]
    assert abs(U.mean()) < 0.05 and U.std() == pytest.approx(0.25 / np.sqrt(3), rel=0.15)
    assert cell.alpha == 0.3 and cell.config()["alpha"] == 0.3
    assert cell.weights["W"].nnz == round(0.1 * 60 * 60)
    assert cell.weights["U"].nnz == round(0.5 * 60 * 5)
    b = cell.weights["b"]
    assert np.all(np.abs(b) <= 0.1) and np.abs(b).max() > 0.05
    assert np.all(sr.VanillaRNN.reservoir(5, 60, seed=0).weights["b"] == 0.0)  # no bias by default
    # The leak is the cell's: h' = (1 - leak) h + leak tanh(W h + U x + b)
    rng = np.random.default_rng(0)
    h, x = rng.normal(size=60), rng.normal(size=5)
    want = 0.7 * h + 0.3 * np.tanh(cell.weights["W"].toarray() @ h + cell.weights["U"].toarray() @ x + b)
    np.testing.assert_allclose(cell.step(h, x), want, rtol=1e-12)
    zero = sr.VanillaRNN.reservoir(5, 10, input_scaling=0.0, density=0.5)
    assert np.all(zero.weights["U"].data == 0.0)


def test_the_same_seed_gives_the_same_reservoir():
    a = sr.VanillaRNN.reservoir(3, 30, density=0.2, seed=7)
    b = sr.VanillaRNN.reservoir(3, 30, density=0.2, seed=7)
    c = sr.VanillaRNN.reservoir(3, 30, density=0.2, seed=8)
    np.testing.assert_array_equal(a.params, b.params)
    assert a.patterns["W"] == b.patterns["W"]
    assert not np.array_equal(a.params, c.params)
    g1 = sr.VanillaRNN.reservoir(3, 30, density=0.2, seed=np.random.default_rng(4))
    g2 = sr.VanillaRNN.reservoir(3, 30, density=0.2, seed=np.random.default_rng(4))
    np.testing.assert_array_equal(g1.params, g2.params)
    # It is a plain cell: its state restores the rescaled weights into a cell its config rebuilds.
    fresh = sr.VanillaRNN(**dict(a.config(), dtype=np.dtype(a.config()["dtype"])))
    fresh.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(fresh.params, a.params)
    assert radius(fresh) == pytest.approx(0.9, rel=1e-10)


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"spectral_radius": -0.1}, ValueError, "spectral_radius"),
    ({"spectral_radius": np.nan}, ValueError, "spectral_radius"),
    ({"spectral_radius": "big"}, TypeError, "spectral_radius"),
    ({"input_scaling": -1.0}, ValueError, "input_scaling"),
    ({"leak": 0.0}, ValueError, "leak"),
    ({"leak": 1.5}, ValueError, "leak"),
    ({"density": 0.0}, ValueError, "density"),
    ({"density": 2.0}, ValueError, "density"),
    ({"bias_scaling": -0.5}, ValueError, "bias_scaling"),
    ({"seed": -1}, ValueError, "seed"),
    ({"dtype": np.int32}, TypeError, "dtype"),
    ({"input_density": 0.0}, ValueError, "input_density"),
    ({"n_hidden": 0}, ValueError, "n_hidden"),
    ({"n_in": 2.5}, TypeError, "n_in"),
])
def test_bad_arguments_are_refused_by_name(kwargs, exc, name):
    args = dict(n_in=2, n_hidden=8, density=0.5)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        sr.VanillaRNN.reservoir(**args)


def test_a_nilpotent_pattern_is_refused():
    # One stored entry in a 4 x 4 matrix, off the diagonal: W^2 = 0, nothing to rescale.
    for seed in range(50):
        try:
            cell = sr.VanillaRNN.reservoir(1, 4, density=1 / 16, seed=seed)
        except ValueError as err:
            assert "spectral radius 0" in str(err) and "density" in str(err)
            return
        assert radius(cell) == pytest.approx(0.9)  # the one entry is on the diagonal
    pytest.fail("no seed drew an off-diagonal entry")


def test_an_echo_state_network_learns_the_add_task():
    cell = sr.VanillaRNN.reservoir(2, 100, spectral_radius=0.9, input_scaling=0.5, density=0.2, seed=0)
    reservoir = cell.params.copy()
    task = sr.tasks.Add(length=1000, seed=0, dtype=np.float64)
    learner = sr.ReadoutOnly(cell)
    readout = sr.LinearReadout(cell, 1, loss="mse", seed=0)
    optimizer = sr.Adam([cell.params, readout.params], lr=0.003)
    scores = []
    for _ in range(5):
        seg = task.segment()
        if seg.reset:
            learner.reset()
        scores.append(task.score(seg, sr.train_online(learner, readout, optimizer, seg.inputs, seg.targets)))
    np.testing.assert_array_equal(cell.params, reservoir)  # the reservoir is never trained
    # Remembering neither lag gives about 0.078 (mse per output), the first lag only 0.016.
    assert np.mean(scores[-2:]) < 0.016 and scores[-1] < 0.5 * scores[0], scores
