"""ArrayTask (your own data) and the task protocol with the trainer.

Segments are traced back to the sequences and steps they came from (the
inputs carry their own indices), so order, batching, offsets and wrap-around
are checked against the documented rules. Then scores, held-out streams,
state round trips, file-backed configs rebuilt by make_task, bad input, and
runs of the Trainer on an ArrayTask: logs, evaluations, checkpoints, and a
run interrupted and resumed that ends exactly like an uninterrupted one.
"""

import doctest
import json
import math
import os

import numpy as np
import pytest

import sparse_rtrl as sr
from sparse_rtrl import tasks
from sparse_rtrl.training.trainer import read_log

ArrayTask = tasks.ArrayTask


def sequences(N=6, T=5, n_in=3, n_out=2, classes=None, seed=0):
    """``(x, y)`` with ``x[i, t, 0] = i`` and ``x[i, t, 1] = t`` (so a segment tells where it came from)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, T, n_in))
    x[:, :, 0] = np.arange(N)[:, None]
    x[:, :, 1] = np.arange(T)[None, :]
    if classes is None:
        y = rng.normal(size=(N, T, n_out))
    else:
        y = rng.integers(-1, classes, size=(N, T))
        y[:, -1] = rng.integers(0, classes, size=N)  # every sequence has a target
    return x, y


def stream(T=23, n_in=2, n_out=1, classes=None, seed=0):
    """``(x, y)`` of one series with ``x[t, 0] = t``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, n_in))
    x[:, 0] = np.arange(T)
    y = rng.normal(size=(T, n_out)) if classes is None else rng.integers(0, classes, size=T)
    return x, y


def lead(arr, batch_size):
    """Give an unbatched segment array the batch axis."""
    return arr[:, None] if batch_size is None else arr


def drawn(task, n):
    """The sequence indices of the next ``n`` segments, one row of B per segment."""
    return np.array([lead(task.segment().inputs, task.batch_size)[0, :, 0] for _ in range(n)]).astype(int)


def seg_equal(a, b):
    return (a.reset == b.reset and a.inputs.dtype == b.inputs.dtype and a.targets.dtype == b.targets.dtype
            and np.array_equal(a.inputs, b.inputs) and np.array_equal(a.targets, b.targets)
            and np.array_equal(a.scored, b.scored))


def jsonable(value):
    """As JSON carries it (arrays as lists), then back."""
    return json.loads(json.dumps(value, default=lambda a: a.tolist()))


