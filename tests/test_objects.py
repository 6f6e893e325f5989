"""Objects say what they are: public modules expose their API only, reprs show settings,
dtypes follow the user's matrices, and a missing file is a FileNotFoundError naming it."""

import importlib
import inspect
import json
import os
import re
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp

import sparse_rtrl as sr
from conftest import CELL_KINDS, make_cell
from learner_table import LEARNERS

#: The public modules and their API (``__all__``).
MODULES = [
    "sparse_rtrl", "sparse_rtrl.cells", "sparse_rtrl.patterns", "sparse_rtrl.metrics", "sparse_rtrl.gradcheck",
    "sparse_rtrl.compare", "sparse_rtrl.registry", "sparse_rtrl.cellkit", "sparse_rtrl.state",
    "sparse_rtrl.learners", "sparse_rtrl.training.checkpoint", "sparse_rtrl.training.readouts",
    "sparse_rtrl.training.online", "sparse_rtrl.training.runlog", "sparse_rtrl.training.losses",
    "sparse_rtrl.training.tasks", "sparse_rtrl.training.optim", "sparse_rtrl.training.schedules",
    "sparse_rtrl.training.callbacks", "sparse_rtrl.training.trainer", "sparse_rtrl.cli",
]
#: Functions without a leading underscore that other modules of the library use, but users need not.
SHARED_HELPERS = {
    "sparse_rtrl.state.generator_state", "sparse_rtrl.state.check_generator_state",
    "sparse_rtrl.registry.learner_specs_help", "sparse_rtrl.registry.example_specs",
    "sparse_rtrl.training.tasks.ptb_chars", "sparse_rtrl.training.trainer.score_stream",
    "sparse_rtrl.learners.exact.blas_form",
}


def public_module(name):
    module = importlib.import_module(name)
    if not hasattr(module, "__all__"):
        pytest.fail(f"{name} has no __all__")
    return module


def documented_constant(module, name):
    """A non-callable public name is documented in the module's docstring, or by a ``#:`` comment above
    its assignment (or above the block of assignments it is part of), where it is defined."""
    if re.search(rf"\b{re.escape(name)}\b", module.__doc__ or ""):
        return True
    value = getattr(module, name)
    homes = [m for m in list(sys.modules.values()) if getattr(m, "__name__", "").startswith("sparse_rtrl")
             and getattr(m, name, None) is value]
    for home in [module] + homes:
        lines = inspect.getsource(home).splitlines()
        for k, line in enumerate(lines):
            if re.match(rf"{re.escape(name)}\s*(:[^=]*)?=", line):
                while k > 0 and re.match(r"[A-Z_][A-Z0-9_]*\s*(:[^=]*)?=", lines[k - 1]):
                    k -= 1
                if k > 0 and lines[k - 1].lstrip().startswith("#:"):
                    return True
    return False


# -- modules expose only their API -----------------------------------------------------------

@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists_and_is_documented(name):
    module = public_module(name)
    assert len(set(module.__all__)) == len(module.__all__), "a name is listed twice"
    for attr in module.__all__:
        assert not attr.startswith("_"), attr
        assert hasattr(module, attr), f"{name}.__all__ lists {attr!r}, which does not exist"
        obj = getattr(module, attr)
        if isinstance(obj, types.ModuleType):
            assert obj.__doc__, f"{name}.{attr}"
        elif inspect.isclass(obj) or callable(obj):
            doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
            assert doc and doc.strip(), f"{name}.{attr} has no docstring"
        else:
            assert documented_constant(module, attr), f"{name}.{attr} is documented nowhere (a #: comment?)"


@pytest.mark.parametrize("name", MODULES)
def test_star_import_gives_only_the_public_names(name):
    module = public_module(name)
    namespace = {}
    exec(f"from {name} import *", namespace)
    del namespace["__builtins__"]
    assert set(namespace) == set(module.__all__)
    helpers = {"np", "os", "json", "math", "inspect", "abc", "check_int", "check_float", "check_real_array"}
    assert not helpers & set(namespace), "a module's helpers leak through *"


def test_the_public_classes_and_functions_of_each_module_are_listed():
    # What a module defines without a leading underscore is either its API (in __all__) or a
    # kernel-plumbing NamedTuple; nothing is forgotten by accident.
    for name in MODULES:
        module = importlib.import_module(name)
        if not hasattr(module, "__all__"):
            continue
        for attr, obj in vars(module).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            plumbing = inspect.isclass(obj) and issubclass(obj, tuple) and attr.endswith("Args")
            shared = f"{name}.{attr}" in SHARED_HELPERS
            assert attr in module.__all__ or plumbing or shared, f"{name}.{attr} is public but not in __all__"


# -- reprs say what an object is -------------------------------------------------------------

def check_short(text):
    assert "\n" not in text and "array(" not in text and len(text) < 200, text
    assert " at 0x" not in text, f"the default object repr: {text}"


