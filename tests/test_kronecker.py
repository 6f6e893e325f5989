"""KF-RTRL and reverse KF-RTRL: unbiasedness, the exact recursion, batching, life cycle.

* Unbiasedness: ``N_RUNS`` independent seeds on tiny vanilla cells (tanh,
  leaky with a sparse W, linear); the mean gradient is compared with
  ``naive.rtrl`` by the two statistics of ``test_uoro`` (max |z| with a
  Bonferroni bound, and Hotelling's T^2 on the decorrelated components),
  each at level 1e-3, on standardised coordinates (see ``consistent_with``).
  Power: the same samples must reject a 20% too large reference and the
  one-step-truncated gradient, and learners with wrong sign draws (skewed,
  or shared by all units) must be rejected against the true gradient.
  Seeds are fixed, so the outcome is deterministic.
* Exact recursion: the learners' factors and gradients equal a float64 numpy
  implementation of the published recursions below, written from the
  equations on dense matrices and fed the same sign draws (reproduced from
  the seed with the draw scheme the docstrings document).
* Batches: stream ``b`` of a batch is, bit for bit, a single-stream learner
  fed stream ``b``'s data and draws (the test replaces the learner's private
  ``_draw`` to feed them); ``parallel=True`` equals the serial path bit for bit.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import naive
import sparse_rtrl as sr
from conftest import blas_form, cells, make_cell, random_sequence
from sparse_rtrl.learners.kronecker import KFRTRL, RKFRTRL
from test_uoro import unbiasedness_statistics

LEARNERS = {"KF": KFRTRL, "RKF": RKFRTRL}
N_RUNS = 3000
T = 5
LEVEL = 1e-3  # the level unbiasedness_statistics uses


# ---------------------------------------------------------------------------
# float64 reference, straight from the equations
# ---------------------------------------------------------------------------


def vanilla_step(cell, h, x, theta=None):
    """Next state, gains ``d = alpha phi'(a)``, ``D = (1 - alpha) I + diag(d) W`` and ``z = [h; x; 1]``."""
    w = naive.dense_weights(cell, theta)
    alpha = cell.alpha
    a = w["W"] @ h + w["U"] @ x + w["b"]
    if cell.activation == "linear":
        phi, dphi = a, np.ones_like(a)
    else:
        phi = np.tanh(a)
        dphi = 1.0 - phi**2
    d = alpha * dphi
    D = (1.0 - alpha) * np.eye(cell.n_hidden) + d[:, None] * w["W"]
    z = np.concatenate([h, x, [1.0]])
    return (1.0 - alpha) * h + alpha * phi, d, D, z


def unit_and_src(cell):
    """For each parameter: its unit ``i`` and its index ``j`` into ``z = [h; x; 1]``."""
    n, n_in = cell.n_hidden, cell.n_in
    offset = {"W": 0, "U": n, "b": n + n_in}
    index = naive.param_index(cell)
    unit = np.array([i for _, i, _ in index])
    src = np.array([offset[name] + (0 if j is None else j) for name, _, j in index])
    return unit, src


def signs(u):
    return np.where(np.asarray(u) < 0.5, 1.0, -1.0)


