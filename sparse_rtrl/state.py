"""The state protocol of the library's objects: ``config()``, ``state_dict()``, ``load_state_dict()``.

Cells, learners, readouts and optimisers derive from :class:`Stateful` (tasks
implement the same three methods by hand)::

    obj.config()                 # JSON-able settings that rebuild it
    obj.state_dict()             # {public field name: array, number or generator state}
    obj.load_state_dict(state)   # restores it; refuses, naming the field, what does not fit

Settings follow scikit-learn's convention: they are the constructor's
parameters, each kept as an attribute of the same name. A subclass that adds a
parameter ``beta`` and keeps ``self.beta`` has it in ``config()`` (and so in
checkpoints, where a state saved with another ``beta`` is refused by name)
without writing anything else; one that does not keep it gets a
``TypeError`` naming ``beta`` from ``config()``, never a silent default.
Parameters that are not settings are listed in ``_built_on`` (what the object
is built on: a learner's cell, an optimiser's parameter arrays) and
``_not_settings`` (switches that do not change results, like ``parallel``).

State is declared by name, once per class, the way optax declares
``ScaleByAdamState(count, mu, nu)``: ``_state_fields`` maps each public field
name to the attribute that holds it (a dotted path reaches into a helper
object). Subclasses add fields; the declarations of the whole class hierarchy
are merged. ``state_dict`` copies what they name; ``load_state_dict`` checks
every field (presence, kind, dtype, shape, then the class's own invariants in
``_state_problems``) before it writes anything, and writes arrays in place so
that views of them stay valid. Public names, not attribute names, reach
files: renaming an attribute or moving a class breaks no checkpoint.

The same declarations let every object say what it is: ``repr`` shows the
class, what it is built on (a learner's cell, by its own repr; arrays by
their size, never their values) and the settings that differ from the
constructor's defaults, plus the few a reader looks for first
(``_repr_always``: ``n``, ``density``, ``dtype``, ``lr``)::

    >>> sr.SnAp(sr.GRU(3, 8, density=0.25, dtype=np.float32), n=2)
    SnAp(GRU(n_in=3, n_hidden=8, density=0.25, dtype=float32), n=2)
"""

import functools
import inspect
from typing import ClassVar

import numpy as np

__all__ = ["Stateful"]

_JSON = (type(None), bool, int, float, str)


