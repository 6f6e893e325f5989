"""RFLO, KeRNL and e-prop against float64 references written from their equations.

References (``naive_local.py``): RFLO is RTRL with ``D`` replaced by
``(1 - alpha) I``; e-prop is ``e_t = mask1 * (D_local_t e_{t-1} + I_t)`` with
``D_local`` the part of ``D`` that bypasses the weights; KeRNL is its
step-by-step update (perturbed copy, ``Omega``, ``Gamma``, ``A``, ``gamma``),
fed the same noise draws as the learner.

What KeRNL's online fit must learn (``test_kernl_*_linear_network``): in a
linear network with constant weights a perturbation propagates exactly
linearly, ``h~_t - h_t = sum_{u <= t} D^(t-u) zeta_u``, and the model predicts
``A Omega_t = sum_u A diag(k^(t-u)) zeta_u``. With independent noise the
expected squared error per unit noise variance is

    L(A, gamma) = sum_{tau >= 0} |A diag(k^tau) - D^tau|_F^2,  k = 1 - gamma,

and the updates of ``A`` and ``gamma`` are stochastic gradient steps on
``L / 2``. So (1) where ``D`` is diagonal, ``A = I``, ``gamma = 1 - D_ii`` is the
exact zero of ``L`` and KeRNL must find it (and then equal RTRL); (2) for any
stable ``D`` it must move towards the minimiser of ``L``.
"""

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import naive
import naive_local
import sparse_rtrl as sr
from conftest import DTYPES, cells, make_cell
from sparse_rtrl.learners.local import RFLO, EProp, KeRNL

seeds = st.integers(0, 2**16)
dtypes = st.sampled_from(DTYPES)
batches = st.sampled_from([None, 1, 3])


def tolerances(dtype):
    """(reference tolerance, same-arithmetic-different-order tolerance)."""
    return (1e-4, 1e-5) if dtype == np.float32 else (1e-9, 1e-12)


def assert_close(actual, expected, rtol, what=""):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=rtol * scale,
                               err_msg=what)


def batch_data(cell, T, batch, seed):
    """Inputs (T, B, n_in) and credits (T, B, S) in the cell's dtype."""
    rng = np.random.default_rng(seed)
    B = batch or 1
    xs = rng.normal(size=(T, B, cell.n_in)).astype(cell.dtype)
    cs = rng.normal(size=(T, B, cell.n_state)).astype(cell.dtype)
    return xs, cs


def feed(batch, arr):
    """Step data for a learner: the (B, ...) array, or its only stream when unbatched."""
    return arr if batch is not None else arr[0]


def drive(learner, xs, cs, skip=(), extra=None, grad_at=()):
    """Run a sequence (T, B, ...); ``skip``: steps without backward; ``extra[t]``: a
    second credit; ``grad_at``: steps after whose forward a grad() is taken.
    Returns the states and the sum of the grad() pieces."""
    batch = learner.batch_size
    states, total = [], None
    for t in range(xs.shape[0]):
        states.append(learner.forward(feed(batch, xs[t])))
        if t in grad_at:
            total = learner.grad() if total is None else total + learner.grad()
        if t not in skip:
            learner.backward(feed(batch, cs[t]))
        if extra is not None and t in extra:
            learner.backward(feed(batch, extra[t]))
    g = learner.grad()
    return np.array(states), (g if total is None else total + g)


def without_self_connections(cell):
    """The same kind of cell with every stored ``W_ii`` of the recurrent matrices removed."""
    eye = np.eye(cell.n_hidden, dtype=bool)
    patterns = {}
    for name, pat in cell.patterns.items():
        recurrent = name == "W" or name.startswith("W_h")
        patterns[name] = sr.Pattern.from_mask(pat.to_dense() & ~eye) if recurrent else pat
    kwargs = ({"alpha": cell.alpha, "activation": cell.activation} if cell.key == "vanilla"
              else {"shared_pattern": cell.shared_pattern})
    return type(cell)(cell.n_in, cell.n_hidden, pattern=patterns, seed=1, dtype=cell.dtype, **kwargs)


