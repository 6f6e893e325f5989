"""float32 cells: every learner works in float32 and agrees with float64.

The float64 twin is built from the float32 cell (``astype(np.float64)``) and
fed the float32-rounded inputs and credits, so the only difference between
the two runs is arithmetic precision. Agreement is judged relative to the
largest entry of the float64 result (``F32``, 1e-4): float32 rounding is
6e-8 per operation, and a gradient here is a sum of a few hundred terms.
UORO is compared with the same seed: its sign draws do not depend on dtype.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import sparse_rtrl as sr
from conftest import cells, random_sequence

F32 = 1e-4

LEARNERS = {
    "RTRL": lambda c, B: sr.RTRL(c, batch_size=B),
    "BPTT": lambda c, B: sr.BPTT(c, batch_size=B),
    "TBPTT(2)": lambda c, B: sr.TBPTT(c, truncation=2, batch_size=B),
    "SnAp-1": lambda c, B: sr.SnAp(c, 1, batch_size=B),
    "SnAp-2": lambda c, B: sr.SnAp(c, 2, batch_size=B),
    "SnAp-3": lambda c, B: sr.SnAp(c, 3, batch_size=B),
    "UORO": lambda c, B: sr.UORO(c, seed=7, batch_size=B),
}


def assert_close32(actual, expected, what):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1e-3, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected,
                               rtol=F32, atol=F32 * scale, err_msg=what)


def run(learner, xs, cs):
    states = []
    for x, c in zip(xs, cs):
        states.append(learner.forward(x))
        learner.backward(c)
    return np.array(states), learner.grad()


@given(cell=cells(), T=st.integers(1, 6), seed=st.integers(0, 2**16), batched=st.booleans())
def test_float32_agrees_with_float64(cell, T, seed, batched):
    c32 = cell.astype(np.float32)
    assert c32.dtype == np.float32 and c32.params.dtype == np.float32
    assert c32.init_state().dtype == np.float32
    c64 = c32.astype(np.float64)
    np.testing.assert_array_equal(c64.params, c32.params.astype(np.float64))
    xs, cs = random_sequence(cell, T, seed)
    xs = xs.astype(np.float32)
    cs = cs.astype(np.float32)
    B = 2 if batched else None
    if batched:
        # Two streams: the given sequence and a scaled copy.
        xs = np.stack([xs, 0.5 * xs], axis=1)
        cs = np.stack([cs, -cs], axis=1)

    s32 = c32.step(c32.init_state(), xs[0][0] if batched else xs[0])
    assert s32.dtype == np.float32
    for name, make in LEARNERS.items():
        l32 = make(c32, B)
        l64 = make(c64, B)
        states32, g32 = run(l32, xs, cs)
        states64, g64 = run(l64, xs.astype(np.float64), cs.astype(np.float64))
        assert states32.dtype == np.float32, name
        assert g32.dtype == np.float32 and g32.shape == (cell.n_params,), name
        assert g64.dtype == np.float64, name
        assert_close32(states32, states64, f"{name} states")
        assert_close32(g32, g64, f"{name} grad")

