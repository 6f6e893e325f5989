"""Shared test configuration: hypothesis profiles and strategies for cells.

Profiles (select with ``HYPOTHESIS_PROFILE``): ``dev`` (default, the everyday
and CI run), ``deep`` (many more examples, for a thorough local run).
``deadline=None`` everywhere because a kernel's first call compiles it.
"""

import os
import sys

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile(
    "dev", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "deep", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

CELL_KINDS = ("vanilla", "gru", "lstm")
DTYPES = (np.float32, np.float64)


def make_cell(kind, n_in, n_hidden, density, seed, dtype=np.float64, **kwargs):
    """A cell from the cell table by key (the library's one factory)."""
    import sparse_rtrl as sr

    return sr.registry.make_cell(kind, n_in, n_hidden, density, seed, dtype, **kwargs)


@st.composite
def cells(draw, kinds=CELL_KINDS, max_hidden=6, max_in=3, dtype=np.float64):
    """A small random cell: kind, sizes, density (including 1.0), pattern sharing, alpha."""
    kind = draw(st.sampled_from(kinds))
    n_hidden = draw(st.integers(1, max_hidden))
    n_in = draw(st.integers(1, max_in))
    density = draw(st.sampled_from([0.1, 0.25, 0.5, 1.0]) | st.floats(0.05, 1.0))
    seed = draw(st.integers(0, 2**16))
    kwargs = {}
    if kind == "vanilla":
        kwargs["alpha"] = draw(st.sampled_from([1.0, 0.5]) | st.floats(0.05, 1.0))
        kwargs["activation"] = draw(st.sampled_from(["tanh", "tanh", "linear"]))
    else:
        kwargs["shared_pattern"] = draw(st.booleans())
    if draw(st.booleans()):
        kwargs["input_density"] = draw(st.floats(0.2, 1.0))
    return make_cell(kind, n_in, n_hidden, density, seed, dtype=dtype, **kwargs)


def random_sequence(cell, n_steps, seed, scale=1.0):
    """Inputs (T, n_in) and credits (T, S) drawn from a normal distribution."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(scale=scale, size=(n_steps, cell.n_in))
    cs = rng.normal(size=(n_steps, cell.n_state))
    return xs, cs


def run_learner(learner, xs, cs):
    """Drive a learner through a sequence; return grad()."""
    for x, c in zip(xs, cs):
        learner.forward(x)
        learner.backward(c)
    return learner.grad()
