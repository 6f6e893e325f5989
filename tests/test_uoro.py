"""UORO: unbiasedness, with a statistical test that can fail, and guarded normalisers.

The unbiasedness test
---------------------
``N`` independent learners ``sr.UORO(cell, seed=s)`` run the same sequence;
their gradients ``G`` (N x P) are compared with the exact gradient
``naive.rtrl``. Two checks, each at family-wise level 1e-3:

* max |z| with a Bonferroni bound, ``z_p = (mean_p - ref_p) / (sd_p / sqrt N)``;
* the sum of squared z-scores of the *decorrelated* components (Hotelling's
  T^2): project ``mean - ref`` on the eigenvectors of the sample covariance
  and divide by the eigenvalues, which is chi-square with ``rank`` degrees of
  freedom under the null. The raw per-parameter z-scores are strongly
  correlated (every UORO sample is ``(c.u) theta``), so their plain sum of
  squares is *not* chi2(P): in disjoint blocks of 3000 seeds on the tiny GRU
  below it ranged 5..73 against chi2.ppf(0.999, 26) = 54, while the
  whitened statistic stayed within 4..18 against chi2.ppf(0.999, 10) = 30.
  The covariance has rank ``S * T`` at most (each ``theta`` is a combination
  of the rows of ``I_1..I_T``); the exact gradient lies in that same span,
  so the component of ``mean - ref`` outside it must vanish to rounding.

Power, checked by hand while writing this file: the same samples against a
deliberately wrong reference ``1.2 * ref`` give max |z| ~ 9..10 (bound ~4)
and T^2 ~ 270..330 (bound ~30..38); ``test_statistic_rejects_a_biased_reference``
keeps that check. Library builds with a biased UORO, on a scratch copy, were
rejected too: sign draws with P(+1) = 0.6 (T^2 = 100 on the GRU) or 0.7
(T^2 = 960), signs in {0, 1} instead of {-1, +1}, ``theta * rho0`` instead of
``theta / rho0``, and one sign vector drawn once and reused every step.
Perturbations whose bias is only second order (P(+1) = 0.55; a normaliser
made uneven in one sign, whose first-order bias multiplies E[u] ~ 0) were not
detectable with 3000 runs.

Seeds are fixed, so the outcome is deterministic; with a correct library the
chance that a given seed set trips a 1e-3 test is about 0.2%.
"""

import numpy as np
import pytest
import scipy.stats

import naive
import sparse_rtrl as sr
from conftest import random_sequence

N_RUNS = 3000
T = 5
LEVEL = 1e-3


def tiny_cells():
    return {
        "gru": sr.GRU(1, 2, seed=1),
        "vanilla": sr.VanillaRNN(1, 3, alpha=0.7, seed=2),
        "lstm": sr.LSTM(1, 1, seed=3),
    }


def uoro_samples(cell, xs, cs, seeds):
    out = np.empty((len(seeds), cell.n_params))
    for i, s in enumerate(seeds):
        learner = sr.UORO(cell, seed=int(s))
        for x, c in zip(xs, cs):
            learner.forward(x)
            learner.backward(c)
        out[i] = learner.grad()
    return out


def unbiasedness_statistics(G, ref):
    """max |z|, its Bonferroni bound, Hotelling T^2, its chi2 bound, and the off-span residual."""
    N, P = G.shape
    mean = G.mean(axis=0)
    diff = mean - ref
    sd = G.std(axis=0, ddof=1)
    scale = max(np.max(np.abs(ref)), np.max(sd))
    live = sd > 1e-12 * scale
    z = diff[live] / (sd[live] / np.sqrt(N))
    dead_residual = np.max(np.abs(diff[~live]), initial=0.0) / scale

    cov = np.cov(G, rowvar=False)
    w, V = np.linalg.eigh(cov)
    keep = w > 1e-10 * w.max()
    rank = int(keep.sum())
    proj = V[:, keep].T @ diff
    t2 = N * float(np.sum(proj**2 / w[keep]))
    off_span = np.linalg.norm(V[:, ~keep].T @ diff) / scale
    return {
        "max_z": float(np.max(np.abs(z))),
        "z_bound": float(scipy.stats.norm.ppf(1 - LEVEL / (2 * live.sum()))),
        "t2": t2,
        "t2_bound": float(scipy.stats.chi2.ppf(1 - LEVEL, rank)),
        "rank": rank,
        "off_span": max(float(off_span), float(dead_residual)),
    }


def consistent_with(G, ref):
    s = unbiasedness_statistics(G, ref)
    ok = s["max_z"] <= s["z_bound"] and s["t2"] <= s["t2_bound"] and s["off_span"] < 1e-8
    return ok, s


