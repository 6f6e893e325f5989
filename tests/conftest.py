"""Shared test configuration: hypothesis profiles, strategies for cells, background runs.

Profiles (select with ``HYPOTHESIS_PROFILE``): ``dev`` (default, the everyday
and CI run), ``deep`` (many more examples, for a thorough local run).
``deadline=None`` everywhere because a kernel's first call compiles it.

Background runs: a test marked ``@pytest.mark.background.with_args(command)``
(``with_args``: a marker given one function would decorate it) checks the
output of a subprocess that needs nothing from the session. Such subprocesses
start when collection has selected their tests, one at a time and at low
priority, on the core the session leaves idle (the session is one Python
thread but for its parallel kernels); their tests move to the end of the
session and wait there for the results. ``command(folder)`` returns
``dict(args=..., env=..., cwd=..., input=..., numba_cache=...)`` (``args``
required), ``folder`` being an empty temporary folder of the run's own. The
runs share one numba cache folder of their own (``NUMBA_CACHE_DIR``; not the
session's: two processes compiling one function at once can clash in a cache
folder, and the runs go one at a time), unless ``numba_cache`` names another.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest
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


@contextlib.contextmanager
def blas_form(on):
    """Learners built inside form their products with D as one BLAS call on D held dense (``on``) or walk D's
    stored entries, whatever the cell (``sparse_rtrl.learners.exact.blas_form``)."""
    from sparse_rtrl.learners import exact

    saved = exact.DENSE_MIN_STATES, exact.DENSE_MIN_DENSITY
    exact.DENSE_MIN_STATES, exact.DENSE_MIN_DENSITY = (0, 0.0) if on else (sys.maxsize, 2.0)
    try:
        yield
    finally:
        exact.DENSE_MIN_STATES, exact.DENSE_MIN_DENSITY = saved


# -- background runs (see the module docstring) ---------------------------------------------------

_RUNS = pytest.StashKey()


class BackgroundRun:
    """A subprocess run ahead of the test that checks its output.

    Runs wait in a queue and go one at a time, at low priority: one process
    beside the session's fills the idle core without slowing the session.
    """

    def __init__(self, command, numba_cache):
        self.command = command
        self.numba_cache = numba_cache
        self.folder = tempfile.mkdtemp(prefix="sparse_rtrl_tests_")
        self.process = self.error = None
        self.started = threading.Event()

    def start(self):
        try:
            spec = self.command(self.folder)
            self.args = spec["args"]
            env = dict(os.environ if spec.get("env") is None else spec["env"])
            env["NUMBA_CACHE_DIR"] = spec.get("numba_cache", self.numba_cache)
            stdin = subprocess.DEVNULL
            if spec.get("input") is not None:
                with open(os.path.join(self.folder, "stdin"), "w", encoding="utf-8") as f:
                    f.write(spec["input"])
                stdin = open(os.path.join(self.folder, "stdin"), encoding="utf-8")
            nice = ["nice", "-n", "10"] if shutil.which("nice") else []
            with open(os.path.join(self.folder, "stdout"), "w") as out, \
                    open(os.path.join(self.folder, "stderr"), "w") as err:
                self.process = subprocess.Popen(nice + list(self.args), stdin=stdin, stdout=out, stderr=err,
                                                env=env, cwd=spec.get("cwd"))
            if stdin is not subprocess.DEVNULL:
                stdin.close()
        except BaseException as exc:  # told to the test, which waits on started
            self.error = exc
        finally:
            self.started.set()

    def result(self, timeout=None):
        """The finished run, as ``subprocess.run(..., capture_output=True, text=True)`` returns it."""
        self.started.wait()
        if self.error is not None:
            raise self.error
        self.process.wait(timeout)
        out, err = (self._read(name) for name in ("stdout", "stderr"))
        return subprocess.CompletedProcess(self.args, self.process.returncode, out, err)

    def _read(self, name):
        with open(os.path.join(self.folder, name), encoding="utf-8", errors="replace") as f:
            return f.read()

    def close(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class _Queue:
    def __init__(self):
        self.runs = {}
        self.pending = []
        self.lock = threading.Lock()
        self.thread = None
        self.numba_cache = tempfile.mkdtemp(prefix="sparse_rtrl_tests_numba_")

    def get(self, command, first):
        """The run of ``command``, queued (at the head of the queue if ``first`` and not started yet)."""
        with self.lock:
            run = self.runs.get(command)
            if run is None:
                run = self.runs[command] = BackgroundRun(command, self.numba_cache)
                self.pending.append(run)
            if first and run in self.pending:
                self.pending.remove(run)
                self.pending.insert(0, run)
            if self.thread is None and self.pending:
                self.thread = threading.Thread(target=self._work, daemon=True)
                self.thread.start()
        return run

    def _work(self):
        while True:
            with self.lock:
                if not self.pending:
                    self.thread = None
                    return
                run = self.pending.pop(0)
                run.start()
            if run.process is not None:
                run.process.wait()

    def close(self):
        with self.lock:
            self.pending.clear()
            for run in self.runs.values():
                run.close()
        shutil.rmtree(self.numba_cache, ignore_errors=True)


def background_run(config, command, first=True):
    """The run of ``command`` (for a module's fixture), moved to the head of the queue if it has not started."""
    return config.stash[_RUNS].get(command, first)


def pytest_configure(config):
    config.addinivalue_line("markers", "background(command): the test checks a subprocess run from the start of "
                                       "the session (tests/conftest.py)")
    config.stash[_RUNS] = _Queue()


def pytest_collection_modifyitems(items):
    # Last, in their order: their runs have the whole session to finish in.
    items.sort(key=lambda item: item.get_closest_marker("background") is not None)


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    for item in session.items:
        marker = item.get_closest_marker("background")
        if marker is not None:
            background_run(session.config, marker.args[0], first=False)


def pytest_unconfigure(config):
    if _RUNS in config.stash:
        config.stash[_RUNS].close()


@pytest.fixture
def background(request):
    """The run of the test's ``background`` marker."""
    return background_run(request.config, request.node.get_closest_marker("background").args[0])