def reference(kind, cell, xs, cs, draws, eps=1e-7, params=None, credit=None):
    """KF-RTRL (``kind="KF"``) or reverse KF-RTRL (``"RKF"``) for one stream, float64.

    ``draws[t]`` are the uniform draws of step ``t`` (2 for KF, n for RKF);
    ``params[t]`` optional weights for step ``t``; ``credit[t]`` False skips
    the backward of step ``t``. Returns the gradient and the factors after
    every step.
    """
    n, P = cell.n_hidden, cell.n_params
    unit, src = unit_and_src(cell)
    h = np.zeros(n)
    if kind == "KF":
        A, B = np.zeros(cell.n_hidden + cell.n_in + 1), np.zeros((n, n))
    else:
        A, B = np.zeros(n), np.zeros((n, cell.n_hidden + cell.n_in + 1))
    g = np.zeros(P)
    factors = []
    for t in range(len(xs)):
        theta = None if params is None else params[t]
        h_next, d, D, z = vanilla_step(cell, h, xs[t], theta)
        DB = D @ B
        if kind == "KF":
            nu0, nu1 = signs(draws[t])
            rho0 = np.sqrt((np.linalg.norm(DB) + eps) / (np.linalg.norm(A) + eps))
            rho1 = np.sqrt((np.linalg.norm(d) + eps) / (np.linalg.norm(z) + eps))
            A = nu0 * rho0 * A + nu1 * rho1 * z
            B = nu0 * DB / rho0 + nu1 * np.diag(d) / rho1
        else:
            nu = signs(draws[t])
            rho0 = np.sqrt((np.linalg.norm(DB) + eps) / (np.linalg.norm(A) + eps))
            rho1 = np.sqrt((np.linalg.norm(nu * d) * np.linalg.norm(z) + eps) / (np.linalg.norm(nu) + eps))
            A = rho0 * A + rho1 * nu
            B = DB / rho0 + np.outer(nu * d, z) / rho1
        h = h_next
        factors.append((A.copy(), B.copy()))
        if credit is None or credit[t]:
            u = cs[t] @ B
            g += A[src] * u[unit] if kind == "KF" else A[unit] * u[src]
    return g, factors


def reference_draws(kind, cell, seed, steps, batch=1):
    """The draws a learner with integer ``seed`` makes: ``rng.random((batch, k))`` per step."""
    rng = np.random.default_rng(seed)
    k = 2 if kind == "KF" else cell.n_hidden
    return np.array([rng.random((batch, k)) for _ in range(steps)])


def test_reference_factorises_the_naive_jacobians():
    """The reference's D and z (x) diag(d) are naive's D and I: the factorisation the learners rely on."""
    cell = sr.VanillaRNN(2, 4, density=0.5, alpha=0.6, seed=3)
    unit, src = unit_and_src(cell)
    rng = np.random.default_rng(0)
    h, x = rng.normal(size=4), rng.normal(size=2)
    h_next, d, D, z = vanilla_step(cell, h, x)
    np.testing.assert_allclose(h_next, naive.step(cell, h, x), rtol=1e-14)
    np.testing.assert_allclose(D, naive.dynamics_jacobian(cell, h, x), rtol=1e-14, atol=1e-15)
    I = np.zeros((cell.n_state, cell.n_params))
    I[unit, np.arange(cell.n_params)] = d[unit] * z[src]
    np.testing.assert_allclose(I, naive.immediate_jacobian(cell, h, x), rtol=1e-14, atol=1e-15)
    # The Kronecker reading of both learners: I[k, (i, j)] = z_j delta_ki d_k.
    kron = np.einsum("j,ki->kij", z, np.diag(d))[:, unit, src]
    np.testing.assert_allclose(kron, I, rtol=1e-14, atol=1e-15)


# ---------------------------------------------------------------------------
# Unbiasedness
# ---------------------------------------------------------------------------


def tiny_cells():
    return {
        "tanh": sr.VanillaRNN(1, 3, alpha=1.0, seed=2),
        "leaky_sparse": sr.VanillaRNN(1, 4, density=0.5, alpha=0.6, seed=5),
        "linear": sr.VanillaRNN(1, 3, alpha=0.8, activation="linear", seed=7),
    }


def consistent_with(G, ref):
    """``test_uoro``'s two statistics, computed on standardised coordinates.

    Each parameter is divided by its sample standard deviation first (those
    with none are left as they are). The change of coordinates is invertible,
    so max |z| and Hotelling's T^2 are the same in exact arithmetic, but the
    covariance becomes a correlation matrix: ``unbiasedness_statistics``
    drops eigenvalues below 1e-10 of the largest as numerically null, and the
    batched RKF-RTRL sums have genuine directions of variance at 1e-11..1e-10
    of the largest (their normalised projections were ordinary chi2(1) values,
    1.9 and 2.9), which it would otherwise test as if they had none.
    """
    sd = G.std(axis=0, ddof=1)
    live = sd > 1e-12 * max(np.max(np.abs(ref)), np.max(sd))
    unit = np.where(live, sd, 1.0)
    s = unbiasedness_statistics(G / unit, ref / unit)
    ok = s["max_z"] <= s["z_bound"] and s["t2"] <= s["t2_bound"] and s["off_span"] < 1e-8
    return ok, s


