"""A cell written outside the library: ``examples/minimal_gated_unit.py``, one class in one file.

The contract for writing a cell holds if that file's ``MinimalGatedUnit``,
which knows only ``sparse_rtrl.Cell`` and ``sparse_rtrl.cellkit``, computes
the equations it documents, passes ``gradcheck``, and runs with every
generic learner as the built-in cells do: exact learners agree, SnAp-n
equals its masked dense recursion, batches equal single streams, the
parallel drivers equal the serial ones bit for bit, float32 follows
float64, online training learns, and checkpoints round-trip.

Tolerances as in ``test_exact.py``: ``EXACT`` (1e-9, relative to the largest
entry) where the library and a reference compute the same sums in another
order; finite differences ``FD`` (1e-6); float32 against float64 to a few
float32 ulps of the sums.
"""

import os
import sys

import numpy as np
import pytest

import sparse_rtrl as sr
from sparse_rtrl import checkpoint as ck

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))

from minimal_gated_unit import MinimalGatedUnit, mgu_kernel  # noqa: E402

EXACT = 1e-9
FD = 1e-6
F32 = 2e-5

#: Small cells: sparse with shared patterns, sparse with a pattern per matrix, dense.
CONFIGS = {
    "sparse": dict(n_in=2, n_hidden=5, density=0.4, seed=3, input_density=0.6),
    "unshared": dict(n_in=3, n_hidden=6, density=0.3, seed=5, shared_pattern=False),
    "dense": dict(n_in=2, n_hidden=4, density=1.0, seed=1),
}


def make(config="sparse", dtype=np.float64):
    cell = MinimalGatedUnit(**CONFIGS[config], dtype=dtype)
    # Nonzero biases, so that every weight's gradient (and each term of the coefficients) is exercised.
    rng = np.random.default_rng(7)
    for name in ("b_f", "b_n", "c_n"):
        cell.weights[name][:] = rng.normal(scale=0.5, size=cell.n_hidden)
    return cell


def sequence(cell, T, seed, batch=None):
    rng = np.random.default_rng(seed)
    lead = (T,) if batch is None else (T, batch)
    return rng.normal(size=lead + (cell.n_in,)), rng.normal(size=lead + (cell.n_state,))


def run(learner, xs, cs):
    """Forward and backward over a sequence: the states, and grad() at the end."""
    states = []
    for x, c in zip(xs, cs):
        states.append(learner.forward(x))
        learner.backward(c)
    return np.array(states), learner.grad()


def assert_close(actual, expected, rtol, what=""):
    """Entrywise within ``rtol * (|expected| + max(1, max|expected|))`` (see ``test_exact.py``)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def reference_step(cell, h, x):
    """The documented equations, in numpy from the dense weights."""
    w = {k: (v.toarray() if hasattr(v, "toarray") else v) for k, v in cell.weights.items()}
    f = 1.0 / (1.0 + np.exp(-(w["W_f"] @ h + w["U_f"] @ x + w["b_f"])))
    n = np.tanh(w["U_n"] @ x + w["b_n"] + f * (w["W_n"] @ h + w["c_n"]))
    return (1 - f) * h + f * n


def reference_gradient(cell, xs, cs, eps=1e-6):
    """Central differences of ``sum_t c_t . s_t`` through :func:`reference_step`: independent of the
    cell's kernel and of its Jacobians."""
    cell = cell.copy()
    theta = cell.params.copy()

    def loss():
        s, total = cell.init_state(), 0.0
        for x, c in zip(xs, cs):
            s = reference_step(cell, s, x)
            total += c @ s
        return total

    out = np.empty(cell.n_params)
    for p in range(cell.n_params):
        cell.params[p] = theta[p] + eps
        up = loss()
        cell.params[p] = theta[p] - eps
        out[p] = (up - loss()) / (2 * eps)
        cell.params[p] = theta[p]
    return out


def dense_reference(cell, xs, cs, mask=None):
    """``J_t = mask * (D_t J_{t-1} + I_t)``, ``g = sum_t c_t J_t``, with dense matrices from
    ``cell.jacobians`` (no mask: RTRL). Returns the gradient, the last ``J`` and the states."""
    S, P = cell.n_state, cell.n_params
    s = cell.init_state()
    J = np.zeros((S, P))
    g = np.zeros(P)
    states = []
    for x, c in zip(xs, cs):
        jac = cell.jacobians(s, x)
        J = jac.dynamics.toarray() @ J + jac.immediate.toarray()
        if mask is not None:
            J = np.where(mask, J, 0.0)
        s = jac.state
        states.append(s)
        g += c @ J
    return g, J, np.array(states)


