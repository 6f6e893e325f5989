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
import json
import os
import sys
import time

import numpy as np

from .. import registry
from .._io import write_text
from .._validate import check_float, check_int
from . import checkpoint, runlog
from .online import DivergenceError, train_online
from .runlog import plot_run, read_log  # noqa: F401  (part of the trainer's API)

#: The layout of a run's checkpoint; 1 is the same layout with format-1 object records.
FORMAT = 2
READABLE_FORMATS = (1, 2)


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN or infinite; the last good checkpoint is kept."""

    def __init__(self, step, detail):
        self.step = step
        super().__init__(f"training diverged at step {step}: {detail}. The last good checkpoint is left as it was.")


@dataclasses.dataclass
class RunConfig:
    """Everything that defines a run (JSON-able; see ``to_dict``/``from_dict``).

    Parameters
    ----------
    task : dict
        The task's ``config()`` (see :mod:`sparse_rtrl.tasks`), e.g.
        ``{"name": "copy", "n_symbols": 2}``. Its ``batch_size``, ``seed`` and
        ``dtype`` are set from this configuration.
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
    update_every : int
        Steps per parameter update (1: fully online).
    feedback : {"transpose", "random"}
        The readout's credit path (random feedback for random e-prop, DNIb).
    steps : int
        Training steps (of each stream). The run ends at the first segment
        boundary at or past it (a copy episode is never cut short).
    batch_size : int or None
    dtype : {"float32", "float64"}
    seed : int
        Seeds the cell, readout, learner and task (each its own stream).
    log_every, eval_every, checkpoint_every : int
        In steps; checkpoints and logs happen at segment boundaries once the
        count has passed a multiple. ``eval_every = 0`` turns evaluation off.
    eval_steps : int
        Steps of the held-out stream per evaluation.
    """

    task: dict = dataclasses.field(default_factory=lambda: {"name": "copy"})
    cell: str = "gru"
    n_hidden: int = 32
    density: float = 0.25
    alpha: float = None
    learner: str = "snap2"
    learner_options: dict = dataclasses.field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 3e-3
    momentum: float = 0.0
    clip_norm: float = 1.0
    update_every: int = 1
    feedback: str = "transpose"
    steps: int = 20000
    batch_size: int = None
    dtype: str = "float32"
    seed: int = 0
    log_every: int = 500
    eval_every: int = 5000
    eval_steps: int = 1000
    checkpoint_every: int = 5000

    def validate(self):
        """Check every field; ``ValueError``/``TypeError`` naming the field."""
        if not isinstance(self.task, dict) or "name" not in self.task:
            raise ValueError("task must be a dict with a 'name' (e.g. {'name': 'copy'})")
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
        if self.optimizer not in registry.OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {registry.OPTIMIZERS.keys()}, got {self.optimizer!r}")
        check_float(self.lr, "lr", 0.0, None, low_open=True)
        check_float(self.momentum, "momentum", 0.0, 1.0, high_open=True)
        if self.clip_norm is not None:
            check_float(self.clip_norm, "clip_norm", 0.0, None, low_open=True)
        check_int(self.update_every, "update_every", minimum=1)
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

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**d).validate()


class _Progress:
    """A one-line progress bar with the live loss, redrawn at most ten times a second."""

    def __init__(self, total, stream, enabled):
        self.total, self.stream, self.enabled = total, stream, enabled
        self.last = 0.0
        self.start = time.perf_counter()

    def update(self, step, fields, force=False):
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        frac = min(1.0, step / self.total)
        bar = "#" * int(24 * frac)
        rate = step / max(now - self.start, 1e-9)
        info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        self.stream.write(f"\r{step:>8d}/{self.total} [{bar:<24}] {info}  {rate:,.0f} steps/s ")
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class Trainer:
    """Train one configuration online, logging to and checkpointing in ``folder``.

    Parameters
    ----------
    config : RunConfig or dict
    folder : str or os.PathLike
        Created if needed. A folder that already holds a run is refused
        (``FileExistsError``): use :meth:`resume`, or another folder.
    progress : bool or None
        Draw a progress bar on ``stream`` (default: when it is a terminal).
    stream : file, default sys.stderr

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
    the last good one.
    """

    def __init__(self, config, folder, progress: bool = None, stream=None, _resuming=False):
        if isinstance(config, dict):
            config = RunConfig.from_dict(config)
        if not isinstance(config, RunConfig):
            raise TypeError(f"config must be a RunConfig or a dict, got {type(config).__name__}")
        self.config = config.validate()
        self.folder = os.fspath(folder)
        self.stream = sys.stderr if stream is None else stream
        if progress is None:
            progress = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.progress = bool(progress)
        if not _resuming and os.path.exists(os.path.join(self.folder, "config.json")):
            raise FileExistsError(f"{self.folder} already holds a run: resume it or choose another folder")
        self._build()
        if not _resuming:
            os.makedirs(self.folder, exist_ok=True)
            write_text(self._path("config.json"), json.dumps(self.config.to_dict(), indent=2) + "\n")
            open(self._path(runlog.LOG), "w").close()

    # -- construction ---------------------------------------------------------------
    def _build(self):
        from . import tasks
        from .readouts import LinearReadout

        c = self.config
        seeds = np.random.SeedSequence(c.seed).generate_state(5)
        task_cfg = dict(c.task, batch_size=c.batch_size, seed=int(seeds[0]), dtype=c.dtype)
        self.task = tasks.make_task(task_cfg)
        self.cell = registry.make_cell(c.cell, self.task.n_in, c.n_hidden, c.density, int(seeds[1]), c.dtype,
                                       alpha=c.alpha)
        self.learner = registry.make_learner(c.learner, self.cell, c.batch_size, seed=int(seeds[2]),
                                             **c.learner_options)
        self.readout = LinearReadout(self.cell, self.task.n_out, loss=self.task.loss, seed=int(seeds[3]),
                                     feedback=c.feedback)
        self.optimizer = registry.make_optimizer(c.optimizer, [self.cell.params, self.readout.params], c.lr,
                                                 momentum=c.momentum, clip_norm=c.clip_norm)
        self._eval_seed = int(seeds[4])
        self.step = 0
        self._window = {"loss": 0.0, "score": 0.0, "steps": 0, "n": 0}
        self._next = {"log": c.log_every, "eval": c.eval_every or None, "checkpoint": c.checkpoint_every}
        self.seconds = 0.0

    def _path(self, name):
        return os.path.join(self.folder, name)

    # -- state ------------------------------------------------------------------------
    def state(self):
        """The whole run state as a nested dict (what ``checkpoint.npz`` holds)."""
        return {
            "format": FORMAT,
            "step": self.step,
            "seconds": self.seconds,
            "window": dict(self._window),
            "next": dict(self._next),
            "cell": checkpoint.get_state(self.cell),
            "readout": checkpoint.get_state(self.readout),
            "optimizer": checkpoint.get_state(self.optimizer),
            "learner": checkpoint.get_state(self.learner),
            "task": self.task.state_dict(),
        }

    def load_state(self, state):
        if state.get("format") not in READABLE_FORMATS:
            raise ValueError(f"checkpoint format {state.get('format')!r}: this library reads run checkpoints of "
                             f"formats {', '.join(map(str, READABLE_FORMATS))}")
        checkpoint.set_state(self.cell, state["cell"])
        checkpoint.set_state(self.readout, state["readout"])
        checkpoint.set_state(self.optimizer, state["optimizer"])
        checkpoint.set_state(self.learner, state["learner"])
        self.task.load_state_dict(state["task"])
        self.step = int(state["step"])
        self.seconds = float(state["seconds"])
        self._window = dict(state["window"])
        self._next = dict(state["next"])

    def save_checkpoint(self):
        checkpoint.save(self._path("checkpoint.npz"), self.state())

    @classmethod
    def resume(cls, folder, steps: int = None, progress: bool = None, stream=None) -> "Trainer":
        """Continue the run in ``folder`` from its checkpoint.

        ``steps`` (optional) raises the run's total step count. Log lines
        written after the checkpoint are dropped, so the log matches the
        resumed run.
        """
        folder = os.fspath(folder)
        path = os.path.join(folder, "config.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{folder} holds no run (no config.json)")
        with open(path) as f:
            cfg = json.load(f)
        if steps is not None:
            cfg["steps"] = check_int(steps, "steps", minimum=1)
        trainer = cls(cfg, folder, progress=progress, stream=stream, _resuming=True)
        ck = trainer._path("checkpoint.npz")
        if os.path.exists(ck):
            trainer.load_state(checkpoint.load(ck))
        runlog.truncate(trainer._path(runlog.LOG), trainer.step)
        if steps is not None:
            write_text(path, json.dumps(trainer.config.to_dict(), indent=2) + "\n")
        return trainer

    # -- logging ------------------------------------------------------------------------
    def _log(self, record):
        runlog.append(self._path(runlog.LOG), record)

    def _extra(self):
        """What the task logs with every record (the copy curriculum's length)."""
        return self.task.log_fields()

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, n_steps: int = None) -> float:
        """The task's metric on ``n_steps`` of the held-out stream, with the current weights.

        Nothing that training uses changes (the cell step and readout
        prediction are pure); the held-out stream starts afresh each time, so
        evaluations are comparable across the run.
        """
        n_steps = self.config.eval_steps if n_steps is None else check_int(n_steps, "n_steps", minimum=1)
        task = self.task.held_out(self._eval_seed)
        B = self.config.batch_size
        s = None
        done, weighted, count = 0, 0.0, 0
        while done < n_steps:
            seg = task.segment()
            if s is None or seg.reset:
                s = np.zeros((B or 1, self.cell.n_state), self.cell.dtype)
            T = seg.inputs.shape[0]
            xs = seg.inputs.reshape(T, B or 1, -1)
            ys = seg.targets.reshape((T, B or 1) + seg.targets.shape[1 + (B is not None):])
            losses = np.zeros(T)
            for t in range(T):
                s = self.cell.step(s, xs[t])
                losses[t] = self.readout.loss_of(s, ys[t])
            n_scored = int(np.sum(seg.scored))
            if n_scored:
                weighted += task.score(seg, losses) * n_scored
                count += n_scored
            done += T
        return weighted / count if count else float("nan")

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> dict:
        """Train until ``config.steps``; returns the summary dict (also in ``summary.json``)."""
        c = self.config
        bar = _Progress(c.steps, self.stream, self.progress)
        started = time.perf_counter() - self.seconds
        last_score = float("nan")
        if self.step == 0 and not os.path.exists(self._path("checkpoint.npz")):
            self.save_checkpoint()  # a run that diverges early still has a good state to go back to
        try:
            while self.step < c.steps:
                seg = self.task.segment()
                if seg.reset:
                    self._end_episode()
                    self.learner.reset()
                try:
                    losses = train_online(self.learner, self.readout, self.optimizer, seg.inputs, seg.targets,
                                          c.update_every)
                except DivergenceError as exc:
                    at = self.step + exc.step + 1
                    self._log({"event": "diverged", "step": at, "detail": str(exc)})
                    raise TrainingDiverged(at, str(exc)) from None
                T = seg.inputs.shape[0]
                self.task.record(seg, losses)
                self.step += T
                n_scored = int(np.sum(seg.scored))
                if n_scored:
                    last_score = float(self.task.score(seg, losses))
                    self._window["score"] += last_score * n_scored
                    self._window["steps"] += n_scored
                self._window["loss"] += float(np.sum(losses)) / (c.batch_size or 1)
                self._window["n"] += T
                self.seconds = time.perf_counter() - started
                bar.update(self.step, {"loss": self._window["loss"] / self._window["n"], self.task.metric: last_score,
                                       **self._extra()})
                self._boundary()
        finally:
            bar.close()
        return self._finish()

    def _end_episode(self):
        """End the learner's sequence and apply the gradient left in a partial block at an episode's end."""
        if self.step == 0:
            return
        emitted = self.learner.end_sequence()
        if self.config.update_every == 1 and not emitted:
            return
        g, r = self.learner.grad(), self.readout.grad()
        if np.any(g) or np.any(r):
            try:
                self.optimizer.step([g, r])
            except FloatingPointError as exc:
                self._log({"event": "diverged", "step": self.step, "detail": str(exc)})
                raise TrainingDiverged(self.step, str(exc)) from None

    def _boundary(self):
        c = self.config
        if self.step >= self._next["log"]:
            w = self._window
            rec = {"step": self.step, "split": "train", "metric": self.task.metric,
                   "value": w["score"] / w["steps"] if w["steps"] else None,
                   "loss": w["loss"] / max(1, w["n"]),
                   "seconds": round(self.seconds, 3), **self._extra()}
            self._log(rec)
            self._window = {"loss": 0.0, "score": 0.0, "steps": 0, "n": 0}
            self._advance("log", c.log_every)
        if self._next["eval"] is not None and self.step >= self._next["eval"]:
            self._log({"step": self.step, "split": "eval", "metric": self.task.metric, "value": self.evaluate(),
                       **self._extra()})
            self._advance("eval", c.eval_every)
        if self.step >= self._next["checkpoint"] or self.step >= c.steps:
            self.save_checkpoint()
            self._advance("checkpoint", c.checkpoint_every)

    def _advance(self, event, every):
        """Move ``event``'s next due step past the current step."""
        while self._next[event] <= self.step:
            self._next[event] += every

    def _finish(self):
        records = read_log(self._path(runlog.LOG))
        train = [r for r in records if r.get("split") == "train" and r.get("value") is not None]
        evals = [r for r in records if r.get("split") == "eval"]
        summary = {
            "steps": self.step,
            "seconds": round(self.seconds, 3),
            "metric": self.task.metric,
            "final_train": train[-1]["value"] if train else None,
            "final_eval": evals[-1]["value"] if evals else None,
            "learner": self.learner.name,
            **self._extra(),
        }
        self._log({"event": "end", "step": self.step, **summary})
        write_text(self._path("summary.json"), json.dumps(summary, indent=2) + "\n")
        try:
            plot_run(self.folder)
        except ImportError:
            self.stream.write('no loss.png: matplotlib is missing (pip install "sparse_rtrl[plot]")\n')
        return summary
