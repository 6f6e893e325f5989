"""The compiled online loop's view of a learner: seven hooks, chosen by the type of the learner's loop state.

A learner that the compiled loop (``training._fused_kernels.fused_loop``)
can run returns a NamedTuple of its arrays from ``Learner._loop_state()``
(one class per learner) and registers, with :func:`loop_hooks`, the
compiled functions its Python life cycle calls each step:

- ``prepare(parts, theta)``: ``_prepare_step`` (a full window is emptied);
- ``buffers(parts, coef, dloc, presyn)``: ``_step_buffers``, where the cell
  writes the step's factors (a window's next slot); returns the three arrays;
- ``after_step(parts, theta, state, coef, dloc, presyn, draws)``:
  ``_after_step``, with ``draws`` the step's random numbers, drawn in Python
  before the loop from the learner's own generator (``_loop_draws``), one
  row per stream, in the order the step-by-step path draws them;
- ``backward(parts, theta, credit, acc)``: ``_backward``;
- ``grad(parts, theta, acc, out)``: ``_grad`` into ``out`` (parameter order,
  summed over streams), the accumulator cleared;
- ``end_sequence(parts, theta, acc)``: ``end_sequence`` (an episode ends:
  emit what is held back); returns whether that may have added to ``acc``;
- ``reset(parts)``: ``_reset`` (a new episode: zero the influence, traces,
  window; the loop zeroes the state and the accumulator itself).

The last two let one call of the loop run many episodes of a task.

The loop calls them in the order the step-by-step path does, each calling
the kernels that path calls, so both give the same numbers bit for bit
(``tests/test_loop.py`` checks every learner). Dispatch is by type, when the
loop is compiled: each learner's loop is a separate specialisation holding
only that learner's code.

Every hook has a Python form (dispatching on ``type(parts)``), which is what
runs under ``NUMBA_DISABLE_JIT=1``.
"""

from typing import NamedTuple

import numpy as np

from .._jit import njit, overload
from ._base_kernels import take_grad

_HOOKS = {}
_NAMES = ("prepare", "buffers", "after_step", "backward", "grad", "end_sequence", "reset")


@njit
def _no_prepare(parts, theta):
    pass


@njit
def _same_buffers(parts, coef, dloc, presyn):
    return coef, dloc, presyn


@njit
def _no_after_step(parts, theta, state, coef, dloc, presyn, draws):
    pass


@njit
def _take_grad(parts, theta, acc, out):
    take_grad(acc, out)


@njit
def _nothing_held(parts, theta, acc):
    return False


class NoLearning(NamedTuple):
    """The loop state of a learner that keeps nothing (``ReadoutOnly``): the credit goes nowhere."""

    acc: np.ndarray


@njit
def _discard(parts, theta, credit, acc):
    pass


@njit
def _keeps_nothing(parts):
    pass


_DEFAULTS = {"prepare": _no_prepare, "buffers": _same_buffers, "after_step": _no_after_step, "grad": _take_grad,
             "end_sequence": _nothing_held}


def loop_hooks(cls, *, backward, reset, prepare=None, buffers=None, after_step=None, grad=None, end_sequence=None):
    """Register the compiled hooks of the loop state ``cls`` (a NamedTuple class); returns ``cls``.

    Each hook is an ``njit`` function with the signature in the module's
    docstring. ``backward`` and ``reset`` are required (a learner that keeps
    nothing says so with a ``reset`` that does nothing); the others default
    to doing nothing (``buffers`` returns its arguments, ``grad`` takes the
    accumulator in parameter order, ``end_sequence`` holds nothing back).
    """
    if cls in _HOOKS:
        raise ValueError(f"loop hooks of {cls.__name__} are already registered")
    given = {"prepare": prepare, "buffers": buffers, "after_step": after_step, "backward": backward, "grad": grad,
             "end_sequence": end_sequence, "reset": reset}
    hooks = {name: fn if fn is not None else _DEFAULTS[name] for name, fn in given.items()}
    _HOOKS[cls] = hooks
    _register_overloads(cls, hooks)
    return cls


def _hook(parts, name):
    try:
        fn = _HOOKS[type(parts)][name]
    except KeyError:
        raise TypeError(f"no loop hooks are registered for {type(parts).__name__}") from None
    return getattr(fn, "py_func", fn)  # under NUMBA_DISABLE_JIT=1, njit returns the function itself


def loop_prepare(parts, theta):
    """The learner's ``prepare`` hook (see the module docstring)."""
    return _hook(parts, "prepare")(parts, theta)


def loop_buffers(parts, coef, dloc, presyn):
    """The learner's ``buffers`` hook."""
    return _hook(parts, "buffers")(parts, coef, dloc, presyn)


def loop_after_step(parts, theta, state, coef, dloc, presyn, draws):
    """The learner's ``after_step`` hook."""
    return _hook(parts, "after_step")(parts, theta, state, coef, dloc, presyn, draws)


def loop_backward(parts, theta, credit, acc):
    """The learner's ``backward`` hook."""
    return _hook(parts, "backward")(parts, theta, credit, acc)


def loop_grad(parts, theta, acc, out):
    """The learner's ``grad`` hook."""
    return _hook(parts, "grad")(parts, theta, acc, out)


def loop_end_sequence(parts, theta, acc):
    """The learner's ``end_sequence`` hook."""
    return _hook(parts, "end_sequence")(parts, theta, acc)


def loop_reset(parts):
    """The learner's ``reset`` hook."""
    return _hook(parts, "reset")(parts)


def _is(parts, cls):
    return getattr(parts, "instance_class", None) is cls


def _register_overloads(cls, hooks):
    # Each overload's implementation is the hook's own Python function, compiled for this loop-state type
    # only (its first argument): dispatch adds no function of its own to compile (a cold start pays about
    # half a second per compiled function), and numba's cache keys each on its own name. The kernels a
    # hook calls keep their own options.
    prepare, buffers, after_step, backward, grad, end_sequence, reset = (getattr(hooks[name], "py_func", hooks[name])
                                                                         for name in _NAMES)

    @overload(loop_prepare)
    def _prepare(parts, theta):
        if _is(parts, cls):
            return prepare

    @overload(loop_buffers)
    def _buffers(parts, coef, dloc, presyn):
        if _is(parts, cls):
            return buffers

    @overload(loop_after_step)
    def _after_step(parts, theta, state, coef, dloc, presyn, draws):
        if _is(parts, cls):
            return after_step

    @overload(loop_backward)
    def _backward(parts, theta, credit, acc):
        if _is(parts, cls):
            return backward

    @overload(loop_grad)
    def _grad(parts, theta, acc, out):
        if _is(parts, cls):
            return grad

    @overload(loop_end_sequence)
    def _end_sequence(parts, theta, acc):
        if _is(parts, cls):
            return end_sequence

    @overload(loop_reset)
    def _reset(parts):
        if _is(parts, cls):
            return reset


loop_hooks(NoLearning, backward=_discard, reset=_keeps_nothing)


@njit
def zero(a):
    """Every entry of ``a`` (any dimensionality) set to 0, in a plain loop (see ``_jit``: no slice assignment)."""
    flat = a.reshape(-1)
    for i in range(flat.shape[0]):
        flat[i] = 0.0