@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_cell_repr_shows_its_settings_and_rebuilds_it(kind, dtype):
    cell = make_cell(kind, 3, 8, 0.25, seed=5, dtype=dtype)
    text = repr(cell)
    check_short(text)
    cls = type(cell)
    assert text.startswith(f"{cls.__name__}(n_in=3, n_hidden=8, density=0.25, ")
    assert "seed=5" in text and f"dtype={np.dtype(dtype).name}" in text
    # The repr is the call that builds the same cell.
    rebuilt = eval(text, {cls.__name__: cls, "float32": np.float32, "float64": np.float64})
    assert rebuilt.config() == cell.config()
    np.testing.assert_array_equal(rebuilt.params, cell.params)


def test_a_cell_repr_shows_changed_settings_only():
    assert repr(sr.GRU(3, 8, density=0.25, dtype=np.float32)) == "GRU(n_in=3, n_hidden=8, density=0.25, dtype=float32)"
    assert repr(sr.VanillaRNN(2, 4, density=0.5, alpha=0.5, activation="linear")) == (
        "VanillaRNN(n_in=2, n_hidden=4, density=0.5, alpha=0.5, dtype=float64, activation='linear')")
    assert "shared_pattern=False" in repr(sr.LSTM(2, 4, density=0.5, shared_pattern=False))


def test_a_cell_from_your_matrices_shows_their_density():
    W = sp.random(6, 6, density=0.25, format="csr", random_state=0)
    assert repr(sr.VanillaRNN(2, 6, pattern=W)) == (
        f"VanillaRNN(n_in=2, n_hidden=6, density={W.nnz / 36:.3g}, dtype=float64)")


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_a_learner_repr_shows_its_cell_and_settings(name):
    spec = LEARNERS[name]
    cell = make_cell(spec.cells[0], 2, 4, 0.5, seed=0, dtype=np.float32)
    learner = spec.make(cell)
    text = repr(learner)
    check_short(text)
    assert text.startswith(f"{type(learner).__name__}({cell!r}")
    shown = dict(re.findall(r"(\w+)=([^,()]+)", text[len(type(learner).__name__) + 1 + len(repr(cell)):]))
    config = learner.config()
    for key, value in shown.items():
        assert key in config, f"{text} shows {key}, which is not a setting"
    for key, value in config.items():  # every setting that differs from its default is shown
        default = inspect.signature(type(learner)).parameters.get(key)
        if default is not None and default.default is not inspect.Parameter.empty and default.default != value:
            assert key in shown, f"{text} hides {key}={value!r}"
    batched = spec.make(cell, batch_size=3)
    assert repr(batched).endswith("batch_size=3)")


def test_the_example_reprs():
    cell = sr.GRU(n_in=3, n_hidden=8, density=0.25, dtype=np.float32)
    assert repr(sr.SnAp(cell, n=2)) == "SnAp(GRU(n_in=3, n_hidden=8, density=0.25, dtype=float32), n=2)"
    assert repr(sr.TBPTT(cell, truncation=5)) == (
        "TBPTT(GRU(n_in=3, n_hidden=8, density=0.25, dtype=float32), truncation=5)")
    assert repr(sr.UORO(cell, seed=3)) == "UORO(GRU(n_in=3, n_hidden=8, density=0.25, dtype=float32), seed=3)"
    readout = sr.LinearReadout(cell, 2, loss="cross_entropy")
    assert repr(readout) == "LinearReadout(n_hidden=8, n_out=2, loss='cross_entropy', feedback='transpose')"
    adam = sr.Adam([cell.params, readout.params], lr=0.01, clip_norm=1.0)
    assert repr(adam) == f"Adam(<2 arrays of {cell.n_params + readout.n_params} float32>, lr=0.01, clip_norm=1.0)"
    assert repr(sr.SGD(cell.params, lr=0.1)) == f"SGD(<1 array of {cell.n_params} float32>, lr=0.1)"
    assert repr(sr.Pattern.dense((2, 3))) == "Pattern(shape=(2, 3), nnz=6, density=1)"
    assert repr(cell.weights["W_hr"]).startswith("SparseWeight(shape=(8, 8), nnz=16, dtype=float32")


@pytest.mark.parametrize("key", sorted(sr.registry.TASKS.keys()))
def test_a_task_repr_shows_its_settings(key):
    cls = sr.registry.TASKS[key]
    if key == "charlm":
        task = cls(text="the cat sat on the mat. " * 20)
    elif key == "arrays":
        task = cls(np.zeros((1, 5, 2)), np.zeros((1, 5, 1)))
    else:
        task = cls()
    text = repr(task)
    check_short(text)
    assert text.startswith(f"{cls.__name__}(") and "seed=" in text


def test_a_gradcheck_report_repr_is_short():
    report = sr.gradcheck(sr.VanillaRNN(2, 3, density=0.5), n_steps=2)
    text = repr(report)
    check_short(text)
    assert text.startswith("GradCheckReport(VanillaRNN(") and text.endswith("ok)")
    assert "gradient" not in repr(report.learners[0])


# -- dtypes follow the user's matrices -------------------------------------------------------

