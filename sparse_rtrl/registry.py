"""One table per family of classes (cells, learners, optimisers, schedules, readouts, tasks, losses), filled by
the classes.

A class joins its family's table by naming its key where it is defined::

    class SnAp(Learner, key="snap"):
        spec_number = "n"        # "snap2" is SnAp(cell, n=2)
        ...

Everything that lists or builds classes by name reads these tables: the
command line's choices and help, ``make_learner`` and friends, ``compare``,
the trainer, the perf scripts, the reproduction scripts' taxonomy and the
tests' tables. The key is also the class's stable id in checkpoint files
(``"learner/snap"``), which never names a module: a class that moves keeps its
files loadable. A subclass does not inherit its parent's key; a class
without a key (say, your own subclass) is saved under its Python path
(``"python:mymodule.MyRFLO"``) and found again under it.

Learner specs are short strings: the key (``rtrl``, ``uoro``, ...) or, for a
learner with a ``spec_number``, the key and a number (``snap2`` is SnAp-2,
``tbptt16`` TBPTT with truncation 16).
"""

import inspect
import re
from typing import ClassVar

import numpy as np

__all__ = ["CELLS", "LEARNERS", "LOSSES", "MODELS", "OPTIMIZERS", "READOUTS", "SCHEDULES", "TASKS", "Family",
           "Registered", "class_id", "learner_spec", "make_cell", "make_learner", "make_optimizer", "make_schedule",
           "parse_learner"]


class Family:
    """The table of one family: key -> class, in the order the classes were defined."""

    def __init__(self, name):
        self.name = name
        self._by_key = {}

    def register(self, cls, key):
        if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise ValueError(f"{cls.__name__}: a {self.name} key is lower-case letters, digits and _, got {key!r}")
        if key in self._by_key and self._by_key[key] is not cls:
            other = self._by_key[key]
            raise ValueError(f"{cls.__module__}.{cls.__qualname__}: the {self.name} key {key!r} is taken by "
                             f"{other.__module__}.{other.__qualname__}")
        self._by_key[key] = cls

    def __getitem__(self, key):
        try:
            return self._by_key[key]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.name} {key!r}; the {self.name}s are {', '.join(self)}") from None

    def __contains__(self, key):
        return key in self._by_key

    def __iter__(self):
        return iter(self._by_key)

    def __len__(self):
        return len(self._by_key)

    def keys(self):
        return tuple(self._by_key)

    def classes(self):
        return tuple(self._by_key.values())

    def items(self):
        return tuple(self._by_key.items())

    def __repr__(self):
        return f"Family({self.name!r}: {', '.join(self)})"


#: The tables, one per family: key -> class (``LEARNERS["snap"] is SnAp``).
CELLS = Family("cell")
LEARNERS = Family("learner")
OPTIMIZERS = Family("optimizer")
READOUTS = Family("readout")
TASKS = Family("task")
LOSSES = Family("loss")
SCHEDULES = Family("schedule")
#: Models that learn by their own local rules, not through a learner (``MODELS["ptncn"] is PTNCN``).
MODELS = Family("model")
_FAMILIES = {f.name: f for f in (CELLS, LEARNERS, OPTIMIZERS, READOUTS, TASKS, LOSSES, SCHEDULES, MODELS)}


