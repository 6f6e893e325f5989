"""One life cycle, every learner x every cell x both dtypes.

``test_life_cycle`` drives each learner through the checks of the public
contract (API.md, "Learners"): forward/backward/grad/reset semantics,
batching, missing and repeated credits, and weights that change between
steps. Deterministic learners are also compared with a step-by-step float64
reference (``naive_online``) in each situation; UORO, whose draws differ
between learners, is compared with a fresh learner of the same seed where
the draws coincide, and checked for shapes and finiteness where they do not.
"""

import numpy as np
import pytest

import naive
import naive_future
import naive_local
import sparse_rtrl as sr
from conftest import DTYPES, make_cell, random_sequence
from learner_table import CASES, LEARNERS, REFUSED

T = 5
B = 3


def tolerances(dtype):
    """(reference tolerance, same-arithmetic-different-order tolerance)."""
    return (1e-4, 1e-5) if dtype == np.float32 else (1e-9, 1e-12)


def assert_close(actual, expected, rtol, what):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected,
                               rtol=rtol, atol=rtol * scale, err_msg=what)


def naive_online(cell, xs, cs, window=None, mask=None, params=None):
    """float64 ``sum_t c_t J_t``, ``J_t = mask * (D_t J_{t-1} + I_t)``, J restarted per window."""
    S, P = cell.n_state, cell.n_params
    s, J, g = np.zeros(S), np.zeros((S, P)), np.zeros(P)
    for t in range(len(xs)):
        if params is not None:
            cell.params[:] = params[t]
        if window is not None and t % window == 0:
            J = np.zeros((S, P))
        J = naive.dynamics_jacobian(cell, s, xs[t]) @ J + naive.immediate_jacobian(cell, s, xs[t])
        if mask is not None:
            J = np.where(mask, J, 0.0)
        s = naive.step(cell, s, xs[t])
        g += cs[t] @ J
    return g


def reference(name, learner, cell, xs, cs, params=None):
    """What a deterministic learner must return (float64), or None for a stochastic one.

    ``xs`` (T, n_in) for one stream or (T, B, n_in) for a batch; a batch of
    independent streams is the sum of its streams, a batch of DNI streams
    shares one model and is computed as a whole.
    """
    if LEARNERS[name].stochastic:
        return None
    if isinstance(learner, sr.ReadoutOnly):
        return np.zeros(cell.n_params)
    if np.ndim(xs) == 3 and type(learner) not in (sr.DNI, sr.DNIb):
        return sum(reference(name, learner, cell, xs[:, b], cs[:, b], params) for b in range(xs.shape[1]))
    if type(learner) in (sr.DNI, sr.DNIb):
        xs3, cs3 = (xs, cs) if np.ndim(xs) == 3 else (xs[:, None], cs[:, None])
        S, F = cell.n_state, cell.n_state + cell.n_in + 1
        learned = learner.jacobian == "learned"
        out = naive_future.dni(cell, xs3, cs3, learner.lr, learner.fix_interval, learner.jacobian,
                               learner.jacobian_lr, np.zeros((S, F)), np.zeros((S, S)) if learned else None,
                               params=params)
        return out["grads"].sum(axis=0)
    if type(learner) is sr.FutureBPTT:
        return naive_future.future_bptt(cell, xs, cs, learner.truncation, params=params).sum(axis=0)
    if type(learner) is sr.RFLO:
        return naive_local.rflo(cell, xs, cs, params=params)[0]
    if type(learner) is sr.EProp:
        return naive_local.eprop(cell, xs, cs, params=params)[0]
    window = learner.truncation if type(learner) is sr.TBPTT else None
    mask = learner.mask().to_dense() if isinstance(learner, sr.SnAp) else None
    return naive_online(cell, xs, cs, window=window, mask=mask, params=params)


def finish(learner):
    """The sequence's last gradient: F-BPTT first emits the steps it still holds."""
    if isinstance(learner, sr.FutureBPTT):
        learner.flush()
    return learner.grad()