@pytest.fixture(scope="module")
def samples():
    out = {}
    for kind, cell in tiny_cells().items():
        xs, cs = random_sequence(cell, T, seed=3)
        ref = naive.rtrl(cell, xs, cs)[0]
        out[kind] = (cell, xs, cs, ref, uoro_samples(cell, xs, cs, range(N_RUNS)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gru", "vanilla", "lstm"])
def test_uoro_is_unbiased(samples, kind):
    cell, xs, cs, ref, G = samples[kind]
    assert np.all(np.isfinite(G))
    assert np.all(np.abs(ref) > 0)  # every parameter has a gradient to estimate
    ok, s = consistent_with(G, ref)
    assert ok, s
    # The covariance rank is at most S * T (see the module docstring).
    assert 1 <= s["rank"] <= cell.n_state * T


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gru", "vanilla", "lstm"])
def test_statistic_rejects_a_biased_reference(samples, kind):
    """The test has power: the same samples reject a 20% too large, or a truncated, gradient."""
    cell, xs, cs, ref, G = samples[kind]
    ok, s = consistent_with(G, 1.2 * ref)
    assert not ok, s
    assert s["max_z"] > s["z_bound"] and s["t2"] > s["t2_bound"], s
    # A realistic biased estimate: the one-step-truncated gradient.
    ok, s = consistent_with(G, naive.truncated_bptt(cell, xs, cs, 1))
    assert not ok, s


@pytest.mark.slow
def test_batched_uoro_is_unbiased():
    """Batched streams draw independent signs: group sums are unbiased for B * gradient."""
    cell = tiny_cells()["gru"]
    B, groups = 20, 200
    xs, cs = random_sequence(cell, T, seed=4)
    ref = naive.rtrl(cell, xs, cs)[0]
    G = np.empty((groups, cell.n_params))
    for k in range(groups):
        learner = sr.UORO(cell, seed=50_000 + k, batch_size=B)
        for x, c in zip(xs, cs):
            states = learner.forward(np.repeat(x[None], B, axis=0))
            learner.backward(np.repeat(c[None], B, axis=0))
        G[k] = learner.grad()
    assert states.shape == (B, cell.n_state)
    assert np.all(np.isfinite(G))
    ok, s = consistent_with(G, B * ref)
    assert ok, s
    assert not consistent_with(G, 1.2 * B * ref)[0]


# ---------------------------------------------------------------------------
# Guarded normalisers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["vanilla", "gru", "lstm"])
def test_zero_state_input_and_credit_stay_finite(kind, dtype):
    """From rest (u = theta = 0, zero state) with zero input and zero credit."""
    from conftest import make_cell

    cell = make_cell(kind, 2, 3, 0.5, seed=0, dtype=dtype)
    learner = sr.UORO(cell, seed=0)
    zero_x = np.zeros(cell.n_in)
    zero_c = np.zeros(cell.n_state)
    for _ in range(5):
        s = learner.forward(zero_x)
        learner.backward(zero_c)
        assert np.all(np.isfinite(s))
    g = learner.grad()
    assert g.dtype == dtype and np.all(g == 0.0)  # zero credits: nothing to accumulate
    # Then real credits: the normalisers must have kept u and theta finite.
    rng = np.random.default_rng(1)
    for _ in range(5):
        learner.forward(zero_x)
        learner.backward(rng.normal(size=cell.n_state))
    g = learner.grad()
    assert np.all(np.isfinite(g)) and np.any(g != 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["vanilla", "gru", "lstm"])
def test_all_zero_weights_stay_finite(kind, dtype):
    """Zero weights: D u = 0 every step (vanilla), so rho0 sees a zero norm."""
    from conftest import make_cell

    cell = make_cell(kind, 2, 3, 0.5, seed=0, dtype=dtype)
    cell.params[:] = 0.0
    learner = sr.UORO(cell, seed=3)
    rng = np.random.default_rng(2)
    for t in range(30):
        learner.forward(np.zeros(cell.n_in) if t < 10 else rng.normal(size=cell.n_in))
        learner.backward(np.zeros(cell.n_state) if t % 2 else rng.normal(size=cell.n_state))
    assert np.all(np.isfinite(learner.grad()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_units_give_zero_not_nan(dtype):
    """Biases of 1e3 saturate tanh exactly: D = 0 and I = 0, both UORO norms vanish.

    The exact gradient is 0; UORO's theta never leaves 0, so its estimate is
    0 too, and nothing may be NaN or infinite on the way.
    """
    cell = sr.VanillaRNN(2, 3, seed=0, dtype=dtype)
    cell.params[:] = 0.0
    cell.weights["b"][:] = 1e3
    xs, cs = random_sequence(cell, 20, seed=0)
    ref = naive.rtrl(cell, xs, cs)[0]
    assert np.all(ref == 0.0)
    learner = sr.UORO(cell, seed=0)
    for x, c in zip(xs, cs):
        assert np.all(np.isfinite(learner.forward(x)))
        learner.backward(c)
    g = learner.grad()
    assert np.all(np.isfinite(g)) and np.all(g == 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["vanilla", "gru", "lstm"])
def test_batched_uoro_shapes_and_finiteness(kind, dtype):
    from conftest import make_cell

    cell = make_cell(kind, 2, 3, 0.5, seed=1, dtype=dtype)
    B = 3
    learner = sr.UORO(cell, seed=5, batch_size=B)
    rng = np.random.default_rng(0)
    for t in range(200):  # long enough for a blow-up of rho0/rho1 to show
        x = rng.normal(size=(B, cell.n_in))
        if t < 3:
            x[:] = 0.0
        s = learner.forward(x)
        assert s.shape == (B, cell.n_state) and s.dtype == dtype
        learner.backward(rng.normal(size=(B, cell.n_state)))
    g = learner.grad()
    assert g.shape == (cell.n_params,) and g.dtype == dtype
    assert np.all(np.isfinite(g))
