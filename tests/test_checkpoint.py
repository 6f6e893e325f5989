"""Checkpoints: exact round trips, atomic writes, and runs resumed bit for bit.

The central property: a run interrupted after a checkpoint and resumed from
it in fresh objects continues exactly as the uninterrupted run (states and
gradients equal bit for bit), for every learner x cell x dtype x batch, and
leaving out any one piece of the saved state breaks that.
"""

import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sparse_rtrl as sr
from conftest import DTYPES, make_cell
from sparse_rtrl import checkpoint as ck
from learner_table import CASES, LEARNERS


# -- exact comparison ---------------------------------------------------------------

def assert_identical(a, b, where="state"):
    """Same structure, types, dtypes, shapes and bits (nan == nan, -0.0 != 0.0)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{where}: lengths {len(a)} vs {len(b)}"
        for k, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{k}]")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), f"{where}: values differ"
    elif isinstance(a, float):
        assert a.hex() == b.hex(), f"{where}: {a!r} vs {b!r}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


# -- save / load round trips --------------------------------------------------------

KEYS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=6)
ARRAY_DTYPES = ["float32", "float64", "float16", ">f8", "int8", "int64", "<u2", "bool", "complex128", "U3"]
ARRAYS = st.sampled_from(ARRAY_DTYPES).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)))
NUMPY_SCALARS = st.one_of(st.floats(width=32).map(np.float32), st.integers(-2**63, 2**63 - 1).map(np.int64),
                          st.booleans().map(np.bool_))
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**200, 2**200), st.floats(), st.text(max_size=8))
LEAVES = st.one_of(ARRAYS, NUMPY_SCALARS, JSON_SCALARS)
TREES = st.recursive(
    LEAVES, lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=12)
STATES = st.dictionaries(KEYS, TREES, max_size=5)


@given(state=STATES)
def test_round_trip_is_exact(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("rt") / "state.ckpt"
    ck.save(path, state)
    assert_identical(ck.load(path), state)
    assert os.listdir(path.parent) == ["state.ckpt"]


def test_round_trip_edge_values(tmp_path):
    huge = 10 ** 5000  # beyond Python's default int <-> decimal string limit
    state = {
        "zero_d": np.array(3.5, np.float32), "empty": np.zeros((0, 4), np.float32), "empty3": np.zeros((2, 0, 1)),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "sliced": np.arange(10.0)[::3],
        "bits": np.array([np.nan, -0.0, np.inf, -np.inf, 5e-324]), "scalar": np.float64(-0.0),
        "ints": [huge, -huge, 0, 2**128 + 1], "floats": [float("inf"), float("-inf"), float("nan"), -0.0, 1e-310],
        "nested": {"a": {"b": [np.arange(3, dtype=np.uint8), {"c": None}, [True, "x\u00e9\U0001f600"]]}},
        "lone_surrogate": "\ud800", "empty_list": [], "empty_dict": {},
    }
    ck.save(path := tmp_path / "edge.ckpt", state)
    back = ck.load(path)
    assert_identical(back, state)
    assert back["fortran"].flags.f_contiguous
    # Arrays sit under their "/"-joined key paths: np.load can inspect the file.
    with np.load(path, allow_pickle=False) as npz:
        assert "nested/a/b/0" in npz.files and "tree.json" in npz.files
        np.testing.assert_array_equal(npz["nested/a/b/0"], np.arange(3))


@pytest.mark.parametrize("state,error,match", [
    ({"a/b": 1}, ValueError, "'/'"),
    ({"a": {"b/c": np.zeros(2)}}, ValueError, "'/'"),
    ({"": 1}, ValueError, "empty"),
    ({"a\x00": 1}, ValueError, "NUL"),
    ({"\ud800": 1}, ValueError, "UTF-8"),
    ({1: 2}, TypeError, "keys must be str"),
    ({"obj": np.array([{}, 1], dtype=object)}, TypeError, r"\['obj'\].*objects"),
    ({"deep": {"x": [np.array([None])]}}, TypeError, r"\['deep'\]\['x'\]\['0'\]"),
    ({"t": (1, 2)}, TypeError, "tuple"),
    ({"s": {1, 2}}, TypeError, "set"),
    ({"m": np.ma.masked_array([1.0])}, TypeError, "masked"),
    ([1], TypeError, "state must be a dict"),
])
def test_save_refuses_bad_states_before_writing(tmp_path, state, error, match):
    path = tmp_path / "bad.ckpt"
    with pytest.raises(error, match=match):
        ck.save(path, state)
    assert os.listdir(tmp_path) == []


def test_save_refuses_bad_paths():
    with pytest.raises(TypeError, match="path"):
        ck.save(3, {})
    with pytest.raises(TypeError, match="path"):
        ck.load(b"x.ckpt")
    with pytest.raises(ValueError, match="path"):
        ck.save("", {})


# -- atomic writes --------------------------------------------------------------------

OLD = {"w": np.arange(1000.0), "step": 7}
NEW = {"w": -np.arange(1000.0), "step": 8}


def _crash_after_some_bytes():
    """A ``write_array`` that writes the header and part of the data, then fails."""
    def writer(fileobj, arr, *args, **kwargs):
        fileobj.write(arr.tobytes()[: arr.nbytes // 2])
        raise OSError("disk full")
    return writer


@pytest.mark.parametrize("failure", ["write_array", "write_zip", "replace", "interrupt", "fsync"])
def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failure):
    path = tmp_path / "run.ckpt"
    ck.save(path, OLD)
    before = path.read_bytes()
    if failure == "write_array":
        monkeypatch.setattr(np.lib.format, "write_array", _crash_after_some_bytes())
    elif failure == "write_zip":
        def partial(fileobj, document, arrays):
            fileobj.write(document[:20])
            raise OSError("crash mid-write")
        monkeypatch.setattr(ck, "_write_zip", partial)
    elif failure == "replace":
        def refuse(src, dst):
            raise PermissionError("replace failed")
        monkeypatch.setattr(os, "replace", refuse)
    elif failure == "interrupt":
        def interrupt(*args, **kwargs):
            raise KeyboardInterrupt
        monkeypatch.setattr(np.lib.format, "write_array", interrupt)
    else:
        def fail(fd):
            raise OSError("fsync failed")
        monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises((OSError, KeyboardInterrupt)):
        ck.save(path, NEW)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["run.ckpt"], "a temporary file was left behind"
    assert path.read_bytes() == before
    assert_identical(ck.load(path), OLD)
    ck.save(path, NEW)
    assert_identical(ck.load(path), NEW)


def test_save_syncs_the_data_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else None))
        real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ck.save(tmp_path / "a.ckpt", OLD)
    kinds = [c[0] for c in calls]
    assert kinds.index("fsync") < kinds.index("replace"), calls
    assert calls[kinds.index("replace")] == ("replace", "a.ckpt")
    if os.name == "posix":
        assert calls[-1] == ("fsync", True), "the directory is synced after the rename"


def test_new_file_gets_the_usual_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        ck.save(tmp_path / "p.ckpt", OLD)
    finally:
        os.umask(old)
    assert (tmp_path / "p.ckpt").stat().st_mode & 0o777 == 0o640


# -- corrupt files ----------------------------------------------------------------------

def test_every_truncation_is_refused(tmp_path):
    path = tmp_path / "t.ckpt"
    ck.save(path, {"a": np.arange(50.0), "b": {"c": [1, 2.5, "x"]}})
    data = path.read_bytes()
    cut = tmp_path / "cut.ckpt"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        with pytest.raises(ValueError, match="cut.ckpt"):
            ck.load(cut)


@pytest.mark.parametrize("damage", ["array_bytes", "json", "garbage", "empty", "npz_without_tree", "extra_member",
                                    "missing_member", "bad_node", "version"])
def test_corrupt_files_are_refused(tmp_path, damage):
    path = tmp_path / "c.ckpt"
    ck.save(path, {"a": np.arange(50.0), "n": 3})
    data = bytearray(path.read_bytes())
    if damage == "array_bytes":
        pos = data.find(np.arange(50.0).tobytes()[8:16])
        data[pos] ^= 0x40
        path.write_bytes(bytes(data))
        match = "CRC"
    elif damage == "json":
        pos = data.find(b'"format"')
        data[pos + 1] = ord("X")
        path.write_bytes(bytes(data))
        match = "c.ckpt"
    elif damage == "garbage":
        path.write_bytes(os.urandom(300))
        match = "c.ckpt"
    elif damage == "empty":
        path.write_bytes(b"")
        match = "c.ckpt"
    else:
        with zipfile.ZipFile(path) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        if damage == "npz_without_tree":
            del members[ck.TREE_MEMBER]
            match = "tree.json"
        elif damage == "extra_member":
            members["other.npy"] = members["a.npy"]
            match = "other"
        elif damage == "missing_member":
            del members["a.npy"]
            match = "'a'"
        elif damage == "bad_node":
            members[ck.TREE_MEMBER] = members[ck.TREE_MEMBER].replace(b'"int"', b'"pickle"')
            match = "pickle"
        else:
            members[ck.TREE_MEMBER] = members[ck.TREE_MEMBER].replace(b'"version":%d' % ck.VERSION, b'"version":99')
            match = "version"
        with zipfile.ZipFile(path, "w") as zf:
            for n, b in members.items():
                zf.writestr(n, b)
    with pytest.raises(ValueError, match=match) as info:
        ck.load(path)
    assert "c.ckpt" in str(info.value)


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file.*nothing.ckpt") as info:
        ck.load(tmp_path / "nothing.ckpt")
    assert info.value.filename == str(tmp_path / "nothing.ckpt")
    with pytest.raises(ValueError, match="cannot read"):
        ck.load(tmp_path)


UNPICKLED = []


def _mark(what):
    UNPICKLED.append(what)


class _Payload:
    """Records being unpickled: the loader must never get that far."""

    def __reduce__(self):
        return (_mark, ("unpickled",))


def test_a_pickled_object_array_is_refused_unread(tmp_path):
    path = tmp_path / "p.ckpt"
    ck.save(path, {"a": np.zeros(2), "b": np.zeros(3)})
    obj = np.empty(1, dtype=object)
    obj[0] = _Payload()
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            if n == "b.npy":
                with zf.open(n, "w") as f:
                    np.lib.format.write_array(f, obj, allow_pickle=True)
            else:
                zf.writestr(n, b)
    assert pickle.loads(pickle.dumps(_Payload())) is None and UNPICKLED == ["unpickled"]  # the payload works
    UNPICKLED.clear()
    with pytest.raises(TypeError, match=r"'b'.*object"):
        ck.load(path)
    assert UNPICKLED == []


# -- learners: resumed runs continue bit for bit ------------------------------------------

K = 19  # steps before the checkpoint: past BPTT's first window (16), mid-window for TBPTT(3)/F-BPTT(3)
MORE = 12
OTHER_SEED = 987


def _data(cell, batch, dtype, n):
    rng = np.random.default_rng(21)
    lead = (n,) if batch is None else (n, batch)
    xs = rng.normal(size=lead + (cell.n_in,)).astype(dtype)
    cs = rng.normal(size=lead + (cell.n_state,)).astype(dtype)
    deltas = (0.05 * rng.normal(size=(n, cell.n_params))).astype(dtype)
    return xs, cs, deltas


def _through_file(tmp_path, name, tree):
    path = tmp_path / f"{name}.ckpt"
    ck.save(path, tree)
    return ck.load(path)


def _restore(name, kind, dtype, batch, snap, replace=None, **cell_kw):
    """A fresh cell and learner (another seed when stochastic) given the saved state.

    ``replace``: the state field whose saved value is swapped for the fresh
    learner's own, as if that piece had not been saved (``"cell"``: the cell's).
    """
    spec = LEARNERS[name]
    cell = make_cell(kind, 2, 3, 0.5, seed=4, dtype=dtype, **cell_kw)
    kw = {} if batch is None else {"batch_size": batch}
    if spec.stochastic:
        kw["seed"] = OTHER_SEED
    learner = spec.make(cell, **kw)
    state = snap["learner"]
    if replace == "cell":
        snap = dict(snap, cell=ck.get_state(cell))
    elif replace is not None:
        state = dict(state, state=dict(state["state"]))
        state["state"][replace] = ck.get_state(learner)["state"][replace]
    ck.set_state(cell, snap["cell"])
    ck.set_state(learner, state)
    return cell, learner


def _checkpointed_run(tmp_path, name, kind, dtype, batch, replace=None, **cell_kw):
    """Run, checkpoint mid-step and after a step, resume twice; return (original, twins) traces."""
    spec = LEARNERS[name]
    cell = make_cell(kind, 2, 3, 0.5, seed=4, dtype=dtype, **cell_kw)
    learner = spec.make(cell, **({} if batch is None else {"batch_size": batch}))
    xs, cs, deltas = _data(cell, batch, dtype, K + MORE + 1)
    grads = []
    for t in range(K):
        learner.forward(xs[t])
        if t == 7:
            grads.append(learner.grad())
        if t == 9:
            cell.params += deltas[t]
        if t != 11:  # one step without credit
            learner.backward(cs[t])
    learner.forward(xs[K])
    mid = _through_file(tmp_path, "mid", {"cell": ck.get_state(cell), "learner": ck.get_state(learner)})
    learner.backward(cs[K])
    after = _through_file(tmp_path, "after", {"cell": ck.get_state(cell), "learner": ck.get_state(learner)})
    twin_mid = _restore(name, kind, dtype, batch, mid, replace, **cell_kw)
    twin_mid[1].backward(cs[K])
    twin_after = _restore(name, kind, dtype, batch, after, replace, **cell_kw)
    runs = [(cell, learner), twin_mid, twin_after]
    traces = [[] for _ in runs]
    for t in range(K + 1, K + MORE + 1):
        for (c, lrn), trace in zip(runs, traces):
            if t == K + 3:
                c.params += deltas[t]  # a weight change between steps
            if t == K + 6:
                lrn.reset()
            trace.append(lrn.forward(xs[t]))
            if t in (K + 2, K + 8):
                trace.append(lrn.grad())
            lrn.backward(cs[t])
    for (c, lrn), trace in zip(runs, traces):
        if isinstance(lrn, sr.FutureBPTT):
            lrn.flush()
        trace.append(lrn.grad())
        trace.append(ck.get_state(lrn))
    return traces


@pytest.mark.parametrize("batch", [None, 2], ids=["single", "batch2"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name,kind", CASES)
def test_resumed_learner_continues_bit_for_bit(tmp_path, name, kind, dtype, batch):
    original, twin_mid, twin_after = _checkpointed_run(tmp_path, name, kind, dtype, batch)
    assert all(np.all(np.isfinite(a)) for a in original[:-1])
    assert_identical(twin_mid, original, "resumed mid-step")
    assert_identical(twin_after, original, "resumed after a step")


#: Pieces of state whose loss a resumed run must reveal (leaky vanilla cell,
#: float64, batch None), and which of the two checkpoints reveals it: the
#: mid-step one holds a deferred update (RTRL's ``pending`` and the ``D``,
#: ``z`` it will use), the one after the step holds the step's credit.
MISSING = [
    ("RTRL", "influence", "both"), ("RTRL", "accumulator", "both"), ("RTRL", "dynamics", "mid"),
    ("RTRL", "presynaptic", "mid"), ("RTRL", "pending", "mid"), ("RTRL", "cell", "both"),
    ("BPTT", "state", "both"), ("TBPTT(3)", "window_credit", "both"),
    ("TBPTT(3)", "window_presynaptic", "both"), ("SnAp-2", "influence", "both"),
    ("UORO", "rng", "both"), ("UORO", "param_factor", "both"),
    ("KF-RTRL", "rng", "both"), ("KF-RTRL", "factor_b", "both"),
    ("R-KF-RTRL", "rng", "both"), ("RFLO", "trace", "both"),
    ("KeRNL", "sensitivity", "both"), ("KeRNL", "decay_rates", "both"), ("KeRNL", "copy_state", "both"),
    ("KeRNL", "rng", "both"), ("e-prop", "influence", "both"),
    ("F-BPTT(3)", "window_credit", "both"), ("F-BPTT(3)", "count", "both"),
    ("F-BPTT(3)", "newest", "both"), ("DNI", "model", "both"),
    ("DNI", "model_frozen", "both"), ("DNI", "features", "both"), ("DNI", "credit", "after"),
    ("DNIb", "jacobian_model", "both"),
]


@pytest.mark.parametrize("name,field,reveals", MISSING)
def test_a_missing_piece_of_state_is_noticed(tmp_path, name, field, reveals):
    original, twin_mid, twin_after = _checkpointed_run(tmp_path, name, "vanilla", np.float64, None,
                                                       replace=field, alpha=0.7)
    for which, twin in (("mid", twin_mid), ("after", twin_after)):
        if reveals in (which, "both"):
            with pytest.raises(AssertionError):
                assert_identical(twin[:-1], original[:-1])  # states and grads, not the final internals


@pytest.mark.parametrize("name,field", [("TBPTT(3)", "window_steps"), ("TBPTT(3)", "n_weight_copies"),
                                        ("BPTT", "window_credit")])
def test_a_missing_window_piece_is_refused(tmp_path, name, field):
    # Window counters and the arrays they index are checked against each other.
    with pytest.raises(ValueError, match="inconsistent"):
        _checkpointed_run(tmp_path, name, "vanilla", np.float64, None, replace=field)


def test_set_state_refuses_incomplete_or_foreign_states():
    cell = make_cell("vanilla", 2, 3, 0.5, seed=4)
    learner = sr.UORO(cell, seed=1)
    for _ in range(3):
        learner.forward(np.ones(2))
        learner.backward(np.ones(3))
    state = ck.get_state(learner)
    fresh = sr.UORO(make_cell("vanilla", 2, 3, 0.5, seed=4), seed=1)
    before = ck.get_state(fresh)

    def refused(bad, match, error=ValueError):
        with pytest.raises(error, match=match):
            ck.set_state(fresh, bad)
        assert_identical(ck.get_state(fresh), before)  # nothing changed

    fields = state["state"]
    refused({k: v for k, v in state.items() if k != "state"}, "missing")
    refused(dict(state, state={k: v for k, v in fields.items() if k != "rng"}), r"missing \['rng'\]")
    refused(dict(state, state={**fields, "extra": np.zeros(1)}), r"unknown \['extra'\]")
    refused(dict(state, state={**fields, "state_factor": fields["state_factor"].astype(np.float32)}),
            "'state_factor'.*dtype")
    refused(dict(state, state={**fields, "state_factor": np.zeros((1, 4))}), "'state_factor'.*shape")
    refused(dict(state, state={**fields, "n_steps": 3.0}), "'n_steps'.*float")
    refused(dict(state, state={**fields, "n_steps": -1}), "negative")
    mt = {"bit_generator": np.random.Generator(np.random.MT19937(0)).bit_generator.state}
    refused(dict(state, state={**fields, "rng": mt}), "MT19937.*PCG64")
    refused({**state, "class": "cell/vanilla"}, "not of a learner")
    refused(ck.get_state(cell), "not of a learner")
    refused([1], "dict", TypeError)
    with pytest.raises(TypeError, match="obj must be"):
        ck.set_state(object(), state)
    with pytest.raises(TypeError, match="obj must be"):
        ck.get_state(42)


@pytest.mark.parametrize("make_other,match", [
    (lambda: sr.SnAp(make_cell("vanilla", 2, 3, 0.5, seed=4), 2), "RTRL.*SnAp"),
    (lambda: sr.RTRL(make_cell("vanilla", 2, 4, 0.5, seed=4)), "n_hidden: state 3, this 4"),
    (lambda: sr.RTRL(make_cell("vanilla", 3, 3, 0.5, seed=4)), "n_in"),
    (lambda: sr.RTRL(make_cell("gru", 2, 3, 0.5, seed=4)), "cell/gru"),
    (lambda: sr.RTRL(make_cell("vanilla", 2, 3, 0.5, seed=4), batch_size=2), "batch_size: state None, this 2"),
    (lambda: sr.RTRL(make_cell("vanilla", 2, 3, 0.5, seed=4, dtype=np.float32)), "dtype: state 'float64'"),
    (lambda: sr.RTRL(make_cell("vanilla", 2, 3, 0.5, seed=5)), "structure"),
    (lambda: sr.RTRL(make_cell("vanilla", 2, 3, 0.5, seed=4, alpha=0.5)), "alpha"),
])
def test_set_state_refuses_another_learner_or_cell(make_other, match):
    learner = sr.RTRL(make_cell("vanilla", 2, 3, 0.5, seed=4))
    learner.forward(np.ones(2))
    other = make_other()
    before = ck.get_state(other)
    with pytest.raises(ValueError, match=match):
        ck.set_state(other, ck.get_state(learner))
    assert_identical(ck.get_state(other), before)


@pytest.mark.parametrize("make,make_other,match", [
    (lambda c: sr.TBPTT(c, 3), lambda c: sr.TBPTT(c, 4), "truncation: state 3, this 4"),
    (lambda c: sr.SnAp(c, 1), lambda c: sr.SnAp(c, 2), "n: state 1, this 2"),
    (lambda c: sr.DNI(c, lr=0.1), lambda c: sr.DNI(c, lr=0.2), "lr"),
    (lambda c: sr.DNI(c), lambda c: sr.DNIb(c), "DNI.*DNIb"),
    (lambda c: sr.KeRNL(c, sigma=0.1), lambda c: sr.KeRNL(c, sigma=0.2), "sigma"),
    (lambda c: sr.FutureBPTT(c, 2), lambda c: sr.FutureBPTT(c, 3), "truncation"),
])
def test_set_state_refuses_other_settings(make, make_other, match):
    cell = make_cell("vanilla", 2, 3, 0.5, seed=4)
    with pytest.raises(ValueError, match=match):
        ck.set_state(make_other(cell), ck.get_state(make(cell)))


@pytest.mark.parametrize("name,attr,value", [
    ("TBPTT(3)", "window_steps", 4), ("TBPTT(3)", "credit_end", 3), ("TBPTT(3)", "n_weight_copies", 9),
    ("F-BPTT(3)", "newest", 3), ("F-BPTT(3)", "count", -1), ("F-BPTT(3)", "weight_copy", 5),
])
def test_set_state_refuses_counters_out_of_range(name, attr, value):
    cell = make_cell("vanilla", 2, 3, 0.5, seed=4)
    learner = LEARNERS[name].make(cell)
    learner.forward(np.ones(2))
    learner.backward(np.ones(3))
    state = ck.get_state(learner)
    state["state"][attr] = value
    with pytest.raises(ValueError, match=attr):
        ck.set_state(LEARNERS[name].make(cell), state)


def test_bptt_window_shapes_must_agree():
    cell = make_cell("vanilla", 2, 3, 0.5, seed=4)
    learner = sr.BPTT(cell)
    for _ in range(20):
        learner.forward(np.ones(2))
    state = ck.get_state(learner)
    assert state["state"]["window_presynaptic"].shape[0] == 32  # grown past the fresh learner's 16
    state["state"]["window_presynaptic"] = state["state"]["window_presynaptic"][:16]
    with pytest.raises(ValueError, match="window_presynaptic holds 16"):
        ck.set_state(sr.BPTT(cell), state)


def test_get_state_copies():
    cell = make_cell("vanilla", 2, 3, 0.5, seed=4)
    learner = sr.RTRL(cell)
    learner.forward(np.ones(2))
    state = ck.get_state(learner)
    kept = {k: v.copy() for k, v in state["state"].items() if isinstance(v, np.ndarray)}
    learner.backward(np.ones(3))
    learner.forward(np.ones(2))
    assert_identical({k: v for k, v in state["state"].items() if isinstance(v, np.ndarray)}, kept)


# -- optimizers, readouts, cells, generators ----------------------------------------------

OPTIMIZERS = {
    "sgd": lambda ps: sr.SGD(ps, lr=0.1),
    "momentum": lambda ps: sr.SGD(ps, lr=0.1, momentum=0.9, clip_norm=1.0),
    "nesterov": lambda ps: sr.SGD(ps, lr=0.1, momentum=0.5, nesterov=True),
    "adam": lambda ps: sr.Adam(ps, lr=0.01, clip_norm=2.0),
}


def _optimizer_run(tmp_path, make, replace=None, lr=None):
    rng = np.random.default_rng(3)
    grads = [(rng.normal(size=5).astype(np.float32), rng.normal(size=3)) for _ in range(20)]
    params = [np.linspace(-1, 1, 5).astype(np.float32), np.linspace(0, 1, 3)]
    opt = make(params)
    for g in grads[:9]:
        opt.step(list(g))
    snap = _through_file(tmp_path, "opt", {"params": [p.copy() for p in params], "opt": ck.get_state(opt)})
    params2 = [p.copy() for p in snap["params"]]
    opt2 = make(params2)
    if lr is not None:
        opt2.lr = lr
    state = snap["opt"]
    if replace == "slots":
        state = dict(state, state={**state["state"], **{k: v for k, v in ck.get_state(opt2)["state"].items()
                                                        if k in opt2.slot_names}})
    elif replace == "n_updates":
        state = dict(state, state=dict(state["state"], n_updates=0))
    ck.set_state(opt2, state)
    for g in grads[9:]:
        opt.step(list(g))
        opt2.step(list(g))
    return params, params2


@pytest.mark.parametrize("which", list(OPTIMIZERS))
def test_optimizer_resumes_bit_for_bit(tmp_path, which):
    params, params2 = _optimizer_run(tmp_path, OPTIMIZERS[which])
    assert_identical(params2, params)
    # The saved hyperparameters are restored (a schedule may have changed lr).
    params, params3 = _optimizer_run(tmp_path, OPTIMIZERS[which], lr=0.5)
    assert_identical(params3, params)


@pytest.mark.parametrize("which,replace", [("momentum", "slots"), ("nesterov", "slots"), ("adam", "slots"),
                                           ("adam", "n_updates")])
def test_optimizer_missing_piece_is_noticed(tmp_path, which, replace):
    params, params2 = _optimizer_run(tmp_path, OPTIMIZERS[which], replace=replace)
    with pytest.raises(AssertionError):
        assert_identical(params2, params)


def test_optimizer_refusals():
    ps = [np.zeros(3), np.zeros(2)]
    adam = sr.Adam(ps)
    with pytest.raises(ValueError, match="Adam.*SGD"):
        ck.set_state(sr.SGD(ps, lr=0.1), ck.get_state(adam))
    with pytest.raises(ValueError, match="shapes"):
        ck.set_state(sr.Adam([np.zeros(3), np.zeros(4)]), ck.get_state(adam))
    with pytest.raises(ValueError, match="dtypes"):
        ck.set_state(sr.Adam([np.zeros(3), np.zeros(2, np.float32)]), ck.get_state(adam))
    state = ck.get_state(adam)
    state["state"]["hyperparameters"]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        ck.set_state(adam, state)


READOUTS = {
    "mse": dict(n_out=2, loss="mse"),
    "ce_random": dict(n_out=3, loss="cross_entropy", feedback="random"),
}


def _readout_run(tmp_path, kind, batch, replace=None):
    cell = make_cell("lstm", 2, 3, 0.5, seed=4)
    args = READOUTS[kind]
    readout = sr.LinearReadout(cell, seed=1, **args)
    rng = np.random.default_rng(2)
    lead = () if batch is None else (batch,)
    states = rng.normal(size=(14,) + lead + (cell.n_state,))
    if args["loss"] == "mse":
        targets = rng.normal(size=(14,) + lead + (args["n_out"],))
    else:
        targets = rng.integers(0, args["n_out"], size=(14,) + lead)
        targets = [int(t) for t in targets] if batch is None else targets
    for t in range(6):
        readout.step(states[t], targets[t])
        if t == 3:
            readout.params -= 0.1 * readout.grad()
    snap = _through_file(tmp_path, "ro", ck.get_state(readout))
    twin = sr.LinearReadout(cell, seed=77, **args)
    if replace == "accumulator":
        snap["state"]["accumulator"] = np.zeros_like(snap["state"]["accumulator"])
    elif replace == "feedback_weights":
        snap["state"]["feedback_weights"] = ck.get_state(twin)["state"]["feedback_weights"]
    ck.set_state(twin, snap)
    traces = [[], []]
    for t in range(6, 14):
        for r, trace in zip((readout, twin), traces):
            loss, credit = r.step(states[t], targets[t])
            trace += [loss, credit]
            if t % 3 == 0:
                g = r.grad()
                r.params -= 0.1 * g
                trace.append(g)
    return traces


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("kind", list(READOUTS))
def test_readout_resumes_bit_for_bit(tmp_path, kind, batch):
    original, twin = _readout_run(tmp_path, kind, batch)
    assert_identical(twin, original)


@pytest.mark.parametrize("kind,replace", [("mse", "accumulator"), ("ce_random", "accumulator"),
                                          ("ce_random", "feedback_weights")])
def test_readout_missing_piece_is_noticed(tmp_path, kind, replace):
    original, twin = _readout_run(tmp_path, kind, None, replace)
    with pytest.raises(AssertionError):
        assert_identical(twin, original)


def test_readout_and_cell_refusals():
    cell = make_cell("vanilla", 2, 3, 0.5, seed=4)
    readout = sr.LinearReadout(cell, 2)
    with pytest.raises(ValueError, match="n_out"):
        ck.set_state(sr.LinearReadout(cell, 3), ck.get_state(readout))
    with pytest.raises(ValueError, match="feedback"):
        ck.set_state(sr.LinearReadout(cell, 2, feedback="random"), ck.get_state(readout))
    with pytest.raises(ValueError, match="VanillaRNN.*GRU"):
        ck.set_state(make_cell("gru", 2, 3, 0.5, seed=4), ck.get_state(cell))
    with pytest.raises(ValueError, match="structure"):
        ck.set_state(make_cell("vanilla", 2, 3, 0.5, seed=6), ck.get_state(cell))
    with pytest.raises(ValueError, match="activation"):
        ck.set_state(make_cell("vanilla", 2, 3, 0.5, seed=4, activation="linear"), ck.get_state(cell))


@pytest.mark.parametrize("kind", ["vanilla", "gru", "lstm"])
def test_cell_round_trip_keeps_the_weight_views(tmp_path, kind):
    cell = make_cell(kind, 2, 3, 0.5, seed=4)
    cell.params += 0.5
    twin = make_cell(kind, 2, 3, 0.5, seed=4)
    view = twin.weights[twin.weight_names[0]].data
    ck.set_state(twin, _through_file(tmp_path, "cell", ck.get_state(cell)))
    assert_identical(twin.params, cell.params)
    assert view.base is not None and np.shares_memory(view, twin.params)
    x = np.ones(2)
    assert_identical(twin.step(twin.init_state(), x), cell.step(cell.init_state(), x))


@pytest.mark.parametrize("bitgen", [np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64])
def test_generator_resumes(tmp_path, bitgen):
    gen = np.random.Generator(bitgen(5))
    gen.normal(size=7)
    gen.integers(0, 10, size=3)  # leaves a buffered 32-bit half for PCG64
    snap = _through_file(tmp_path, "gen", {"g": ck.get_state(gen)})["g"]
    twin = np.random.Generator(bitgen(99))
    ck.set_state(twin, snap)
    assert_identical(twin.random(5), gen.random(5))
    assert_identical(twin.integers(0, 2**31, size=5, dtype=np.int32), gen.integers(0, 2**31, size=5, dtype=np.int32))
    if bitgen is not np.random.PCG64:
        with pytest.raises(ValueError, match="PCG64"):
            ck.set_state(np.random.default_rng(0), snap)


# -- the whole run --------------------------------------------------------------------------

def _build(make_learner, seed):
    cell = sr.VanillaRNN(2, 5, density=0.4, seed=3)
    learner = make_learner(cell, seed)
    readout = sr.LinearReadout(cell, 2, seed=seed)
    opt = sr.Adam([cell.params, readout.params], lr=0.01)
    return {"cell": cell, "learner": learner, "readout": readout, "optimizer": opt,
            "data": np.random.default_rng(seed)}


def _train(run, start, stop):
    for t in range(start, stop):
        x = run["data"].normal(size=2)
        s = run["learner"].forward(x)
        _, credit = run["readout"].step(s, np.array([np.sin(t / 3), x[0]]))
        run["learner"].backward(credit)
        if t % 3 == 2:
            run["optimizer"].step([run["learner"].grad(), run["readout"].grad()])


@pytest.mark.parametrize("make_learner", [
    lambda c, seed: sr.UORO(c, seed=seed), lambda c, seed: sr.TBPTT(c, 4), lambda c, seed: sr.SnAp(c, 2),
    lambda c, seed: sr.DNI(c, lr=0.05),
], ids=["UORO", "TBPTT", "SnAp", "DNI"])
def test_interrupted_run_ends_with_the_same_parameters(tmp_path, make_learner):
    whole = _build(make_learner, seed=1)
    _train(whole, 0, 40)
    first = _build(make_learner, seed=1)
    _train(first, 0, 17)  # stops between two optimiser steps
    ck.save(tmp_path / "run.ckpt", {name: ck.get_state(obj) for name, obj in first.items()} | {"step": 17})
    del first
    saved = ck.load(tmp_path / "run.ckpt")
    resumed = _build(make_learner, seed=2)  # other seeds: only the checkpoint can make it equal
    for name, obj in resumed.items():
        ck.set_state(obj, saved[name])
    _train(resumed, saved["step"], 40)
    assert_identical(resumed["cell"].params, whole["cell"].params)
    assert_identical(resumed["readout"].params, whole["readout"].params)
    assert not np.array_equal(whole["cell"].params, sr.VanillaRNN(2, 5, density=0.4, seed=3).params)


def test_parallel_setting_is_not_part_of_the_state():
    # SnAp-2 of a GRU: one stream split over the cores with parallel=True
    # (its scratch has another shape); the results, and so the state, agree.
    cell = make_cell("gru", 2, 4, 0.5, seed=4)
    serial = sr.SnAp(cell, 2, parallel=False)
    xs, cs, _ = _data(cell, None, np.float64, 12)
    for t in range(6):
        serial.forward(xs[t])
        serial.backward(cs[t])
    serial.forward(xs[6])
    split = sr.SnAp(cell, 2, parallel=True)
    assert split._core.split and not serial._core.split
    ck.set_state(split, ck.get_state(serial))
    for lrn in (serial, split):
        lrn.backward(cs[6])
    for t in range(7, 12):
        assert_identical(split.forward(xs[t]), serial.forward(xs[t]))
        split.backward(cs[t])
        serial.backward(cs[t])
    assert_identical(split.grad(), serial.grad())
