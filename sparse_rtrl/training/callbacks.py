"""Callbacks: code of your own that a :class:`~sparse_rtrl.Trainer` calls as a run goes.

A callback subclasses :class:`Callback` and overrides the hooks it needs
(every hook is a no-op by default)::

    on_start(trainer)             # run() begins (after a resume: at the checkpoint's step)
    on_log(trainer, record)       # each train record, the dict written to metrics.jsonl
    on_eval(trainer, record)      # each evaluation record: step, split="eval", metric, value, ...
    on_checkpoint(trainer, path)  # after each checkpoint write
    on_finish(trainer, summary)   # the run ended normally; the dict written to summary.json

Pass them as ``Trainer(config, folder, callbacks=[...])`` or
``Trainer.resume(folder, callbacks=[...])``; they are called in list order.
Any object with some of these methods will do (the trainer calls those it
has); subclassing :class:`Callback` just supplies the others. At a segment
boundary the train record comes first, then the evaluation, then the
checkpoint, all at the same ``step``.
A train record holds ``step``, ``split="train"``, ``metric`` (the task's
metric name), ``value`` (the metric over the steps since the last record, or
None when none was scored), ``loss`` (the mean loss per step), ``seconds``
and the task's extra fields (the copy task's ``length``).

Stopping. A callback may end the run early with
``trainer.request_stop(reason)``: the trainer finishes at the current segment
boundary as it would at the last step -- it writes a checkpoint, logs
``{"event": "stopped", "step": ..., "reason": reason}``, writes
``summary.json`` with ``"stopped": reason`` and returns the summary.

State. A callback that keeps state across records (like
:class:`EarlyStopping`'s best value and patience count) gives itself
``state_dict()`` (JSON data: None, bool, int, float, str, lists and dicts of
these) and ``load_state_dict(state)``. The trainer saves these states in the
run checkpoint under the callback's index in the list, and restores them, in
order, on resume when the same callbacks (same kinds, same order) are passed
to ``Trainer.resume(folder, callbacks=[...])``. Callbacks without the two
methods are not saved. The loggers keep their state in their files
instead: in ``on_start`` :class:`CSVLogger` drops the rows written after the
checkpoint (as the trainer does for ``metrics.jsonl``) and
:class:`TensorBoardLogger` has TensorBoard hide the events logged after it.

Every task metric of this library is lower-is-better: ``bits_per_symbol``
(copy), ``mse`` (add, mimic), ``bits_per_char`` (charlm).
:class:`EarlyStopping` relies on it.
"""

import csv
import io
import json
import math
import numbers
import os

from .._io import write_csv
from .._validate import check_float, check_int

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "TensorBoardLogger"]


class Callback:
    """The hooks a :class:`~sparse_rtrl.Trainer` calls; override those you need (each is a no-op here).

    See :mod:`sparse_rtrl.training.callbacks` for when each is called, what
    the records hold, how to stop a run and how state survives a resume.
    """

    def on_start(self, trainer) -> None:
        """``trainer.run()`` begins; ``trainer.step`` is 0, or the checkpoint's step after a resume."""

    def on_log(self, trainer, record: dict) -> None:
        """A train record was logged (``record`` is what ``metrics.jsonl`` holds)."""

    def on_eval(self, trainer, record: dict) -> None:
        """An evaluation record was logged (``split="eval"``)."""

    def on_checkpoint(self, trainer, path: str) -> None:
        """The run's checkpoint was written to ``path``."""

    def on_finish(self, trainer, summary: dict) -> None:
        """The run ended (all its steps, or a stop request); ``summary`` is what ``summary.json`` holds."""


def _check_path(path, name):
    if isinstance(path, (bytes, bytearray)) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"{name} must be a str path, got {type(path).__name__}")
    if not path:
        raise ValueError(f"{name} must not be empty")
    return path


def _finite_value(record):
    """The record's metric value as a float, or None when nothing was scored (None or NaN)."""
    value = record.get("value")
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return None if math.isnan(value) else value


# -- early stopping --------------------------------------------------------------------------

