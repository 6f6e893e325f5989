"""The library runs as plain Python (``NUMBA_DISABLE_JIT=1``), and that run measures the kernels' line coverage.

Every kernel is a Python function that numba compiles; with the JIT off it
runs as written, so a subset of the suite exercises the kernels' lines (and
each ``overload`` its Python body, which makes at run time the choice its
compiled form makes by type). The subset: the golden runs (every learner x
cell x dtype, the fused loop, the trainer, format-1 checkpoints; compared to
rounding, since plain Python rounds differently), the life cycle of every
learner, SnAp's tests, every learner's compiled loop against its
step-by-step path, and the P-TNCN's fixed comparisons with its naive
reference. The coverage of the kernel modules is held to the floor
``fail_under`` in ``pyproject.toml`` (measured: 98.6%).
"""

import os
import subprocess
import sys

import pytest

SUBSET = ["tests/test_golden.py", "tests/test_lifecycle.py", "tests/test_snap.py", "tests/test_schedules.py",
          # P-TNCN: every path of its kernels, against the naive reference at tiny sizes (about 2 s as Python)
          "tests/test_ptncn.py::test_kernels_match_naive_reference_on_fixed_cases",
          "tests/test_ptncn.py::test_float32_tanh_keeps_nan_and_saturates",
          # RTRL's BLAS form of D J (the golden runs' cells are too small for it)
          "tests/test_exact.py::test_rtrl_blas_form_matches_reference",
          # every learner's compiled-loop hooks, and the trainer's episodes in one call
          "tests/test_loop.py", "tests/test_trainer.py::test_episodes_in_one_compiled_call_equal_one_call_per_episode"]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(folder):
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", COVERAGE_FILE=os.path.join(folder, ".coverage"))
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _command(folder):
    # Started at collection, on the core the session leaves idle (conftest.py: background runs).
    return dict(args=[sys.executable, "-m", "coverage", "run", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                      *SUBSET], env=_env(folder), cwd=ROOT)


@pytest.mark.slow
@pytest.mark.background.with_args(_command)
def test_the_pure_python_path_runs_and_covers_the_kernels(background):
    pytest.importorskip("coverage")
    run = background.result()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    report = subprocess.run([sys.executable, "-m", "coverage", "report", "-m"], capture_output=True, text=True,
                            env=_env(background.folder), cwd=ROOT)
    print(report.stdout)
    assert report.returncode == 0, f"kernel line coverage below the floor in pyproject.toml:\n{report.stdout}"