# -- RFLO ---------------------------------------------------------------------------


@given(cell=cells(kinds=("vanilla",)), dtype=dtypes, batch=batches, T=st.integers(1, 6), seed=seeds)
def test_rflo_is_rtrl_with_the_leak_as_dynamics(cell, dtype, batch, T, seed):
    cell = cell.astype(dtype)
    ref_tol, _ = tolerances(dtype)
    xs, cs = batch_data(cell, T, batch, seed)
    learner = RFLO(cell, batch_size=batch)
    _, g = drive(learner, xs, cs)
    traces = learner.traces().reshape(-1, cell.n_params)
    unit = cell.structure.param_unit
    expected = np.zeros(cell.n_params)
    for b in range(xs.shape[1]):
        g_b, J = naive_local.rflo(cell, xs[:, b], cs[:, b])
        expected += g_b
        # The reference's J stays on each parameter's own unit: one number per parameter.
        off_unit = J.copy()
        off_unit[unit, np.arange(cell.n_params)] = 0.0
        assert np.all(off_unit == 0.0)
        assert_close(traces[b], J[unit, np.arange(cell.n_params)], ref_tol, f"trace of stream {b}")
    assert g.shape == (cell.n_params,) and g.dtype == dtype
    assert_close(g, expected, ref_tol, "RFLO grad vs reference")


def test_rflo_differs_from_rtrl_when_weights_matter():
    # The reference above is not RTRL in disguise: with recurrent weights the two differ.
    cell = sr.VanillaRNN(2, 4, density=1.0, alpha=0.6, seed=3)
    xs, cs = batch_data(cell, 5, None, seed=0)
    g = drive(RFLO(cell), xs, cs)[1]
    exact = naive.rtrl(cell, xs[:, 0], cs[:, 0])[0]
    assert np.max(np.abs(g - exact)) > 1e-3


# -- KeRNL ---------------------------------------------------------------------------


@given(cell=cells(kinds=("vanilla",)), dtype=dtypes, batch=batches, sigma=st.floats(1e-6, 2.0),
       parallel=st.booleans(), explicit=st.booleans(), seed=seeds)
def test_kernl_without_learning_is_rflo_bit_for_bit(cell, dtype, batch, sigma, parallel, explicit, seed):
    cell = cell.astype(dtype)
    xs, cs = batch_data(cell, 6, batch, seed)
    extra = {t: cs[t][::-1].copy() for t in (2, 5)}
    decay = cell.alpha if explicit else None
    runs = []
    for learner in (RFLO(cell, batch_size=batch, parallel=parallel),
                    KeRNL(cell, lr=0.0, sigma=sigma, seed=seed, decay=decay, batch_size=batch, parallel=parallel)):
        states, g = drive(learner, xs, cs, skip=(1,), extra=extra, grad_at=(3,))
        runs.append((states, g, learner.traces()))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def kernl_case(dtype, activation):
    cell = sr.VanillaRNN(2, 4, density=0.6, alpha=0.7, seed=5, dtype=dtype, activation=activation)
    decay = np.array([0.2, 0.5, 0.97, 0.03])
    return cell, decay


