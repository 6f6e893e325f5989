"""Self-checks for the reference module ``tests/naive.py``.

The fake cells here are built from a tiny CSR holder so these tests never
import ``sparse_rtrl``. Sizes are tiny so the file runs in seconds.
"""

import math
import os
import sys
import types

import numpy as np
import pytest
from numpy.testing import assert_allclose

# naive.py sits beside this file; make it importable however pytest is run
# (rootdir, package or not).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import naive  # noqa: E402

KINDS = ("vanilla", "gru", "lstm")
FD_TOL = dict(rtol=1e-6, atol=1e-8)
EXACT_TOL = dict(rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# Fakes
# ---------------------------------------------------------------------------

class FakeCSR:
    """Minimal CSR holder: shape, indptr, indices, data, toarray()."""

    def __init__(self, pattern, values):
        pattern = np.asarray(pattern, dtype=bool)
        self.shape = pattern.shape
        indptr = [0]
        indices = []
        data = []
        for i in range(pattern.shape[0]):
            for j in range(pattern.shape[1]):  # ascending columns
                if pattern[i, j]:
                    indices.append(j)
                    data.append(values[i, j])
            indptr.append(len(indices))
        self.indptr = np.array(indptr, dtype=np.int64)
        self.indices = np.array(indices, dtype=np.int64)
        self.data = np.array(data, dtype=np.float64)

    def toarray(self):
        out = np.zeros(self.shape)
        for i in range(self.shape[0]):
            for k in range(self.indptr[i], self.indptr[i + 1]):
                out[i, self.indices[k]] = self.data[k]
        return out


def random_pattern(rng, rows, cols, density):
    """Random bool pattern; for 0 < density < 1 force one empty row."""
    pat = rng.random((rows, cols)) < density
    if 0.0 < density < 1.0 and rows > 1:
        pat[rng.integers(rows)] = False
    return pat


def make_cell(kind, n=4, n_in=2, density=0.5, seed=0, alpha=1.0,
              rec_pattern=None, scale=0.5):
    """Fake cell with random patterns and values ~ N(0, scale^2).

    ``rec_pattern``: 'diag' for diagonal-only recurrent matrices, or a fixed
    bool (n, n) array used for all recurrent matrices.
    """
    rng = np.random.default_rng(seed)
    names = naive.WEIGHT_NAMES[kind]
    weights = {}
    for name in names:
        if naive.is_matrix_name(name):
            rec = name == "W" or name.startswith("W_h")
            cols = n if rec else n_in
            if rec and isinstance(rec_pattern, str) and rec_pattern == "diag":
                pat = np.eye(n, dtype=bool)
            elif rec and rec_pattern is not None:
                pat = np.asarray(rec_pattern, dtype=bool)
            else:
                pat = random_pattern(rng, n, cols, density)
            weights[name] = FakeCSR(pat, rng.normal(size=(n, cols)) * scale)
        else:
            weights[name] = rng.normal(size=n) * scale
    P = sum(w.data.size if naive.is_matrix_name(k) else w.size
            for k, w in weights.items())
    cell = types.SimpleNamespace(
        key=kind, n_in=n_in, n_hidden=n,
        n_state=2 * n if kind == "lstm" else n, n_params=P,
        weight_names=names, weights=weights)
    if kind == "vanilla":
        cell.alpha = alpha
    return cell


def random_sequence(cell, T, seed):
    rng = np.random.default_rng(1000 + seed)
    xs = rng.normal(size=(T, cell.n_in))
    cs = rng.normal(size=(T, cell.n_state))
    return xs, cs


def random_point(cell, seed):
    rng = np.random.default_rng(2000 + seed)
    s = rng.normal(size=cell.n_state) * 0.8
    if cell.key != "lstm":
        s = np.tanh(s)  # h of gru/vanilla lives in (-1, 1)
    return s, rng.normal(size=cell.n_in)


# Cell configurations: (kind, n, n_in, density, alpha)
CONFIGS = [
    ("vanilla", 4, 2, 0.5, 1.0),
    ("vanilla", 5, 3, 1.0, 0.3),
    ("vanilla", 3, 1, 0.0, 0.7),
    ("gru", 4, 2, 0.5, 1.0),
    ("gru", 3, 3, 1.0, 1.0),
    ("gru", 5, 1, 0.3, 1.0),
    ("lstm", 3, 2, 0.5, 1.0),
    ("lstm", 2, 3, 1.0, 1.0),
    ("lstm", 4, 1, 0.4, 1.0),
]


def _id(cfg):
    return "%s-n%d-in%d-d%.1f-a%.1f" % cfg


def cfg_cell(cfg, seed):
    kind, n, n_in, density, alpha = cfg
    return make_cell(kind, n=n, n_in=n_in, density=density, seed=seed,
                     alpha=alpha)


# ---------------------------------------------------------------------------
# An independent, loop-over-CSR step (checks step's orientation and CSR use)
# ---------------------------------------------------------------------------

def _sig(a):
    return 1.0 / (1.0 + math.exp(-a))


def _row_dot(mat, i, v):
    """sum_j mat[i, j] v[j] over the stored entries of row i."""
    return sum(mat.data[k] * v[mat.indices[k]]
               for k in range(mat.indptr[i], mat.indptr[i + 1]))


def loop_step(cell, s, x):
    w = cell.weights
    n = cell.n_hidden
    out = np.zeros(cell.n_state)
    for i in range(n):
        if cell.key == "vanilla":
            a = _row_dot(w["W"], i, s) + _row_dot(w["U"], i, x) + w["b"][i]
            out[i] = (1 - cell.alpha) * s[i] + cell.alpha * math.tanh(a)
        elif cell.key == "gru":
            r = _sig(_row_dot(w["W_ir"], i, x) + _row_dot(w["W_hr"], i, s)
                     + w["b_r"][i])
            z = _sig(_row_dot(w["W_iz"], i, x) + _row_dot(w["W_hz"], i, s)
                     + w["b_z"][i])
            nn = math.tanh(_row_dot(w["W_in"], i, x) + w["b_in"][i]
                           + r * (_row_dot(w["W_hn"], i, s) + w["b_hn"][i]))
            out[i] = (1 - z) * nn + z * s[i]
        else:
            h, c = s[:n], s[n:]
            pre = {g: _row_dot(w["W_i" + g], i, x) + _row_dot(w["W_h" + g], i, h)
                   + w["b_" + g][i] for g in "ifgo"}
            cn = _sig(pre["f"]) * c[i] + _sig(pre["i"]) * math.tanh(pre["g"])
            out[i] = _sig(pre["o"]) * math.tanh(cn)
            out[n + i] = cn
    return out


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_param_index_and_dense_weights(cfg):
    cell = cfg_cell(cfg, seed=1)
    index = naive.param_index(cell)
    assert len(index) == cell.n_params
    theta = naive.get_params(cell)
    assert theta.shape == (cell.n_params,)
    # theta -> dense weights reproduces toarray()/biases exactly.
    w = naive.dense_weights(cell, theta)
    for name in cell.weight_names:
        ref = cell.weights[name]
        ref = ref.toarray() if naive.is_matrix_name(name) else ref
        assert_allclose(w[name], ref, rtol=0, atol=0)
    # each index entry points at the value theta holds
    for p, (name, i, j) in enumerate(index):
        if j is None:
            assert cell.weights[name][i] == theta[p]
        else:
            assert cell.weights[name].toarray()[i, j] == theta[p]
    # order: names in weight_names order, CSR order within a matrix
    order = [cell.weight_names.index(name) for name, _, _ in index]
    assert order == sorted(order)


def test_param_index_count_mismatch_raises():
    cell = make_cell("vanilla")
    cell.n_params += 1
    with pytest.raises(ValueError):
        naive.param_index(cell)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_step_matches_loop_implementation(cfg):
    cell = cfg_cell(cfg, seed=2)
    for k in range(3):
        s, x = random_point(cell, k)
        assert_allclose(naive.step(cell, s, x), loop_step(cell, s, x),
                        rtol=1e-13, atol=1e-14)


def test_step_scalar_by_hand():
    # n = 1, n_in = 1, hand-written formulas with math only.
    w, u, b, a = 0.7, -1.3, 0.2, 0.4
    cell = types.SimpleNamespace(
        key="vanilla", n_in=1, n_hidden=1, n_state=1, n_params=3, alpha=a,
        weight_names=("W", "U", "b"),
        weights={"W": FakeCSR([[True]], np.array([[w]])),
                 "U": FakeCSR([[True]], np.array([[u]])),
                 "b": np.array([b])})
    h, x = 0.3, -0.5
    expect = (1 - a) * h + a * math.tanh(w * h + u * x + b)
    assert_allclose(naive.step(cell, [h], [x]), [expect], rtol=1e-15)
    # D and I for this scalar case, by hand.
    t = math.tanh(w * h + u * x + b)
    assert_allclose(naive.dynamics_jacobian(cell, [h], [x]),
                    [[(1 - a) + a * (1 - t * t) * w]], rtol=1e-14)
    assert_allclose(naive.immediate_jacobian(cell, [h], [x]),
                    [[a * (1 - t * t) * h, a * (1 - t * t) * x,
                      a * (1 - t * t)]], rtol=1e-14)


def test_step_does_not_mutate_and_accepts_lists():
    cell = make_cell("lstm", n=3, n_in=2, seed=3)
    before = {k: (v.data.copy() if naive.is_matrix_name(k) else v.copy())
              for k, v in cell.weights.items()}
    xs, cs = random_sequence(cell, 4, 3)
    naive.rtrl(cell, xs.tolist(), cs.tolist())
    naive.finite_difference_grad(cell, xs, cs)
    naive.finite_difference_jacobians(cell, *random_point(cell, 0))
    for k, v in cell.weights.items():
        now = v.data if naive.is_matrix_name(k) else v
        assert np.array_equal(now, before[k])


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
@pytest.mark.parametrize("seed", [0, 1])
def test_jacobians_match_finite_differences(cfg, seed):
    cell = cfg_cell(cfg, seed=10 + seed)
    for k in range(2):
        s, x = random_point(cell, 10 * seed + k)
        D = naive.dynamics_jacobian(cell, s, x)
        I = naive.immediate_jacobian(cell, s, x)
        D_fd, I_fd = naive.finite_difference_jacobians(cell, s, x)
        assert D.shape == (cell.n_state, cell.n_state)
        assert I.shape == (cell.n_state, cell.n_params)
        assert_allclose(D, D_fd, **FD_TOL)
        assert_allclose(I, I_fd, **FD_TOL)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_structures_cover_actual_nonzeros(cfg):
    cell = cfg_cell(cfg, seed=4)
    Ds = naive.dynamics_structure(cell)
    Is = naive.immediate_structure(cell)
    assert Ds.dtype == bool and Is.dtype == bool
    assert Ds.shape == (cell.n_state, cell.n_state)
    assert Is.shape == (cell.n_state, cell.n_params)
    assert np.all(np.diag(Ds))
    for k in range(3):
        s, x = random_point(cell, k)
        D = naive.dynamics_jacobian(cell, s, x)
        I = naive.immediate_jacobian(cell, s, x)
        assert not np.any((D != 0) & ~Ds)
        assert not np.any((I != 0) & ~Is)
    # vanilla/gru: one state per parameter; lstm: 2 for i,f,g and 1 for o.
    counts = Is.sum(axis=0)
    if cell.key == "lstm":
        for p, (name, _, _) in enumerate(naive.param_index(cell)):
            assert counts[p] == (1 if name.endswith("o") else 2)
    else:
        assert np.all(counts == 1)


def test_lstm_dynamics_structure_blocks():
    n = 3
    cell = make_cell("lstm", n=n, n_in=1, density=0.0, seed=5)
    # Only W_ho gets an off-diagonal entry: it must appear in the h rows
    # but not in the c rows.
    pat = np.zeros((n, n), dtype=bool)
    pat[0, 2] = True
    cell.weights["W_ho"] = FakeCSR(pat, np.ones((n, n)))
    cell.n_params += 1
    Ds = naive.dynamics_structure(cell)
    eye = np.eye(n, dtype=bool)
    assert Ds[0, 2] and not Ds[n + 0, 2]
    assert np.array_equal(Ds[:n, n:], eye) and np.array_equal(Ds[n:, n:], eye)
    # c_i depends on its own h_i only through a stored (i, i) gate entry.
    assert not Ds[n:, :n].any()


def test_structure_ignores_values():
    # A stored explicit 0.0 is still structural.
    n = 3
    cell = make_cell("vanilla", n=n, n_in=1, density=0.0, seed=6)
    pat = np.zeros((n, n), dtype=bool)
    pat[2, 0] = True
    cell.weights["W"] = FakeCSR(pat, np.zeros((n, n)))
    cell.n_params += 1
    assert naive.dynamics_structure(cell)[2, 0]
    # W[2,0] is parameter 0 and touches unit 2 only, however many steps.
    assert naive.param_index(cell)[0] == ("W", 2, 0)
    assert np.array_equal(np.flatnonzero(naive.snap_mask(cell, 5)[:, 0]), [2])
    # b_0 reaches unit 2 after two steps through the stored zero W[2,0].
    p_b0 = naive.param_index(cell).index(("b", 0, None))
    assert np.array_equal(np.flatnonzero(naive.snap_mask(cell, 1)[:, p_b0]), [0])
    assert np.array_equal(np.flatnonzero(naive.snap_mask(cell, 2)[:, p_b0]),
                          [0, 2])


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
@pytest.mark.parametrize("T", [1, 2, 5])
def test_exact_methods_agree(cfg, T):
    cell = cfg_cell(cfg, seed=20 + T)
    xs, cs = random_sequence(cell, T, T)
    g_rtrl, states = naive.rtrl(cell, xs, cs)
    assert g_rtrl.shape == (cell.n_params,)
    assert states.shape == (T, cell.n_state)
    # states are the plain forward pass
    s = np.zeros(cell.n_state)
    for t in range(T):
        s = loop_step(cell, s, xs[t])
        assert_allclose(states[t], s, rtol=1e-12, atol=1e-14)
    g_bptt = naive.bptt(cell, xs, cs)
    assert_allclose(g_bptt, g_rtrl, **EXACT_TOL)
    for k in (T, T + 3):
        assert_allclose(naive.truncated_bptt(cell, xs, cs, k), g_rtrl,
                        **EXACT_TOL)
    full = np.ones((cell.n_state, cell.n_params), dtype=bool)
    assert_allclose(naive.masked_rtrl(cell, xs, cs, full), g_rtrl,
                    **EXACT_TOL)
    assert_allclose(naive.finite_difference_grad(cell, xs, cs), g_rtrl,
                    **FD_TOL)
    if T == 1:  # T = 1: every method is exact, including SnAp-1
        assert_allclose(naive.masked_rtrl(cell, xs, cs,
                                          naive.snap_mask(cell, 1)),
                        g_rtrl, **EXACT_TOL)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_truncation_one_is_immediate_only(cfg):
    cell = cfg_cell(cfg, seed=30)
    T = 5
    xs, cs = random_sequence(cell, T, 30)
    s = np.zeros(cell.n_state)
    expect = np.zeros(cell.n_params)
    for t in range(T):
        expect += cs[t] @ naive.immediate_jacobian(cell, s, xs[t])
        s = naive.step(cell, s, xs[t])
    got = naive.truncated_bptt(cell, xs, cs, 1)
    assert_allclose(got, expect, **EXACT_TOL)
    # and it genuinely differs from the full gradient
    assert not np.allclose(got, naive.bptt(cell, xs, cs), rtol=1e-6, atol=1e-8)


def _windowed_rtrl(cell, xs, cs, k):
    """RTRL with J reset to 0 at every window start: the forward-mode twin of
    truncated BPTT (the state entering a window is treated as constant)."""
    J = np.zeros((cell.n_state, cell.n_params))
    s = np.zeros(cell.n_state)
    g = np.zeros(cell.n_params)
    for t in range(xs.shape[0]):
        if t % k == 0:
            J[:] = 0.0
        J = (naive.dynamics_jacobian(cell, s, xs[t]) @ J
             + naive.immediate_jacobian(cell, s, xs[t]))
        s = naive.step(cell, s, xs[t])
        g += cs[t] @ J
    return g


@pytest.mark.parametrize("cfg", CONFIGS[::2], ids=_id)
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_truncated_bptt_windows(cfg, k):
    cell = cfg_cell(cfg, seed=40 + k)
    xs, cs = random_sequence(cell, 6, 40 + k)  # k=4: windows of 4 and 2
    assert_allclose(naive.truncated_bptt(cell, xs, cs, k),
                    _windowed_rtrl(cell, xs, cs, k), **EXACT_TOL)


def test_bad_arguments_raise():
    cell = make_cell("gru", n=3, n_in=2)
    xs, cs = random_sequence(cell, 3, 0)
    with pytest.raises(ValueError):
        naive.snap_mask(cell, 0)
    with pytest.raises(ValueError):
        naive.truncated_bptt(cell, xs, cs, 0)
    with pytest.raises(ValueError):
        naive.rtrl(cell, xs, cs[:, :2])
    with pytest.raises(ValueError):
        naive.masked_rtrl(cell, xs, cs, np.ones((3, 2), dtype=bool))
    with pytest.raises(ValueError):
        naive.step(cell, np.zeros(4), np.zeros(2))


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_snap_mask_properties(cfg):
    cell = cfg_cell(cfg, seed=50)
    S = cell.n_state
    Is = naive.immediate_structure(cell)
    assert np.array_equal(naive.snap_mask(cell, 1), Is)
    masks = [naive.snap_mask(cell, k) for k in range(1, S + 3)]
    for a, b in zip(masks, masks[1:]):
        assert not np.any(a & ~b)  # monotone in n
    # converged by n = S (paths of length < S suffice), and covers R_1
    assert np.array_equal(masks[S - 1], masks[-1])
    assert not np.any(Is & ~masks[-1])
    # SnAp-2 adds exactly the out-neighbours of R_1
    Ds = naive.dynamics_structure(cell)
    expect = Is | ((Ds.astype(int) @ Is.astype(int)) > 0)
    assert np.array_equal(masks[1], expect)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_snap_large_n_equals_rtrl(cfg):
    cell = cfg_cell(cfg, seed=60)
    xs, cs = random_sequence(cell, 5, 60)
    mask = naive.snap_mask(cell, cell.n_state + 1)
    assert_allclose(naive.masked_rtrl(cell, xs, cs, mask),
                    naive.rtrl(cell, xs, cs)[0], **EXACT_TOL)


@pytest.mark.parametrize("kind,alpha", [("vanilla", 1.0), ("vanilla", 0.4),
                                        ("gru", 1.0)])
def test_snap1_exact_for_diagonal_recurrence(kind, alpha):
    cell = make_cell(kind, n=4, n_in=2, seed=70, alpha=alpha,
                     rec_pattern="diag")
    xs, cs = random_sequence(cell, 6, 70)
    g = naive.rtrl(cell, xs, cs)[0]
    assert_allclose(naive.masked_rtrl(cell, xs, cs, naive.snap_mask(cell, 1)),
                    g, **EXACT_TOL)
    assert_allclose(g, naive.finite_difference_grad(cell, xs, cs), **FD_TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_snap1_is_approximate_for_dense_recurrence(kind):
    cell = make_cell(kind, n=4, n_in=2, density=1.0, seed=80, scale=1.0)
    xs, cs = random_sequence(cell, 5, 80)
    g = naive.rtrl(cell, xs, cs)[0]
    g1 = naive.masked_rtrl(cell, xs, cs, naive.snap_mask(cell, 1))
    assert not np.allclose(g1, g, rtol=1e-6, atol=1e-8)


def test_snap_chain_needs_n_steps():
    # Vanilla with a directed chain 0 -> 1 -> 2 -> 3 (W[i+1, i] stored):
    # influence of a unit-0 parameter reaches unit k only after k+1 steps.
    n = 4
    chain = np.zeros((n, n), dtype=bool)
    for i in range(n - 1):
        chain[i + 1, i] = True
    cell = make_cell("vanilla", n=n, n_in=1, seed=90, rec_pattern=chain,
                     scale=1.0)
    p_b0 = [k for k, e in enumerate(naive.param_index(cell))
            if e == ("b", 0, None)][0]
    for k in range(1, n + 2):
        reach = np.flatnonzero(naive.snap_mask(cell, k)[:, p_b0])
        assert list(reach) == list(range(min(k, n)))
    xs, cs = random_sequence(cell, 6, 90)
    g = naive.rtrl(cell, xs, cs)[0]
    assert_allclose(naive.masked_rtrl(cell, xs, cs, naive.snap_mask(cell, n)),
                    g, **EXACT_TOL)
    assert not np.allclose(
        naive.masked_rtrl(cell, xs, cs, naive.snap_mask(cell, n - 1)), g,
        rtol=1e-6, atol=1e-8)


def test_empty_sequence():
    cell = make_cell("lstm", n=2, n_in=1)
    xs = np.zeros((0, 1))
    cs = np.zeros((0, 4))
    g, states = naive.rtrl(cell, xs, cs)
    assert g.shape == (cell.n_params,) and states.shape == (0, 4)
    assert np.all(naive.bptt(cell, xs, cs) == 0)
    assert np.all(naive.truncated_bptt(cell, xs, cs, 2) == 0)
