"""Every kernel once more with numba's bounds checking on.

The fast build does not check indices: an off-by-one would read neighbouring
memory and return garbage instead of failing. This test runs every cell and
learner (unbatched, batched serial and batched parallel; SnAp n = 1..3; the
plan builders) in a subprocess
with ``NUMBA_BOUNDSCHECK=1`` and its own cache folder, where any
out-of-range index raises ``IndexError``.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import sparse_rtrl as sr

    rng = np.random.default_rng(0)
    cells = [
        sr.VanillaRNN(3, 7, density=0.3, alpha=0.5, seed=1, input_density=0.5),
        sr.VanillaRNN(1, 1, density=1.0, seed=4, activation="linear", dtype=np.float32),
        sr.GRU(2, 6, density=0.4, seed=2, shared_pattern=False),
        sr.LSTM(3, 5, density=0.35, seed=3, shared_pattern=False, input_density=0.6),
        sr.GRU(1, 1, density=1.0, seed=4),
    ]
    for cell in cells:
        cell.jacobians(rng.normal(size=cell.n_state).astype(cell.dtype), rng.normal(size=cell.n_in).astype(cell.dtype))
        for batch, parallel in ((None, False), (3, False), (3, True)):
            kw = dict(batch_size=batch, parallel=parallel)
            learners = [sr.RTRL(cell, **kw), sr.BPTT(cell, **kw), sr.TBPTT(cell, 2, **kw),
                        sr.UORO(cell, seed=0, **kw), sr.EProp(cell, **kw), sr.FutureBPTT(cell, 2, **kw),
                        sr.DNI(cell, lr=0.01, fix_interval=2, **kw), sr.DNIb(cell, lr=0.01, **kw)]
            learners += [sr.SnAp(cell, n, **kw) for n in (1, 2, 3)]
            if isinstance(cell, sr.VanillaRNN):
                learners += [sr.KFRTRL(cell, seed=0, **kw), sr.RKFRTRL(cell, seed=0, **kw), sr.RFLO(cell, **kw),
                             sr.KeRNL(cell, lr=0.01, **kw)]
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


def test_all_kernels_under_boundscheck(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=root)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip().endswith("ok")