def skew_signs(learner):
    """Draw each sign +1 with probability 0.75 instead of 0.5 (a biased learner)."""
    draw = learner._draw

    def skewed():
        draw()
        learner._uniform *= 0.5 / 0.75

    learner._draw = skewed
    return learner


def share_signs(learner):
    """One sign for every unit of a step (biased for RKF-RTRL: E[nu_i nu_k] = 1)."""
    draw = learner._draw

    def shared():
        draw()
        learner._uniform[:, 1:] = learner._uniform[:, :1]

    learner._draw = shared
    return learner


def samples(make, cell, xs, cs, seeds, bias=None):
    out = np.empty((len(seeds), cell.n_params))
    for r, s in enumerate(seeds):
        learner = make(cell, seed=int(s))
        if bias is not None:
            bias(learner)
        for x, c in zip(xs, cs):
            learner.forward(x)
            learner.backward(c)
        out[r] = learner.grad()
    return out


@pytest.fixture(scope="module")
def gradient_samples():
    out = {}
    for name, cell in tiny_cells().items():
        xs, cs = random_sequence(cell, T, seed=3)
        ref = naive.rtrl(cell, xs, cs)[0]
        for kind, make in LEARNERS.items():
            out[kind, name] = (cell, xs, cs, ref, samples(make, cell, xs, cs, range(N_RUNS)))
    return out


def test_tiny_cells_cover_the_cases():
    c = tiny_cells()
    assert c["tanh"].alpha == 1.0 and c["tanh"].activation == "tanh"
    W = c["leaky_sparse"].weights["W"]
    assert c["leaky_sparse"].alpha < 1.0 and 0 < W.nnz < W.shape[0] * W.shape[1]
    assert c["linear"].activation == "linear"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(tiny_cells()))
@pytest.mark.parametrize("kind", list(LEARNERS))
def test_unbiased(gradient_samples, kind, name):
    cell, xs, cs, ref, G = gradient_samples[kind, name]
    assert np.all(np.isfinite(G))
    assert np.all(np.abs(ref) > 0)  # every parameter has a gradient to estimate
    assert np.max(G.std(axis=0)) > 1e-3 * np.max(np.abs(ref))  # the estimate is random
    ok, s = consistent_with(G, ref)
    assert ok, s


@pytest.mark.slow
@pytest.mark.parametrize("name", list(tiny_cells()))
@pytest.mark.parametrize("kind", list(LEARNERS))
def test_statistic_rejects_a_biased_reference(gradient_samples, kind, name):
    """The test has power: the same samples reject a gradient 20% too large, and the
    one-step-truncated gradient."""
    cell, xs, cs, ref, G = gradient_samples[kind, name]
    ok, s = consistent_with(G, 1.2 * ref)
    assert not ok, s
    assert s["max_z"] > s["z_bound"] and s["t2"] > s["t2_bound"], s
    ok, s = consistent_with(G, naive.truncated_bptt(cell, xs, cs, 1))
    assert not ok, s


@pytest.mark.slow
@pytest.mark.parametrize("kind,bias", [("KF", skew_signs), ("RKF", skew_signs), ("RKF", share_signs)],
                         ids=["KF-skewed", "RKF-skewed", "RKF-shared"])