def user_weights(cls, dtype, n=5, n_in=3, seed=0):
    rng = np.random.default_rng(seed)
    weights = {}
    for spec in cls.weight_specs():
        if spec.source == "1":
            weights[spec.name] = rng.normal(size=n).astype(dtype)
        else:
            shape = (n, n) if spec.source == "h" else (n, n_in)
            weights[spec.name] = sp.random(*shape, density=0.5, format="csr", random_state=rng, dtype=dtype)
    return weights


@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_weights_keeps_the_dtype_of_your_matrices(kind, dtype):
    cls = sr.registry.CELLS[kind]
    weights = user_weights(cls, dtype)
    cell = cls.from_weights(weights)
    assert cell.dtype == np.dtype(dtype)
    for name, w in weights.items():
        got = cell.weights[name]
        back = got.to_scipy() if sp.issparse(w) else got
        assert back.dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(back.toarray() if sp.issparse(back) else back,
                                      w.toarray() if sp.issparse(w) else w, err_msg=name)
    # Asked for, the other dtype is given.
    other = np.float64 if dtype == np.float32 else np.float32
    assert cls.from_weights(weights, dtype=other).dtype == np.dtype(other)


def test_from_weights_dtype_when_the_matrices_disagree():
    weights = user_weights(sr.GRU, np.float32)
    weights["b_r"] = weights["b_r"].astype(np.float64)  # one float64 array: float64 holds them all
    assert sr.GRU.from_weights(weights).dtype == np.float64
    half = {name: np.ones(shape, np.float16) for name, shape in (("W", (4, 4)), ("U", (4, 2)), ("b", (4,)))}
    assert sr.VanillaRNN.from_weights(half).dtype == np.float32  # scipy has no float16 matrices
    ints = {"W": sp.identity(4, dtype=np.int64, format="csr"), "U": np.ones((4, 2), np.int32), "b": [0, 0, 0, 0]}
    assert sr.VanillaRNN.from_weights(ints).dtype == np.float64
    if np.dtype(np.longdouble).itemsize > 8:
        weights = user_weights(sr.VanillaRNN, np.longdouble)
        with pytest.raises(TypeError, match="dtype="):
            sr.VanillaRNN.from_weights(weights)
        assert sr.VanillaRNN.from_weights(weights, dtype=np.float64).dtype == np.float64


def test_a_pattern_takes_structure_only():
    # Structure has no float dtype: a float32 matrix as pattern= gives the cell's dtype (float64
    # unless asked), and the indices are int32 whatever the matrix used.
    for dtype in (np.float32, np.float64, np.int8, bool):
        m = sp.random(4, 4, density=0.5, format="csr", random_state=1).astype(dtype)
        m.indices, m.indptr = m.indices.astype(np.int64), m.indptr.astype(np.int64)
        pattern = sr.Pattern.from_scipy(m)
        assert pattern.indptr.dtype == pattern.indices.dtype == np.int32
        assert sr.VanillaRNN(2, 4, pattern=m).dtype == np.float64
        assert sr.VanillaRNN(2, 4, pattern=m, dtype=np.float32).dtype == np.float32
    values = np.arange(pattern.nnz, dtype=np.float32)
    assert pattern.to_scipy(values).dtype == np.float32
    with pytest.raises(ValueError, match="nnz"):
        pattern.to_scipy(values[:-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_are_in_the_cells_dtype_whatever_the_inputs(dtype):
    other = np.float64 if dtype == np.float32 else np.float32
    cell = sr.GRU(2, 4, density=0.5, dtype=dtype)
    assert cell.step(np.zeros(4, other), np.ones(2, other)).dtype == dtype
    learner = sr.SnAp(cell, n=1)
    assert learner.forward(np.ones(2, other)).dtype == dtype
    learner.backward(np.ones(4, other))
    assert learner.grad().dtype == dtype
    readout = sr.LinearReadout(cell, 2)
    assert readout.params.dtype == dtype and readout.predict(np.zeros(4, other)).dtype == dtype
    cell.params = np.zeros(cell.n_params, other)  # written in place, in the cell's dtype
    assert cell.params.dtype == dtype


# -- a missing file is a FileNotFoundError naming it -----------------------------------------

def test_missing_files_are_named(tmp_path):
    from sparse_rtrl.training.runlog import plot_run, read_log

    missing = str(tmp_path / "missing")
    cases = [
        (lambda: sr.checkpoint.load(missing + ".ckpt"), missing + ".ckpt"),
        (lambda: read_log(missing + ".jsonl"), missing + ".jsonl"),
        (lambda: sr.tasks.CharLM(path=missing + ".txt"), missing + ".txt"),
        (lambda: sr.Trainer.resume(missing), missing),
        (lambda: plot_run(tmp_path), str(tmp_path / "metrics.jsonl")),
    ]
    for call, name in cases:
        with pytest.raises(FileNotFoundError) as info:
            call()
        assert os.path.basename(name) in str(info.value), str(info.value)


def test_resume_of_a_folder_without_a_run_names_it(tmp_path):
    with open(tmp_path / "config.json.bak", "w") as f:
        json.dump({}, f)
    with pytest.raises(FileNotFoundError, match="config.json"):
        sr.Trainer.resume(tmp_path)