# -- the cell computes what it documents, and gradcheck passes it -------------------------


@pytest.mark.parametrize("config", list(CONFIGS))
def test_the_step_is_the_documented_equations(config):
    cell = make(config)
    xs, _ = sequence(cell, 6, seed=0)
    s = cell.init_state()
    for x in xs:
        new = cell.step(s, x)
        assert_close(new, reference_step(cell, s, x), 1e-14, "step")
        s = new
    assert cell.structure.n_gates == 3 and cell.n_state == cell.n_hidden
    assert cell.weight_names == ("W_f", "W_n", "U_f", "U_n", "b_f", "b_n", "c_n")
    assert cell.kernel_args.shared_h is (True if config != "unshared" else None)


EXACT_LEARNERS = {
    "RTRL": sr.RTRL,
    "BPTT": sr.BPTT,
    "TBPTT(9)": lambda c: sr.TBPTT(c, 9),
    "SnAp-10": lambda c: sr.SnAp(c, 10),
}
APPROXIMATE_LEARNERS = {
    "SnAp-1": lambda c: sr.SnAp(c, 1),
    "SnAp-2": lambda c: sr.SnAp(c, 2),
    "UORO": lambda c: sr.UORO(c, seed=0),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_gradcheck_passes(config):
    cell = make(config)
    report = sr.gradcheck(cell, {**EXACT_LEARNERS, **APPROXIMATE_LEARNERS}, n_steps=7, seed=2)
    report.raise_if_failed()
    assert report.ok, str(report)
    assert report.jacobian_errors["dynamics"] < 1e-7, report.jacobian_errors
    assert report.jacobian_errors["immediate"] < 1e-7, report.jacobian_errors
    assert report.pattern_misses == {"dynamics": 0, "immediate": 0}
    assert report.bptt_vs_fd["all"] < 1e-6
    by_name = {r.name: r for r in report.learners}
    for name in EXACT_LEARNERS:
        assert by_name[name].category == "exact", name
        assert by_name[name].vs_bptt["all"] < 1e-10, (name, by_name[name].vs_bptt)
    assert by_name["SnAp-1"].category == "approximate"
    assert by_name["UORO"].category == "stochastic"
    assert set(by_name["RTRL"].vs_bptt) == set(cell.weight_names) | {"all"}
    assert "MinimalGatedUnit" in str(report) and "OK" in str(report)


def test_gradcheck_passes_in_float32():
    report = sr.gradcheck(make("sparse", np.float32), [sr.RTRL, lambda c: sr.SnAp(c, 10)], n_steps=6, seed=4)
    assert report.ok, str(report)


# -- the learners on it ----------------------------------------------------------------


@pytest.mark.parametrize("config", ["sparse", "dense"])
def test_exact_learners_agree_with_the_dense_recursion(config):
    cell = make(config)
    xs, cs = sequence(cell, 7, seed=1)
    g_ref, _, states_ref = dense_reference(cell, xs, cs)
    assert_close(g_ref, reference_gradient(cell, xs, cs), FD, "dense recursion vs finite differences")
    snap = sr.SnAp(cell, 10)
    assert snap.saturated and snap.exact
    results = {name: run(factory(cell), xs, cs) for name, factory in EXACT_LEARNERS.items()}
    for name, (states, g) in results.items():
        np.testing.assert_array_equal(states, states_ref, err_msg=name)
        assert_close(g, g_ref, EXACT, name)
        assert_close(g, results["BPTT"][1], EXACT, f"{name} vs BPTT")
    assert np.abs(g_ref).max() > 1e-3  # a gradient that is not trivially zero


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("n", [1, 2])
def test_snap_equals_its_masked_dense_recursion(config, n):
    cell = make(config)
    xs, cs = sequence(cell, 6, seed=2)
    learner = sr.SnAp(cell, n)
    mask = learner.mask().to_dense()
    assert mask.shape == (cell.n_state, cell.n_params)
    g_ref, J_ref, _ = dense_reference(cell, xs, cs, mask)
    _, g = run(learner, xs, cs)
    assert_close(g, g_ref, EXACT, f"SnAp-{n} gradient")
    assert_close(learner.influence().toarray(), J_ref, EXACT, f"SnAp-{n} influence")
    if not learner.saturated:
        g_exact, _, _ = dense_reference(cell, xs, cs)
        assert not np.allclose(g, g_exact, rtol=1e-6, atol=1e-9)  # the mask really drops something


BATCH_LEARNERS = {
    "RTRL": sr.RTRL,
    "BPTT": sr.BPTT,
    "SnAp-1": lambda c, **kw: sr.SnAp(c, 1, **kw),
    "SnAp-2": lambda c, **kw: sr.SnAp(c, 2, **kw),
}


@pytest.mark.parametrize("name", list(BATCH_LEARNERS))
def test_a_batch_equals_its_single_streams(name):
    cell = make("sparse")
    B, T = 3, 5
    xs, cs = sequence(cell, T, seed=3, batch=B)
    factory = BATCH_LEARNERS[name]
    states, g = run(factory(cell, batch_size=B, parallel=False), xs, cs)
    singles = [run(factory(cell), xs[:, b], cs[:, b]) for b in range(B)]
    for b, (states_b, _) in enumerate(singles):
        np.testing.assert_array_equal(states[:, b], states_b, err_msg=f"stream {b}")
    assert_close(g, sum(g_b for _, g_b in singles), EXACT, "gradient summed over the streams")


@pytest.mark.parametrize("name", list(BATCH_LEARNERS))
@pytest.mark.parametrize("config", ["sparse", "dense"])
def test_parallel_equals_serial_bit_for_bit(name, config):
    cell = make(config)
    xs, cs = sequence(cell, 5, seed=4, batch=3)
    serial = run(BATCH_LEARNERS[name](cell, batch_size=3, parallel=False), xs, cs)
    par_learner = BATCH_LEARNERS[name](cell, batch_size=3, parallel=True)
    assert par_learner.parallel
    parallel = run(par_learner, xs, cs)
    np.testing.assert_array_equal(serial[0], parallel[0])
    np.testing.assert_array_equal(serial[1], parallel[1])


def test_the_parallel_kernel_writes_what_the_serial_one_writes():
    cell = make("unshared")
    st = cell.structure
    rng = np.random.default_rng(5)
    B = 4
    s = rng.normal(scale=0.5, size=(B, cell.n_state))
    x = rng.normal(size=(B, cell.n_in))
    outs = []
    for parallel in (False, True):
        buffers = (np.empty((B, cell.n_state)), np.empty((B, cell.n_state, st.n_gates)),
                   np.empty((B, cell.n_hidden, 1, 1)), np.empty((B, st.n_presyn)))
        cell.advance(s, x, *buffers, parallel=parallel)
        outs.append(buffers)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(outs[0][3], np.hstack([s, x, np.ones((B, 1))]))
    np.testing.assert_array_equal(cell.step(s, x), outs[0][0])
    assert cell.kernel is mgu_kernel and cell.kernel_par is not mgu_kernel


@pytest.mark.parametrize("config", ["sparse", "dense"])
def test_float32_follows_float64(config):
    cell64 = make(config)
    cell32 = cell64.astype(np.float32)
    assert cell32.dtype == np.float32 and cell32.patterns == cell64.patterns
    np.testing.assert_array_equal(cell32.params, cell64.params.astype(np.float32))
    xs, cs = sequence(cell64, 6, seed=6)
    for factory in (sr.RTRL, lambda c: sr.SnAp(c, 2)):
        states64, g64 = run(factory(cell64), xs, cs)
        states32, g32 = run(factory(cell32), xs.astype(np.float32), cs.astype(np.float32))
        assert states32.dtype == np.float32 and g32.dtype == np.float32
        assert_close(states32, states64, F32, "states")
        assert_close(g32, g64, 10 * F32, "gradient")


# -- training and checkpoints ------------------------------------------------------------


def test_trains_online_with_snap2_step_by_step():
    # Output the previous input: needs one step of memory.
    rng = np.random.default_rng(0)
    T = 2000
    xs = rng.normal(size=(T, 1))
    ys = np.vstack([[[0.0]], xs[:-1]])
    cell = MinimalGatedUnit(1, 6, density=0.5, seed=0)
    learner = sr.SnAp(cell, 2)
    readout = sr.LinearReadout(cell, 1, seed=0)
    optimizer = sr.Adam([cell.params, readout.params], lr=1e-2)
    with pytest.raises(ValueError, match="MinimalGatedUnit"):
        sr.train_online(learner, readout, optimizer, xs[:5], ys[:5], fused=True)
    assert learner.n_steps == 0 and optimizer.n_updates == 0  # refused before anything ran
    losses = sr.train_online(learner, readout, optimizer, xs, ys)  # fused=None: step by step
    assert losses.shape == (T,) and np.all(np.isfinite(losses))
    first, last = losses[:200].mean(), losses[-300:].mean()
    assert last < 0.2 * first, (first, last)


def test_checkpoints_round_trip_the_cell_and_a_learner(tmp_path):
    cell = make("sparse")
    learner = sr.SnAp(cell, 2)
    xs, cs = sequence(cell, 8, seed=8)
    run(learner, xs[:4], cs[:4])
    learner.forward(xs[4])
    learner.backward(cs[4])  # credit pending in the accumulator
    ck.save(tmp_path / "mgu.ckpt", {"cell": ck.get_state(cell), "learner": ck.get_state(learner)})
    saved = ck.load(tmp_path / "mgu.ckpt")
    assert saved["cell"]["class"] == "python:minimal_gated_unit.MinimalGatedUnit"
    assert saved["learner"]["class"] == "learner/snap"

    twin_cell = MinimalGatedUnit(**CONFIGS["sparse"])  # same patterns, other values
    assert not np.array_equal(twin_cell.params, cell.params)
    twin = sr.SnAp(twin_cell, 2)
    ck.set_state(twin_cell, saved["cell"])
    ck.set_state(twin, saved["learner"])
    np.testing.assert_array_equal(twin_cell.params, cell.params)
    np.testing.assert_array_equal(twin.state, learner.state)
    np.testing.assert_array_equal(twin.influence().toarray(), learner.influence().toarray())
    # Both continue to the same numbers.
    a, b = run(learner, xs[5:], cs[5:]), run(twin, xs[5:], cs[5:])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])

    with pytest.raises(ValueError, match="MinimalGatedUnit"):
        ck.set_state(sr.GRU(2, 5, density=0.4, seed=3), saved["cell"])
    with pytest.raises(ValueError):
        ck.set_state(MinimalGatedUnit(**dict(CONFIGS["sparse"], seed=4)), saved["cell"])  # another pattern