# -- sequences -----------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [None, 4])
@pytest.mark.parametrize("batch_size", [None, 1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequence_segments_are_whole_sequences(classes, batch_size, dtype):
    x, y = sequences(classes=classes)
    task = ArrayTask(x, y, batch_size=batch_size, dtype=dtype, seed=1)
    assert task.name == "arrays" and tasks.TASKS["arrays"] is ArrayTask
    assert task.episodic and task.length == 5 and task.n_in == 3 and task.batch_size == batch_size
    assert task.loss == ("mse" if classes is None else "cross_entropy")
    assert task.metric == ("mse" if classes is None else "bits_per_target")
    assert task.n_out == (2 if classes is None else 4)
    B = batch_size or 1
    for _ in range(5):
        seg = task.segment()
        assert seg.reset is True
        xs, ys = lead(seg.inputs, batch_size), lead(seg.targets, batch_size)
        assert xs.shape == (5, B, 3) and xs.dtype == np.dtype(dtype) and xs.flags.c_contiguous
        for b in range(B):
            i = int(xs[0, b, 0])
            np.testing.assert_array_equal(xs[:, b], x[i].astype(dtype))
            if classes is None:
                assert ys.shape == (5, B, 2) and ys.dtype == np.dtype(dtype)
                np.testing.assert_array_equal(ys[:, b], y[i].astype(dtype))
            else:
                assert ys.shape == (5, B) and ys.dtype == np.int64
                np.testing.assert_array_equal(ys[:, b], y[i])
        if classes is None:
            assert seg.scored.all()
        else:
            np.testing.assert_array_equal(seg.scored, (ys != -1).any(axis=1))


@pytest.mark.parametrize("batch_size", [None, 2, 4])
def test_each_pass_draws_every_sequence_once_in_a_new_shuffled_order(batch_size):
    N = 8
    x, y = sequences(N=N)
    task = ArrayTask(x, y, batch_size=batch_size, seed=3)
    B = batch_size or 1
    order = drawn(task, 3 * N // B).ravel()
    passes = order.reshape(3, N)
    for p in passes:
        assert sorted(p) == list(range(N))
    assert len({tuple(p) for p in passes}) == 3  # reshuffled every pass
    assert task.log_fields() == {"epoch": 2}
    # The same seed gives the same order; another seed another one.
    np.testing.assert_array_equal(drawn(ArrayTask(x, y, batch_size=batch_size, seed=3), 3 * N // B).ravel(), order)
    assert not np.array_equal(drawn(ArrayTask(x, y, batch_size=batch_size, seed=4), 3 * N // B).ravel(), order)


def test_a_batch_that_does_not_divide_the_sequences_spans_passes():
    x, y = sequences(N=5)
    task = ArrayTask(x, y, batch_size=2, seed=0)
    order = drawn(task, 5).ravel()  # 10 draws: two whole passes
    assert sorted(order[:5]) == list(range(5)) and sorted(order[5:]) == list(range(5))
    assert task.epoch == 1
    small = ArrayTask(*sequences(N=2), batch_size=5, seed=0)  # more streams than sequences: passes in one batch
    counts = np.bincount(drawn(small, 1).ravel(), minlength=2)
    assert counts.sum() == 5 and counts.min() >= 2 and small.epoch == 2


def test_shuffle_false_draws_in_order():
    task = ArrayTask(*sequences(N=4), batch_size=3, shuffle=False)
    np.testing.assert_array_equal(drawn(task, 4).ravel(), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])


# -- one stream ----------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [None, 3])
@pytest.mark.parametrize("batch_size", [None, 1, 3])
@pytest.mark.parametrize("length", [1, 7, 30])
def test_stream_segments_follow_the_offsets_and_wrap_around(classes, batch_size, length):
    N = 23
    x, y = stream(T=N, classes=classes)
    task = ArrayTask(x, y, length=length, batch_size=batch_size, dtype=np.float64)
    assert not task.episodic and task.length == length
    B = batch_size or 1
    offsets = np.arange(B) * N // B
    for k in range(4):
        seg = task.segment()
        assert seg.reset == (k == 0) and seg.scored.all()
        steps = (offsets[None, :] + k * length + np.arange(length)[:, None]) % N  # (T, B)
        np.testing.assert_array_equal(lead(seg.inputs, batch_size), x[steps])
        want = y[steps] if classes is not None else y[steps].astype(np.float64)
        np.testing.assert_array_equal(lead(seg.targets, batch_size), want)
    assert task.epoch == (4 * length - 1) // N


def test_stream_length_defaults_to_100():
    task = ArrayTask(*stream(T=250))
    assert task.length == 100 and task.segment().inputs.shape == (100, 2)


# -- scores --------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 3])
def test_class_score_is_bits_per_target(batch_size):
    x, y = sequences(N=6, T=5, classes=3)
    task = ArrayTask(x, y, batch_size=batch_size)
    seg = task.segment()
    losses = np.random.default_rng(0).uniform(0.1, 2.0, size=5)
    targets = lead(seg.targets, batch_size)
    n = int((targets[seg.scored] != -1).sum())
    assert task.score(seg, losses) == pytest.approx(losses[seg.scored].sum() / n / math.log(2))


@pytest.mark.parametrize("batch_size", [None, 3])
def test_real_score_is_the_mse_per_output_like_the_other_tasks(batch_size):
    task = ArrayTask(*sequences(n_out=2), batch_size=batch_size)
    seg = task.segment()
    losses = np.random.default_rng(0).uniform(0.1, 2.0, size=5)
    expected = 2.0 * losses.mean() / ((batch_size or 1) * 2)
    assert task.score(seg, losses) == pytest.approx(expected)
    add = tasks.Add(length=5)
    assert add.score(add.segment(), losses) == pytest.approx(2.0 * losses.mean())  # the same convention


# -- held out ------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 2])
def test_held_out_streams_the_evaluation_arrays_in_order_from_the_start(batch_size):
    x, y = sequences(N=6, T=5, classes=3)
    ex, ey = sequences(N=3, T=4, classes=2, seed=9)
    task = ArrayTask(x, y, eval_inputs=ex, eval_targets=ey, batch_size=batch_size, seed=0)
    assert task.n_out == 3  # the classes of both sets
    for seed in (1, 2):
        held = task.held_out(seed)
        assert held.n_out == 3 and held.batch_size == batch_size and held.length == 4
        first = lead(held.segment().inputs, batch_size)
        np.testing.assert_array_equal(first[:, 0], ex[0].astype(np.float32))
        if batch_size:
            np.testing.assert_array_equal(first[:, 1], ex[1].astype(np.float32))
    task.segment()  # training does not move the held-out stream
    assert seg_equal(task.held_out(5).segment(), task.held_out(6).segment())


def test_held_out_without_evaluation_arrays_uses_the_training_arrays():
    x, y = stream(T=30)
    task = ArrayTask(x, y, length=10)
    task.segment()
    held = task.held_out(7)
    np.testing.assert_array_equal(held.segment().inputs, x[:10].astype(np.float32))
    assert held.config()["inputs"] == task.config()["inputs"]


# -- state -----------------------------------------------------------------------------------------


def forms():
    return {
        "sequences": lambda b: ArrayTask(*sequences(N=5, classes=3), batch_size=b, seed=2),
        "stream": lambda b: ArrayTask(*stream(T=17), length=6, batch_size=b, seed=2),
    }


@pytest.mark.parametrize("form", ["sequences", "stream"])
@pytest.mark.parametrize("batch_size", [None, 2])
@pytest.mark.parametrize("k", [0, 1, 5, 7])  # 5: at the end of a pass (unbatched)
@pytest.mark.parametrize("through_json", [False, True])
def test_state_round_trip_continues_bit_for_bit(form, batch_size, k, through_json):
    task = forms()[form](batch_size)
    for _ in range(k):
        task.segment()
    state = task.state_dict()
    if through_json:
        state = jsonable(state)
    fresh = forms()[form](batch_size)
    fresh.load_state_dict(state)
    assert fresh.log_fields() == task.log_fields()
    for _ in range(8):
        assert seg_equal(task.segment(), fresh.segment())
    assert fresh.log_fields() == task.log_fields()


def test_the_state_does_not_grow_with_the_data():
    task = ArrayTask(*sequences(N=2000, T=2), batch_size=3)
    for _ in range(700):
        task.segment()
    state = task.state_dict()
    assert set(state) == {"name", "fingerprint", "rng", "cursor", "epoch"} and state["epoch"] == 1
    assert len(json.dumps(state)) < 1000
    fresh = ArrayTask(*sequences(N=2000, T=2), batch_size=3)
    fresh.load_state_dict(state)
    assert all(seg_equal(task.segment(), fresh.segment()) for _ in range(700))


def test_state_is_a_snapshot():
    task = forms()["sequences"](2)
    state = task.state_dict()
    expected = [task.segment() for _ in range(4)]
    task.load_state_dict(state)
    assert all(seg_equal(task.segment(), want) for want in expected)


def test_the_state_of_a_task_over_other_data_is_refused():
    task = ArrayTask(*sequences(seed=0))
    other = ArrayTask(*sequences(seed=1))
    with pytest.raises(ValueError, match="fingerprint"):
        task.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="state"):
        task.load_state_dict(tasks.Copy().state_dict())


@pytest.mark.parametrize("edit", [
    {"cursor": 6},
    {"cursor": -1},
    {"epoch": 1.5},
    {"rng": {"bit_generator": "MT19937"}},
    {"rng": {"bit_generator": "PCG64", "state": 3}},
])
def test_bad_states_are_refused_and_change_nothing(edit):
    task = forms()["sequences"](None)
    state = task.state_dict()
    expected = forms()["sequences"](None).segment()
    with pytest.raises((ValueError, TypeError), match="state"):
        task.load_state_dict({**state, **edit})
    assert seg_equal(task.segment(), expected)


def test_bad_stream_steps_are_refused():
    task = forms()["stream"](None)
    with pytest.raises(ValueError, match="steps"):
        task.load_state_dict({**task.state_dict(), "steps": -1})


# -- configs, files ------------------------------------------------------------------------------


def save_arrays(folder, **arrays):
    paths = {}
    for name, arr in arrays.items():
        paths[name] = os.path.join(folder, f"{name}.npy")
        np.save(paths[name], arr)
    return paths


@pytest.mark.parametrize("form", ["sequences", "stream"])
def test_file_backed_task_is_rebuilt_by_make_task(tmp_path, form, monkeypatch):
    x, y = sequences(classes=3) if form == "sequences" else stream(T=40)
    ex, ey = (x[:2], y[:2]) if form == "sequences" else (x[:15], y[:15])
    p = save_arrays(tmp_path, x=x, y=y, ex=ex, ey=ey)
    options = dict(batch_size=2, seed=5, length=None if form == "sequences" else 8)
    task = ArrayTask.from_files(p["x"], p["y"], p["ex"], p["ey"], **options)
    cfg = task.config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["inputs"]["path"] == os.path.abspath(p["x"]) and cfg["eval_targets"]["path"] == os.path.abspath(p["ey"])
    assert isinstance(task._x.data, np.memmap)  # read from the file, not loaded
    monkeypatch.chdir("/")  # the paths are absolute
    again = tasks.make_task(jsonable(cfg))
    assert again.config() == cfg
    assert all(seg_equal(task.segment(), again.segment()) for _ in range(5))
    assert seg_equal(task.held_out(1).segment(), again.held_out(2).segment())
    # Paths and np.load(..., mmap_mode="r") arrays mean the same file; in memory, the same fingerprints.
    direct = ArrayTask(p["x"], np.load(p["y"], mmap_mode="r"), eval_inputs=ex, eval_targets=p["ey"], **options)
    assert direct.config()["targets"] == cfg["targets"] and direct.config()["eval_inputs"]["path"] is None
    assert direct.fingerprint == task.fingerprint == ArrayTask(x, y, eval_inputs=ex, eval_targets=ey,
                                                               **options).fingerprint


def test_in_memory_config_cannot_be_rebuilt_and_says_what_to_do():
    task = ArrayTask(*sequences())
    cfg = task.config()
    assert cfg["inputs"]["path"] is None and cfg["inputs"]["shape"] == [6, 5, 3]
    assert cfg["inputs"]["fingerprint"].startswith("blake2b:")
    json.dumps(cfg)
    with pytest.raises(ValueError, match="pass the task object"):
        tasks.make_task(cfg)


def test_missing_and_changed_files(tmp_path):
    x, y = sequences()
    p = save_arrays(tmp_path, x=x, y=y)
    cfg = ArrayTask(p["x"], p["y"]).config()
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        ArrayTask.from_files(str(tmp_path / "nope.npy"), p["y"])
    np.save(p["y"], y + 1.0)
    with pytest.raises(ValueError, match="targets.*changed"):
        tasks.make_task(cfg)
    np.save(p["y"], y[:3])
    with pytest.raises(ValueError, match="targets.*changed"):
        tasks.make_task(cfg)
    os.remove(p["x"])
    with pytest.raises(FileNotFoundError, match="inputs.*x.npy"):
        tasks.make_task(cfg)
    np.savez(tmp_path / "both.npz", x=x, y=y)
    with pytest.raises(ValueError, match="npz"):
        ArrayTask(str(tmp_path / "both.npz"), p["y"])


def test_in_memory_arrays_are_copied():
    x, y = sequences()
    task = ArrayTask(x, y, shuffle=False)
    fingerprint = task.fingerprint
    x[:] = 0.0
    assert task.segment().inputs[0, 0] == 0.0 and task.segment().inputs[0, 0] == 1.0
    assert task.fingerprint == fingerprint


# -- bad input ---------------------------------------------------------------------------------------

X, Y = sequences()
XC, YC = sequences(classes=3)
XS, YS = stream()


def with_value(arr, index, value):
    arr = np.array(arr, dtype=np.result_type(arr, type(value)))
    arr[index] = value
    return arr


BAD = [
    (lambda: ArrayTask(X[0, 0], Y[0, 0]), ValueError, "inputs"),
    (lambda: ArrayTask(X[None], Y[None]), ValueError, "inputs"),
    (lambda: ArrayTask(X[:, :, :0], Y), ValueError, "inputs"),
    (lambda: ArrayTask(X.astype(complex), Y), TypeError, "inputs"),
    (lambda: ArrayTask(np.array([["a"]]), Y), TypeError, "inputs"),
    (lambda: ArrayTask(with_value(X, (2, 1, 0), np.nan), Y), ValueError, "inputs.*NaN"),
    (lambda: ArrayTask(X, with_value(Y, (0, 0, 0), np.inf)), ValueError, "targets.*NaN or inf"),
    (lambda: ArrayTask(X, Y[:, :4]), ValueError, "targets"),
    (lambda: ArrayTask(X, Y[:5]), ValueError, "targets"),
    (lambda: ArrayTask(X, Y[..., 0]), ValueError, "targets.*integer"),
    (lambda: ArrayTask(X, YC[..., None]), ValueError, "targets.*float"),
    (lambda: ArrayTask(X, Y > 0), TypeError, "targets"),
    (lambda: ArrayTask(XC, with_value(YC, (0, 0), -2)), ValueError, "targets.*-1"),
    (lambda: ArrayTask(XC, np.full_like(YC, -1)), ValueError, "targets holds no class"),
    (lambda: ArrayTask(XC, YC, n_classes=2), ValueError, "targets.*n_classes"),
    (lambda: ArrayTask(XC, YC, n_classes=0), ValueError, "n_classes"),
    (lambda: ArrayTask(XC, YC, n_classes=3.0), TypeError, "n_classes"),
    (lambda: ArrayTask(X, Y, n_classes=3), ValueError, "n_classes"),
    (lambda: ArrayTask(X, Y, eval_inputs=X), ValueError, "eval_inputs.*eval_targets"),
    (lambda: ArrayTask(X, Y, eval_targets=Y), ValueError, "eval_targets.*eval_inputs"),
    (lambda: ArrayTask(X, Y, eval_inputs=X[..., :2], eval_targets=Y), ValueError, "eval_inputs"),
    (lambda: ArrayTask(X, Y, eval_inputs=XS, eval_targets=YS), ValueError, "eval_inputs"),
    (lambda: ArrayTask(X, Y, eval_inputs=X, eval_targets=Y[..., :1]), ValueError, "eval_targets"),
    (lambda: ArrayTask(X, Y, eval_inputs=XC, eval_targets=YC), TypeError, "eval_targets"),
    (lambda: ArrayTask(XC, YC, eval_inputs=XC, eval_targets=with_value(YC, (0, 0), 7), n_classes=3), ValueError,
     "eval_targets"),
    (lambda: ArrayTask(X, Y, length=4), ValueError, "length"),
    (lambda: ArrayTask(XS, YS, length=0), ValueError, "length"),
    (lambda: ArrayTask(XS, YS, length=2.5), TypeError, "length"),
    (lambda: ArrayTask(X, Y, shuffle="yes"), TypeError, "shuffle"),
    (lambda: ArrayTask(X, Y, batch_size=0), ValueError, "batch_size"),
    (lambda: ArrayTask(X, Y, seed=-1), ValueError, "seed"),
    (lambda: ArrayTask(X, Y, dtype=np.int32), TypeError, "dtype"),
    (lambda: ArrayTask(3, Y), ValueError, "inputs"),
    (lambda: ArrayTask(X, Y, eval_inputs={"path": None}, eval_targets=Y), ValueError, "eval_inputs"),
    (lambda: ArrayTask.from_files(X, "y.npy"), TypeError, "inputs_path"),
    (lambda: tasks.make_task({"name": "arrays"}), TypeError, "inputs"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_input_raises_naming_the_argument(case):
    build, exc, pattern = BAD[case]
    with pytest.raises(exc, match=pattern):
        build()


def test_docstring_examples():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(ArrayTask, "ArrayTask", globs={"ArrayTask": ArrayTask}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


# -- with the trainer ------------------------------------------------------------------------------


def run_config(**kw):
    base = dict(cell="vanilla", n_hidden=5, density=0.5, learner="snap1", optimizer="adam", lr=1e-2, steps=240,
                log_every=40, eval_every=80, eval_steps=24, checkpoint_every=60, dtype="float64", seed=3)
    base.update(kw)
    return sr.RunConfig(**base)


from test_trainer import assert_same, run_state  # noqa: E402  (the trainer tests' comparison of two runs)


def class_task(batch_size=None):
    x, y = sequences(N=7, T=6, n_in=3, classes=3, seed=1)
    ex, ey = sequences(N=3, T=8, n_in=3, classes=3, seed=2)
    return ArrayTask(x, y, eval_inputs=ex, eval_targets=ey, batch_size=batch_size, dtype=np.float64, seed=11)


class Interrupt(Exception):
    pass


def interrupt_after(trainer, step):
    """Stop ``trainer`` (as a crash would) at the first segment boundary past ``step``."""
    original = trainer._boundary

    def boundary(*args, **kwargs):
        out = original(*args, **kwargs)
        if trainer.step >= step:
            raise Interrupt
        return out

    trainer._boundary = boundary


def test_trainer_runs_an_array_task_with_logs_evaluations_and_checkpoints(tmp_path):
    task = class_task(batch_size=2)
    trainer = sr.Trainer(run_config(batch_size=2), tmp_path / "run", progress=False, task=task)
    summary = trainer.run()
    assert trainer.task is task and summary["metric"] == "bits_per_target"
    records = read_log(tmp_path / "run" / "metrics.jsonl")
    train = [r for r in records if r.get("split") == "train"]
    evals = [r for r in records if r.get("split") == "eval"]
    assert train and evals and all(np.isfinite(r["value"]) and "epoch" in r for r in train + evals)
    assert train[-1]["epoch"] == task.epoch > 0
    for name in ("checkpoint.npz", "summary.json", "config.json"):
        assert os.path.exists(tmp_path / "run" / name)
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["task"] == task.config()


def test_an_array_run_interrupted_and_resumed_ends_like_an_uninterrupted_one(tmp_path):
    whole = sr.Trainer(run_config(), tmp_path / "whole", progress=False, task=class_task())
    whole.run()

    cut = sr.Trainer(run_config(steps=120), tmp_path / "cut", progress=False, task=class_task())
    interrupt_after(cut, 70)  # a crash at the next boundary (the log at 80), after the checkpoint at 60
    with pytest.raises(Interrupt):
        cut.run()
    with pytest.raises(ValueError, match="pass the task object"):
        sr.Trainer.resume(tmp_path / "cut", progress=False)
    with pytest.raises(ValueError, match="task"):  # other data
        sr.Trainer.resume(tmp_path / "cut", progress=False,
                          task=ArrayTask(*sequences(N=7, T=6, classes=3, seed=5), dtype=np.float64, seed=11))
    resumed = sr.Trainer.resume(tmp_path / "cut", progress=False, task=class_task())
    assert resumed.step < 100
    resumed.run()  # to 120
    more = sr.Trainer.resume(tmp_path / "cut", steps=240, progress=False, task=class_task())
    more.run()
    assert_same(run_state(whole), run_state(more))


def test_a_file_backed_run_resumes_from_its_folder_alone(tmp_path):
    x, y = stream(T=50, n_in=2, n_out=1, seed=4)
    p = save_arrays(tmp_path, x=x, y=y)

    def task():
        return ArrayTask.from_files(p["x"], p["y"], length=20, batch_size=2, dtype=np.float64, seed=1)

    whole = sr.Trainer(run_config(batch_size=2), tmp_path / "whole", progress=False, task=task())
    whole.run()
    short = sr.Trainer(run_config(batch_size=2, steps=120), tmp_path / "short", progress=False, task=task())
    short.run()
    more = sr.Trainer.resume(tmp_path / "short", steps=240, progress=False)  # the task from config.json
    more.run()
    assert_same(run_state(whole), run_state(more))


def test_the_trainer_refuses_a_task_of_another_batch_size_or_dtype(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        sr.Trainer(run_config(batch_size=2), tmp_path / "a", progress=False, task=class_task())
    with pytest.raises(ValueError, match="dtype"):
        sr.Trainer(run_config(dtype="float32"), tmp_path / "b", progress=False, task=class_task())


def test_the_task_protocol_example_in_the_module_docstring_runs(tmp_path):
    text = tasks.__doc__.split("one step ahead::\n\n", 1)[1]
    code = "\n".join(line[4:] for line in text.splitlines())
    namespace = {}
    exec(compile(code, "tasks.__doc__", "exec"), namespace)
    assert namespace["summary"]["steps"] >= 300 and np.isfinite(namespace["summary"]["final_eval"])