class Registered:
    """Mixin of the family base classes: ``class X(Base, key="x")`` enters ``X`` in the base's table."""

    #: The family of the classes below this base (set on the base).
    _family: ClassVar[str] = None
    #: This class's key in its family's table (None: not registered). Not inherited.
    key: ClassVar[str] = None

    def __init_subclass__(cls, key=None, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.key = key
        if key is not None:
            _FAMILIES[cls._family].register(cls, key)


def class_id(cls):
    """The stable id of a class in checkpoint files: ``"<family>/<key>"``, or ``"python:<module>.<name>"``."""
    family = getattr(cls, "_family", None)
    key = cls.__dict__.get("key")
    if family is not None and key is not None and _FAMILIES[family]._by_key.get(key) is cls:
        return f"{family}/{key}"
    return f"python:{cls.__module__}.{cls.__qualname__}"


def _ensure_loaded():
    import sparse_rtrl  # noqa: F401  (the classes register themselves on import)


# -- learners ---------------------------------------------------------------------------

def learner_specs_help():
    """The learner specs, for help texts: ``rtrl, bptt, ..., snap<n>, tbptt<T>``."""
    _ensure_loaded()
    out = []
    for key, cls in LEARNERS.items():
        number = getattr(cls, "spec_number", None)
        out.append(f"{key}<{'T' if number == 'truncation' else number}>" if number else key)
    return ", ".join(out)


def parse_learner(spec: str) -> tuple:
    """``(class, number)`` of a learner spec, e.g. ``(SnAp, 2)`` for ``"snap2"`` or ``(RTRL, None)``.

    Raises ``ValueError`` naming the spec when it is not one of the known forms.
    """
    _ensure_loaded()
    if not isinstance(spec, str):
        raise TypeError(f"learner must be a string such as 'snap2', got {type(spec).__name__}")
    s = spec.strip().lower().replace("-", "").replace("_", "")
    plain = {key.replace("_", ""): cls for key, cls in LEARNERS.items()}
    cls = plain.get(s)
    if cls is not None and cls.spec_number is None:
        return cls, None
    m = re.fullmatch(r"([a-z]+)(\d+)", s)
    if m and m.group(1) in plain and plain[m.group(1)].spec_number is not None:
        k = int(m.group(2))
        if k < 1:
            raise ValueError(f"learner {spec!r}: the number must be >= 1")
        return plain[m.group(1)], k
    raise ValueError(f"unknown learner {spec!r}; use {learner_specs_help()}")


def learner_spec(learner):
    """The spec that builds a learner like ``learner`` (``"snap2"``), from its class and settings."""
    cls = type(learner)
    if cls.key is None:
        raise ValueError(f"{cls.__name__} is not in the learner table, so it has no spec")
    return cls.key + (str(getattr(learner, cls.spec_number)) if cls.spec_number else "")


def make_learner(spec: str, cell, batch_size: int = None, seed=0, **options):
    """Build the learner named by ``spec`` on ``cell``.

    ``seed`` goes to the learners that draw random numbers (those whose
    constructor takes one); ``options`` to the constructor (e.g. ``lr`` for
    DNI or KeRNL).
    """
    cls, number = parse_learner(spec)
    kwargs = dict(batch_size=batch_size, **options)
    if number is not None:
        kwargs[cls.spec_number] = number
    if "seed" in inspect.signature(cls).parameters:
        kwargs.setdefault("seed", seed)
    return cls(cell, **kwargs)


def example_specs(cell=None):
    """One or two specs per learner (its ``spec_examples``), for comparisons and perf
    scripts; with ``cell``, only the learners that run on it."""
    _ensure_loaded()
    out = []
    for key, cls in LEARNERS.items():
        if cell is not None and cls.supports(cell) is not None:
            continue
        if cls.spec_number:
            out.extend(f"{key}{k}" for k in cls.spec_examples)
        else:
            out.append(key)
    return out


# -- cells, optimisers ----------------------------------------------------------------

def make_cell(key: str, n_in: int, n_hidden: int, density: float = 1.0, seed=0, dtype="float64", **options):
    """The cell of type ``key`` (``"vanilla"``, ``"gru"``, ...); ``options`` go to its constructor.

    An option the cell does not take (``alpha`` for a GRU) is a ``ValueError``
    that names it.
    """
    _ensure_loaded()
    cls = CELLS[key]
    options = {k: v for k, v in options.items() if v is not None}
    takes = inspect.signature(cls).parameters
    for name in options:
        if name not in takes:
            raise ValueError(f"{name} does not apply to the {key} cell ({cls.__name__}); "
                             f"it takes {', '.join(p for p in takes if p not in ('n_in', 'n_hidden'))}")
    return cls(n_in, n_hidden, density=density, seed=seed, dtype=np.dtype(dtype), **options)


def make_optimizer(key: str, params, lr: float, **options):
    """The optimiser of type ``key`` (``"sgd"``, ``"adam"``) over ``params``.

    Options that are zero or None (``momentum=0`` for Adam, say) are dropped;
    others the optimiser does not take are a ``ValueError`` naming them.
    Every optimiser takes ``schedule`` (a schedule from :func:`make_schedule`,
    or None) and ``weight_decay`` (decoupled, 0 for none).
    """
    _ensure_loaded()
    cls = OPTIMIZERS[key]
    takes = inspect.signature(cls).parameters
    kwargs = {}
    for name, value in options.items():
        if name in takes:
            kwargs[name] = value
        elif value:
            raise ValueError(f"{name} does not apply to {key} ({cls.__name__})")
    return cls(params, lr=lr, **kwargs)


def make_schedule(key: str, **options):
    """The learning-rate schedule of type ``key`` (``"constant"``, ``"step"``, ``"cosine"``).

    ``options`` go to its constructor (``total``, ``final``, ``every``,
    ``factor``, ``warmup``; see :mod:`sparse_rtrl.training.schedules`); one it does not
    take is a ``ValueError`` naming it.
    """
    _ensure_loaded()
    cls = SCHEDULES[key]
    takes = inspect.signature(cls).parameters
    for name in options:
        if name not in takes:
            raise ValueError(f"{name} does not apply to the {key} schedule ({cls.__name__}); "
                             f"it takes {', '.join(takes)}")
    return cls(**options)
