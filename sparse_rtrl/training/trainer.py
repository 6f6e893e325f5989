"""Online training runs: a task, a cell, a learner, a readout and an optimiser,
with logs, evaluation, progress, checkpoints and resumption.

A run is described by a :class:`RunConfig` (JSON-able) and lives in one
folder::

    config.json        the configuration (written once)
    metrics.jsonl      one JSON object per log event (train, eval, end, diverged)
    checkpoint.npz     the whole run state, replaced atomically
    loss.png           the learning curve (written at the end)
    summary.json       the final figures (written at the end)

``Trainer(config, folder).run()`` trains; ``Trainer.resume(folder).run()``
continues an interrupted run from its last checkpoint and ends with exactly
the parameters an uninterrupted run would have.
"""

import dataclasses
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np

from .. import registry
from .._io import write_text
from .._validate import check_float, check_int
from . import checkpoint, runlog
from .online import DivergenceError, train_online
from .runlog import plot_run, read_log  # noqa: F401  (part of the trainer's API)

__all__ = ["RunConfig", "Trainer", "TrainingDiverged", "TrainingInterrupted", "plot_run", "read_log"]

logger = logging.getLogger("sparse_rtrl")

#: Steps of an episodic task run in one call of the compiled loop, at most (so that a signal or a
#: progress line waits no longer than that).
MAX_CALL_STEPS = 20000

#: The layout of a run's checkpoint; 1 is the same layout with format-1 object records.
FORMAT = 2
READABLE_FORMATS = (1, 2)


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN or infinite; the last good checkpoint is kept."""

    def __init__(self, step, detail):
        self.step = step
        super().__init__(f"training diverged at step {step}: {detail}. The last good checkpoint is left as it was.")


def _check_options(field, cls, options, run_owned, owner):
    """Each of ``options`` must be a setting of ``cls``'s constructor other than ``run_owned`` (which the
    run sets from ``owner``); errors name ``field``."""
    import difflib
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    settings = [name for name in params if name not in run_owned]
    for key in options:
        if key in run_owned:
            raise ValueError(f"{field}: {key!r} is set by the run ({owner}), not as an option")
        if key not in settings:
            close = difflib.get_close_matches(key, settings, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{field}: {key!r} is not a setting of {cls.__name__}{hint} "
                             f"(its settings: {', '.join(settings) or 'none'})")


def _check_learner_options(spec, options):
    """Each option must be a setting of the learner's constructor (cell, batch size and seed are the run's)."""
    cls, _ = registry.parse_learner(spec)
    _check_options("learner_options", cls, options, {"self", "cell", "batch_size", "seed", cls.spec_number},
                   "its cell, batch_size, seed and learner spec")


def _check_model_options(key, options):
    """Each option must be a setting of the model's constructor, other than those the run sets."""
    _check_options("model_options", registry.MODELS[key], options,
                   {"self", "n_x", "n_hidden", "density", "batch_size", "seed", "dtype", "output"},
                   "its task, n_hidden, density, batch_size, seed and dtype")