@pytest.mark.parametrize("activation", ["tanh", "linear"])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_kernl_matches_its_step_by_step_reference(dtype, batch, activation):
    """Learning on, weights changing between steps, one step without credit.

    ``sigma = 0.1``: large enough that float32 keeps the digits of ``h~ - h``
    (the check is algebraic, so the perturbation need not be small)."""
    cell, decay = kernl_case(dtype, activation)
    ref_tol, _ = tolerances(dtype)
    T, lr, sigma, seed = 8, 0.1, 0.1, 17
    xs, cs = batch_data(cell, T, batch, seed=3)
    B = batch or 1
    rng = np.random.default_rng(4)
    params = [cell.params.copy()]
    for t in range(1, T):
        params.append(params[-1] + (0.2 * rng.normal(size=cell.n_params) if t % 3 == 0 else 0.0))
    params = np.array(params).astype(dtype)
    normals = np.random.default_rng(seed).standard_normal(size=(T, B, cell.n_hidden))
    base = cell.params.copy()
    ref = naive_local.kernl(cell, xs, cs, normals, lr, sigma, decay, params=params, skip=(2,))
    cell.params[:] = base

    learner = KeRNL(cell, lr=lr, sigma=sigma, seed=seed, decay=decay, batch_size=batch, parallel=False)
    twin = KeRNL(cell, lr=lr, sigma=sigma, seed=seed, decay=decay, batch_size=batch, parallel=True)
    for t in range(T):
        cell.params[:] = params[t]
        s = learner.forward(feed(batch, xs[t]))
        np.testing.assert_array_equal(twin.forward(feed(batch, xs[t])), s)
        if t != 2:
            learner.backward(feed(batch, cs[t]))
            twin.backward(feed(batch, cs[t]))
        assert_close(s, feed(batch, ref["states"][t]), ref_tol, f"state, step {t}")
        assert_close(learner.A, ref["A"][t], ref_tol, f"A, step {t}")
        assert_close(learner.gamma, ref["gamma"][t], ref_tol, f"gamma, step {t}")
        assert_close(learner.noise_loss, ref["noise_loss"][t], ref_tol, f"noise loss, step {t}")
        g = learner.grad()
        assert_close(g, ref["grads"][t], ref_tol, f"grad, step {t}")
        # All cores: the same numbers, bit for bit.
        np.testing.assert_array_equal(twin.grad(), g)
        np.testing.assert_array_equal(twin.A, learner.A)
        np.testing.assert_array_equal(twin.gamma, learner.gamma)
    cell.params[:] = base
    # The fit did something: A left the identity and gamma moved, into its clip at 1
    # (and at 0 too with three streams).
    assert np.max(np.abs(ref["A"][-1] - np.eye(4))) > 0.1
    assert np.max(np.abs(ref["gamma"][-1] - decay)) > 0.1
    assert ref["gamma"].max() == 1.0 and (batch is None or ref["gamma"].min() == 0.0)


def test_kernl_reset_restarts_the_copy_and_keeps_a_and_gamma():
    cell, decay = kernl_case(np.float64, "tanh")
    T, lr, sigma, seed, B = 6, 0.05, 0.1, 9, 2
    xs, cs = batch_data(cell, 2 * T, B, seed=1)
    learner = KeRNL(cell, lr=lr, sigma=sigma, seed=seed, decay=decay, batch_size=B)
    drive(learner, xs[:T], cs[:T])
    A, gamma = learner.A, learner.gamma
    learner.reset()
    np.testing.assert_array_equal(learner.A, A)
    np.testing.assert_array_equal(learner.gamma, gamma)
    assert learner.noise_loss == 0.0 and learner.n_steps == 0
    assert np.all(learner.state == 0.0) and np.all(learner.traces() == 0.0)
    _, g = drive(learner, xs[T:], cs[T:])
    # The generator continues where it was: the second sequence uses draws T..2T-1.
    normals = np.random.default_rng(seed).standard_normal(size=(2 * T, B, cell.n_hidden))[T:]
    ref = naive_local.kernl(cell, xs[T:], cs[T:], normals, lr, sigma, gamma, A=A)
    assert_close(g, ref["grads"].sum(axis=0), 1e-9, "grad after reset")
    assert_close(learner.A, ref["A"][-1], 1e-9, "A after reset")
    assert_close(learner.gamma, ref["gamma"][-1], 1e-9, "gamma after reset")


def diagonal_linear_network():
    """h' = 0.5 h + 0.5 (diag(w) h + U x + b): D = diag(0.5 + 0.5 w) exactly, at every step."""
    n = 3
    cell = sr.VanillaRNN(1, n, alpha=0.5, pattern=sp.eye(n, format="csr"), activation="linear", seed=0)
    w = np.array([0.6, -0.4, 0.2])
    cell.weights["W"].data[:] = w
    return cell, 1.0 - (0.5 + 0.5 * w)


