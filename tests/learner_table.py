"""The learners the tests run, derived from the library's learner table.

Every learner registered in ``sparse_rtrl.registry.LEARNERS`` appears here
with no test file edited: numbered learners with the small numbers below,
others with their defaults unless ``OPTIONS`` says otherwise. Keys are the
learners' display names (``learner.name``: ``"SnAp-2"``, ``"TBPTT(3)"``).
"""

from dataclasses import dataclass

import sparse_rtrl as sr
from conftest import CELL_KINDS, make_cell

#: Numbers for numbered learners: short windows keep the float64 references quick.
NUMBERS = {"snap": (1, 2), "tbptt": (3,), "fbptt": (3,)}
#: Constructor options the tests use, by key (rates large enough to move the models in a few steps).
DNI_LR = 0.05
OPTIONS = {
    "kernl": dict(lr=1e-2, sigma=1e-2),
    "dni": dict(lr=DNI_LR, fix_interval=2),
    "dnib": dict(lr=DNI_LR, fix_interval=2, jacobian_lr=DNI_LR),
}
#: The seed of the learners that draw random numbers, unless a test gives one.
SEED = 11


@dataclass(frozen=True)
class Spec:
    """How the tests build and treat a learner.

    ``stochastic``: takes ``seed=`` (an int or a Generator) and draws random
    numbers each step; ``learned``: keeps a model learned across sequences
    (not reset by ``reset()``, shared by the streams of a batch); ``cells``:
    the cell kinds it supports (others raise ``TypeError``).
    """

    spec: str
    cls: type
    cells: tuple
    stochastic: bool
    learned: bool

    def make(self, cell, **kw):
        options = {"seed": SEED, **OPTIONS.get(self.cls.key, {}), **kw}
        return sr.registry.make_learner(self.spec, cell, **options)


def _table():
    probes = {kind: make_cell(kind, 1, 2, 1.0, seed=0) for kind in CELL_KINDS}
    out = {}
    for key, cls in sr.registry.LEARNERS.items():
        specs = [f"{key}{k}" for k in NUMBERS[key]] if cls.spec_number else [key]
        supported = tuple(kind for kind in CELL_KINDS if cls.supports(probes[kind]) is None)
        for spec in specs:
            entry = Spec(spec, cls, supported, cls.stochastic, cls.learned)
            out[entry.make(probes[supported[0]]).name] = entry
    return out


LEARNERS = _table()
CASES = [(name, kind) for name, spec in LEARNERS.items() for kind in CELL_KINDS if kind in spec.cells]
REFUSED = [(name, kind) for name, spec in LEARNERS.items() for kind in CELL_KINDS if kind not in spec.cells]
