"""Learning-rate schedules: the multiplier of an optimiser's base ``lr`` at each update.

A schedule is a function of the optimiser's update count ``t`` (1 for the
first update, the optimiser's ``n_updates`` once it is counted) that gives a
multiplier of the base learning rate: update ``t`` uses ``lr * schedule(t)``.
Every schedule starts with ``warmup`` updates of linear warm-up (``t /
warmup`` for ``t <= warmup``, so the first update is not wasted on a zero
rate), then runs its own course from a multiplier of 1 counting ``u = t -
warmup - 1`` (0 for the first update after the warm-up):

- :class:`Constant`: 1.
- :class:`StepDecay`: ``factor ** (u // every)``.
- :class:`Cosine`: ``final + (1 - final) (1 + cos(pi min(u / (total - warmup), 1))) / 2``,
  from 1 down to ``final`` over the run's ``total`` updates (warm-up included).

A schedule holds settings only; where a run stands is the optimiser's update
count, saved with the optimiser. Inside an optimiser's ``config()`` a
schedule is its ``config()`` with its key under ``"name"``::

    {"name": "cosine", "total": 1000, "final": 0.0, "warmup": 100}

The optimiser's step and the fused loop evaluate the built-in schedules with
one compiled function (``_optim_kernels.schedule_factor``), so both paths use
the same learning rate to the last bit. A schedule of your own subclasses
:class:`Schedule` with a key (``class Linear(Schedule, key="linear")``) and
defines ``__call__``; it runs step by step (the fused loop knows the built-in
schedules).
"""

from typing import ClassVar, NamedTuple

import numpy as np

from .._validate import check_float, check_int
from ..registry import Registered
from ..state import Stateful

__all__ = ["Constant", "Cosine", "Schedule", "StepDecay", "as_schedule", "schedule_config"]

#: How the compiled schedule knows each schedule.
CONSTANT_CODE = 0
STEP_CODE = 1
COSINE_CODE = 2


class ScheduleArgs(NamedTuple):
    """What the compiled schedule reads (fields a schedule does not use hold neutral values)."""

    code: np.int64
    warmup: np.int64
    every: np.int64
    factor: float
    total: np.int64
    final: float


class Schedule(Stateful, Registered):
    """Base class: a multiplier of the base learning rate per update, after ``warmup`` updates of linear warm-up.

    Parameters
    ----------
    warmup : int
        Updates of linear warm-up (``t / warmup`` at update ``t``) before the
        schedule's own course; 0 for none.

    Notes
    -----
    ``schedule(t)`` is the multiplier at update ``t`` (an integer >= 1). A
    subclass with a ``code`` is evaluated by the compiled kernel (and runs in
    the fused loop); one without defines ``__call__`` itself.
    """

    _family = "schedule"
    #: How the compiled kernel knows this schedule (None: a Python schedule).
    code: ClassVar[int] = None

    def __init__(self, warmup: int = 0):
        self.warmup = check_int(warmup, "warmup", minimum=0)

    def __call__(self, update: int) -> float:
        """The multiplier of the base learning rate at update number ``update`` (1 is the first)."""
        from ._optim_kernels import schedule_factor

        update = check_int(update, "update", minimum=1)
        return float(schedule_factor(self.kernel_args(), np.int64(update)))

    def kernel_args(self) -> ScheduleArgs:
        """The compiled schedule's view of this schedule (see ``ScheduleArgs``)."""
        raise TypeError(f"{type(self).__name__} has no compiled form: define __call__")

    @property
    def compiled(self) -> bool:
        """True when the compiled kernel evaluates this schedule (it can run in the fused loop)."""
        return self.code is not None and type(self).__call__ is Schedule.__call__

    def _args(self, every=1, factor=1.0, total=1, final=1.0):
        return ScheduleArgs(np.int64(self.code), np.int64(self.warmup), np.int64(every), float(factor),
                            np.int64(total), float(final))

    def __eq__(self, other):
        return type(other) is type(self) and other.config() == self.config()

    def __hash__(self):
        return hash((type(self), tuple(self.config().items())))


class Constant(Schedule, key="constant"):
    """The base learning rate throughout (after the warm-up, if any): multiplier 1.

    ``Constant(warmup=100)`` is a plain linear warm-up.
    """

    code = CONSTANT_CODE

    def kernel_args(self):
        return self._args()


class StepDecay(Schedule, key="step"):
    """Multiply the learning rate by ``factor`` every ``every`` updates: ``factor ** (u // every)``.

    Parameters
    ----------
    every : int
        Updates between two decays (>= 1), counted after the warm-up.
    factor : float
        The decay, in (0, 1].
    warmup : int
        Updates of linear warm-up first.
    """

    code = STEP_CODE

    def __init__(self, every: int, factor: float = 0.1, warmup: int = 0):
        self.every = check_int(every, "every", minimum=1)
        self.factor = check_float(factor, "factor", 0.0, 1.0, low_open=True)
        super().__init__(warmup)

    def kernel_args(self):
        return self._args(every=self.every, factor=self.factor)


class Cosine(Schedule, key="cosine"):
    """Cosine decay from 1 to ``final`` over a run of ``total`` updates (Loshchilov & Hutter 2017, one cycle).

    ``final + (1 - final) (1 + cos(pi min(u / (total - warmup), 1))) / 2``:
    the first update after the warm-up has the full rate, the last of the
    ``total`` is just above ``final``, and later updates stay at ``final``.

    Parameters
    ----------
    total : int
        The run's number of updates, warm-up included (> ``warmup``).
    final : float
        The multiplier at the end, in [0, 1].
    warmup : int
        Updates of linear warm-up first.
    """

    code = COSINE_CODE

    def __init__(self, total: int, final: float = 0.0, warmup: int = 0):
        self.total = check_int(total, "total", minimum=1)
        self.final = check_float(final, "final", 0.0, 1.0)
        super().__init__(warmup)
        if self.total <= self.warmup:
            raise ValueError(f"total must be larger than warmup (the updates of the whole run, warm-up included), "
                             f"got total={self.total}, warmup={self.warmup}")

    def kernel_args(self):
        return self._args(total=self.total, final=self.final)


def as_schedule(value, name="schedule"):
    """``value`` as a :class:`Schedule`, or None (constant rate, no warm-up).

    Takes a Schedule, a key of the schedule table (``"cosine"``: built with
    its defaults, so only for schedules that need no setting) or a config dict
    ``{"name": key, **settings}`` (what an optimiser's ``config()`` holds).
    """
    from ..registry import SCHEDULES

    if value is None or isinstance(value, Schedule):
        return value
    if isinstance(value, str):
        return SCHEDULES[value]()
    if isinstance(value, dict):
        if "name" not in value:
            raise ValueError(f"{name} as a dict must name its schedule under 'name' (one of {', '.join(SCHEDULES)}),"
                             f" got {value!r}")
        options = {k: v for k, v in value.items() if k != "name"}
        return SCHEDULES[value["name"]](**options)
    raise TypeError(f"{name} must be a Schedule (e.g. sr.schedules.Cosine(total=1000)), a schedule key or a "
                    f"config dict, got {type(value).__name__}")


def schedule_config(schedule):
    """The JSON form of a schedule inside an optimiser's config: ``{"name": key, **config()}`` (None stays None)."""
    if schedule is None:
        return None
    if type(schedule).__dict__.get("key") is None:
        raise TypeError(f"{type(schedule).__name__} has no key in the schedule table, so no config can name it: "
                        f"register it (class {type(schedule).__name__}(Schedule, key='...'))")
    return {"name": schedule.key, **schedule.config()}