def test_kernl_learns_the_decays_of_a_diagonal_linear_network():
    """``A = I``, ``gamma = 1 - D_ii`` predicts every perturbation exactly (L = 0).
    Starting from ``gamma = alpha = 0.5`` (wrong for every unit) KeRNL must reach
    it, and then its gradient is RTRL's."""
    cell, true_gamma = diagonal_linear_network()
    B, T = 8, 2000
    learner = KeRNL(cell, lr=0.01, sigma=1e-3, seed=1, batch_size=B)
    xs = np.random.default_rng(0).normal(size=(T, B, 1))
    for t in range(T):
        learner.forward(xs[t])
    np.testing.assert_allclose(learner.gamma, true_gamma, atol=1e-6)
    np.testing.assert_allclose(learner.A, np.eye(3), atol=1e-6)
    assert learner.noise_loss < 1e-12

    frozen = KeRNL(cell, lr=0.0, decay=learner.gamma)
    ys, cs = batch_data(cell, 7, None, seed=2)
    g = drive(frozen, ys, cs)[1]
    assert_close(g, naive.rtrl(cell, ys[:, 0], cs[:, 0])[0], 1e-6, "learned KeRNL vs RTRL")


def test_kernl_target_must_include_this_steps_noise():
    """The decision documented in KeRNL's Notes. Comparing ``A Omega`` with the
    copy before this step's noise (Marschall et al.'s code) leaves the exact
    answer of the diagonal network above: its ``gamma`` and ``A`` drift away."""
    cell, true_gamma = diagonal_linear_network()
    T, B = 1500, 4
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(T, B, 1))
    normals = rng.normal(size=(T, B, 3))
    cs = np.zeros((T, B, 3))
    ours = naive_local.kernl(cell, xs, cs, normals, 0.01, 1e-3, np.full(3, 0.5))
    theirs = naive_local.kernl(cell, xs, cs, normals, 0.01, 1e-3, np.full(3, 0.5), noise_in_target=False)
    np.testing.assert_allclose(ours["gamma"][-1], true_gamma, atol=1e-6)
    assert np.min(np.abs(theirs["gamma"][-1] - true_gamma)) > 0.05
    assert np.max(np.abs(theirs["A"][-1] - np.eye(3))) > 0.1


def test_kernl_moves_towards_the_best_fit_on_a_linear_network():
    """A non-diagonal ``D``: no ``(A, gamma)`` is exact; the online fit must approach
    the minimiser of ``L(A, gamma)`` (module docstring), found here by L-BFGS."""
    n = 3
    cell = sr.VanillaRNN(1, n, alpha=0.5, activation="linear", seed=3)
    W = np.array([[0.5, 0.4, 0.0], [-0.3, 0.2, 0.3], [0.2, 0.0, -0.4]])
    cell.weights["W"].data[:] = W.ravel()
    D = 0.5 * np.eye(n) + 0.5 * W
    assert np.max(np.abs(np.linalg.eigvals(D))) < 0.7
    powers = [np.linalg.matrix_power(D, t) for t in range(200)]  # 0.7^200: the tail is negligible

    def loss(v):
        A, k = v[:n * n].reshape(n, n), 1.0 - v[n * n:]
        return sum(np.sum((A * k ** t - Dt) ** 2) for t, Dt in enumerate(powers))

    start = np.concatenate([np.eye(n).ravel(), np.full(n, 0.5)])
    best = scipy.optimize.minimize(loss, start, bounds=[(None, None)] * (n * n) + [(0.0, 1.0)] * n).x
    B, T = 8, 10000
    learner = KeRNL(cell, lr=0.003, sigma=1e-3, seed=1, batch_size=B)
    xs = np.random.default_rng(0).normal(size=(T, B, 1))
    for t in range(T):
        learner.forward(xs[t])
    learned = np.concatenate([learner.A.ravel(), learner.gamma])
    assert loss(learned) < loss(best) + 0.05 * (loss(start) - loss(best)), (loss(start), loss(learned), loss(best))
    assert np.linalg.norm(learned - best) < 0.2 * np.linalg.norm(start - best)