def test_statistic_rejects_biased_learners(kind, bias):
    """Learners with wrong sign draws are biased, and the test sees it against the
    true gradient: signs that are +1 three times in four (E[nu0 nu1] != 0 for KF,
    E[nu_i nu_k] != 0 for RKF), and, for RKF, one sign shared by all units.
    (KF-RTRL with nu1 = nu0 is no such example: both factors then carry one
    fresh global sign, which still averages the cross terms out; it passed.)"""
    cell = tiny_cells()["leaky_sparse"]
    xs, cs = random_sequence(cell, T, seed=3)
    ref = naive.rtrl(cell, xs, cs)[0]
    G = samples(LEARNERS[kind], cell, xs, cs, range(N_RUNS), bias=bias)
    ok, s = consistent_with(G, ref)
    assert not ok, s
    assert s["t2"] > s["t2_bound"], s


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(LEARNERS))
def test_batched_streams_are_unbiased(kind):
    """Streams of a batch draw independent signs: group sums are unbiased for B * gradient."""
    cell = tiny_cells()["leaky_sparse"]
    B, groups = 20, 300
    xs, cs = random_sequence(cell, T, seed=4)
    ref = naive.rtrl(cell, xs, cs)[0]
    G = np.empty((groups, cell.n_params))
    for r in range(groups):
        learner = LEARNERS[kind](cell, seed=50_000 + r, batch_size=B)
        for x, c in zip(xs, cs):
            learner.forward(np.repeat(x[None], B, axis=0))
            learner.backward(np.repeat(c[None], B, axis=0))
        G[r] = learner.grad()
    assert np.all(np.isfinite(G))
    ok, s = consistent_with(G, B * ref)
    assert ok, s
    assert not consistent_with(G, 1.2 * B * ref)[0]


# ---------------------------------------------------------------------------
# The exact recursion
# ---------------------------------------------------------------------------


def exact_cells():
    return [
        sr.VanillaRNN(3, 5, density=0.4, alpha=0.7, seed=11),
        sr.VanillaRNN(2, 4, alpha=1.0, seed=12, input_density=0.5),
        sr.VanillaRNN(2, 4, density=0.5, alpha=0.9, activation="linear", seed=13),
    ]


def assert_close(actual, expected, what, rtol=1e-11):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1e-300, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=rtol * scale,
                               err_msg=what)


@pytest.mark.parametrize("blas", [False, True], ids=["walk-D", "BLAS"])
@pytest.mark.parametrize("cell_index", range(3))
@pytest.mark.parametrize("kind", list(LEARNERS))
def test_factors_and_gradient_follow_the_recursion(kind, cell_index, blas):
    """Both forms of ``D B`` (walking D's entries; one BLAS call on D held dense) follow the reference."""
    cell = exact_cells()[cell_index]
    steps = 12
    xs, cs = random_sequence(cell, steps, seed=cell_index)
    seed = 100 + cell_index
    draws = reference_draws(kind, cell, seed, steps)[:, 0]
    g_ref, factors = reference(kind, cell, xs, cs, draws)
    with blas_form(blas):
        learner = LEARNERS[kind](cell, seed=seed)
    assert (learner._D_dense.size > 0) == blas
    for t in range(steps):
        learner.forward(xs[t])
        learner.backward(cs[t])
        A, B = learner.factors()
        assert_close(A, factors[t][0], f"A after step {t}")
        assert_close(B, factors[t][1], f"B after step {t}")
    assert_close(learner.grad(), g_ref, "gradient")


@pytest.mark.parametrize("kind", list(LEARNERS))
def test_recursion_with_a_batch_changing_weights_and_skipped_credits(kind):
    """A batch of 3 (row b of each step's draws is stream b's), weights changed
    between steps, some steps without backward and one with two."""
    cell = exact_cells()[0]
    steps, Bn = 8, 3
    rng = np.random.default_rng(5)
    xs = rng.normal(size=(steps, Bn, cell.n_in))
    cs = rng.normal(size=(steps, Bn, cell.n_state))
    extra = rng.normal(size=(Bn, cell.n_state))
    base = cell.params.copy()
    params = [base + (0.2 * rng.normal(size=cell.n_params) if t % 3 == 1 else 0.0) for t in range(steps)]
    credit = [t not in (2, 5) for t in range(steps)]
    draws = reference_draws(kind, cell, 9, steps, batch=Bn)
    learner = LEARNERS[kind](cell, seed=9, batch_size=Bn)
    try:
        for t in range(steps):
            cell.params[:] = params[t]
            learner.forward(xs[t])
            if credit[t]:
                learner.backward(cs[t])
            if t == 6:
                learner.backward(extra)
        g = learner.grad()
        A, B = learner.factors()
    finally:
        cell.params[:] = base
    cs_ref = cs.copy()
    cs_ref[6] += extra
    g_ref = np.zeros(cell.n_params)
    for b in range(Bn):
        g_b, factors = reference(kind, cell, xs[:, b], cs_ref[:, b], draws[:, b], params=params, credit=credit)
        g_ref += g_b
        assert_close(A[b], factors[-1][0], f"A of stream {b}")
        assert_close(B[b], factors[-1][1], f"B of stream {b}")
    assert_close(g, g_ref, "batched gradient")


