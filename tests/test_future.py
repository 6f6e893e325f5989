"""Future-facing learners: F-BPTT(T), DNI and DNIb.

References (``naive_future``) are dense float64 code written from the
equations: F-BPTT's credit windows and emission times, the DNI step, and
the closed-form future credit ``M = D^T (Q + M) D`` of a linear network.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import naive
import naive_future
import sparse_rtrl as sr
from conftest import CELL_KINDS, DTYPES, cells, make_cell, random_sequence
from sparse_rtrl.learners.future import DNI, DNIb, FutureBPTT

dtypes = st.sampled_from(DTYPES)


def tolerance(dtype):
    """Against a float64 reference: float32 rounding, or float64 rounding."""
    return 1e-4 if dtype == np.float32 else 1e-10


def assert_close(actual, expected, rtol, what=""):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=rtol * scale,
                               err_msg=what)


def credits_as_received(cs, skip=(), extra=None):
    """The total credit of each step: zero where backward() is skipped, summed where it is called twice."""
    out = np.array(cs, dtype=np.float64)
    for t in skip:
        out[t] = 0.0
    for t, c in (extra or {}).items():
        out[t] = out[t] + c
    return out


# -- F-BPTT ---------------------------------------------------------------------------


def drive_fbptt(learner, xs, cs, skip=(), extra=None, flush=True):
    """Run a sequence; return what each forward() emitted (a grad() right after it,
    before its backward()) and, last, what flush() emitted, plus the states."""
    emitted, states = [], []
    for t, (x, c) in enumerate(zip(xs, cs)):
        states.append(learner.forward(x))
        emitted.append(learner.grad())
        if t not in skip:
            learner.backward(c)
        if extra is not None and t in extra:
            learner.backward(extra[t])
    if flush:
        learner.flush()
    emitted.append(learner.grad())
    return np.array(emitted), np.array(states)


@given(cell=cells(max_hidden=5), n=st.integers(1, 7), longer=st.integers(0, 3), seed=st.integers(0, 1000),
       dtype=dtypes)
def test_fbptt_with_a_long_window_is_bptt(cell, n, longer, seed, dtype):
    """T >= the sequence length: nothing is emitted before flush(), and
    flush() emits the BPTT gradient."""
    cell = cell.astype(dtype)
    xs, cs = random_sequence(cell, n, seed)
    learner = FutureBPTT(cell, n + longer)
    emitted, _ = drive_fbptt(learner, xs.astype(dtype), cs.astype(dtype))
    assert emitted.dtype == dtype and emitted.shape == (n + 1, cell.n_params)
    assert np.all(emitted[:-1] == 0.0), "a step was emitted before it had T steps of credit"
    assert_close(emitted[-1], naive.bptt(cell, xs.astype(dtype), cs.astype(dtype)), tolerance(dtype), "flush vs BPTT")


@given(cell=cells(max_hidden=5), n=st.integers(1, 8), T=st.integers(1, 5), seed=st.integers(0, 1000),
       dtype=dtypes, data=st.data())
def test_fbptt_emissions_match_reference(cell, n, T, seed, dtype, data):
    """Each forward() emits the gradient of the step T steps back, with the
    credits of that step and the T - 1 after it (missing and repeated
    backward() calls included); flush() emits the rest."""
    cell = cell.astype(dtype)
    xs, cs = random_sequence(cell, n, seed)
    xs, cs = xs.astype(dtype), cs.astype(dtype)
    skip = data.draw(st.sets(st.integers(0, n - 1), max_size=2))
    extra_at = data.draw(st.sets(st.integers(0, n - 1), max_size=2))
    rng = np.random.default_rng(seed + 1)
    extra = {t: rng.normal(size=cell.n_state).astype(dtype) for t in extra_at}
    emitted, _ = drive_fbptt(FutureBPTT(cell, T), xs, cs, skip=skip, extra=extra)
    expected = naive_future.future_bptt(cell, xs, credits_as_received(cs, skip, extra), T)
    for t in range(n + 1):
        assert_close(emitted[t], expected[t], tolerance(dtype), f"emitted at {'flush' if t == n else t}")


def test_fbptt_window_slides():
    """Every step sees T steps of future credit: not TBPTT's consecutive blocks,
    nor BPTT (a check that the reference is neither in disguise)."""
    cell = make_cell("vanilla", 2, 4, 1.0, seed=1, alpha=0.7)
    xs, cs = random_sequence(cell, 6, seed=3)
    sliding = naive_future.future_bptt(cell, xs, cs, 2).sum(axis=0)
    emitted, _ = drive_fbptt(FutureBPTT(cell, 2), xs, cs)
    assert_close(emitted.sum(axis=0), sliding, 1e-12)
    for other in (naive.truncated_bptt(cell, xs, cs, 2), naive.bptt(cell, xs, cs)):
        assert np.max(np.abs(sliding - other)) > 1e-2 * np.max(np.abs(other))


def test_fbptt_emits_t_steps_late():
    cell = make_cell("gru", 2, 4, 0.5, seed=2)
    T, n = 3, 6
    xs, cs = random_sequence(cell, n, seed=4)
    learner = FutureBPTT(cell, T)
    for t in range(T):
        learner.forward(xs[t])
        learner.backward(cs[t])
        assert learner.pending_steps == t + 1
        assert np.all(learner.grad() == 0.0)
    learner.forward(xs[T])
    first = learner.grad()
    assert learner.pending_steps == T
    # Step 0's gradient with the credits of steps 0, 1, 2.
    _, Ds, Is, _ = naive_future.trajectory(cell, xs)
    delta = cs[0] + Ds[1].T @ (cs[1] + Ds[2].T @ cs[2])
    assert_close(first, delta @ Is[0], 1e-12)
    assert np.max(np.abs(first)) > 1e-3


@given(cell=cells(max_hidden=4), n=st.integers(2, 8), T=st.integers(1, 4), seed=st.integers(0, 1000),
       dtype=dtypes, data=st.data())
def test_fbptt_uses_the_weights_of_each_step(cell, n, T, seed, dtype, data):
    """An optimiser may change the weights between steps: each D_t and I_t is
    that of the weights step t ran with (copies kept in a ring of T)."""
    cell = cell.astype(dtype)
    rng = np.random.default_rng(seed)
    xs, cs = random_sequence(cell, n, seed)
    xs, cs = xs.astype(dtype), cs.astype(dtype)
    change = data.draw(st.sets(st.integers(1, n - 1), min_size=1))
    schedule = [cell.params.copy()]
    for t in range(1, n):
        nxt = schedule[-1].copy()
        if t in change:
            nxt += (0.3 * rng.normal(size=cell.n_params)).astype(dtype)
        schedule.append(nxt)
    base = cell.params.copy()
    learner = FutureBPTT(cell, T)
    emitted = []
    for t in range(n):
        cell.params[:] = schedule[t]
        learner.forward(xs[t])
        emitted.append(learner.grad())
        learner.backward(cs[t])
    cell.params[:] = rng.normal(size=cell.n_params)  # the weights after the run must not matter
    learner.flush()
    emitted.append(learner.grad())
    cell.params[:] = base
    expected = naive_future.future_bptt(cell, xs, cs, T, params=schedule)
    for t in range(n + 1):
        assert_close(emitted[t], expected[t], tolerance(dtype), f"emitted at {t}")


@given(cell=cells(max_hidden=4), batch=st.integers(2, 4), T=st.integers(1, 4), seed=st.integers(0, 1000),
       dtype=dtypes)
def test_fbptt_batched_and_parallel_equal_serial(cell, batch, T, seed, dtype):
    """Bit for bit: the parallel driver equals the serial one, and stream b of
    a batch is a single-stream learner fed stream b's data."""
    cell = cell.astype(dtype)
    rng = np.random.default_rng(seed)
    n = 6
    xs = rng.normal(size=(n, batch, cell.n_in)).astype(dtype)
    cs = rng.normal(size=(n, batch, cell.n_state)).astype(dtype)
    runs = []
    for parallel in (False, True):
        learner = FutureBPTT(cell, T, batch_size=batch, parallel=parallel)
        assert learner.parallel is parallel
        runs.append(drive_fbptt(learner, xs, cs, skip=(2,)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    singles = [drive_fbptt(FutureBPTT(cell, T), xs[:, b], cs[:, b], skip=(2,)) for b in range(batch)]
    total = singles[0][0].copy()
    for b in range(1, batch):
        total = total + singles[b][0]
    for b in range(batch):
        np.testing.assert_array_equal(runs[0][1][:, b], singles[b][1])
    np.testing.assert_array_equal(runs[0][0], total)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_fbptt_reset_flush_and_grad_semantics(kind, dtype):
    cell = make_cell(kind, 2, 3, 0.5, seed=7, dtype=dtype)
    T, n = 3, 7
    xs, cs = random_sequence(cell, n, seed=9)
    xs, cs = xs.astype(dtype), cs.astype(dtype)
    tol = tolerance(dtype)
    reference = FutureBPTT(cell, T)
    emitted, states = drive_fbptt(reference, xs, cs)

    # reset() discards the window and the accumulator: a dirtied learner replays a fresh one's run.
    replay = FutureBPTT(cell, T)
    dirty = np.random.default_rng(0)
    for _ in range(5):
        replay.forward(dirty.normal(size=cell.n_in))
        replay.backward(dirty.normal(size=cell.n_state))
    replay.reset()
    assert replay.pending_steps == 0 and np.all(replay.grad() == 0.0)
    emitted2, states2 = drive_fbptt(replay, xs, cs)
    np.testing.assert_array_equal(emitted2, emitted)
    np.testing.assert_array_equal(states2, states)

    # grad() neither waits for nor completes anything: its pieces sum to the whole.
    learner = FutureBPTT(cell, T)
    total = np.zeros(cell.n_params)
    for t in range(n):
        learner.forward(xs[t])
        if t % 2:
            total += learner.grad()
        learner.backward(cs[t])
        if t % 3 == 0:
            total += learner.grad()
    learner.flush()
    total += learner.grad()
    assert_close(total, emitted.sum(axis=0), tol, "grad pieces")

    # flush() empties the window; a second flush emits nothing; backward() must follow a forward().
    learner = FutureBPTT(cell, T)
    for t in range(4):
        learner.forward(xs[t])
        learner.backward(cs[t])
    learner.flush()
    assert learner.pending_steps == 0
    first = learner.grad()
    learner.flush()
    assert np.all(learner.grad() == 0.0)
    with pytest.raises(RuntimeError, match="flush"):
        learner.backward(cs[3])
    assert_close(first, naive_future.future_bptt(cell, xs[:4], cs[:4], T).sum(axis=0), tol, "flush after 4 steps")

    # After flush() the state runs on, but later credits do not reach the
    # flushed steps: the rest is F-BPTT started from the state reached.
    later, _ = drive_fbptt(learner, xs[4:], cs[4:])
    expected = naive_future.future_bptt(cell, xs[4:], cs[4:], T, s0=states[3])
    assert_close(later, expected, tol, "steps after a flush")

    # reset() without flush: what was not emitted is lost, as documented.
    learner = FutureBPTT(cell, T)
    for t in range(T):
        learner.forward(xs[t])
        learner.backward(cs[t])
    learner.reset()
    learner.flush()
    assert np.all(learner.grad() == 0.0)


@pytest.mark.parametrize("batch", [None, 2])
def test_fbptt_memory(batch):
    cell = make_cell("lstm", 2, 5, 0.4, seed=1)
    st_ = cell.structure
    T, B = 4, batch or 1
    mem = FutureBPTT(cell, T, batch_size=batch).memory()
    per_step = B * (cell.n_state * st_.n_gates + st_.n_hidden * st_.n_local ** 2 + st_.n_presyn + cell.n_state) * 8
    assert mem["history"] == T * per_step + T * st_.n_rec_params * 8 + T * 8
    assert mem["influence"] == 0


@pytest.mark.parametrize("truncation, exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("3", TypeError),
                                             (True, TypeError), (None, TypeError)])
def test_fbptt_bad_truncation(truncation, exc):
    with pytest.raises(exc, match="truncation"):
        FutureBPTT(sr.GRU(2, 3), truncation)


def test_fbptt_bad_arguments():
    cell = sr.GRU(2, 3)
    with pytest.raises(TypeError, match="cell"):
        FutureBPTT("gru", 3)
    with pytest.raises(ValueError, match="batch_size"):
        FutureBPTT(cell, 3, batch_size=0)
    with pytest.raises(TypeError, match="parallel"):
        FutureBPTT(cell, 3, parallel="yes")
    learner = FutureBPTT(cell, 3, batch_size=2)
    with pytest.raises(RuntimeError, match="forward"):
        learner.backward(np.zeros((2, cell.n_state)))
    with pytest.raises(ValueError, match="x"):
        learner.forward(np.zeros(cell.n_in))
    learner.forward(np.zeros((2, cell.n_in)))
    with pytest.raises(ValueError, match="c"):
        learner.backward(np.full((2, cell.n_state), np.nan))
    assert learner.name == "F-BPTT(3)" and not learner.stochastic and not learner.exact_for(1)


# -- DNI: the linear network whose future credit is known ----------------------------------


def linear_network(n=3, n_in=2, alpha=0.5, rho=0.85, seed=0, dtype=np.float64):
    """A linear vanilla RNN with ``D = rho R`` (R a random rotation: every
    direction of the state decays at the same rate, so every direction of the
    credit model is learned at a similar speed), no bias, and a quadratic loss
    ``L_t = 0.5 |V h_t|^2`` whose credit is ``c_t = Q h_t``, ``Q = V^T V``."""
    cell = sr.VanillaRNN(n_in, n, density=1.0, alpha=alpha, seed=seed, activation="linear", dtype=dtype)
    rng = np.random.default_rng(seed)
    R, _ = np.linalg.qr(rng.normal(size=(n, n)))
    D = rho * R
    cell.weights["W"].data[:] = ((D - (1.0 - alpha) * np.eye(n)) / alpha).ravel()
    cell.weights["b"][:] = 0.0
    V = rng.normal(size=(2, n))
    Q = V.T @ V
    D = naive.dynamics_jacobian(cell, np.zeros(n), np.zeros(n_in))  # D as the cell rounds it
    return cell, D, Q, naive_future.lyapunov_future_credit(D, Q)


def test_lyapunov_reference():
    """The closed form is the sum it stands for: M = sum_{k>=1} (D^k)^T Q D^k."""
    _, D, Q, M = linear_network()
    total, Dk = np.zeros_like(Q), np.eye(3)
    for _ in range(400):
        Dk = D @ Dk
        total += Dk.T @ Q @ Dk
    assert_close(M, total, 1e-12)
    assert_close(M, D.T @ (Q + M) @ D, 1e-12)


@pytest.mark.parametrize("jacobian", ["exact", "learned"])
@pytest.mark.parametrize("batch", [None, 2])
def test_dni_at_the_fixed_point(jacobian, batch):
    """With A = [M, 0, 0] (and Jhat = D) the bootstrap error is zero to
    rounding, A stays put although it is trained, and every step's gradient
    is the exact future-facing one: delta_t^T I_t with delta_t from BPTT
    over the sequence plus the credit M s_N of everything after it."""
    cell, D, Q, M = linear_network()
    n, F = cell.n_state, cell.n_state + cell.n_in + 1
    A = np.zeros((n, F))
    A[:, :n] = M
    learner = DNI(cell, lr=0.2, fix_interval=2, jacobian=jacobian, jacobian_lr=0.2, batch_size=batch)
    learner.set_model(A, D if jacobian == "learned" else None)
    B, N = batch or 1, 12
    rng = np.random.default_rng(3)
    xs = np.zeros((N, B, cell.n_in))
    xs[0] = rng.normal(size=(B, cell.n_in))  # one kick, then the free linear dynamics s' = D s
    grads, states, losses = [], [], []
    for t in range(N):
        s = learner.forward(xs[t] if batch else xs[t, 0])
        states.append(np.reshape(s, (B, n)))
        learner.backward(s @ Q)
        grads.append(learner.grad())
        if learner.synthetic_loss is not None:
            losses.append(learner.synthetic_loss)
    states = np.array(states)
    scale = np.max(np.abs(states @ M))
    assert len(losses) == N - 2
    assert np.sqrt(2.0 * max(losses)) <= 1e-13 * scale
    assert_close(learner.A, A, 1e-13, "A moved")
    if jacobian == "learned":
        assert_close(learner.jacobian_estimate, D, 1e-13, "Jhat moved")
    expected = np.zeros((N, cell.n_params))
    for b in range(B):
        _, Ds, Is, _ = naive_future.trajectory(cell, xs[:, b])
        delta = states[N - 1, b] @ (Q + M)
        for t in range(N - 1, -1, -1):
            expected[t] += delta @ Is[t]
            if t > 0:
                delta = states[t - 1, b] @ Q + Ds[t].T @ delta
    for t in range(N):
        assert_close(grads[t], expected[t], 1e-12, f"step {t}")
    assert np.max(np.abs(expected)) > 1e-2


def train_on_kicks(learner, cell, Q, episodes, length=20, seed=5):
    """Episodes of one random kick then zero input; the models persist across reset()."""
    rng = np.random.default_rng(seed)
    shape = (cell.n_in,) if learner.batch_size is None else (learner.batch_size, cell.n_in)
    for _ in range(episodes):
        learner.reset()
        for t in range(length):
            s = learner.forward(rng.normal(size=shape) if t == 0 else np.zeros(shape))
            learner.backward(s @ Q)


#: Relative distance to M after training. The targets are noise-free (exact
#: D, inputs zero after each kick), so the error shrinks geometrically: about
#: 1e-15 after 400 episodes here (measured), 1e-8 leaves a wide margin for
#: other BLAS/CPUs. Any other target convention has a fixed point at a
#: relative distance of order one from M (asserted below), so 1e-8 leaves no
#: doubt about which equation A solves.
CONVERGED = 1e-8


def test_dni_learns_the_future_credit():
    cell, D, Q, M = linear_network()
    n = cell.n_state
    learner = DNI(cell, lr=0.3, fix_interval=5, batch_size=3)
    assert np.all(learner.A == 0.0)
    train_on_kicks(learner, cell, Q, episodes=400)
    assert learner.n_updates == 400 * 18
    err = np.linalg.norm(learner.A[:, :n] - M) / np.linalg.norm(M)
    assert err < CONVERGED, err
    assert np.max(np.abs(learner.A[:, n:])) < CONVERGED * np.linalg.norm(M)
    # Other conventions converge elsewhere: the credit including c_t (the
    # literal "c_t + chat_{t+1} D_{t+1}"), or D where D^T belongs.
    including_now = Q + M
    transposed = naive_future.lyapunov_future_credit(D.T, Q)
    for other in (including_now, transposed):
        assert np.linalg.norm(other - M) / np.linalg.norm(M) > 0.1
    # What the model predicts is what users read.
    s, x = np.ones(n), np.full(cell.n_in, 2.0)
    assert_close(learner.synthetic_credit(s, x), learner.A @ np.concatenate([s, x, [1.0]]), 1e-14)


def test_dnib_learns_the_jacobian_and_the_future_credit():
    cell, D, Q, M = linear_network()
    n = cell.n_state
    learner = DNIb(cell, lr=0.3, fix_interval=5, jacobian_lr=0.3, batch_size=3)
    assert learner.jacobian == "learned" and learner.name == "DNIb"
    assert np.all(learner.jacobian_estimate == 0.0)
    train_on_kicks(learner, cell, Q, episodes=400)
    assert np.linalg.norm(learner.jacobian_estimate - D) / np.linalg.norm(D) < CONVERGED
    assert np.linalg.norm(learner.A[:, :n] - M) / np.linalg.norm(M) < CONVERGED


# -- DNI: the step against a float64 reference ------------------------------------------


def drive_dni(learner, xs, cs, skip=(), extra=None, params=None):
    """Per-step gradients (a grad() after each step's backward() calls) and the states."""
    batched = learner.batch_size is not None
    grads, states = [], []
    for t in range(len(xs)):
        if params is not None:
            learner.cell.params[:] = params[t]
        s = learner.forward(xs[t] if batched else xs[t, 0])
        states.append(np.reshape(s, (-1, learner.cell.n_state)))
        if t not in skip:
            learner.backward(cs[t] if batched else cs[t, 0])
        if extra is not None and t in extra:
            learner.backward(extra[t] if batched else extra[t][0])
        grads.append(learner.grad())
    return np.array(grads), np.array(states)


@given(cell=cells(max_hidden=4), n=st.integers(1, 7), batch=st.sampled_from([None, 1, 3]),
       jacobian=st.sampled_from(["exact", "learned"]), lr=st.sampled_from([0.0, 0.05, 0.2]),
       fix_interval=st.integers(1, 3), dtype=dtypes, seed=st.integers(0, 1000), data=st.data())
def test_dni_matches_reference(cell, n, batch, jacobian, lr, fix_interval, dtype, seed, data):
    """Gradients, A, A', Jhat and the bootstrap loss of every step, from a
    random start, with weights changing between steps and missing and
    repeated backward() calls. The reference is fed the learner's states, so
    in float32 both evaluate the Jacobians at the same points."""
    cell = cell.astype(dtype)
    rng = np.random.default_rng(seed)
    B = batch or 1
    S, F = cell.n_state, cell.n_state + cell.n_in + 1
    xs = rng.normal(size=(n, B, cell.n_in)).astype(dtype)
    cs = rng.normal(size=(n, B, S)).astype(dtype)
    skip = data.draw(st.sets(st.integers(0, n - 1), max_size=2))
    extra = {t: rng.normal(size=(B, S)).astype(dtype) for t in data.draw(st.sets(st.integers(0, n - 1), max_size=2))}
    params = [cell.params.copy()]
    for t in range(1, n):
        params.append(params[-1] + (0.1 * rng.normal(size=cell.n_params) * (t % 2)).astype(dtype))
    A0 = (0.3 * rng.normal(size=(S, F))).astype(dtype)
    J0 = (0.3 * rng.normal(size=(S, S))).astype(dtype)
    learner = DNI(cell, lr=lr, fix_interval=fix_interval, jacobian=jacobian, jacobian_lr=0.2, batch_size=batch)
    learner.set_model(A0, J0 if jacobian == "learned" else None)
    base = cell.params.copy()
    grads, states = drive_dni(learner, xs, cs, skip, extra, params)
    cell.params[:] = base
    received = credits_as_received(cs, skip, extra)
    ref = naive_future.dni(cell, xs, received, lr, fix_interval, jacobian, 0.2, A0,
                           J0 if jacobian == "learned" else None, params=params, states=states)
    tol = tolerance(dtype)
    assert grads.dtype == dtype and grads.shape == (n, cell.n_params)
    for t in range(n):
        assert_close(grads[t], ref["grads"][t], tol, f"gradient of step {t}")
    assert_close(learner.A, ref["A"], tol, "A")
    assert_close(learner.A_frozen, ref["A_frozen"], tol, "A'")
    if jacobian == "learned":
        assert_close(learner.jacobian_estimate, ref["J"], tol, "Jhat")
    else:
        assert learner.jacobian_estimate is None
    assert learner.n_updates == ref["n_updates"] == max(0, n - 2)
    if n >= 3:
        assert_close(learner.synthetic_loss, ref["losses"][-1], tol, "bootstrap loss")
    else:
        assert learner.synthetic_loss is None
    if dtype == np.float64:
        _, _, _, own = naive_future.trajectory(cell, xs[:, 0], params)
        assert_close(states[:, 0], own, 1e-12, "states")


def test_dni_without_a_model_is_the_immediate_gradient():
    """A = 0 and lr = 0: chat = 0, so DNI emits c_t^T I_t, which is F-BPTT(1)."""
    cell = make_cell("lstm", 2, 3, 0.5, seed=3)
    xs, cs = random_sequence(cell, 6, seed=2)
    grads, _ = drive_dni(DNI(cell, lr=0.0), xs[:, None], cs[:, None])
    emitted, _ = drive_fbptt(FutureBPTT(cell, 1), xs, cs)
    assert_close(grads.sum(axis=0), emitted.sum(axis=0), 1e-13)
    assert_close(grads.sum(axis=0), naive.truncated_bptt(cell, xs, cs, 1), 1e-12)


@given(cell=cells(max_hidden=4), batch=st.integers(2, 4), jacobian=st.sampled_from(["exact", "learned"]),
       seed=st.integers(0, 1000), dtype=dtypes)
def test_dni_parallel_equals_serial(cell, batch, jacobian, seed, dtype):
    cell = cell.astype(dtype)
    rng = np.random.default_rng(seed)
    n, S = 6, cell.n_state
    xs = rng.normal(size=(n, batch, cell.n_in)).astype(dtype)
    cs = rng.normal(size=(n, batch, S)).astype(dtype)
    A0 = rng.normal(size=(S, S + cell.n_in + 1)) * 0.3
    runs = []
    for parallel in (False, True):
        learner = DNI(cell, lr=0.1, fix_interval=2, jacobian=jacobian, jacobian_lr=0.1, batch_size=batch,
                      parallel=parallel)
        assert learner.parallel is parallel
        learner.set_model(A0)
        grads, states = drive_dni(learner, xs, cs, skip=(3,))
        runs.append((grads, states, learner.A.copy(), learner.A_frozen.copy(),
                     None if jacobian == "exact" else learner.jacobian_estimate.copy()))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@given(cell=cells(max_hidden=4), batch=st.integers(2, 4), seed=st.integers(0, 1000), dtype=dtypes)
def test_dni_batch_with_fixed_models_is_single_streams(cell, batch, seed, dtype):
    """The streams share only A and Jhat: with both fixed (lr = 0), stream b of
    a batch is, bit for bit, a single-stream learner, and grad() their sum."""
    cell = cell.astype(dtype)
    rng = np.random.default_rng(seed)
    n, S = 5, cell.n_state
    xs = rng.normal(size=(n, batch, cell.n_in)).astype(dtype)
    cs = rng.normal(size=(n, batch, S)).astype(dtype)
    A0 = rng.normal(size=(S, S + cell.n_in + 1)) * 0.3

    def make(**kw):
        learner = DNI(cell, lr=0.0, jacobian="learned", jacobian_lr=0.0, **kw)
        learner.set_model(A0, np.eye(S))
        return learner

    grads, states = drive_dni(make(batch_size=batch), xs, cs)
    singles = [drive_dni(make(), xs[:, b:b + 1], cs[:, b:b + 1]) for b in range(batch)]
    total = singles[0][0].copy()
    for b in range(1, batch):
        total = total + singles[b][0]
    for b in range(batch):
        np.testing.assert_array_equal(states[:, b], singles[b][1][:, 0])
    np.testing.assert_array_equal(grads, total)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("jacobian", ["exact", "learned"])
def test_dni_reset_and_grad_semantics(kind, dtype, jacobian):
    cell = make_cell(kind, 2, 3, 0.5, seed=5, dtype=dtype)
    n, S = 6, cell.n_state
    xs, cs = random_sequence(cell, n, seed=6)
    xs, cs = xs.astype(dtype)[:, None], cs.astype(dtype)[:, None]
    tol = tolerance(dtype)
    rng = np.random.default_rng(1)
    A0 = rng.normal(size=(S, S + cell.n_in + 1)) * 0.3
    J0 = rng.normal(size=(S, S)) * 0.3 if jacobian == "learned" else None

    def make():
        learner = DNI(cell, lr=0.1, fix_interval=2, jacobian=jacobian, jacobian_lr=0.1)
        learner.set_model(A0, J0)
        return learner

    grads, states = drive_dni(make(), xs, cs)
    assert np.all(np.isfinite(grads)) and np.max(np.abs(grads)) > 0

    # reset() keeps the learned models; with them restored, a dirtied learner replays a fresh run.
    replay = make()
    dirty = np.random.default_rng(0)
    for _ in range(5):
        replay.forward(dirty.normal(size=cell.n_in))
        replay.backward(dirty.normal(size=S))
    trained = replay.A.copy()
    assert not np.array_equal(trained, A0.astype(dtype))
    replay.reset()
    assert np.array_equal(replay.A, trained) and replay.n_updates == 3
    assert np.all(replay.grad() == 0.0)
    replay.reset_models()
    assert np.all(replay.A == 0.0) and np.all(replay.A_frozen == 0.0) and replay.n_updates == 0
    assert replay.synthetic_loss is None
    if jacobian == "learned":
        assert np.all(replay.jacobian_estimate == 0.0)
    replay.set_model(A0, J0)
    replay_grads, replay_states = drive_dni(replay, xs, cs)
    np.testing.assert_array_equal(replay_states, states)
    np.testing.assert_array_equal(replay_grads, grads)

    # A second grad() is zero; grad() before backward() holds chat_t^T I_t, the pieces sum to the whole.
    learner = make()
    pieces = np.zeros(cell.n_params)
    for t in range(n):
        learner.forward(xs[t, 0])
        if t % 2:
            pieces += learner.grad()
        learner.backward(cs[t, 0])
        pieces += learner.grad()
        assert np.all(learner.grad() == 0.0)
    assert_close(pieces, grads.sum(axis=0), tol, "pieces")

    # No backward() is zero credit; two backward() calls add.
    skipped, _ = drive_dni(make(), xs, cs, skip=(1, n - 1))
    zeroed = cs.copy()
    zeroed[[1, n - 1]] = 0.0
    assert_close(skipped, drive_dni(make(), xs, zeroed)[0], tol, "skip")
    extra = {2: cs[4], n - 1: cs[0]}
    twice, _ = drive_dni(make(), xs, cs, extra=extra)
    summed = cs.copy()
    summed[2] += cs[4]
    summed[n - 1] += cs[0]
    assert_close(twice, drive_dni(make(), xs, summed)[0], tol, "twice")


def test_dni_models_are_read_only_views():
    cell = sr.GRU(2, 3)
    learner = DNIb(cell, lr=0.5)
    for arr in (learner.A, learner.A_frozen, learner.jacobian_estimate):
        with pytest.raises(ValueError):
            arr[0, 0] = 1.0
    rng = np.random.default_rng(0)
    for _ in range(4):
        learner.forward(rng.normal(size=2))
        learner.backward(rng.normal(size=3))
    view = learner.A
    before = view.copy()
    learner.forward(rng.normal(size=2))
    assert not np.array_equal(view, before)  # a live view: the update shows through it
    batch = learner.synthetic_credit(np.ones((4, 3)), np.ones((4, 2)))
    assert batch.shape == (4, 3)
    assert_close(batch[1], learner.synthetic_credit(np.ones(3), np.ones(2)), 1e-15)


def test_dni_memory():
    cell = make_cell("gru", 2, 4, 0.5, seed=0)
    S, F, B = cell.n_state, cell.n_state + cell.n_in + 1, 3
    exact = DNI(cell, batch_size=B).memory()
    assert exact["traces"] == (2 * S * F + 2 * B * S) * 8
    assert exact["history"] == (2 * B * F + cell.structure.n_rec_params) * 8
    learned = DNIb(cell, batch_size=B).memory()
    assert learned["traces"] == (2 * S * F + S * S + 2 * B * S) * 8
    assert learned["history"] == 2 * B * F * 8


def test_dnib_trains_online_with_random_feedback():
    """DNIb as Marschall et al. run it: the learner with a learned Jacobian,
    the readout with fixed random feedback."""
    cell = sr.VanillaRNN(2, 6, density=0.5, alpha=0.5, seed=1)
    readout = sr.LinearReadout(cell, 1, feedback="random", seed=2)
    learner = DNIb(cell, lr=0.01, jacobian_lr=0.01)
    opt = sr.SGD([cell.params, readout.params], lr=0.01)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(50, 2))
    losses = sr.train_online(learner, readout, opt, xs, rng.normal(size=(50, 1)))
    assert losses.shape == (50,) and np.all(np.isfinite(losses))
    assert learner.n_updates == 48 and np.max(np.abs(learner.jacobian_estimate)) > 0


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"lr": -0.1}, ValueError, "lr"),
    ({"lr": float("nan")}, ValueError, "lr"),
    ({"lr": "fast"}, TypeError, "lr"),
    ({"fix_interval": 0}, ValueError, "fix_interval"),
    ({"fix_interval": 2.5}, TypeError, "fix_interval"),
    ({"jacobian": "approximate"}, ValueError, "jacobian"),
    ({"jacobian": None}, ValueError, "jacobian"),
    ({"jacobian_lr": -1.0}, ValueError, "jacobian_lr"),
    ({"jacobian_lr": float("inf")}, ValueError, "jacobian_lr"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"parallel": 1}, TypeError, "parallel"),
])
def test_dni_bad_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        DNI(sr.GRU(2, 3), **kwargs)


