"""Every kernel once more with numba's bounds checking on.

The fast build does not check indices: an off-by-one would read neighbouring
memory and return garbage instead of failing. This test runs every cell and
learner (unbatched, batched serial and batched parallel; SnAp n = 1..3, and
one SnAp stream split over the cores; the plan builders) in a subprocess
with ``NUMBA_BOUNDSCHECK=1`` and its own cache folder, where any
out-of-range index raises ``IndexError``.

The cells take every path of the cell kernels: sparse and dense matrices,
gate matrices with one shared pattern and with their own, mixed (a sparse
recurrent and a dense input side), tanh and linear, and 1 x 1. All are
float64: no kernel computes an index from the dtype, and each dtype is a
compilation of its own, which is nearly all this test costs (float32 would
double it and check no index more). It runs in the background (see
``conftest.py``).
"""

import os
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import sparse_rtrl as sr

    rng = np.random.default_rng(0)
    cells = [  # (cell, batched parallel too): each parallel driver is one loop over the streams whatever the cell
        (sr.VanillaRNN(3, 7, density=0.3, alpha=0.5, seed=1, input_density=0.5), True),
        (sr.VanillaRNN(1, 1, density=1.0, seed=4, activation="linear"), True),
        (sr.GRU(2, 6, density=0.4, seed=2, shared_pattern=False), True),
        (sr.GRU(1, 1, density=1.0, seed=4), True),
        (sr.GRU(3, 4, density=0.5, seed=5), False),      # shared sparse recurrent pattern, dense input
        (sr.LSTM(3, 5, density=0.35, seed=3, shared_pattern=False, input_density=0.6), True),
        (sr.LSTM(2, 4, density=0.5, seed=6), False),     # shared sparse recurrent pattern, dense input
    ]
    for cell, batched_parallel in cells:
        cell.jacobians(rng.normal(size=cell.n_state), rng.normal(size=cell.n_in))
        for batch, parallel in ((None, False), (None, True), (3, False), (3, True)):
            if batch is not None and parallel and not batched_parallel:
                continue
            kw = dict(batch_size=batch, parallel=parallel)
            learners = [sr.SnAp(cell, n, **kw) for n in (1, 2, 3)]  # one stream, parallel: split over the cores
            if batch is not None or not parallel:
                learners += [sr.RTRL(cell, **kw), sr.BPTT(cell, **kw), sr.TBPTT(cell, 2, **kw),
                             sr.UORO(cell, seed=0, **kw), sr.EProp(cell, **kw), sr.FutureBPTT(cell, 2, **kw),
                             sr.DNI(cell, lr=0.01, fix_interval=2, **kw), sr.DNIb(cell, lr=0.01, **kw)]
                if isinstance(cell, sr.VanillaRNN):
                    learners += [sr.KFRTRL(cell, seed=0, **kw), sr.RKFRTRL(cell, seed=0, **kw),
                                 sr.RFLO(cell, **kw), sr.KeRNL(cell, lr=0.01, **kw)]
            shape = () if batch is None else (batch,)
            for lrn in learners:
                for t in range(5):
                    lrn.forward(rng.normal(size=shape + (cell.n_in,)))
                    if t != 2:
                        lrn.backward(rng.normal(size=shape + (cell.n_state,)))
                    if t == 1:
                        lrn.backward(rng.normal(size=shape + (cell.n_state,)))
                        lrn.grad()
                if isinstance(lrn, sr.FutureBPTT):
                    lrn.flush()
                g = lrn.grad()
                assert np.isfinite(g).all(), lrn
                if isinstance(lrn, sr.SnAp):
                    lrn.influence(0)
                    lrn.mask()
    print("ok")
    """
)


def _command(folder):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    # A cache of its own: the bounds-checked kernels must not be mistaken for the others.
    return dict(args=[sys.executable, "-c", SCRIPT], env=env, cwd=root, numba_cache=os.path.join(folder, "numba"))


@pytest.mark.background.with_args(_command)
def test_all_kernels_under_boundscheck(background):
    out = background.result()
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip().endswith("ok")