@pytest.mark.parametrize("eps", [1e-7, 0.5])
@pytest.mark.parametrize("kind", list(LEARNERS))
def test_eps_enters_as_documented(kind, eps):
    """A large eps changes the normalisers; the reference with the same eps still matches."""
    cell = exact_cells()[0]
    xs, cs = random_sequence(cell, 6, seed=1)
    draws = reference_draws(kind, cell, 4, 6)[:, 0]
    g_ref, _ = reference(kind, cell, xs, cs, draws, eps=eps)
    learner = LEARNERS[kind](cell, seed=4, eps=eps)
    for x, c in zip(xs, cs):
        learner.forward(x)
        learner.backward(c)
    assert_close(learner.grad(), g_ref, "gradient")
    if eps != 1e-7:
        g_small, _ = reference(kind, cell, xs, cs, draws, eps=1e-7)
        assert np.max(np.abs(g_small - g_ref)) > 1e-6 * np.max(np.abs(g_ref))


def test_kf_first_step_is_exact():
    """KF-RTRL from rest: rho0 = 1 and A (x) B = z (x) diag(d) = I_1 for either sign."""
    cell = exact_cells()[0]
    assert KFRTRL(cell).exact_for(1) and not KFRTRL(cell).exact_for(2)
    assert not RKFRTRL(cell).exact_for(1)  # its first step is right only on average
    xs, cs = random_sequence(cell, 1, seed=2)
    ref = naive.rtrl(cell, xs, cs)[0]
    for seed in range(4):
        learner = KFRTRL(cell, seed=seed)
        learner.forward(xs[0])
        learner.backward(cs[0])
        assert_close(learner.grad(), ref, f"seed {seed}", rtol=1e-13)


# ---------------------------------------------------------------------------
# Batches and parallel drivers
# ---------------------------------------------------------------------------


def feed_draws(learner, draws):
    """Replace the learner's generator by the given draws, one (batch, k) array per step."""
    steps = iter(draws)

    def draw():
        learner._uniform[:] = next(steps)

    learner._draw = draw
    return learner


def record_draws(learner):
    record = []
    draw = learner._draw

    def recording():
        draw()
        record.append(learner._uniform.copy())

    learner._draw = recording
    return record


def drive(learner, xs, cs, skip=(1,), grad_at=(2,)):
    """States, factors after the last step, and grads (one mid-sequence, one at the end)."""
    states, grads = [], []
    for t in range(len(xs)):
        states.append(learner.forward(xs[t]))
        if t not in skip:
            learner.backward(cs[t])
        if t in grad_at:
            grads.append(learner.grad())
    grads.append(learner.grad())
    return np.array(states), learner.factors(), grads


@pytest.mark.parametrize("kind", list(LEARNERS))
@given(cell=cells(kinds=("vanilla",)), batch=st.integers(2, 4), parallel=st.booleans(),
       seed=st.integers(0, 1000), dtype=st.sampled_from([np.float32, np.float64]), blas=st.booleans())
def test_batched_streams_equal_single_streams_exactly(kind, cell, batch, parallel, seed, dtype, blas):
    """Stream b of a batch is, bit for bit, a single learner fed stream b's data and
    draws; the batch's grad() is the single gradients summed in stream order (either form of D B)."""
    cell = cell.astype(dtype)
    rng = np.random.default_rng(seed)
    steps = 5
    xs = rng.normal(size=(steps, batch, cell.n_in))
    cs = rng.normal(size=(steps, batch, cell.n_state))
    with blas_form(blas):
        learner = LEARNERS[kind](cell, seed=seed, batch_size=batch, parallel=parallel)
        singles = [LEARNERS[kind](cell, seed=0) for _ in range(batch)]
    record = record_draws(learner)
    states_b, (A_b, B_b), grads_b = drive(learner, xs, cs)
    assert len(record) == steps and record[0].shape[0] == batch
    totals = None
    for b in range(batch):
        single = feed_draws(singles[b], [r[b:b + 1] for r in record])
        states_1, (A_1, B_1), grads_1 = drive(single, xs[:, b], cs[:, b])
        np.testing.assert_array_equal(states_b[:, b], states_1)
        np.testing.assert_array_equal(A_b[b], A_1)
        np.testing.assert_array_equal(B_b[b], B_1)
        totals = [g.copy() for g in grads_1] if totals is None else [t + g for t, g in zip(totals, grads_1)]
    for g_b, total in zip(grads_b, totals):
        np.testing.assert_array_equal(g_b, total)