def test_the_user_cell_stays_out_of_the_cell_table():
    assert MinimalGatedUnit.key is None
    assert MinimalGatedUnit not in sr.registry.CELLS.classes()
    assert sr.registry.class_id(MinimalGatedUnit) == "python:minimal_gated_unit.MinimalGatedUnit"


# -- the hooks are enforced ---------------------------------------------------------------

HOOKS = ("weight_specs", "gate_touch", "local_touch", "make_kernel_args", "kernel")


def _cell_class(leave_out=None):
    """A fresh Cell subclass with MinimalGatedUnit's definitions, but for ``leave_out``."""
    body = {name: vars(MinimalGatedUnit)[name] for name in ("__init__", "gate_names") + HOOKS + ("kernel_par",)
            if name != leave_out}
    return type("PartialCell", (sr.Cell,), body)


@pytest.mark.parametrize("hook", HOOKS)
def test_a_cell_missing_a_hook_cannot_be_instantiated(hook):
    cls = _cell_class(hook)
    with pytest.raises(TypeError, match=rf"abstract method '?{hook}'?$"):
        cls(2, 3)


def make_plain(like):
    """The example's own class with the same patterns and values as ``like``."""
    cell = MinimalGatedUnit(like.n_in, like.n_hidden, pattern=like.patterns)
    cell.params[:] = like.params
    return cell


def test_kernel_par_is_optional():
    cell = _cell_class("kernel_par")(2, 3, density=0.5, seed=0)
    assert cell.kernel_par is cell.kernel is mgu_kernel
    s = np.zeros((2, 3))
    x = np.ones((2, 2))
    np.testing.assert_array_equal(cell.step(s, x), make_plain(cell).step(s, x))


def test_cellkit_is_public_and_import_sparse_rtrl_stays_cheap():
    import subprocess

    code = "import sys, sparse_rtrl; assert 'numba' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    from sparse_rtrl import cellkit

    for name in ("njit", "parallel_njit", "row_dot", "row_dot2", "row_dot3", "row_dot4", "fast_tanh", "sigmoid",
                 "fill_presyn", "WeightSpec"):
        assert name in cellkit.__all__ and hasattr(cellkit, name), name
    assert cellkit.WeightSpec is sr.cells.WeightSpec