class EarlyStopping(Callback):
    """Stop the run when the task's metric has stopped improving.

    Parameters
    ----------
    patience : int >= 1
        How many records in a row may fail to improve on the best value; the
        run is stopped at the ``patience``-th.
    min_delta : float >= 0, default 0
        A record improves when its value is below ``best - min_delta``.
    split : {"eval", "train"}, default "eval"
        The records watched: the held-out evaluations (the run's
        ``eval_every`` must be > 0) or the train records (every
        ``log_every`` steps).

    Attributes
    ----------
    best : float or None
        The lowest value seen (None before the first record).
    best_step : int or None
        The step of the record that set ``best``.
    wait : int
        Records since the last improvement.
    stopped_step : int or None
        The step at which this callback asked the run to stop.

    Notes
    -----
    Lower is better: every task metric of the library is a loss (bits per
    symbol or character, mean squared error). Records without a value (a
    train window in which no step was scored, an evaluation that scored
    nothing: ``None`` or NaN) are skipped. The attributes above are the
    callback's state (``state_dict``/``load_state_dict``): saved in the run
    checkpoint and restored by ``Trainer.resume(folder, callbacks=[...])``,
    so a resumed run stops where an uninterrupted one would.
    """

    def __init__(self, patience: int, min_delta: float = 0.0, split: str = "eval"):
        self.patience = check_int(patience, "patience", minimum=1)
        self.min_delta = check_float(min_delta, "min_delta", 0.0, None)
        if split not in ("eval", "train"):
            raise ValueError(f"split must be 'eval' or 'train', got {split!r}")
        self.split = split
        self.best = None
        self.best_step = None
        self.wait = 0
        self.stopped_step = None

    def config(self) -> dict:
        """The settings that rebuild it: ``patience``, ``min_delta``, ``split``."""
        return {"patience": self.patience, "min_delta": self.min_delta, "split": self.split}

    def on_log(self, trainer, record):
        if self.split == "train":
            self._observe(trainer, record)

    def on_eval(self, trainer, record):
        if self.split == "eval":
            self._observe(trainer, record)

    def _observe(self, trainer, record):
        value = _finite_value(record)
        if value is None:
            return
        step = int(record["step"])
        if self.best is None or value < self.best - self.min_delta:
            self.best, self.best_step, self.wait = value, step, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_step = step
            metric = record.get("metric", "metric")
            trainer.request_stop(
                f"early stopping: {self.split} {metric} did not improve by more than {self.min_delta:g} "
                f"in {self.wait} records (best {self.best:.6g} at step {self.best_step})")

    _FIELDS = ("best", "best_step", "wait", "stopped_step")

    def state_dict(self) -> dict:
        """``{"best", "best_step", "wait", "stopped_step"}`` as JSON data."""
        return {"best": self.best, "best_step": self.best_step, "wait": self.wait,
                "stopped_step": self.stopped_step}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned; refuses, naming the field, what does not fit."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        missing = [k for k in self._FIELDS if k not in state]
        unknown = sorted(set(state) - set(self._FIELDS))
        if missing or unknown:
            raise ValueError(f"EarlyStopping state: missing fields {missing}, unknown fields {unknown}")
        best = state["best"]
        if best is not None:
            best = check_float(best, "state['best']")
        best_step = None if state["best_step"] is None else check_int(state["best_step"], "state['best_step']",
                                                                      minimum=0)
        if (best is None) != (best_step is None):
            raise ValueError("EarlyStopping state: 'best' and 'best_step' must both be set or both be None")
        wait = check_int(state["wait"], "state['wait']", minimum=0)
        stopped = state["stopped_step"]
        stopped = None if stopped is None else check_int(stopped, "state['stopped_step']", minimum=0)
        self.best, self.best_step, self.wait, self.stopped_step = best, best_step, wait, stopped

    def __repr__(self):
        return f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta!r}, split={self.split!r})"


# -- CSV ---------------------------------------------------------------------------------------