@pytest.mark.parametrize("kind", list(LEARNERS))
@given(cell=cells(kinds=("vanilla",)), batch=st.integers(2, 5), seed=st.integers(0, 1000),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_parallel_equals_serial(kind, cell, batch, seed, dtype):
    cell = cell.astype(dtype)
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(5, batch, cell.n_in))
    cs = rng.normal(size=(5, batch, cell.n_state))
    results = []
    for parallel in (False, True):
        learner = LEARNERS[kind](cell, seed=seed, batch_size=batch, parallel=parallel)
        assert learner.parallel is parallel
        results.append(drive(learner, xs, cs))
    (s0, (A0, B0), g0), (s1, (A1, B1), g1) = results
    np.testing.assert_array_equal(s0, s1)
    np.testing.assert_array_equal(A0, A1)
    np.testing.assert_array_equal(B0, B1)
    for a, b in zip(g0, g1):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", list(LEARNERS))
def test_float32_agrees_with_float64(kind):
    cell64 = exact_cells()[0]
    cell32 = cell64.astype(np.float32)
    xs, cs = random_sequence(cell64, 10, seed=6)
    out = {}
    for cell in (cell32, cell64):
        learner = LEARNERS[kind](cell, seed=21, batch_size=2)
        for x, c in zip(xs, cs):
            learner.forward(np.stack([x, -x]).astype(cell.dtype))
            learner.backward(np.stack([c, 0.5 * c]).astype(cell.dtype))
        g = learner.grad()
        assert g.dtype == cell.dtype
        out[cell.dtype] = (g, *learner.factors())
    for a32, a64 in zip(out[np.dtype(np.float32)], out[np.dtype(np.float64)]):
        assert a32.dtype == np.float32 and a64.dtype == np.float64
        assert_close(a32, a64, "float32 vs float64", rtol=2e-4)