def _to_json(value, where):
    """``value`` as JSON data (numpy scalars, dtypes and arrays converted), or a TypeError naming ``where``."""
    if isinstance(value, _JSON):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.dtype):
        return value.name
    if isinstance(value, type) and issubclass(value, np.generic):
        return np.dtype(value).name
    if isinstance(value, np.random.Generator):
        return None  # a generator given as a seed: its position is state, not a setting
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_json(v, f"{where}[{k}]") for k, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _to_json(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(f"{where} is a {type(value).__name__}, which config() cannot express as JSON: "
                    f"override config() for it")


def _get(obj, path):
    return functools.reduce(getattr, path.split("."), obj)


def _set(obj, path, value):
    *parents, last = path.split(".")
    setattr(functools.reduce(getattr, parents, obj), last, value)


def generator_state(gen):
    """A private copy of a numpy Generator's ``bit_generator.state``."""
    return _copy_tree(gen.bit_generator.state)


def _copy_tree(value):
    if isinstance(value, dict):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy_tree(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def check_generator_state(saved, gen, name):
    """Refuse a saved generator state that ``gen`` cannot take (a ValueError naming ``name``)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("bit_generator"), str):
        raise ValueError(f"state entry {name!r} is not a generator state")
    kind = saved["bit_generator"]
    have = gen.bit_generator.state["bit_generator"]
    if kind != have:
        raise ValueError(f"state entry {name!r} is a {kind} generator state, this generator is a {have}")
    # Setting an invalid state raises inside numpy: try it on a twin first.
    twin = type(gen.bit_generator)()
    try:
        twin.state = saved
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"state entry {name!r} is not a valid {kind} state: {exc}") from exc


class Stateful:
    """Base class of the objects that own their state (see the module docstring)."""

    #: Constructor parameters naming what the object is built on, not settings.
    _built_on: ClassVar[tuple] = ()
    #: Constructor parameters that do not change results (not settings).
    _not_settings: ClassVar[tuple] = ()
    #: Public state field name -> attribute (or dotted path), per class; merged along the MRO.
    _state_fields: ClassVar[dict] = {}
    #: Array fields whose length may differ from a fresh object's (a window that grows).
    _resizable: ClassVar[tuple] = ()
    #: Settings whose whole effect is in the state (a seed: the generator's position, the drawn values),
    #: left out of what a saved state must match.
    _restored_settings: ClassVar[tuple] = ("seed",)
    #: Settings that ``repr`` shows even at their default (the ones a reader looks for first);
    #: the others appear when they differ from the constructor's default.
    _repr_always: ClassVar[tuple] = ("n", "density", "dtype", "lr")

    # -- settings -------------------------------------------------------------------
    @classmethod
    def _init_parameters(cls) -> dict:
        """The constructor's parameters (name -> default, ``inspect.Parameter.empty`` if required), in order.

        A constructor that takes ``**kwargs`` passes them on: the parameters of
        the next ``__init__`` up the class hierarchy count too.
        """
        params = {}
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            passes_on = False
            for p in list(inspect.signature(init).parameters.values())[1:]:
                if p.kind is inspect.Parameter.VAR_KEYWORD:
                    passes_on = True
                elif p.kind is not inspect.Parameter.VAR_POSITIONAL and p.name not in params:
                    params[p.name] = p.default
            if not passes_on:
                break
        return params

    @classmethod
    def settings(cls) -> list:
        """Names of the settings: the constructor's parameters, minus ``_built_on`` and ``_not_settings``.

        A constructor that takes ``**kwargs`` passes them on: the parameters of
        the next ``__init__`` up the class hierarchy count too.
        """
        skip = set(cls._built_on) | set(cls._not_settings)
        return [n for n in cls._init_parameters() if n not in skip]

    def config(self) -> dict:
        """The settings that rebuild this object (JSON-able; see the module docstring)."""
        out = {}
        for name in self.settings():
            try:
                value = getattr(self, name)
            except AttributeError:
                raise TypeError(
                    f"{type(self).__name__} takes the setting {name!r} but keeps no attribute of that name: "
                    f"store it as self.{name} so that config() and checkpoints carry it") from None
            out[name] = _to_json(value, f"{type(self).__name__}.{name}")
        return out

    # -- state ------------------------------------------------------------------------
    @classmethod
    def state_fields(cls) -> dict:
        """Public field name -> attribute path, the declarations of the whole hierarchy merged."""
        fields = {}
        for klass in reversed(cls.__mro__):
            fields.update(klass.__dict__.get("_state_fields", {}))
        return {k: v for k, v in fields.items() if v is not None}

    def state_dict(self) -> dict:
        """Every declared field: arrays copied, generators as their bit-generator state, scalars as they are."""
        out = {}
        for name, path in self.state_fields().items():
            value = _get(self, path)
            if isinstance(value, np.ndarray):
                value = value.copy()
            elif isinstance(value, np.random.Generator):
                value = {"bit_generator": generator_state(value)}
            elif isinstance(value, list):
                value = [v.copy() if isinstance(v, np.ndarray) else v for v in value]
            out[name] = value
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; everything is checked before anything is written.

        Raises
        ------
        TypeError
            ``state`` is not a dict.
        ValueError
            A field is missing or unknown, of another kind, dtype or shape, or
            the fields disagree with each other (``_state_problems``); the
            message names the field.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict (from state_dict()), got {type(state).__name__}")
        fields = self.state_fields()
        missing, extra = sorted(set(fields) - set(state)), sorted(set(state) - set(fields))
        if missing or extra:
            raise ValueError(f"state does not match this {type(self).__name__}: missing {missing}, unknown {extra}")
        current = {name: _get(self, path) for name, path in fields.items()}
        for name, mine in current.items():
            _check_field(state[name], mine, name, name in self._resizable)
        problems = self._state_problems(state)
        if problems:
            raise ValueError(f"state of {type(self).__name__} is inconsistent: " + "; ".join(problems))
        for name, mine in current.items():
            saved = state[name]
            if isinstance(mine, np.ndarray):
                if saved.shape == mine.shape and mine.flags.writeable:
                    np.copyto(mine, saved)
                else:
                    # A grown window, or an array fixed at construction (kept read-only): replaced.
                    new = np.array(saved, copy=True, order="C")
                    new.flags.writeable = mine.flags.writeable
                    _set(self, fields[name], new)
            elif isinstance(mine, np.random.Generator):
                mine.bit_generator.state = _copy_tree(saved["bit_generator"])
            elif isinstance(mine, list):
                for dst, src in zip(mine, saved):
                    np.copyto(dst, src)
            else:
                _set(self, fields[name], saved)

    # -- what it is ----------------------------------------------------------------------
    def __repr__(self) -> str:
        """``SnAp(GRU(n_in=3, n_hidden=8, density=0.25, dtype=float32), n=2)``: the class, what it is built
        on (objects by their repr, arrays by their size), then its settings (see ``_repr_settings``)."""
        parts = [_brief(getattr(self, name)) for name in self._built_on if hasattr(self, name)]
        parts += [f"{name}={_brief(value)}" for name, value in self._repr_settings().items()]
        return f"{type(self).__name__}({', '.join(parts)})"

    def _repr_settings(self) -> dict:
        """The settings ``repr`` shows: those in ``_repr_always``, those without a default, and those
        that differ from their default (scikit-learn's "changed only")."""
        defaults = self._init_parameters()
        shown = {}
        for name in self.settings():
            if not hasattr(self, name):
                continue
            value = getattr(self, name)
            default = defaults.get(name, inspect.Parameter.empty)
            if name in self._repr_always or default is inspect.Parameter.empty or not _same(value, default):
                shown[name] = value
        return shown

    def _identity(self) -> dict:
        """What a saved state must match to be loaded into this object (checkpoint records compare it):
        its settings, and what it is built on (subclasses add that)."""
        return {"config": self._compared_config()}

    def _compared_config(self) -> dict:
        """``config()`` without the settings the state restores (``_restored_settings``)."""
        return {k: v for k, v in self.config().items() if k not in self._restored_settings}

    def _state_problems(self, state: dict) -> list:
        """Invariants between fields, beyond dtypes and shapes (counters that kernels use as indices)."""
        return []


def _same(value, default) -> bool:
    """``value`` is the default (compared as the JSON ``config()`` would write them)."""
    try:
        return _to_json(value, "") == _to_json(default, "")
    except TypeError:
        return False


def _brief(value) -> str:
    """A short readable form of a setting or of what an object is built on (never an array's values)."""
    if isinstance(value, np.ndarray):
        return f"<array of {value.size} {value.dtype.name}>"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) for v in value):
        kinds = sorted({v.dtype.name for v in value})
        return f"<{len(value)} array{'s' if len(value) > 1 else ''} of {sum(v.size for v in value)} {'/'.join(kinds)}>"
    if isinstance(value, np.dtype):
        return value.name
    if isinstance(value, type) and issubclass(value, np.generic):
        return np.dtype(value).name
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, np.random.Generator):
        return f"Generator({type(value.bit_generator).__name__})"
    return repr(value)