def _cell(value):
    """A record's value as CSV text: None empty, floats exactly (as ``metrics.jsonl`` has them), else JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return float.__repr__(float(value))  # not repr(): numpy 2 writes "np.float64(0.5)"
    return json.dumps(value)


def _read_csv(path):
    """``(header, rows)`` of a CSV file, rows as lists of text, stopping at a row cut short."""
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    lines = list(csv.reader(io.StringIO(text)))
    if not lines:
        return None, []
    header, rows = lines[0], []
    for row in lines[1:]:
        if len(row) != len(header):
            break  # a row cut by an interruption: it and what follows are dropped
        rows.append(row)
    if not text.endswith("\n") and rows and len(lines) == len(rows) + 1:
        rows.pop()  # the last row lost its line end: it may be cut inside its last value
    return header, rows


class CSVLogger(Callback):
    """Write every train and evaluation record as a row of a CSV file.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file (its folder must exist). Rows are appended, one write
        per record, so the file can be read while the run goes on.

    Notes
    -----
    The header is the first record's keys; a record that brings new keys
    (an evaluation logged before the first train record, then a train
    record with ``loss`` and ``seconds``) adds columns at the end, and the
    file is rewritten once with the wider header. A record without some
    column leaves its cell empty, as does a value of None. Floats are
    written exactly (``repr``, as ``metrics.jsonl`` writes them).

    ``on_start`` keeps only the rows up to ``trainer.step``: a resumed run
    drops the rows written after its checkpoint, as ``metrics.jsonl`` does,
    so no row is written twice. A new run (step 0) starts the file afresh.
    """

    def __init__(self, path):
        self.path = _check_path(path, "path")
        self.fields = None

    def on_start(self, trainer):
        step = int(trainer.step)
        header, rows = _read_csv(self.path) if os.path.exists(self.path) else (None, [])
        kept = []
        if step > 0 and header is not None and "step" in header:
            at = header.index("step")
            for row in rows:
                try:
                    if float(row[at]) > step:
                        break
                except ValueError:
                    break
                kept.append(row)
        if kept:
            self.fields = header
            write_csv(self.path, header, kept)
        else:  # a new run, or nothing left before the checkpoint: the first record sets the header
            self.fields = None
            _remove(self.path)

    def on_log(self, trainer, record):
        self._write(record)

    def on_eval(self, trainer, record):
        self._write(record)

    def _write(self, record):
        if self.fields is None and os.path.exists(self.path):
            self.fields = _read_csv(self.path)[0]  # used without on_start: continue the file
        if self.fields is None:
            self.fields = list(record)
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(self.fields)
        new = [k for k in record if k not in self.fields]
        if new:
            header, rows = _read_csv(self.path)
            self.fields = self.fields + new
            write_csv(self.path, self.fields, [row + [""] * len(new) for row in rows])
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([_cell(record.get(k)) for k in self.fields])

    def __repr__(self):
        return f"CSVLogger({self.path!r})"


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# -- TensorBoard -----------------------------------------------------------------------------

_STANDARD_KEYS = ("step", "split", "metric", "value", "loss", "seconds")


class TensorBoardLogger(Callback):
    """Write the run's scalars for TensorBoard (with tensorboardX).

    Parameters
    ----------
    logdir : str or os.PathLike
        The folder of the event files (``tensorboard --logdir LOGDIR``).

    Notes
    -----
    Tags: ``train/<metric>`` and ``train/loss`` from each train record, the
    task's numeric extras as ``train/<name>`` (the copy task's ``length``),
    and ``eval/<metric>`` from each evaluation; the global step is the
    record's step. Events are flushed after each record. On a resumed run,
    ``on_start`` opens the writer with ``purge_step`` just past the
    checkpoint's step, so TensorBoard hides what the interrupted run logged
    after it. ``on_finish`` closes the writer.

    Needs the optional ``tensorboardX`` (``pip install "sparse_rtrl[tensorboard]"``);
    without it the constructor raises ``ImportError``.
    """

    def __init__(self, logdir):
        self.logdir = _check_path(logdir, "logdir")
        try:
            import tensorboardX
        except ImportError as exc:
            raise ImportError('TensorBoardLogger needs tensorboardX: pip install "sparse_rtrl[tensorboard]"') \
                from exc
        self._tensorboardX = tensorboardX
        self.writer = None

    def on_start(self, trainer):
        self.close()
        step = int(trainer.step)
        self.writer = self._tensorboardX.SummaryWriter(self.logdir, purge_step=step + 1 if step > 0 else None)

    def on_log(self, trainer, record):
        scalars = {f"train/{record.get('metric', 'metric')}": _finite_value(record)}
        loss = record.get("loss")
        scalars["train/loss"] = float(loss) if isinstance(loss, numbers.Real) else None
        for key, value in record.items():
            if key not in _STANDARD_KEYS and isinstance(value, numbers.Real) and not isinstance(value, bool):
                scalars[f"train/{key}"] = float(value)
        self._add(record["step"], scalars)

    def on_eval(self, trainer, record):
        self._add(record["step"], {f"eval/{record.get('metric', 'metric')}": _finite_value(record)})

    def _add(self, step, scalars):
        if self.writer is None:
            self.writer = self._tensorboardX.SummaryWriter(self.logdir)
        for tag, value in scalars.items():
            if value is not None:
                self.writer.add_scalar(tag, value, global_step=int(step))
        self.writer.flush()

    def on_finish(self, trainer, summary):
        self.close()

    def close(self):
        """Flush and close the event file (the next record opens a new one)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __repr__(self):
        return f"TensorBoardLogger({self.logdir!r})"