# ---------------------------------------------------------------------------
# Life cycle
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", list(LEARNERS))
def test_life_cycle(kind, dtype):
    make = LEARNERS[kind]
    cell = make_cell("vanilla", 2, 4, 0.5, seed=4, dtype=dtype, alpha=0.8)
    S, P = cell.n_state, cell.n_params
    xs, cs = random_sequence(cell, T, seed=8)
    xs, cs = xs.astype(dtype), cs.astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    learner = make(cell, seed=3)
    assert learner.stochastic and not learner.exact and learner.name in ("KF-RTRL", "R-KF-RTRL")
    with pytest.raises(RuntimeError, match="forward"):
        learner.backward(cs[0])

    # forward equals cell.step; grad has the cell's dtype; a second grad() is zero.
    prev = cell.init_state()
    for x, c in zip(xs, cs):
        s = learner.forward(x)
        assert s.shape == (S,) and s.dtype == dtype
        np.testing.assert_array_equal(s, cell.step(prev, x))
        prev = s
        learner.backward(c)
    g = learner.grad()
    assert g.shape == (P,) and g.dtype == dtype and np.all(np.isfinite(g)) and np.any(g != 0.0)
    again = learner.grad()
    assert again.shape == (P,) and again.dtype == dtype and np.all(again == 0.0)

    # reset() restarts: zero state and factors, and the run repeats with the draws that follow.
    gen = np.random.default_rng(123)
    replay = make(cell, seed=gen)
    dirty = np.random.default_rng(0)
    for _ in range(4):
        replay.forward(dirty.normal(size=cell.n_in))
        replay.backward(dirty.normal(size=S))
    replay.reset()
    A, B = replay.factors()
    assert replay.n_steps == 0 and np.all(replay.state == 0.0) and np.all(A == 0.0) and np.all(B == 0.0)
    twin = np.random.Generator(np.random.PCG64())
    twin.bit_generator.state = gen.bit_generator.state
    states2, _, g2 = drive(replay, xs, cs, skip=(), grad_at=())
    states3, _, g3 = drive(make(cell, seed=twin), xs, cs, skip=(), grad_at=())
    np.testing.assert_array_equal(states2, states3)
    np.testing.assert_array_equal(g2[0], g3[0])
    # ... and the same integer seed repeats the first run exactly.
    np.testing.assert_array_equal(drive(make(cell, seed=3), xs, cs, skip=(), grad_at=())[2][0], g)

    # grad() mid-sequence: the pieces sum to the whole.
    _, _, pieces = drive(make(cell, seed=3), xs, cs, skip=(), grad_at=(1, 3))
    assert_close(sum(pieces), g, "grad pieces", rtol=tol)

    # A missing backward is zero credit (the draws do not depend on credits).
    cs_zero = cs.copy()
    cs_zero[[1, T - 1]] = 0.0
    _, _, g_skip = drive(make(cell, seed=3), xs, cs, skip=(1, T - 1), grad_at=())
    _, _, g_zero = drive(make(cell, seed=3), xs, cs_zero, skip=(), grad_at=())
    assert_close(g_skip[0], g_zero[0], "no backward vs zero credit", rtol=tol)

    # Two backward() calls for one step add.
    c_extra = np.random.default_rng(1).normal(size=S).astype(dtype)
    twice = make(cell, seed=3)
    for t, (x, c) in enumerate(zip(xs, cs)):
        twice.forward(x)
        twice.backward(c)
        if t == 2:
            twice.backward(c_extra)
    cs_sum = cs.copy()
    cs_sum[2] += c_extra
    _, _, g_sum = drive(make(cell, seed=3), xs, cs_sum, skip=(), grad_at=())
    assert_close(twice.grad(), g_sum[0], "two backward() vs summed credit", rtol=tol)

    # Batched shapes.
    batched = make(cell, seed=3, batch_size=3)
    s = batched.forward(np.ones((3, cell.n_in), dtype))
    assert s.shape == (3, S) and s.dtype == dtype
    batched.backward(np.ones((3, S), dtype))
    A, B = batched.factors()
    assert A.shape[0] == 3 and B.shape[0] == 3
    assert batched.grad().shape == (P,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", list(LEARNERS))
def test_saturated_units_and_zero_weights_stay_finite(kind, dtype):
    """Biases of 1e3 saturate tanh: d = 0 and (alpha = 1) D = 0, so every norm in
    rho0 and rho1 but ||z|| vanishes. The exact gradient is 0 and so must the estimate be."""
    cell = sr.VanillaRNN(2, 3, seed=0, dtype=dtype)
    cell.params[:] = 0.0
    cell.weights["b"][:] = 1e3
    xs, cs = random_sequence(cell, 20, seed=0)
    assert np.all(naive.rtrl(cell, xs, cs)[0] == 0.0)
    learner = LEARNERS[kind](cell, seed=0)
    for x, c in zip(xs, cs):
        assert np.all(np.isfinite(learner.forward(x)))
        learner.backward(c)
    g = learner.grad()
    assert np.all(np.isfinite(g)) and np.all(g == 0.0)
    # Zero weights, zero input, then real input: still finite, and a gradient appears.
    cell.params[:] = 0.0
    learner.reset()
    rng = np.random.default_rng(2)
    for t in range(30):
        learner.forward(np.zeros(cell.n_in) if t < 10 else rng.normal(size=cell.n_in))
        learner.backward(rng.normal(size=cell.n_state))
    g = learner.grad()
    assert np.all(np.isfinite(g)) and np.any(g != 0.0)


@pytest.mark.parametrize("kind", list(LEARNERS))
def test_long_run_stays_finite_in_float32(kind):
    """The normalisers keep both factors at comparable, bounded scales."""
    cell = sr.VanillaRNN(3, 16, density=0.3, alpha=0.5, seed=1, dtype=np.float32)
    learner = LEARNERS[kind](cell, seed=2, batch_size=2)
    rng = np.random.default_rng(0)
    for _ in range(500):
        learner.forward(rng.normal(size=(2, 3)))
        learner.backward(rng.normal(size=(2, 16)))
    A, B = learner.factors()
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(B)) and np.all(np.isfinite(learner.grad()))
    for b in range(2):
        ratio = np.linalg.norm(A[b]) / np.linalg.norm(B[b])
        assert 1e-3 < ratio < 1e3, ratio