def _setting(default=None, help="", *, factory=None, cli=True, metavar=None):
    """A field of :class:`RunConfig` with its documentation; the CLI is generated from these."""
    meta = {"help": help, "cli": cli, "metavar": metavar}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class RunConfig:
    """Everything that defines a run (JSON-able; see ``to_dict``/``from_dict``).

    The one source of the run defaults: ``RunConfig()`` and ``sparse-rtrl
    train`` with no options describe the same run, and the command line's
    options and help are generated from these fields.

    Parameters
    ----------
    task : dict
        The task's ``config()`` (see :mod:`sparse_rtrl.tasks`), e.g.
        ``{"name": "copy", "n_symbols": 2}``. Its ``batch_size``, ``seed`` and
        ``dtype`` are set from this configuration.
    model : str
        ``"rnn"`` (the default): a cell trained by a learner through a linear
        readout. Or a key of the model table (``"ptncn"``:
        :class:`~sparse_rtrl.PTNCN`, on next-step tasks such as ``charlm``
        and ``bouncing``), which replaces cell, learner and readout: it has
        ``n_hidden`` units per layer and every matrix at ``density``, and its
        local updates go to the optimiser as gradients.
    model_options : dict
        Constructor arguments of the model other than those the run sets
        (e.g. ``{"activation": "sign", "n_layers": 3}``); ``"rnn"`` takes none.
    cell : str
        A key of the cell table (``"vanilla"``, ``"gru"``, ``"lstm"``, ...).
    n_hidden : int
    density : float in (0, 1]
    alpha : float, optional
        Leak of the vanilla cell (default 1).
    learner : str
        A learner spec (:mod:`sparse_rtrl.registry`), e.g. ``"snap2"``.
    learner_options : dict
        Extra constructor arguments (e.g. ``{"lr": 0.01}`` for DNI).
    optimizer : str
        A key of the optimiser table (``"sgd"``, ``"adam"``).
    lr, momentum, clip_norm : float
    schedule : str
        A key of the schedule table (``"constant"``, ``"step"``, ``"cosine"``;
        :mod:`sparse_rtrl.schedules`), in optimiser updates.
    warmup : int
        Updates of linear warm-up before the schedule.
    schedule_options : dict
        The schedule's settings (``every``, ``factor``; ``final``, ``total``).
        A cosine's ``total`` defaults to the run's number of updates.
    weight_decay : float
        Decoupled weight decay (``theta -= lr_t * weight_decay * theta``).
    update_every : int
        Steps per parameter update (1: fully online).
    feedback : {"transpose", "random"}
        The readout's credit path (random feedback for random e-prop, DNIb).
    steps : int
        Training steps (of each stream). The run ends at the first segment
        boundary at or past it (a copy episode is never cut short).
    batch_size : int or None
    dtype : {"float64", "float32"}
    seed : int
        Seeds the cell, readout, learner and task (each its own stream).
    log_every, eval_every, checkpoint_every : int
        In steps; checkpoints and logs happen at segment boundaries once the
        count has passed a multiple. ``eval_every = 0`` turns evaluation off.
    eval_steps : int
        Steps of the held-out stream per evaluation.
    """

    task: dict = _setting(help="the task's configuration", factory=lambda: {"name": "copy"}, cli=False)
    model: str = _setting("rnn", "what is trained: a recurrent network with a learner and a readout (rnn), or a "
                                 "model with its own local rule (ptncn: next-step tasks only)")
    model_options: dict = _setting(help="settings of a model other than rnn", factory=dict, cli=False)
    cell: str = _setting("gru", "recurrent cell")
    n_hidden: int = _setting(64, "hidden units")
    density: float = _setting(0.25, "fraction of the recurrent and input weights present, in (0, 1]")
    alpha: float = _setting(None, "leak of the vanilla cell, in (0, 1] (none given: 1, no leak)")
    learner: str = _setting("snap2", "learner spec")
    learner_options: dict = _setting(help="extra constructor arguments of the learner", factory=dict, cli=False)
    optimizer: str = _setting("adam", "optimiser")
    lr: float = _setting(3e-3, "learning rate")
    momentum: float = _setting(0.0, "SGD momentum, in [0, 1)")
    clip_norm: float = _setting(1.0, "rescale the gradients when their global norm exceeds this")
    schedule: str = _setting("constant", "learning-rate schedule (a multiplier of lr per update)")
    warmup: int = _setting(0, "optimiser updates of linear learning-rate warm-up before the schedule")
    schedule_options: dict = _setting(help="settings of the schedule: every and factor (step), final and total "
                                           "(cosine; total defaults to the run's updates)", factory=dict, cli=False)
    weight_decay: float = _setting(0.0, "decoupled weight decay (AdamW-style), on every parameter")
    update_every: int = _setting(1, "steps per parameter update (1: fully online)")
    feedback: str = _setting("transpose", "the readout's credit path: its transposed weights, or fixed random "
                                          "ones (random e-prop, DNIb)")
    steps: int = _setting(150000, "training steps (of each stream)")
    batch_size: int = _setting(None, "independent streams trained together (none: one unbatched stream)")
    dtype: str = _setting("float64", "floating-point type of the network and its learner")
    seed: int = _setting(0, "seeds the cell, readout, learner and task")
    log_every: int = _setting(2000, "steps between log records")
    eval_every: int = _setting(15000, "steps between evaluations on a held-out stream (0: none)")
    eval_steps: int = _setting(2000, "held-out steps per evaluation")
    checkpoint_every: int = _setting(15000, "steps between checkpoints")

    #: The values a field may take, for the fields that have a fixed set.
    @staticmethod
    def choices(name):
        """The allowed values of field ``name`` (a list), or None when it is not one of a set."""
        return {
            "model": lambda: ["rnn"] + list(registry.MODELS.keys()),
            "cell": lambda: list(registry.CELLS.keys()),
            "optimizer": lambda: list(registry.OPTIMIZERS.keys()),
            "schedule": lambda: list(registry.SCHEDULES.keys()),
            "feedback": lambda: ["transpose", "random"],
            "dtype": lambda: ["float32", "float64"],
        }.get(name, lambda: None)()

    def validate(self):
        """Check every field; ``ValueError``/``TypeError`` naming the field."""
        if not isinstance(self.task, dict) or "name" not in self.task:
            raise ValueError("task must be a dict with a 'name' (e.g. {'name': 'copy'})")
        if self.model != "rnn" and self.model not in registry.MODELS:
            raise ValueError(f"model must be 'rnn' or one of {registry.MODELS.keys()}, got {self.model!r}")
        if not isinstance(self.model_options, dict):
            raise TypeError("model_options must be a dict")
        if self.model == "rnn":
            if self.model_options:
                raise ValueError("model_options apply to a model other than 'rnn' (e.g. model='ptncn'); "
                                 "the rnn's learner takes learner_options")
        else:
            _check_model_options(self.model, self.model_options)
            if self.learner_options:
                raise ValueError(f"learner_options apply to model 'rnn'; the {self.model!r} model has no learner "
                                 f"(its settings are model_options)")
            if self.alpha is not None:
                raise ValueError(f"alpha (the vanilla cell's leak) applies to model 'rnn', not to {self.model!r}")
            if self.feedback != "transpose":
                raise ValueError(f"feedback applies to model 'rnn' (its readout), not to {self.model!r}")
        if self.cell not in registry.CELLS:
            raise ValueError(f"cell must be one of {registry.CELLS.keys()}, got {self.cell!r}")
        check_int(self.n_hidden, "n_hidden", minimum=1)
        check_float(self.density, "density", 0.0, 1.0, low_open=True)
        if self.alpha is not None:
            if self.cell != "vanilla":
                raise ValueError(f"alpha (the leak) applies to the vanilla cell only, not to {self.cell!r}")
            check_float(self.alpha, "alpha", 0.0, 1.0, low_open=True)
        registry.parse_learner(self.learner)
        if not isinstance(self.learner_options, dict):
            raise TypeError("learner_options must be a dict")
        _check_learner_options(self.learner, self.learner_options)
        if self.optimizer not in registry.OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {registry.OPTIMIZERS.keys()}, got {self.optimizer!r}")
        check_float(self.lr, "lr", 0.0, None, low_open=True)
        check_float(self.momentum, "momentum", 0.0, 1.0, high_open=True)
        if self.clip_norm is not None:
            check_float(self.clip_norm, "clip_norm", 0.0, None, low_open=True)
        check_int(self.update_every, "update_every", minimum=1)
        if self.schedule not in registry.SCHEDULES:
            raise ValueError(f"schedule must be one of {registry.SCHEDULES.keys()}, got {self.schedule!r}")
        check_int(self.warmup, "warmup", minimum=0)
        if not isinstance(self.schedule_options, dict):
            raise TypeError("schedule_options must be a dict")
        check_float(self.weight_decay, "weight_decay", 0.0, None)
        self.make_schedule()  # the schedule's own checks, naming its settings
        if self.feedback not in ("transpose", "random"):
            raise ValueError(f"feedback must be 'transpose' or 'random', got {self.feedback!r}")
        check_int(self.steps, "steps", minimum=1)
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", minimum=1)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        check_int(self.seed, "seed", minimum=0)
        check_int(self.log_every, "log_every", minimum=1)
        check_int(self.eval_every, "eval_every", minimum=0)
        check_int(self.eval_steps, "eval_steps", minimum=1)
        check_int(self.checkpoint_every, "checkpoint_every", minimum=1)
        return self

    def make_schedule(self):
        """The run's learning-rate schedule, or None for a constant rate without warm-up."""
        if self.schedule == "constant" and not self.warmup and not self.schedule_options:
            return None
        options = dict(self.schedule_options)
        if "warmup" in options:
            raise ValueError("schedule_options: give the warm-up as the warmup field, not as a schedule option")
        if self.schedule == "cosine":
            options.setdefault("total", max(self.steps // self.update_every, self.warmup + 1))
        return registry.make_schedule(self.schedule, warmup=self.warmup, **options)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**d).validate()


class TrainingInterrupted(RuntimeError):
    """A run stopped by SIGINT or SIGTERM: it finished its segment and wrote a checkpoint first."""

    def __init__(self, step, signal_name, folder):
        self.step = step
        self.signal = signal_name
        super().__init__(f"{signal_name} at step {step}: checkpoint written; continue with "
                         f"sparse-rtrl resume {folder}")


def _in_notebook():
    """True inside a Jupyter kernel (where progress goes to a notebook widget or the cell's output)."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        return type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:  # noqa: BLE001 - any failure means: not a notebook we can draw in
        return False


def _fields_text(fields):
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())


def _duration(seconds):
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class _Progress:
    """Progress of a run: a tqdm bar (terminal or notebook) or, when there is none, a log line per record.

    The bar is opened after the first segment, so its rate and ETA leave out
    the compilation that the first segment pays for; it ends at the run's
    last step.
    """

    def __init__(self, trainer, enabled):
        self.trainer = trainer
        self.enabled = enabled
        self.bar = None
        self.t0 = None
        self.step0 = None

    def started(self):
        """The first segment is done: time (and draw) from here."""
        self.t0 = time.perf_counter()
        self.step0 = self.trainer.step
        if self.enabled:
            total = self.trainer.config.steps
            if _in_notebook() and self.trainer.stream is sys.stderr and importlib.util.find_spec("ipywidgets"):
                from tqdm.notebook import tqdm
                self.bar = tqdm(total=total, initial=self.step0, unit="step")
            else:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=self.step0, unit="step", file=self.trainer.stream,
                                dynamic_ncols=True, mininterval=0.2)

    def update(self, fields):
        if self.bar is not None:
            self.bar.update(self.trainer.step - self.bar.n)
            self.bar.set_postfix_str(_fields_text(fields), refresh=False)

    def logged(self, record):
        """A train record was logged: without a bar, say where the run is (for batch logs)."""
        if self.enabled or self.t0 is None:
            return
        t = self.trainer
        elapsed = time.perf_counter() - self.t0
        done = t.step - self.step0
        rate = done / elapsed if elapsed > 0 and done > 0 else float("nan")
        left = max(0, t.config.steps - t.step)
        eta = _duration(left / rate) if rate == rate and rate > 0 else "?"
        value = record.get("value")
        metric = f"  {record['metric']} {value:.4g}" if value is not None else ""
        logger.info("step %d/%d (%.0f%%)  loss %.4g%s  %.0f steps/s  ETA %s", t.step, t.config.steps,
                    100.0 * min(1.0, t.step / t.config.steps), record["loss"], metric, rate, eta)

    def close(self):
        if self.bar is not None:
            if self.bar.n > self.bar.total or self.trainer.step >= self.trainer.config.steps:
                self.bar.total = self.bar.n  # the run ends at a segment boundary at or past its total
            self.bar.refresh()
            self.bar.close()
            self.bar = None


class _StopSignals:
    """SIGINT and SIGTERM ask the run to stop at the end of its segment, with a checkpoint; a second one stops
    at once (the checkpoint on disk is then the last one written)."""

    def __init__(self):
        self.caught = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self.previous[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):  # not settable here (embedded interpreter, say)
                    pass
        return self

    def _handle(self, signum, frame):
        if self.caught is not None:
            raise KeyboardInterrupt
        self.caught = signal.Signals(signum).name
        logger.warning("%s received: stopping at the end of this segment, with a checkpoint "
                       "(send it again to stop at once)", self.caught)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def score_stream(task, n_steps: int, losses_of) -> float:
    """A task's metric over its next segments until ``n_steps`` steps, each segment weighted by the items
    its score averages (``task.score_weight``); ``losses_of(seg)`` gives a segment's per-step losses."""
    done, weighted, count = 0, 0.0, 0
    while done < n_steps:
        seg = task.segment()
        losses = losses_of(seg)
        weight = task.score_weight(seg)
        if weight:
            weighted += task.score(seg, losses) * weight
            count += weight
        done += seg.inputs.shape[0]
    return weighted / count if count else float("nan")


class Trainer:
    """Train one configuration online, logging to and checkpointing in ``folder``.

    Parameters
    ----------
    config : RunConfig or dict
    folder : str or os.PathLike
        Created if needed. A folder that already holds a run is refused
        (``FileExistsError``): use :meth:`resume`, or another folder.
    progress : bool or None
        Draw a progress bar (tqdm: in a terminal, or in a notebook). Default:
        when ``stream`` is a terminal or the run is in a Jupyter kernel.
        Without a bar, a line per train log record goes to the
        ``"sparse_rtrl"`` logger (``logging``), for batch logs.
    stream : file, default sys.stderr
        Where the bar is drawn.
    task : Task, optional
        A task object to train on instead of building one from
        ``config.task`` (your own data: :class:`~sparse_rtrl.tasks.ArrayTask`
        or any :class:`~sparse_rtrl.tasks.Task`). Its ``config()`` is recorded
        as the run's ``task``; its ``batch_size`` and ``dtype`` must be the
        configuration's.
    callbacks : list of Callback, optional
        Objects with any of the hooks ``on_start``, ``on_log``, ``on_eval``,
        ``on_checkpoint``, ``on_finish`` (see
        :mod:`sparse_rtrl.training.callbacks`). A callback may call
        :meth:`request_stop`. Callbacks with a ``state_dict`` have it saved in
        the checkpoint and restored, in order, by :meth:`resume`.

    Notes
    -----
    Each segment of the task stream is trained with :func:`train_online`
    (compiled for SnAp on the built-in cells). Episodic tasks (copy) reset the
    learner before each episode; the gradient left in a partial block of
    ``update_every`` steps at an episode's end is applied then, so no episode's
    gradient is dropped (the one left at the end of the run stays unapplied,
    in the learner). Logs, evaluations and checkpoints happen at segment
    boundaries. A non-finite loss or gradient stops the run with
    :class:`TrainingDiverged`, logged with its step; the checkpoint on disk is
    the last good one. SIGINT or SIGTERM ends the segment, writes a checkpoint
    and raises :class:`TrainingInterrupted`.
    """

    def __init__(self, config, folder, progress: bool = None, stream=None, *, task=None, callbacks=None,
                 _resuming=False):
        if isinstance(config, dict):
            config = RunConfig.from_dict(config)
        if not isinstance(config, RunConfig):
            raise TypeError(f"config must be a RunConfig or a dict, got {type(config).__name__}")
        config = dataclasses.replace(config)  # the trainer's own copy: a resume may extend its steps
        if task is not None:
            config = self._adopt_task(config, task, _resuming)
        self.config = config.validate()
        self.folder = os.fspath(folder)
        self.stream = sys.stderr if stream is None else stream
        if progress is None:
            progress = (hasattr(self.stream, "isatty") and self.stream.isatty()) or _in_notebook()
        self.progress = bool(progress)
        self.callbacks = self._check_callbacks(callbacks)
        if not _resuming and os.path.exists(os.path.join(self.folder, "config.json")):
            raise FileExistsError(f"{self.folder} already holds a run: resume it or choose another folder")
        self._user_task = task
        self._stop_reason = None
        self._progress = None
        self.resume_message = None
        self._build()
        if not _resuming:
            os.makedirs(self.folder, exist_ok=True)
            write_text(self._path("config.json"), json.dumps(self.config.to_dict(), indent=2) + "\n")
            open(self._path(runlog.LOG), "w").close()

    @staticmethod
    def _adopt_task(config, task, resuming):
        from .tasks import Task

        if not isinstance(task, Task):
            raise TypeError(f"task must be a sparse_rtrl.tasks.Task, got {type(task).__name__}")
        if task.batch_size != config.batch_size:
            raise ValueError(f"task.batch_size is {task.batch_size} but the configuration's batch_size is "
                             f"{config.batch_size}: they must agree")
        if np.dtype(task.dtype) != np.dtype(config.dtype):
            raise ValueError(f"task.dtype is {np.dtype(task.dtype).name} but the configuration's dtype is "
                             f"{config.dtype}: they must agree")
        recorded = task.config()
        if resuming and config.task != recorded:
            raise ValueError(f"task is not the run's task: the run was trained on {config.task}, "
                             f"the task given is {recorded}")
        return dataclasses.replace(config, task=recorded)

    @staticmethod
    def _check_callbacks(callbacks):
        if callbacks is None:
            return []
        if not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"callbacks must be a list of callback objects, got {type(callbacks).__name__}")
        hooks = ("on_start", "on_log", "on_eval", "on_checkpoint", "on_finish")
        for i, cb in enumerate(callbacks):
            if isinstance(cb, type):
                raise TypeError(f"callbacks[{i}] is the class {cb.__name__}: pass an instance, "
                                f"e.g. {cb.__name__}(...)")
            if not any(callable(getattr(cb, h, None)) for h in hooks):
                raise TypeError(f"callbacks[{i}] ({type(cb).__name__}) has none of the hooks {', '.join(hooks)}")
        return list(callbacks)

    def _call(self, hook, *args):
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    def request_stop(self, reason: str) -> None:
        """Ask the run to stop at the end of the current segment (for callbacks: early stopping and the like).

        The run then writes a checkpoint, logs a ``"stopped"`` event with the
        reason and returns its summary (with ``"stopped": reason``).
        """
        self._stop_reason = str(reason)

    # -- construction ---------------------------------------------------------------
    def _build(self):
        from . import tasks
        from .readouts import LinearReadout

        c = self.config
        seeds = np.random.SeedSequence(c.seed).generate_state(5)
        if self._user_task is not None:
            self.task = self._user_task
        else:
            self.task = tasks.make_task(dict(c.task, batch_size=c.batch_size, seed=int(seeds[0]), dtype=c.dtype))
        if c.model == "rnn":
            self.model = None
            self.cell = registry.make_cell(c.cell, self.task.n_in, c.n_hidden, c.density, int(seeds[1]), c.dtype,
                                           alpha=c.alpha)
            self.learner = registry.make_learner(c.learner, self.cell, c.batch_size, seed=int(seeds[2]),
                                                 **c.learner_options)
            self.readout = LinearReadout(self.cell, self.task.n_out, loss=self.task.loss, seed=int(seeds[3]),
                                         feedback=c.feedback)
            params = [self.cell.params, self.readout.params]
        else:
            self.cell = self.learner = self.readout = None
            self.model = self._make_model(int(seeds[1]))
            params = [self.model.params]
        self.optimizer = registry.make_optimizer(c.optimizer, params, c.lr, momentum=c.momentum,
                                                 clip_norm=c.clip_norm, schedule=c.make_schedule(),
                                                 weight_decay=c.weight_decay)
        self._eval_seed = int(seeds[4])
        self.step = 0
        self._window = {"loss": 0.0, "score": 0.0, "steps": 0, "n": 0}
        self._next = {"log": c.log_every, "eval": c.eval_every or None, "checkpoint": c.checkpoint_every}
        self.seconds = 0.0

    def _make_model(self, seed):
        """The run's model (``config.model`` other than ``"rnn"``), predicting the task's next input."""
        c, task = self.config, self.task
        if not task.next_step:
            raise ValueError(f"model {c.model!r} predicts its next observation, so it trains on next-step tasks "
                             f"(charlm, bouncing); the {task.name!r} task's targets are not its next inputs")
        outputs = {"cross_entropy": "softmax", "bernoulli": "sigmoid"}
        if task.loss not in outputs:
            raise ValueError(f"model {c.model!r} predicts symbols (cross_entropy) or pixels in [0, 1] (bernoulli); "
                             f"the {task.name!r} task's loss is {task.loss!r}")
        if task.n_in != task.n_out:
            raise ValueError(f"the {task.name!r} task's inputs ({task.n_in}) and targets ({task.n_out}) differ in "
                             f"size: it is not next-step prediction")
        return registry.MODELS[c.model](task.n_out, n_hidden=c.n_hidden, density=c.density, output=outputs[task.loss],
                                        batch_size=c.batch_size, seed=seed, dtype=c.dtype, **c.model_options)

    @property
    def trained(self):
        """What the run trains, as a string: the model's name, or the learner's (``"SnAp-2"``)."""
        return self.learner.name if self.model is None else self.config.model

    def _path(self, name):
        return os.path.join(self.folder, name)

    # -- state ------------------------------------------------------------------------
    def state(self):
        """The whole run state as a nested dict (what ``checkpoint.npz`` holds)."""
        state = {
            "format": FORMAT,
            "step": self.step,
            "steps": self.config.steps,
            "seconds": self.seconds,
            "window": dict(self._window),
            "next": dict(self._next),
            "optimizer": checkpoint.get_state(self.optimizer),
            "task": self.task.state_dict(),
        }
        if self.model is None:
            for part in ("cell", "readout", "learner"):
                state[part] = checkpoint.get_state(getattr(self, part))
        else:
            state["model"] = checkpoint.get_state(self.model)
        kept = {str(i): {"class": type(cb).__qualname__, "state": cb.state_dict()}
                for i, cb in enumerate(self.callbacks) if hasattr(cb, "state_dict")}
        if kept:
            state["callbacks"] = kept
        return state

    def load_state(self, state):
        if state.get("format") not in READABLE_FORMATS:
            raise ValueError(f"checkpoint format {state.get('format')!r}: this library reads run checkpoints of "
                             f"formats {', '.join(map(str, READABLE_FORMATS))}")
        parts = ("cell", "readout", "learner") if self.model is None else ("model",)
        missing = [part for part in parts if part not in state]
        if missing:
            raise ValueError(f"the checkpoint holds no {', '.join(missing)}: it is not a checkpoint of a "
                             f"{self.config.model!r} run")
        for part in parts:
            checkpoint.set_state(getattr(self, part), state[part])
        checkpoint.set_state(self.optimizer, state["optimizer"])
        self.task.load_state_dict(state["task"])
        self.step = int(state["step"])
        if "steps" in state:  # the run's total, as a resume may have extended it
            self.config = dataclasses.replace(self.config, steps=int(state["steps"]))
        self.seconds = float(state["seconds"])
        self._window = dict(state["window"])
        self._next = dict(state["next"])
        for i, cb in enumerate(self.callbacks):
            saved = state.get("callbacks", {}).get(str(i))
            if saved is not None and hasattr(cb, "load_state_dict"):
                if saved["class"] != type(cb).__qualname__:
                    raise ValueError(f"callbacks[{i}] is a {type(cb).__qualname__}, but the checkpoint holds the "
                                     f"state of a {saved['class']} there: pass the run's callbacks in their order")
                cb.load_state_dict(saved["state"])

    def save_checkpoint(self):
        path = self._path("checkpoint.npz")
        checkpoint.save(path, self.state())
        self._call("on_checkpoint", path)

    @classmethod
    def resume(cls, folder, steps: int = None, progress: bool = None, stream=None, *, task=None,
               callbacks=None) -> "Trainer":
        """Continue the run in ``folder`` from its checkpoint.

        ``steps`` (optional) extends the run to that many steps in all: it must
        be more than the step the checkpoint holds. The extension is logged
        (an ``"extend"`` event) and kept in the checkpoint; ``config.json``
        stays as the run was started. Log lines written after the checkpoint
        are dropped, so the log matches the resumed run; where the run
        restarts is in :attr:`resume_message` (and the ``"sparse_rtrl"`` log).
        ``task`` and ``callbacks`` as for the constructor: a run on an
        in-memory task needs the same task object again.
        """
        folder = os.fspath(folder)
        path = os.path.join(folder, "config.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{folder} holds no run (no config.json)")
        try:
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not a run configuration (not JSON: {exc})") from None
        trainer = cls(cfg, folder, progress=progress, stream=stream, task=task, callbacks=callbacks,
                      _resuming=True)
        ck = trainer._path("checkpoint.npz")
        if os.path.exists(ck):
            trainer.load_state(checkpoint.load(ck))
        log_path = trainer._path(runlog.LOG)
        reached = max((r.get("step", 0) for r in read_log(log_path)), default=0) if os.path.exists(log_path) else 0
        runlog.truncate(log_path, trainer.step)
        total = trainer.config.steps
        if steps is not None:
            steps = check_int(steps, "steps", minimum=1)
            if steps <= trainer.step:
                raise ValueError(f"steps must be more than the {trainer.step} steps the run's checkpoint holds "
                                 f"(it extends the run), got {steps}")
            if steps != total:
                trainer._log({"event": "extend", "step": trainer.step, "steps": steps, "previous_steps": total})
                trainer.config = dataclasses.replace(trainer.config, steps=steps)
                checkpoint.save(trainer._path("checkpoint.npz"), trainer.state())  # before run(): no hooks yet
        total = trainer.config.steps
        if trainer.step >= total:
            message = f"{folder} is complete at step {trainer.step} of {total}; give more steps to extend it"
        else:
            message = f"resuming {folder} from its checkpoint at step {trainer.step} of {total}"
            if reached > trainer.step:
                message += (f" (the run had logged up to step {reached}: the {reached - trainer.step} steps "
                            f"after the checkpoint are trained again)")
        if steps is not None and steps != cfg.get("steps"):
            message += f"; extended to {total} steps"
        trainer.resume_message = message
        logger.info("%s", message)
        return trainer

    # -- logging ------------------------------------------------------------------------
    def _log(self, record):
        runlog.append(self._path(runlog.LOG), record)

    def _extra(self):
        """What the task logs with every record (the copy curriculum's length)."""
        return self.task.log_fields()

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, n_steps: int = None, task=None) -> float:
        """The task's metric on ``n_steps`` of the held-out stream, with the current weights.

        Nothing that training uses changes (the cell step and readout
        prediction are pure; a model's state is put back afterwards); the
        held-out stream starts afresh each time, so evaluations are comparable
        across the run.

        ``task`` evaluates on another stream instead, with the weights frozen
        the same way (zero-shot transfer: a run trained on bouncing digits,
        scored on bouncing letters): a :class:`~sparse_rtrl.tasks.Task` with
        the run's inputs, outputs, loss, batch size and dtype. It is read
        from where it stands.
        """
        n_steps = self.config.eval_steps if n_steps is None else check_int(n_steps, "n_steps", minimum=1)
        task = self.task.held_out(self._eval_seed) if task is None else self._check_eval_task(task)
        if self.model is not None:
            saved = self.model.state_dict()  # the training stream's state, restored after
            try:
                self.model.reset()
                return score_stream(task, n_steps, lambda seg: self._model_losses(seg, task))
            finally:
                self.model.load_state_dict(saved)
        B = self.config.batch_size
        s = None

        def losses_of(seg):
            nonlocal s
            if s is None or seg.reset:
                s = np.zeros((B or 1, self.cell.n_state), self.cell.dtype)
            T = seg.inputs.shape[0]
            xs = seg.inputs.reshape(T, B or 1, -1)
            ys = seg.targets.reshape((T, B or 1) + seg.targets.shape[1 + (B is not None):])
            losses = np.zeros(T)
            for t in range(T):
                s = self.cell.step(s, xs[t])
                losses[t] = self.readout.loss_of(s, ys[t])
            return losses

        return score_stream(task, n_steps, losses_of)

    def _check_eval_task(self, task):
        from .tasks import Task

        if not isinstance(task, Task):
            raise TypeError(f"task must be a sparse_rtrl.tasks.Task, got {type(task).__name__}")
        mine = self.task
        for name in ("n_in", "n_out", "loss", "batch_size"):
            if getattr(task, name) != getattr(mine, name):
                raise ValueError(f"task.{name} is {getattr(task, name)!r} but the run's task has "
                                 f"{getattr(mine, name)!r}: the weights cannot be evaluated on it")
        if np.dtype(task.dtype) != np.dtype(mine.dtype):
            raise ValueError(f"task.dtype is {np.dtype(task.dtype).name} but the run's is {np.dtype(mine.dtype).name}")
        return task

    def _model_losses(self, seg, task, learn=False):
        """Run the model over a segment of ``task`` (reset and primed at a sequence's start); its per-step
        losses."""
        from .ptncn_online import segment_observations, train_ptncn

        first, observations, mask = segment_observations(task, seg)
        if seg.reset or self.model.n_steps == 0:
            self.model.reset()
            self.model.step(first, learn=False)
        return train_ptncn(self.model, self.optimizer if learn else None, observations, mask,
                           self.config.update_every)

    def _evaluation(self):
        record = {"step": self.step, "split": "eval", "metric": self.task.metric, "value": self.evaluate(),
                  **self._extra()}
        self._log(record)
        self._call("on_eval", record)

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> dict:
        """Train until ``config.steps``; returns the summary dict (also in ``summary.json``).

        Raises
        ------
        TrainingDiverged
            A loss or gradient became NaN or infinite (the last good
            checkpoint is kept).
        TrainingInterrupted
            SIGINT or SIGTERM arrived; the run wrote a checkpoint at the end of
            its segment (``sparse-rtrl resume`` continues it).
        """
        c = self.config
        self._stop_reason = None
        self._call("on_start")
        progress = self._progress = _Progress(self, self.progress)
        started = time.perf_counter() - self.seconds
        last_score = float("nan")
        if self.step == 0 and not os.path.exists(self._path("checkpoint.npz")):
            self.save_checkpoint()  # a run that diverges early still has a good state to go back to
        notice = threading.Timer(1.5, self._compiling_notice)
        notice.daemon = True
        first = True
        with _StopSignals() as signals:
            try:
                if self.step < c.steps:
                    notice.start()
                while self.step < c.steps:
                    segs = self._segments()
                    try:
                        if self.model is not None:
                            seg = segs[0]
                            if seg.reset:
                                self._end_model_episode()
                            losses = [self._model_losses(seg, self.task, learn=True)]
                        else:
                            losses = self._train(segs)
                    except DivergenceError as exc:
                        self._diverged(self.step + exc.step + 1, exc.what)
                    for seg, seg_losses in zip(segs, losses):
                        T = seg.inputs.shape[0]
                        self.task.record(seg, seg_losses)
                        self.step += T
                        weight = self.task.score_weight(seg)
                        if weight:
                            last_score = float(self.task.score(seg, seg_losses))
                            self._window["score"] += last_score * weight
                            self._window["steps"] += weight
                        self._window["loss"] += float(np.sum(seg_losses)) / (c.batch_size or 1)
                        self._window["n"] += T
                    self.seconds = time.perf_counter() - started
                    if first:
                        notice.cancel()
                        progress.started()
                        first = False
                    progress.update({"loss": self._window["loss"] / max(1, self._window["n"]),
                                     self.task.metric: last_score, **self._extra()})
                    self._boundary()
                    if signals.caught or self._stop_reason:
                        break
            finally:
                notice.cancel()
                progress.close()
        if signals.caught:
            self.save_checkpoint()
            self._log({"event": "interrupted", "step": self.step, "signal": signals.caught})
            raise TrainingInterrupted(self.step, signals.caught, self.folder)
        if self._stop_reason:
            self.save_checkpoint()
            self._log({"event": "stopped", "step": self.step, "reason": self._stop_reason})
            logger.info("stopped at step %d: %s", self.step, self._stop_reason)
        return self._finish()

    def _segments(self):
        """The segments of the next call: one, or for an episodic task trained online, every episode up to
        the next log, evaluation, checkpoint or the end (and no further than the task can draw ahead)."""
        seg = self.task.segment()
        if self.model is not None or not self.task.episodic:
            return [seg]
        segs = [seg]
        ahead = self.task.episodes_ahead()
        due = min([self.config.steps, self._next["log"], self._next["checkpoint"]]
                  + ([self._next["eval"]] if self._next["eval"] is not None else []))
        step = self.step + seg.inputs.shape[0]
        while step < due and (ahead is None or len(segs) < ahead) and step - self.step < MAX_CALL_STEPS:
            seg = self.task.segment()
            segs.append(seg)
            step += seg.inputs.shape[0]
        return segs

    def _train(self, segs):
        """Train the learner online on ``segs`` in one call; their losses. Where a segment begins an episode,
        ``train_online`` ends the previous one and resets the learner (``resets``); on a fresh learner (the
        run's first step) that changes nothing."""
        lengths = [seg.inputs.shape[0] for seg in segs]
        starts = np.cumsum([0] + lengths[:-1])
        resets = np.zeros(sum(lengths), dtype=bool)
        resets[starts] = [seg.reset for seg in segs]
        losses = train_online(self.learner, self.readout, self.optimizer, np.concatenate([s.inputs for s in segs]),
                              np.concatenate([s.targets for s in segs]), self.config.update_every, resets=resets)
        return np.split(losses, starts[1:])

    def _compiling_notice(self):
        text = "compiling kernels (first run only: they are cached on disk afterwards)..."
        if self.progress:
            self.stream.write(text + "\n")
            self.stream.flush()
        else:
            logger.info("%s", text)

    def _diverged(self, step, what):
        detail = f"the {what} became NaN or infinite"
        self._log({"event": "diverged", "step": step, "detail": detail})
        raise TrainingDiverged(step, detail) from None

    def _end_model_episode(self):
        """The model's episode ends: apply the gradient left in a partial block (the learners' episodes end
        inside ``train_online``, see ``_train``)."""
        if self.step == 0 or self.config.update_every == 1:
            return
        grad = self.model.grad()
        if np.any(grad):
            try:
                self.optimizer.step([grad])
            except FloatingPointError:
                self._diverged(self.step, "gradient")

    def _boundary(self):
        c = self.config
        progress = self._progress
        if self.step >= self._next["log"]:
            w = self._window
            rec = {"step": self.step, "split": "train", "metric": self.task.metric,
                   "value": w["score"] / w["steps"] if w["steps"] else None,
                   "loss": w["loss"] / max(1, w["n"]),
                   "seconds": round(self.seconds, 3), **self._extra()}
            self._log(rec)
            self._window = {"loss": 0.0, "score": 0.0, "steps": 0, "n": 0}
            self._advance("log", c.log_every)
            if progress is not None:
                progress.logged(rec)
            self._call("on_log", rec)
        if self._next["eval"] is not None and self.step >= self._next["eval"]:
            self._evaluation()
            self._advance("eval", c.eval_every)
        if self.step >= self._next["checkpoint"] or self.step >= c.steps:
            self.save_checkpoint()
            self._advance("checkpoint", c.checkpoint_every)

    def _advance(self, event, every):
        """Move ``event``'s next due step past the current step."""
        while self._next[event] <= self.step:
            self._next[event] += every

    def _finish(self):
        stopped = self._stop_reason  # a stop asked for by the final evaluation's callbacks comes too late
        records = read_log(self._path(runlog.LOG))
        evals = [r for r in records if r.get("split") == "eval"]
        if self.config.eval_every and not (evals and evals[-1]["step"] == self.step):
            self._evaluation()  # the final evaluation is of the final weights
            records = read_log(self._path(runlog.LOG))
            if any(hasattr(cb, "state_dict") for cb in self.callbacks):
                self.save_checkpoint()  # with the callbacks' state after that evaluation
        train = [r for r in records if r.get("split") == "train" and r.get("value") is not None]
        evals = [r for r in records if r.get("split") == "eval"]
        summary = {
            "steps": self.step,
            "seconds": round(self.seconds, 3),
            "metric": self.task.metric,
            "final_train": train[-1]["value"] if train else None,
            "final_eval": evals[-1]["value"] if evals else None,
            "learner": self.trained,
            **self._extra(),
        }
        if stopped:
            summary["stopped"] = stopped
        self._log({"event": "end", "step": self.step, **summary})
        write_text(self._path("summary.json"), json.dumps(summary, indent=2) + "\n")
        try:
            plot_run(self.folder)
        except ImportError:
            warnings.warn('no loss.png: matplotlib is missing (pip install "sparse_rtrl[plot]")', stacklevel=2)
        self._call("on_finish", summary)
        return summary
