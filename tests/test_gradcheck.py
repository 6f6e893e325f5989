"""The public gradient checker: passes correct cells and learners, catches broken ones."""

import numpy as np
import pytest

import sparse_rtrl as sr
from sparse_rtrl._cell_kernels import vanilla_kernel
from sparse_rtrl._jit import njit
from sparse_rtrl import RTRL, SnAp

from conftest import make_cell


@pytest.mark.parametrize("kind", ["vanilla", "gru", "lstm"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gradcheck_passes_correct_cells(kind, dtype):
    cell = make_cell(kind, 2, 5, 0.4, seed=3, dtype=dtype)
    report = sr.gradcheck(cell, n_steps=6, seed=1)
    assert report.ok, str(report)
    assert report.jacobian_errors["dynamics"] < 1e-6
    assert report.jacobian_errors["immediate"] < 1e-6
    assert report.pattern_misses == {"dynamics": 0, "immediate": 0}
    by_name = {r.name: r for r in report.learners}
    assert set(by_name) == {"RTRL", "SnAp-1", "SnAp-2", "UORO"}
    assert by_name["RTRL"].category == "exact"
    assert by_name["UORO"].category == "stochastic"
    tol = 1e-10 if dtype == np.float64 else 2e-3
    assert by_name["RTRL"].vs_bptt["all"] < tol
    assert set(by_name["RTRL"].vs_bptt) == set(cell.weight_names) | {"all"}
    text = str(report)
    assert "RTRL" in text and "OK" in text


def test_gradcheck_reports_exactness_from_the_learner():
    cell = make_cell("gru", 2, 6, 0.3, seed=0)
    report = sr.gradcheck(
        cell, {"tb2": lambda c: sr.TBPTT(c, 2), "tb9": lambda c: sr.TBPTT(c, 9), "snap": lambda c: SnAp(c, 50)},
        n_steps=5,
    )
    kinds = {r.name: r.category for r in report.learners}
    assert kinds == {"tb2": "approximate", "tb9": "exact", "snap": "exact"}
    errs = {r.name: r.vs_bptt["all"] for r in report.learners}
    assert errs["tb9"] < 1e-12 and errs["snap"] < 1e-12
    assert errs["tb2"] > 1e-6  # truncation really drops something on this network


class _BrokenVanilla(sr.VanillaRNN):
    """A user's cell whose immediate coefficient forgets the tanh derivative."""

    @property
    def kernel(self):
        return _broken_kernel


@njit
def _broken_kernel(args, s_prev, x, s_next, coef, dyn, presyn, want_jacobians):
    vanilla_kernel(args, s_prev, x, s_next, coef, dyn, presyn, want_jacobians)
    if want_jacobians:
        for b in range(coef.shape[0]):
            for i in range(coef.shape[1]):
                coef[b, i, 0] = args[7]  # alpha instead of alpha * (1 - tanh^2)


def test_gradcheck_catches_a_wrong_immediate_jacobian():
    cell = _BrokenVanilla(2, 4, density=0.5, seed=0)
    report = sr.gradcheck(cell, [RTRL], n_steps=4)
    assert not report.ok
    assert report.jacobian_errors["immediate"] > 1e-3
    assert any("immediate Jacobian" in p for p in report.problems)
    with pytest.raises(AssertionError, match="immediate"):
        report.raise_if_failed()


class _MissingLocalLSTM(sr.LSTM):
    """A cell that under-declares its dynamics: forgets that h_i depends on its own c_i."""

    def local_touch(self):
        return [[False, False], [False, True]]


def test_gradcheck_catches_an_incomplete_pattern():
    cell = _MissingLocalLSTM(2, 4, density=0.4, seed=2)
    report = sr.gradcheck(cell, [RTRL], n_steps=3)
    assert not report.ok
    assert report.pattern_misses["dynamics"] >= cell.n_hidden


def test_gradcheck_rejects_bad_arguments():
    cell = make_cell("vanilla", 2, 3, 1.0, seed=0)
    other = make_cell("vanilla", 2, 3, 1.0, seed=1)
    with pytest.raises(TypeError, match="cell"):
        sr.gradcheck("not a cell")
    with pytest.raises(ValueError, match="different cell"):
        sr.gradcheck(cell, [RTRL(other)])
    with pytest.raises(ValueError, match="batched"):
        sr.gradcheck(cell, [RTRL(cell, batch_size=2)])
    with pytest.raises(ValueError, match="n_steps"):
        sr.gradcheck(cell, n_steps=0)
    with pytest.raises(TypeError, match="learners"):
        sr.gradcheck(cell, {"x": lambda c: 3})