# -- e-prop ---------------------------------------------------------------------------


@given(cell=cells(), seed=seeds)
def test_local_dynamics_is_the_part_of_d_that_bypasses_the_weights(cell, seed):
    rng = np.random.default_rng(seed)
    s = rng.normal(scale=0.8, size=cell.n_state)
    x = rng.normal(size=cell.n_in)
    # With the recurrent weights at zero, D has no other part.
    cut = cell.copy()
    cut.params[:cell.structure.n_rec_params] = 0.0
    np.testing.assert_allclose(naive_local.d_local(cut, s, x), naive.dynamics_jacobian(cut, s, x), atol=1e-14)
    # Without stored W_ii, D's unit-local entries are D_local.
    loose = without_self_connections(cell)
    n = cell.n_hidden
    own = np.zeros((cell.n_state, cell.n_state), dtype=bool)
    for a in range(cell.n_state // n):
        for c in range(cell.n_state // n):
            own[a * n + np.arange(n), c * n + np.arange(n)] = True
    D = naive.dynamics_jacobian(loose, s, x)
    np.testing.assert_allclose(np.where(own, D, 0.0), naive_local.d_local(loose, s, x), atol=1e-14)


@given(cell=cells(), dtype=dtypes, batch=batches, T=st.integers(1, 6), seed=seeds)
def test_eprop_equals_its_eligibility_trace_definition(cell, dtype, batch, T, seed):
    cell = cell.astype(dtype)
    ref_tol, _ = tolerances(dtype)
    xs, cs = batch_data(cell, T, batch, seed)
    learner = EProp(cell, batch_size=batch)
    _, g = drive(learner, xs, cs)
    expected = np.zeros(cell.n_params)
    for b in range(xs.shape[1]):
        g_b, e = naive_local.eprop(cell, xs[:, b], cs[:, b])
        expected += g_b
        assert_close(learner.influence(b).toarray(), e, ref_tol, f"eligibility traces of stream {b}")
    assert_close(g, expected, ref_tol, "e-prop grad vs reference")


@given(cell=cells(), dtype=dtypes, batch=batches, parallel=st.booleans(), seed=seeds)
def test_eprop_is_snap1_without_self_connections(cell, dtype, batch, parallel, seed):
    cell = without_self_connections(cell.astype(dtype))
    xs, cs = batch_data(cell, 6, batch, seed)
    runs = []
    for learner in (EProp(cell, batch_size=batch, parallel=parallel), sr.SnAp(cell, 1, batch_size=batch,
                                                                             parallel=parallel)):
        states, g = drive(learner, xs, cs, skip=(2,), grad_at=(3,))
        runs.append((states, g, learner.influence().toarray()))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["vanilla", "gru", "lstm"])
def test_eprop_differs_from_snap1_with_self_connections(kind):
    cell = make_cell(kind, 2, 4, 1.0, seed=2)  # dense: every W_ii is stored
    xs, cs = batch_data(cell, 5, None, seed=0)
    g_e = drive(EProp(cell), xs, cs)[1]
    g_s = drive(sr.SnAp(cell, 1), xs, cs)[1]
    assert np.max(np.abs(g_e - g_s)) > 1e-4


@given(cell=cells(kinds=("vanilla",)), dtype=dtypes, batch=batches, parallel=st.booleans(), seed=seeds)
def test_eprop_is_rflo_on_a_vanilla_rnn(cell, dtype, batch, parallel, seed):
    cell = cell.astype(dtype)
    xs, cs = batch_data(cell, 6, batch, seed)
    extra = {3: cs[0]}
    a = drive(EProp(cell, batch_size=batch, parallel=parallel), xs, cs, skip=(1,), extra=extra, grad_at=(2,))
    b = drive(RFLO(cell, batch_size=batch, parallel=parallel), xs, cs, skip=(1,), extra=extra, grad_at=(2,))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_random_eprop_learns_a_delay_task():
    """Random e-prop (fixed random feedback in the readout) trains a GRU to output
    its previous input, and beats the same run with the recurrent weights frozen
    (the readout alone), so the learner's gradient is what helps."""

    class Frozen(EProp):
        def _grad(self):
            super()._grad()
            return np.zeros(self.cell.n_params, self.cell.dtype)

    rng = np.random.default_rng(0)
    T = 3000
    xs = rng.normal(size=(T, 1))
    ys = np.vstack([[[0.0]], xs[:-1]])
    last = {}
    for learner_type in (EProp, Frozen):
        cell = sr.GRU(1, 16, density=0.5, seed=0)
        readout = sr.LinearReadout(cell, 1, seed=0, feedback="random")
        optimizer = sr.Adam([cell.params, readout.params], lr=3e-3)
        losses = sr.train_online(learner_type(cell), readout, optimizer, xs, ys, fused=False)
        first, last[learner_type] = losses[:200].mean(), losses[-500:].mean()
        if learner_type is EProp:
            assert last[EProp] < 0.2 * first, (first, last[EProp])
    assert last[EProp] < 0.25 * last[Frozen], last


# -- batches, cores, life cycle ---------------------------------------------------------

DETERMINISTIC = {"RFLO": RFLO, "EProp": EProp, "KeRNL(lr=0)": lambda c, **k: KeRNL(c, lr=0.0, **k)}


@pytest.mark.parametrize("name", list(DETERMINISTIC))
@given(cell=cells(), batch=st.integers(2, 4), parallel=st.booleans(), seed=seeds, dtype=dtypes)
def test_batched_streams_equal_single_streams_exactly(name, cell, batch, parallel, seed, dtype):
    if name != "EProp" and cell.key != "vanilla":
        cell = make_cell("vanilla", cell.n_in, cell.n_hidden, 0.5, seed=seed)
    cell = cell.astype(dtype)
    make = DETERMINISTIC[name]
    xs, cs = batch_data(cell, 5, batch, seed)
    states_b, g_b = drive(make(cell, batch_size=batch, parallel=parallel), xs, cs)
    total = None
    for b in range(batch):
        states_1, g_1 = drive(make(cell), xs[:, b:b + 1], cs[:, b:b + 1])
        np.testing.assert_array_equal(states_b[:, b], states_1)
        total = g_1.copy() if total is None else total + g_1
    np.testing.assert_array_equal(g_b, total)


@given(cell=cells(kinds=("vanilla",)), batch=st.integers(1, 4), seed=seeds, dtype=dtypes)
def test_kernl_parallel_equals_serial_and_is_deterministic(cell, batch, seed, dtype):
    cell = cell.astype(dtype)
    xs, cs = batch_data(cell, 6, batch, seed)

    def run(**kw):
        learner = KeRNL(cell, lr=0.02, sigma=0.05, seed=seed, **kw)
        if kw.get("batch_size") is None:
            states, g = drive(learner, xs[:, :1], cs[:, :1], skip=(1,), grad_at=(3,))
        else:
            states, g = drive(learner, xs, cs, skip=(1,), grad_at=(3,))
        return states, g, learner.A, learner.gamma, learner.traces(), learner.noise_loss

    serial = run(batch_size=batch, parallel=False)
    for other in (run(batch_size=batch, parallel=True), run(batch_size=batch, parallel=False)):
        for a, b in zip(serial, other):
            np.testing.assert_array_equal(a, b)
    if batch == 1:
        # One stream: the batched learner is the unbatched one.
        single = run()
        np.testing.assert_array_equal(serial[0][:, 0], single[0])
        for a, b in zip(serial[1:], single[1:]):
            np.testing.assert_array_equal(np.reshape(a, np.shape(b)), b)


LEARNERS = {
    "RFLO": (RFLO, ("vanilla",)),
    "KeRNL": (lambda c, **k: KeRNL(c, lr=0.02, sigma=0.05, seed=3, **k), ("vanilla",)),
    "EProp": (EProp, ("vanilla", "gru", "lstm")),
}
CASES = [(name, kind) for name, (_, kinds) in LEARNERS.items() for kind in kinds]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name,kind", CASES)
def test_life_cycle(name, kind, dtype):
    make = LEARNERS[name][0]
    _, order_tol = tolerances(dtype)
    cell = make_cell(kind, 2, 3, 0.5, seed=4, dtype=dtype)
    T, P = 5, cell.n_params
    xs, cs = batch_data(cell, T, 2, seed=8)
    with pytest.raises(RuntimeError, match="forward"):
        make(cell).backward(cs[0, 0])

    states, g = drive(make(cell), xs[:, :1], cs[:, :1])
    assert states.shape == (T, cell.n_state) and g.shape == (P,) and g.dtype == dtype
    assert np.all(np.isfinite(g)) and np.any(g != 0.0)
    # forward is the cell's step
    prev = cell.init_state()
    for t in range(T):
        assert_close(states[t], cell.step(prev, xs[t, 0]), order_tol, "forward vs cell.step")
        prev = states[t]

    # a second grad() is zero; reset() then the same sequence gives the same numbers
    # (KeRNL: A and gamma are learned, so compare it with lr = 0 below)
    learner = make(cell)
    drive(learner, xs[:, :1], cs[:, :1])
    assert np.all(learner.grad() == 0.0)
    if name != "KeRNL":
        learner.reset()
        again = drive(learner, xs[:, :1], cs[:, :1])
        np.testing.assert_array_equal(again[0], states)
        np.testing.assert_array_equal(again[1], g)
    else:
        frozen = KeRNL(cell, lr=0.0, seed=3)
        first = drive(frozen, xs[:, :1], cs[:, :1])[1]
        frozen.reset()
        np.testing.assert_array_equal(drive(frozen, xs[:, :1], cs[:, :1])[1], first)

    # grad() mid-sequence: the pieces sum to the whole
    pieces = drive(make(cell), xs[:, :1], cs[:, :1], grad_at=(1, 3))[1]
    assert_close(pieces, g, order_tol, "grad pieces vs one grad")

    # a forward without backward is a zero credit (also on the last step) ...
    zeroed = cs.copy()
    zeroed[[1, T - 1]] = 0.0
    skipped = drive(make(cell, batch_size=2), xs, cs, skip=(1, T - 1))[1]
    assert_close(skipped, drive(make(cell, batch_size=2), xs, zeroed)[1], order_tol, "no backward vs zero credit")
    # ... and two backward() calls for a step add their credits
    extra = {2: cs[0], T - 1: cs[1]}
    summed = cs.copy()
    summed[2] += cs[0]
    summed[T - 1] += cs[1]
    twice = drive(make(cell, batch_size=2), xs, cs, extra=extra)[1]
    assert_close(twice, drive(make(cell, batch_size=2), xs, summed)[1], order_tol, "two backward() vs summed credit")


# -- flags, validation, memory ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["vanilla", "gru", "lstm"])
def test_one_step_is_exact_and_names(kind):
    cell = make_cell(kind, 2, 4, 0.5, seed=6)
    xs, cs = batch_data(cell, 2, None, seed=1)
    learners = [EProp(cell)] + ([RFLO(cell), KeRNL(cell, lr=0.0)] if kind == "vanilla" else [])
    for learner in learners:
        assert learner.exact_for(1) and not learner.exact_for(2) and not learner.exact
        g = drive(learner, xs[:1], cs[:1])[1]
        assert_close(g, naive.rtrl(cell, xs[:1, 0], cs[:1, 0])[0], 1e-9, f"{learner.name}, one step")
    assert EProp(cell).name == "e-prop" and not EProp(cell).stochastic
    if kind == "vanilla":
        assert RFLO(cell).name == "RFLO" and not RFLO(cell).stochastic
        assert KeRNL(cell).name == "KeRNL" and KeRNL(cell).stochastic
        # Once A has learned something it is no longer exact, even for one step. (The
        # first step cannot teach it: the copy starts at the network's state.)
        learning = KeRNL(cell, lr=0.5, sigma=0.1)
        learning.forward(xs[0, 0])
        assert learning.exact_for(1)
        learning.forward(xs[1, 0])
        assert not learning.exact_for(1)


@pytest.mark.parametrize("learner", [RFLO, KeRNL])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_gated_cells_are_refused_by_rflo_and_kernl(learner, kind):
    with pytest.raises(TypeError, match=r"needs a VanillaRNN.*got (GRU|LSTM).*EProp"):
        learner(make_cell(kind, 2, 3, 0.5, seed=0))


def test_bad_arguments_are_refused_with_their_names():
    cell = sr.VanillaRNN(2, 3, seed=0)
    for learner in (RFLO, KeRNL, EProp):
        with pytest.raises(TypeError, match="cell"):
            learner("not a cell")
        with pytest.raises(ValueError, match="batch_size"):
            learner(cell, batch_size=0)
        with pytest.raises(TypeError, match="parallel"):
            learner(cell, parallel="yes")
        good = learner(cell, batch_size=2)
        with pytest.raises(ValueError, match="x"):
            good.forward(np.zeros((2, 3)))
        with pytest.raises(ValueError, match="x"):
            good.forward(np.full((2, 2), np.nan))
        good.forward(np.zeros((2, 2)))
        with pytest.raises(ValueError, match="c"):
            good.backward(np.zeros(3))
    for kwargs, error, match in [
        ({"lr": -1.0}, ValueError, "lr"), ({"lr": "fast"}, TypeError, "lr"), ({"lr": np.inf}, ValueError, "lr"),
        ({"sigma": 0.0}, ValueError, "sigma"), ({"sigma": -1e-3}, ValueError, "sigma"),
        ({"sigma": None}, TypeError, "sigma"), ({"seed": -1}, ValueError, "seed"), ({"seed": 1.5}, TypeError, "seed"),
        ({"decay": 1.5}, ValueError, "decay"), ({"decay": -0.1}, ValueError, "decay"),
        ({"decay": [0.5, 0.5]}, ValueError, "decay"), ({"decay": [0.5, 2.0, 0.5]}, ValueError, "decay"),
        ({"decay": [0.5, np.nan, 0.5]}, ValueError, "decay"), ({"decay": "slow"}, TypeError, "decay"),
    ]:
        with pytest.raises(error, match=match):
            KeRNL(cell, **kwargs)
    with pytest.raises(ValueError, match="sigma"):
        KeRNL(cell.astype(np.float32), lr=1.0, sigma=1e-30)
    # Arrays of decays are copied: the caller's buffer does not move the learner's.
    decay = np.array([0.1, 0.2, 0.3])
    learner = KeRNL(cell, decay=decay)
    decay[:] = 0.9
    np.testing.assert_array_equal(learner.gamma, [0.1, 0.2, 0.3])


@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_memory(batch, dtype):
    B, it = batch or 1, np.dtype(dtype).itemsize
    cell = sr.VanillaRNN(3, 9, density=0.3, seed=1, dtype=dtype)
    n, P = cell.n_hidden, cell.n_params
    rflo = RFLO(cell, batch_size=batch).memory()
    assert rflo["influence"] == B * P * it and rflo["history"] == 0 and rflo["traces"] == 0
    kernl = KeRNL(cell, batch_size=batch).memory()
    assert kernl["influence"] == B * P * it + n * n * it  # traces B and the sensitivity A
    assert kernl["traces"] == n * it + 3 * B * n * it  # gamma; each stream's copy, Omega, Gamma
    for kind in ("vanilla", "gru", "lstm"):
        c = make_cell(kind, 3, 9, 0.3, seed=1, dtype=dtype)
        eprop = EProp(c, batch_size=batch)
        assert eprop.memory()["influence"] == B * eprop.mask_size * it == B * eprop.mask().nnz * it
        assert eprop.mask_size == naive.snap_mask(c, 1).sum()