def _check_field(saved, mine, name, resizable):
    if isinstance(mine, np.ndarray):
        if not isinstance(saved, np.ndarray):
            raise ValueError(f"state entry {name!r} must be an array, got {type(saved).__name__}")
        if saved.dtype != mine.dtype:
            raise ValueError(f"state entry {name!r} has dtype {saved.dtype}, this object's has {mine.dtype}")
        if saved.shape != mine.shape and not (
                resizable and saved.ndim == mine.ndim and saved.shape[1:] == mine.shape[1:]):
            raise ValueError(f"state entry {name!r} has shape {saved.shape}, this object's has {mine.shape}")
    elif isinstance(mine, np.random.Generator):
        if not isinstance(saved, dict):
            raise ValueError(f"state entry {name!r} is not a generator state")
        check_generator_state(saved.get("bit_generator"), mine, name)
    elif isinstance(mine, list):
        if not isinstance(saved, list) or len(saved) != len(mine):
            raise ValueError(f"state entry {name!r} must list {len(mine)} arrays")
        for k, (s, m) in enumerate(zip(saved, mine)):
            _check_field(s, m, f"{name}[{k}]", False)
    elif type(saved) is not type(mine):
        raise ValueError(f"state entry {name!r} is a {type(saved).__name__}, this object's is a "
                         f"{type(mine).__name__}")