def test_dni_bad_model_and_inputs():
    cell = sr.GRU(2, 3)
    S, F = 3, 6
    with pytest.raises(TypeError, match="cell"):
        DNI(None)
    with pytest.raises(TypeError, match="jacobian"):
        DNIb(cell, jacobian="exact")
    learner = DNI(cell)
    with pytest.raises(ValueError, match="A"):
        learner.set_model(np.zeros((S, S)))
    with pytest.raises(ValueError, match="A"):
        learner.set_model(np.full((S, F), np.inf))
    with pytest.raises(ValueError, match="jacobian_estimate"):
        learner.set_model(np.zeros((S, F)), np.zeros((S, S)))
    with pytest.raises(ValueError, match="jacobian_estimate"):
        DNIb(cell).set_model(np.zeros((S, F)), np.zeros((S, S + 1)))
    with pytest.raises(ValueError, match="s"):
        learner.synthetic_credit(np.zeros(S + 1), np.zeros(2))
    with pytest.raises(ValueError, match="x"):
        learner.synthetic_credit(np.zeros((2, S)), np.zeros(2))
    with pytest.raises(RuntimeError, match="forward"):
        learner.backward(np.zeros(S))
    assert learner.name == "DNI" and not learner.stochastic and not learner.exact_for(1)