def drive(learner, xs, cs, skip=(), extra=None, grad_at=()):
    """Run a sequence; ``skip``: steps with no backward; ``extra[t]``: a second credit.

    Returns the states and the sum of the grad() pieces (``grad_at``: steps
    after whose forward a grad() is taken before the backward).
    """
    states, total = [], None
    for t, (x, c) in enumerate(zip(xs, cs)):
        states.append(learner.forward(x))
        if t in grad_at:
            total = learner.grad() if total is None else total + learner.grad()
        if t not in skip:
            learner.backward(c)
        if extra is not None and t in extra:
            learner.backward(extra[t])
    g = finish(learner)
    return np.array(states), (g if total is None else total + g)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name,kind", CASES)
def test_life_cycle(name, kind, dtype):
    spec = LEARNERS[name]
    make = spec.make
    ref_tol, order_tol = tolerances(dtype)
    cell = make_cell(kind, 2, 3, 0.5, seed=4, dtype=dtype)
    S, P = cell.n_state, cell.n_params
    xs, cs = random_sequence(cell, T, seed=8)
    xs, cs = xs.astype(dtype), cs.astype(dtype)
    stochastic, learned = spec.stochastic, spec.learned

    # -- forward: shape, dtype, equals cell.step ------------------------------
    learner = make(cell)
    prev = cell.init_state()
    assert prev.shape == (S,) and prev.dtype == dtype
    states = []
    for x, c in zip(xs, cs):
        s = learner.forward(x)
        assert s.shape == (S,) and s.dtype == dtype
        assert_close(s, cell.step(prev, x), order_tol, "forward vs cell.step")
        prev = s
        states.append(s)
        learner.backward(c)
    states = np.array(states)

    # -- grad: shape, dtype, value; a second grad() is zero ---------------------
    g = finish(learner)
    assert g.shape == (P,) and g.dtype == dtype
    assert np.all(np.isfinite(g))
    expected = reference(name, learner, cell, xs, cs)
    if expected is not None:
        assert_close(g, expected, ref_tol, "grad vs reference")
    again = learner.grad()
    assert again.shape == (P,) and again.dtype == dtype and np.all(again == 0.0)

    # -- reset reproduces the run ----------------------------------------------
    # Dirty the influence, history and accumulator, reset, and replay. A
    # stochastic learner also draws fresh numbers after a reset, so it is
    # compared with a new learner whose generator is in the same state as the
    # old one's. A learned model (KeRNL, DNI) survives the reset by design, so
    # there only the states must repeat.
    if stochastic:
        gen = np.random.default_rng(123)
        replay = make(cell, seed=gen)
    else:
        replay = make(cell)
    dirty = np.random.default_rng(0)
    for _ in range(4):
        replay.forward(dirty.normal(size=cell.n_in))
        replay.backward(dirty.normal(size=S))
    replay.reset()
    if stochastic:
        twin = np.random.Generator(np.random.PCG64())
        twin.bit_generator.state = gen.bit_generator.state
        fresh = make(cell, seed=twin)
    else:
        fresh = make(cell)
    states2, g2 = drive(replay, xs, cs)
    states3, g3 = drive(fresh, xs, cs)
    np.testing.assert_array_equal(states2, states)
    np.testing.assert_array_equal(states3, states)
    assert np.all(np.isfinite(g2))
    if not learned:
        np.testing.assert_array_equal(g2, g3)
    if not stochastic and not learned:
        np.testing.assert_array_equal(g2, g)
    if stochastic:
        # A new learner with the same integer seed repeats the first run exactly.
        np.testing.assert_array_equal(drive(make(cell), xs, cs)[1], g)

    # -- grad() mid-sequence: the pieces sum to the whole -----------------------
    _, pieces = drive(make(cell), xs, cs, grad_at=(1, 3))
    assert_close(pieces, g, order_tol, "grad pieces vs one grad")

    # -- batched streams = sum of unbatched learners ----------------------------
    rng = np.random.default_rng(1)
    xb = rng.normal(size=(T, B, cell.n_in)).astype(dtype)
    cb = rng.normal(size=(T, B, S)).astype(dtype)
    batched = make(cell, batch_size=B)
    states_b, g_b = drive(batched, xb, cb)
    assert states_b.shape == (T, B, S) and states_b.dtype == dtype
    assert g_b.shape == (P,) and g_b.dtype == dtype and np.all(np.isfinite(g_b))
    _, pieces_b = drive(make(cell, batch_size=B), xb, cb, grad_at=(0, 2))
    assert_close(pieces_b, g_b, order_tol, "batched grad pieces vs one grad")
    singles = [drive(make(cell), xb[:, b], cb[:, b]) for b in range(B)]
    for b, (states_1, _) in enumerate(singles):
        assert_close(states_b[:, b], states_1, order_tol, f"batched stream {b} states")
    if not stochastic and not learned:
        # A shared learned model (DNI) makes a batch more than its streams.
        assert_close(g_b, sum(g1 for _, g1 in singles), order_tol, "batched grad vs sum of streams")
    if not stochastic:
        assert_close(g_b, reference(name, batched, cell, xb, cb), ref_tol, "batched grad vs reference")
    # ... also with a missing credit and a second credit for some steps.
    extra_b = rng.normal(size=(T, B, S)).astype(dtype)
    extra_at = (0, 2, T - 1)
    _, g_bx = drive(make(cell, batch_size=B), xb, cb, skip=(1,), extra={t: extra_b[t] for t in extra_at})
    assert g_bx.shape == (P,) and np.all(np.isfinite(g_bx))
    if not stochastic and not learned:
        singles_x = [drive(make(cell), xb[:, b], cb[:, b], skip=(1,),
                           extra={t: extra_b[t, b] for t in extra_at})[1] for b in range(B)]
        assert_close(g_bx, sum(singles_x), order_tol, "batched skip/extra vs sum of streams")

    # -- forward without backward: that step's credit is zero -------------------
    skip = (1, 3)
    cs_zeroed = cs.copy()
    cs_zeroed[list(skip)] = 0.0
    _, g_skip = drive(make(cell), xs, cs, skip=skip)
    _, g_zero = drive(make(cell), xs, cs_zeroed)
    assert_close(g_skip, g_zero, order_tol, "no backward vs zero credit")
    if not stochastic:
        assert_close(g_skip, reference(name, learner, cell, xs, cs_zeroed), ref_tol, "no backward vs reference")
    # ... including the last step (a pending update never applied).
    _, g_last = drive(make(cell), xs, cs, skip=(T - 1,))
    cs_last = cs.copy()
    cs_last[-1] = 0.0
    _, g_last_zero = drive(make(cell), xs, cs_last)
    assert_close(g_last, g_last_zero, order_tol, "no backward on the last step")

    # -- backward twice for one step adds both credits --------------------------
    c_extra = rng.normal(size=S).astype(dtype)
    _, g_twice = drive(make(cell), xs, cs, extra={2: c_extra, T - 1: c_extra})
    cs_sum = cs.copy()
    cs_sum[2] += c_extra
    cs_sum[T - 1] += c_extra
    _, g_sum = drive(make(cell), xs, cs_sum)
    assert_close(g_twice, g_sum, order_tol, "two backward() vs summed credit")
    if not stochastic:
        assert_close(g_twice, reference(name, learner, cell, xs, cs_sum), ref_tol, "two backward() vs reference")

    # -- weights changed between steps are used by the next forward ------------
    base = cell.params.copy()
    schedule = [base.copy()]
    for t in range(1, T):
        nxt = schedule[-1].copy()
        if t % 2 == 1:
            nxt += (0.3 * rng.normal(size=P)).astype(dtype)
        schedule.append(nxt)
    online = make(cell)
    prev = cell.init_state()
    for t in range(T):
        old = cell.step(prev, xs[t])
        cell.params = schedule[t]  # the property setter writes into the same vector
        s = online.forward(xs[t])
        now = cell.step(prev, xs[t])
        assert_close(s, now, order_tol, f"forward after a weight change, step {t}")
        if t % 2 == 1:
            assert np.max(np.abs(now - old)) > 1e-3, "the weight change should move the state"
        online.backward(cs[t])
        prev = s
    g_online = finish(online)
    assert g_online.shape == (P,) and np.all(np.isfinite(g_online))
    if not stochastic:
        cell.params[:] = base
        expected = reference(name, learner, cell, xs, cs, params=schedule)
        assert_close(g_online, expected, ref_tol, "grad with changing weights vs reference")


@pytest.mark.parametrize("name,kind", REFUSED)
def test_unsupported_cells_are_refused(name, kind):
    cell = make_cell(kind, 2, 3, 0.5, seed=4)
    with pytest.raises(TypeError, match="VanillaRNN"):
        LEARNERS[name].make(cell)
