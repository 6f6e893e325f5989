"""Trainer callbacks: the hooks and their order, early stopping, CSV and TensorBoard logs, resumption."""

import csv
import glob
import json
import math
import os
import struct
import sys

import pytest

from sparse_rtrl.training.callbacks import Callback, CSVLogger, EarlyStopping, TensorBoardLogger
from sparse_rtrl.training.trainer import RunConfig, Trainer, read_log


class FakeTrainer:
    """What a callback may use of a trainer: the step and the stop request."""

    def __init__(self, step=0):
        self.step = step
        self.stops = []

    def request_stop(self, reason):
        self.stops.append(reason)


def train(step, value, **extra):
    return {"step": step, "split": "train", "metric": "mse", "value": value, "loss": 0.5, "seconds": 0.1, **extra}


def evaluation(step, value):
    return {"step": step, "split": "eval", "metric": "mse", "value": value}


def csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def as_csv(record, fields):
    """A metrics.jsonl record as CSVLogger writes it (None and absent keys empty, floats exactly)."""
    out = {}
    for k in fields:
        v = record.get(k)
        out[k] = "" if v is None else repr(float(v)) if isinstance(v, float) else str(v)
    return out


def read_events(logdir):
    """Every event of the tensorboardX files under ``logdir`` (TFRecord framing, Event protos)."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            while header := f.read(12):
                (length,) = struct.unpack("<Q", header[:8])
                events.append(Event.FromString(f.read(length)))
                f.read(4)
    return events


def scalars(logdir):
    return [(e.step, v.tag, v.simple_value) for e in read_events(logdir) for v in e.summary.value]


# -- units -------------------------------------------------------------------------------------

def test_the_base_callback_does_nothing():
    cb, t = Callback(), FakeTrainer()
    assert cb.on_start(t) is None
    assert cb.on_log(t, train(10, 1.0)) is None
    assert cb.on_eval(t, evaluation(10, 1.0)) is None
    assert cb.on_checkpoint(t, "x.npz") is None
    assert cb.on_finish(t, {}) is None
    assert t.stops == []


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(patience=0), ValueError, "patience"),
    (dict(patience=1.5), TypeError, "patience"),
    (dict(patience=True), TypeError, "patience"),
    (dict(patience=2, min_delta=-0.1), ValueError, "min_delta"),
    (dict(patience=2, min_delta=math.nan), ValueError, "min_delta"),
    (dict(patience=2, min_delta="1"), TypeError, "min_delta"),
    (dict(patience=2, split="test"), ValueError, "split"),
])
def test_early_stopping_checks_its_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        EarlyStopping(**kwargs)


def test_loggers_check_their_paths(tmp_path):
    for bad, error in ((3, TypeError), (b"x.csv", TypeError), ("", ValueError)):
        with pytest.raises(error, match="path"):
            CSVLogger(bad)
        with pytest.raises(error, match="logdir"):
            TensorBoardLogger(bad)
    assert CSVLogger(tmp_path / "a.csv").path == str(tmp_path / "a.csv")


def test_early_stopping_counts_records_without_improvement():
    t, early = FakeTrainer(), EarlyStopping(patience=2, min_delta=0.01)
    for step, value in ((10, 1.0), (20, 0.9), (30, 0.895), (40, None), (50, math.nan)):
        early.on_eval(t, evaluation(step, value))
    assert (early.best, early.best_step, early.wait, t.stops) == (0.9, 20, 1, [])  # None and NaN are skipped
    early.on_log(t, train(55, 0.1))  # watching "eval": train records do not count
    assert early.wait == 1 and early.best == 0.9
    early.on_eval(t, evaluation(60, 0.8905))  # better, but not by more than min_delta
    assert early.wait == 2 and early.stopped_step == 60
    assert len(t.stops) == 1 and "did not improve" in t.stops[0] and "best 0.9 at step 20" in t.stops[0]


def test_early_stopping_on_train_records_and_an_improvement_resets_the_count():
    t, early = FakeTrainer(), EarlyStopping(patience=2, split="train")
    for step, value in ((10, 1.0), (20, 1.0), (30, 0.7), (40, 0.7)):
        early.on_log(t, train(step, value))
        early.on_eval(t, evaluation(step, 100.0))  # ignored
    assert (early.best, early.best_step, early.wait, t.stops) == (0.7, 30, 1, [])
    early.on_log(t, train(50, 0.75))
    assert early.stopped_step == 50 and len(t.stops) == 1


def test_early_stopping_state_round_trips_and_a_restored_one_stops_where_the_original_does():
    values = [1.0, 0.8, 0.85, 0.6, 0.61, 0.62, 0.7]
    whole, t_whole = EarlyStopping(3), FakeTrainer()
    for i, v in enumerate(values):
        whole.on_eval(t_whole, evaluation(10 * i, v))

    first, t = EarlyStopping(3), FakeTrainer()
    for i, v in enumerate(values[:5]):
        first.on_eval(t, evaluation(10 * i, v))
    state = json.loads(json.dumps(first.state_dict()))  # JSON data, as the checkpoint stores it
    second = EarlyStopping(3)
    second.load_state_dict(state)
    for i, v in enumerate(values[5:], start=5):
        second.on_eval(t, evaluation(10 * i, v))
    assert second.state_dict() == whole.state_dict()
    assert t.stops == t_whole.stops and second.stopped_step == 60
    assert EarlyStopping(3).state_dict() == {"best": None, "best_step": None, "wait": 0, "stopped_step": None}


@pytest.mark.parametrize("state, name", [
    ({"best": 1.0, "best_step": 3, "wait": 0}, "stopped_step"),
    ({"best": 1.0, "best_step": 3, "wait": 0, "stopped_step": None, "extra": 1}, "extra"),
    ({"best": "x", "best_step": 3, "wait": 0, "stopped_step": None}, "best"),
    ({"best": 1.0, "best_step": 3, "wait": -1, "stopped_step": None}, "wait"),
    ({"best": 1.0, "best_step": None, "wait": 0, "stopped_step": None}, "best_step"),
])
def test_early_stopping_refuses_a_state_that_does_not_fit(state, name):
    early = EarlyStopping(2)
    with pytest.raises((ValueError, TypeError), match=name):
        early.load_state_dict(state)
    assert early.state_dict()["best"] is None  # nothing was written


def test_csv_logger_writes_rows_and_widens_its_header(tmp_path):
    path = tmp_path / "log.csv"
    log, t = CSVLogger(path), FakeTrainer()
    log.on_start(t)
    records = [evaluation(10, 0.5), train(20, None, length=3), train(40, 1 / 3), evaluation(40, math.nan)]
    for r in records:
        (log.on_eval if r["split"] == "eval" else log.on_log)(t, r)
    rows = csv_rows(path)
    fields = ["step", "split", "metric", "value", "loss", "seconds", "length"]
    assert list(rows[0]) == fields
    assert rows == [as_csv(r, fields) for r in records]
    assert float(rows[2]["value"]) == 1 / 3 and math.isnan(float(rows[3]["value"]))


def test_csv_logger_on_start_keeps_the_rows_up_to_the_trainers_step(tmp_path):
    path = tmp_path / "log.csv"
    log = CSVLogger(path)
    log.on_start(FakeTrainer(0))
    for step in (20, 40, 60, 80):
        log.on_log(None, train(step, 1.0 / step))
    with open(path, "a", newline="") as f:
        f.write("100,train,mse,0.0")  # a row cut short by an interruption
    again = CSVLogger(path)
    again.on_start(FakeTrainer(40))  # resumed from the checkpoint at step 40
    assert [r["step"] for r in csv_rows(path)] == ["20", "40"]
    again.on_log(None, train(60, 0.5))
    assert [r["step"] for r in csv_rows(path)] == ["20", "40", "60"]
    CSVLogger(path).on_start(FakeTrainer(0))  # a new run starts the file afresh
    assert not path.exists()


def test_csv_logger_continues_a_file_without_on_start(tmp_path):
    path = tmp_path / "log.csv"
    CSVLogger(path).on_log(None, train(20, 1.0))
    CSVLogger(path).on_log(None, train(40, 2.0))
    assert [r["value"] for r in csv_rows(path)] == ["1.0", "2.0"]


def test_tensorboard_logger_writes_scalars_and_purges_after_a_resume(tmp_path):
    pytest.importorskip("tensorboardX")
    logdir = str(tmp_path / "tb")
    tb = TensorBoardLogger(logdir)
    tb.on_start(FakeTrainer(0))
    tb.on_log(None, train(20, 0.25, length=4))
    tb.on_log(None, train(40, None))
    tb.on_eval(None, evaluation(40, 0.125))
    tb.on_finish(None, {})
    assert tb.writer is None
    assert sorted(scalars(logdir)) == [(20, "train/length", 4.0), (20, "train/loss", 0.5), (20, "train/mse", 0.25),
                                       (40, "eval/mse", 0.125), (40, "train/loss", 0.5)]
    resumed = TensorBoardLogger(logdir)
    resumed.on_start(FakeTrainer(20))
    resumed.close()
    starts = [e.step for e in read_events(logdir) if e.HasField("session_log")]
    assert starts == [21]  # TensorBoard hides what was logged after the checkpoint at step 20


def test_tensorboard_logger_without_tensorboardx_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # makes "import tensorboardX" raise ImportError
    with pytest.raises(ImportError, match=r'pip install "sparse_rtrl\[tensorboard\]"'):
        TensorBoardLogger("unused")


# -- with the trainer ------------------------------------------------------------------------

def small_config(**kw):
    base = dict(task={"name": "add", "length": 20}, cell="vanilla", n_hidden=8, density=0.5, learner="snap1",
                optimizer="adam", lr=1e-2, steps=240, log_every=40, eval_every=80, eval_steps=40,
                checkpoint_every=60, dtype="float64", seed=1)
    base.update(kw)
    return RunConfig(**base)


class Recorder(Callback):
    """Writes down every hook call."""

    def __init__(self):
        self.calls = []

    def on_start(self, trainer):
        self.calls.append(("start", trainer.step))

    def on_log(self, trainer, record):
        self.calls.append(("log", dict(record)))

    def on_eval(self, trainer, record):
        self.calls.append(("eval", dict(record)))

    def on_checkpoint(self, trainer, path):
        self.calls.append(("checkpoint", path, trainer.step))

    def on_finish(self, trainer, summary):
        self.calls.append(("finish", dict(summary)))


def records(folder):
    return [r for r in read_log(os.path.join(folder, "metrics.jsonl")) if r.get("split") in ("train", "eval")]


def test_the_trainer_calls_the_hooks_in_order_with_its_records(tmp_path):
    rec = Recorder()
    summary = Trainer(small_config(), tmp_path, progress=False, callbacks=[rec]).run()
    kinds = [c[0] for c in rec.calls]
    assert kinds[0] == "start" and rec.calls[0][1] == 0
    assert kinds[-1] == "finish" and rec.calls[-1][1] == summary
    with open(tmp_path / "summary.json") as f:
        assert json.load(f) == summary
    logged = [(c[0], c[1]) for c in rec.calls if c[0] in ("log", "eval")]
    assert logged == [("log" if r["split"] == "train" else "eval", r) for r in records(tmp_path)]
    assert [r["split"] for _, r in logged].count("eval") == 3
    checkpoints = [c for c in rec.calls if c[0] == "checkpoint"]
    assert all(c[1] == os.path.join(str(tmp_path), "checkpoint.npz") for c in checkpoints)
    assert [c[2] for c in checkpoints if c[2] > 0] == [60, 120, 180, 240]
    # A record's checkpoint comes after its logs: each checkpoint call follows every record of its step.
    for i, c in enumerate(rec.calls):
        if c[0] == "checkpoint":
            assert all(later[1]["step"] > c[2] for later in rec.calls[i:] if later[0] in ("log", "eval"))


def test_early_stopping_stops_the_run_and_the_summary_says_so(tmp_path):
    early = EarlyStopping(patience=1, min_delta=1e9)
    summary = Trainer(small_config(steps=2000), tmp_path, progress=False, callbacks=[early]).run()
    assert early.best_step == 80 and early.stopped_step == 160
    assert summary["steps"] == 160 and summary["stopped"].startswith("early stopping")
    log = read_log(tmp_path / "metrics.jsonl")
    stopped = [r for r in log if r.get("event") == "stopped"]
    assert stopped == [{"event": "stopped", "step": 160, "reason": summary["stopped"]}]
    with open(tmp_path / "summary.json") as f:
        assert json.load(f)["stopped"] == summary["stopped"]
    assert Trainer.resume(tmp_path, progress=False).step == 160  # the checkpoint was written at the stop


def test_early_stopping_survives_a_resume(tmp_path):
    cfg = small_config(steps=2000, eval_every=40, checkpoint_every=100)
    whole = EarlyStopping(patience=3, min_delta=1e-3, split="train")
    expected = Trainer(cfg, tmp_path / "whole", progress=False, callbacks=[whole]).run()

    cut = Trainer(cfg, tmp_path / "cut", progress=False, callbacks=[Recorder(), EarlyStopping(3, 1e-3, "train")])
    original = cut._boundary

    def boundary(*args):
        original(*args)
        if cut.step >= whole.stopped_step - 20:
            raise KeyboardInterrupt

    cut._boundary = boundary
    with pytest.raises(KeyboardInterrupt):
        cut.run()
    restored = EarlyStopping(3, 1e-3, "train")
    resumed = Trainer.resume(tmp_path / "cut", progress=False, callbacks=[Recorder(), restored])
    assert restored.best is not None and restored.best_step <= resumed.step < whole.stopped_step
    summary = resumed.run()
    assert restored.state_dict() == whole.state_dict()
    assert summary["steps"] == expected["steps"] and summary["stopped"] == expected["stopped"]


def test_csv_rows_are_the_metrics_records_and_a_resume_writes_none_twice(tmp_path):
    cfg = small_config(eval_every=40)
    whole_csv = tmp_path / "whole.csv"
    Trainer(cfg, tmp_path / "whole", progress=False, callbacks=[CSVLogger(whole_csv)]).run()
    want = records(tmp_path / "whole")
    fields = list(csv_rows(whole_csv)[0])
    assert fields == ["step", "split", "metric", "value", "loss", "seconds"]
    assert csv_rows(whole_csv) == [as_csv(r, fields) for r in want]

    cut_csv = tmp_path / "cut.csv"
    cut = Trainer(cfg, tmp_path / "cut", progress=False, callbacks=[CSVLogger(cut_csv)])
    original = cut._boundary

    def boundary(*args):
        original(*args)
        if cut.step >= 150:  # past the checkpoint at 120, so rows 140 are written and must go
            raise KeyboardInterrupt

    cut._boundary = boundary
    with pytest.raises(KeyboardInterrupt):
        cut.run()
    assert max(int(r["step"]) for r in csv_rows(cut_csv)) > 120
    resumed = Trainer.resume(tmp_path / "cut", progress=False, callbacks=[CSVLogger(cut_csv)])
    assert resumed.step == 120
    resumed.run()
    rows = csv_rows(cut_csv)
    assert rows == [as_csv(r, fields) for r in records(tmp_path / "cut")]
    no_time = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert no_time == [{k: v for k, v in r.items() if k != "seconds"} for r in csv_rows(whole_csv)]


def test_tensorboard_logger_in_a_run(tmp_path):
    pytest.importorskip("tensorboardX")
    logdir = str(tmp_path / "tb")
    Trainer(small_config(), tmp_path / "run", progress=False, callbacks=[TensorBoardLogger(logdir)]).run()
    got = scalars(logdir)
    want = [(r["step"], f"{r['split']}/mse", r["value"]) for r in records(tmp_path / "run")]
    assert sorted((s, tag) for s, tag, _ in got if tag.endswith("/mse")) == sorted((s, tag) for s, tag, _ in want)
    for (s, tag, v), (s2, tag2, v2) in zip(sorted(got), sorted(want + [(r["step"], "train/loss", r["loss"])
                                                                      for r in records(tmp_path / "run")
                                                                      if r["split"] == "train"])):
        assert (s, tag) == (s2, tag2) and v == pytest.approx(v2, rel=1e-6)  # event files hold float32
