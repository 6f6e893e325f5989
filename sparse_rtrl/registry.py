"""Learners, cells and optimisers by name: what the trainer, the CLI and the
reproduction scripts build from a JSON-able configuration.

Learner specs are short strings: ``rtrl``, ``bptt``, ``uoro``, ``kfrtrl``,
``rkfrtrl``, ``rflo``, ``kernl``, ``eprop``, ``dni``, ``dnib``, and with a
number ``snap<n>`` (SnAp-n), ``tbptt<T>`` and ``fbptt<T>`` (truncation ``T``),
e.g. ``snap2`` or ``tbptt16``.
"""

import re

import numpy as np

CELLS = ("vanilla", "gru", "lstm")
OPTIMIZERS = ("sgd", "adam")

_PLAIN = ("rtrl", "bptt", "uoro", "kfrtrl", "rkfrtrl", "rflo", "kernl", "eprop", "dni", "dnib")
_NUMBERED = ("snap", "tbptt", "fbptt")
LEARNER_HELP = "rtrl, bptt, uoro, kfrtrl, rkfrtrl, rflo, kernl, eprop, dni, dnib, snap<n>, tbptt<T> or fbptt<T>"


def parse_learner(spec):
    """``(name, number)`` of a learner spec, e.g. ``("snap", 2)`` or ``("rtrl", None)``.

    Raises ``ValueError`` naming the spec when it is not one of the known forms.
    """
    if not isinstance(spec, str):
        raise TypeError(f"learner must be a string such as 'snap2', got {type(spec).__name__}")
    s = spec.strip().lower().replace("-", "").replace("_", "")
    if s in _PLAIN:
        return s, None
    m = re.fullmatch(r"([a-z]+)(\d+)", s)
    if m and m.group(1) in _NUMBERED:
        k = int(m.group(2))
        if k < 1:
            raise ValueError(f"learner {spec!r}: the number must be >= 1")
        return m.group(1), k
    raise ValueError(f"unknown learner {spec!r}; use {LEARNER_HELP}")


def make_learner(spec, cell, batch_size=None, seed=0, **options):
    """Build the learner named by ``spec`` on ``cell``.

    ``seed`` goes to the stochastic learners (UORO, KF-RTRL, R-KF-RTRL,
    KeRNL); ``options`` to the constructor (e.g. ``lr`` for DNI or KeRNL).
    """
    from . import (BPTT, DNI, RFLO, RKFRTRL, RTRL, TBPTT, UORO, DNIb, EProp, FutureBPTT, KeRNL, KFRTRL,
                   SnAp)

    name, k = parse_learner(spec)
    kw = dict(batch_size=batch_size, **options)
    if name == "snap":
        return SnAp(cell, k, **kw)
    if name == "tbptt":
        return TBPTT(cell, k, **kw)
    if name == "fbptt":
        return FutureBPTT(cell, k, **kw)
    seeded = {"uoro": UORO, "kfrtrl": KFRTRL, "rkfrtrl": RKFRTRL, "kernl": KeRNL}
    if name in seeded:
        return seeded[name](cell, seed=seed, **kw)
    plain = {"rtrl": RTRL, "bptt": BPTT, "rflo": RFLO, "eprop": EProp, "dni": DNI, "dnib": DNIb}
    return plain[name](cell, **kw)


def make_cell(kind, n_in, n_hidden, density=1.0, seed=0, dtype="float32", alpha=None):
    """A ``VanillaRNN`` (``alpha``: its leak, default 1), ``GRU`` or ``LSTM``."""
    from . import GRU, LSTM, VanillaRNN

    if kind not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {kind!r}")
    dtype = np.dtype(dtype)
    if kind == "vanilla":
        return VanillaRNN(n_in, n_hidden, density=density, alpha=1.0 if alpha is None else alpha, seed=seed,
                          dtype=dtype)
    if alpha is not None:
        raise ValueError(f"alpha (the leak) applies to the vanilla cell only, not to {kind!r}")
    cls = GRU if kind == "gru" else LSTM
    return cls(n_in, n_hidden, density=density, seed=seed, dtype=dtype)


def make_optimizer(name, params, lr, momentum=0.0, clip_norm=None):
    """``SGD`` (with ``momentum``) or ``Adam`` over ``params``."""
    from . import SGD, Adam

    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum, clip_norm=clip_norm)
    if name == "adam":
        if momentum:
            raise ValueError("momentum applies to sgd; Adam has beta1")
        return Adam(params, lr=lr, clip_norm=clip_norm)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
