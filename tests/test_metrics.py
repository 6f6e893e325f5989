"""Gradient alignment and estimator variance against brute-force computations."""

import numpy as np
import pytest

import naive
import sparse_rtrl as sr
from conftest import make_cell, random_sequence


def per_step_grads(cell, xs, cs, mask=None):
    """float64 per-step ``c_t J_t`` (J masked if ``mask``), straight from the equations."""
    S, P = cell.n_state, cell.n_params
    s, J, out = np.zeros(S), np.zeros((S, P)), []
    for x, c in zip(xs, cs):
        J = naive.dynamics_jacobian(cell, s, x) @ J + naive.immediate_jacobian(cell, s, x)
        if mask is not None:
            J = np.where(mask, J, 0.0)
        s = naive.step(cell, s, x)
        out.append(c @ J)
    return np.array(out)


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


class Negated(sr.RTRL):
    """RTRL with its gradient's sign flipped: alignment -1 by construction."""

    def _grad(self):
        return -super()._grad()


@pytest.mark.parametrize("kind", ["vanilla", "gru", "lstm"])
def test_alignment_matches_brute_force(kind):
    cell = make_cell(kind, 2, 5, 0.4, seed=3)
    xs, cs = random_sequence(cell, 7, seed=1)
    snap1 = sr.SnAp(cell, 1)
    learners = {"SnAp-1": snap1, "SnAp-S": sr.SnAp(cell, cell.n_state + 1), "negated": Negated(cell),
                "UORO": sr.UORO(cell, seed=2)}
    out = sr.alignment(learners, xs, cs)
    exact = per_step_grads(cell, xs, cs)
    approx = per_step_grads(cell, xs, cs, mask=snap1.mask().to_dense())
    np.testing.assert_array_equal(out["steps"], np.arange(1, 8))
    np.testing.assert_allclose(out["reference_norm"], np.linalg.norm(exact, axis=1), rtol=1e-10)
    np.testing.assert_allclose(out["cosine"]["SnAp-1"], [cos(a, b) for a, b in zip(approx, exact)], rtol=1e-9)
    np.testing.assert_allclose(out["norm"]["SnAp-1"], np.linalg.norm(approx, axis=1), rtol=1e-10)
    np.testing.assert_allclose(out["cosine"]["SnAp-S"], 1.0, rtol=1e-10)
    np.testing.assert_allclose(out["cosine"]["negated"], -1.0, rtol=1e-10)
    assert np.all(np.abs(out["cosine"]["UORO"]) <= 1.0 + 1e-12)
    assert out["mean_cosine"]["negated"] == pytest.approx(-1.0)
    # SnAp-1 is exact on the first step (I_1 is on the mask) and drifts from it after.
    assert out["cosine"]["SnAp-1"][0] == pytest.approx(1.0)


def test_alignment_over_windows_sums_the_steps():
    cell = make_cell("gru", 2, 4, 0.5, seed=0)
    xs, cs = random_sequence(cell, 7, seed=2)
    tb = sr.TBPTT(cell, 3)
    out = sr.alignment({"TBPTT(3)": tb}, xs, cs, every=3)
    np.testing.assert_array_equal(out["steps"], [3, 6, 7])
    exact = per_step_grads(cell, xs, cs)
    sums = [exact[0:3].sum(0), exact[3:6].sum(0), exact[6:7].sum(0)]
    np.testing.assert_allclose(out["reference_norm"], [np.linalg.norm(s) for s in sums], rtol=1e-10)
    # TBPTT(3) restarts its windows every 3 steps: exact within the first window only.
    assert out["cosine"]["TBPTT(3)"][0] == pytest.approx(1.0)
    assert out["cosine"]["TBPTT(3)"][1] < 1.0 - 1e-6


def test_alignment_refuses_mixed_trajectories_and_bad_arguments():
    cell = make_cell("vanilla", 2, 4, 0.5, seed=0)
    other = make_cell("vanilla", 2, 4, 0.5, seed=1)
    xs, cs = random_sequence(cell, 3, seed=0)
    with pytest.raises(ValueError, match="same cell"):
        sr.alignment({"a": sr.RTRL(cell), "b": sr.RTRL(other)}, xs, cs)
    with pytest.raises(ValueError, match="unbatched"):
        sr.alignment({"a": sr.RTRL(cell, batch_size=2)}, xs, cs)
    with pytest.raises(TypeError, match="learners"):
        sr.alignment({}, xs, cs)
    with pytest.raises(ValueError, match="every"):
        sr.alignment({"a": sr.RTRL(cell)}, xs, cs, every=0)
    with pytest.raises(ValueError, match="credits"):
        sr.alignment({"a": sr.RTRL(cell)}, xs, cs[:, :2])
    with pytest.raises(ValueError, match="inputs"):
        sr.alignment({"a": sr.RTRL(cell)}, xs[:, :1], cs)


def test_estimator_variance_matches_brute_force():
    cell = make_cell("gru", 1, 3, 0.7, seed=5)
    xs, cs = random_sequence(cell, 4, seed=3)
    seeds = range(12)
    out = sr.estimator_variance(lambda s: sr.UORO(cell, seed=s), xs, cs, seeds)
    G = []
    for s in seeds:
        learner = sr.UORO(cell, seed=s)
        steps = []
        for x, c in zip(xs, cs):
            learner.forward(x)
            learner.backward(c)
            steps.append(learner.grad())
        G.append(steps)
    G = np.array(G)  # (N, T, P)
    exact = per_step_grads(cell, xs, cs)
    var = G.var(axis=0, ddof=1).sum(axis=1)
    np.testing.assert_allclose(out["variance"], var, rtol=1e-9)
    np.testing.assert_allclose(out["exact_sq_norm"], np.sum(exact ** 2, axis=1), rtol=1e-10)
    np.testing.assert_allclose(out["relative_variance"], var / np.sum(exact ** 2, axis=1), rtol=1e-9)
    np.testing.assert_allclose(out["bias_sq"], np.sum((G.mean(axis=0) - exact) ** 2, axis=1), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(out["mean_sq_error"], np.mean(np.sum((G - exact) ** 2, axis=2), axis=0), rtol=1e-9)
    assert np.all(out["variance"][1:] > 0)


def test_deterministic_learner_has_no_variance():
    cell = make_cell("vanilla", 2, 4, 0.5, seed=0)
    xs, cs = random_sequence(cell, 5, seed=0)
    out = sr.estimator_variance(lambda s: sr.RTRL(cell), xs, cs, [0, 1, 2])
    np.testing.assert_allclose(out["variance"], 0.0, atol=1e-24)
    np.testing.assert_allclose(out["mean_sq_error"], 0.0, atol=1e-24)
    with pytest.raises(ValueError, match="seeds"):
        sr.estimator_variance(lambda s: sr.RTRL(cell), xs, cs, [0])
    with pytest.raises(TypeError, match="make_learner"):
        sr.estimator_variance(None, xs, cs, [0, 1])