# ---------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(LEARNERS))
@pytest.mark.parametrize("cell_kind", ["gru", "lstm"])
def test_gated_cells_are_refused(kind, cell_kind):
    cell = make_cell(cell_kind, 2, 3, 0.5, seed=0)
    with pytest.raises(TypeError, match="needs a VanillaRNN") as info:
        LEARNERS[kind](cell)
    message = str(info.value)
    assert type(cell).__name__ in message and "gates" in message and "Kronecker product" in message


@pytest.mark.parametrize("kind", list(LEARNERS))
def test_bad_arguments_are_refused(kind):
    make = LEARNERS[kind]
    cell = sr.VanillaRNN(2, 3, seed=0)
    cases = [
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(seed="0"), TypeError, "seed"),
        (dict(eps=0.0), ValueError, "eps"),
        (dict(eps=-1e-7), ValueError, "eps"),
        (dict(eps=float("nan")), ValueError, "eps"),
        (dict(eps=float("inf")), ValueError, "eps"),
        (dict(eps="1e-7"), TypeError, "eps"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=2.0), TypeError, "batch_size"),
        (dict(batch_size=True), TypeError, "batch_size"),
        (dict(parallel="yes"), TypeError, "parallel"),
    ]
    for kwargs, error, word in cases:
        with pytest.raises(error, match=word):
            make(cell, **kwargs)
    with pytest.raises(TypeError, match="cell"):
        make("not a cell")
    # An eps that vanishes in float32 guards nothing there; float64 takes it.
    with pytest.raises(ValueError, match="eps"):
        make(cell.astype(np.float32), eps=1e-40)
    make(cell, eps=1e-40)
    learner = make(cell)
    with pytest.raises(ValueError, match="^x must have shape"):
        learner.forward(np.zeros(3))
    learner.forward(np.zeros(2))
    with pytest.raises(ValueError, match="^c must have shape"):
        learner.backward(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="^c contains NaN"):
        learner.backward(np.array([0.0, np.nan, 0.0]))


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", list(LEARNERS))
def test_memory_is_the_two_factors(kind, dtype, batch):
    cell = sr.VanillaRNN(3, 9, density=0.3, seed=1, dtype=dtype)
    n, n_presyn = cell.n_hidden, cell.n_presyn
    it = np.dtype(dtype).itemsize
    Bn = batch or 1
    mem = LEARNERS[kind](cell, seed=0, batch_size=batch).memory()
    per_stream = n * n + n_presyn if kind == "KF" else n + n * n_presyn
    assert mem["influence"] == Bn * per_stream * it
    assert mem["history"] == 0 and mem["traces"] == 0


@pytest.mark.parametrize("kind", list(LEARNERS))
def test_memory_does_not_scale_with_s_times_p(kind):
    """A dense n = 200 cell: S x P is about n^3 numbers, the learner holds O(n^2)."""
    cell = sr.VanillaRNN(4, 200, seed=0, dtype=np.float32)
    learner = LEARNERS[kind](cell, seed=0)
    dense = cell.n_state * cell.n_params * 4
    assert learner.memory()["influence"] < dense / 100
    # Everything it holds is O(n n_presyn + nnz(D) + P): the factors, D B, D's values,
    # the accumulator, D's index plan and (D being dense, D B is one BLAS product) D's
    # dense scratch are each about n^2 numbers here.
    assert learner._D_dense.size == cell.n_state ** 2
    assert learner.nbytes < 4 * 7 * cell.n_hidden * cell.n_presyn
    assert learner.nbytes < dense / 20
