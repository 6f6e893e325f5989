"""Behaviour recorded before the architecture refactor, required after it.

``fixtures/golden.npz`` (see ``golden_runs.py``) holds the parameters, losses
and gradients of every learner x cell x dtype on fixed online runs, and six
trainer runs, as the code of commit c1dd80f computed them. ``fixtures/format1``
(see ``format1_runs.py``) holds checkpoints written in format 1 by that code
and what it computed after loading them. The code as it is must reproduce
them bit for bit.

Bit-identity is a property of compiled code on one CPU: numba compiles for
the host, and on another CPU (or another numba or numpy) LLVM may vectorise a
loop differently and round in another order. The fixtures record the
environment they were made in; where it differs, the same runs are compared
to rounding instead (``ROUNDING``), and the test says so.
"""

import json
import os
import shutil

import numpy as np
import pytest

import format1_runs
import golden_runs
from sparse_rtrl import checkpoint
from sparse_rtrl._jit import jit_disabled

REFERENCE = np.load(golden_runs.FIXTURE)
RECORDED_ENV = json.loads(REFERENCE["environment"].tobytes())
# Under NUMBA_DISABLE_JIT=1 the kernels run as Python (IEEE arithmetic, numpy's tanh): rounding differs.
SAME_ENV = golden_runs.environment() == RECORDED_ENV and not jit_disabled()
#: Relative tolerance by dtype where the environment differs from the recording.
ROUNDING = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def assert_same(actual, expected, what, dtype=None):
    """Bit for bit, or (another environment) to the rounding of ``dtype``: the run's own, which also
    rules its float64 losses."""
    actual = np.asarray(actual)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    if SAME_ENV or actual.dtype.kind not in "fc":
        assert actual.tobytes() == expected.tobytes(), (
            f"{what}: not bit-identical to the recording; max abs difference "
            f"{np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64)), initial=0.0):.3g}")
    else:
        rtol = ROUNDING[np.dtype(dtype or actual.dtype)]
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize("name,kind,dtype", golden_runs.cases())
def test_every_learner_cell_and_dtype_computes_what_it_computed_before(name, kind, dtype):
    out = golden_runs.learner_run(name, kind, dtype)
    for key, value in out.items():
        assert_same(value, REFERENCE[f"learner/{name}/{kind}/{dtype}/{key}"], f"{name} {kind} {dtype} {key}", dtype)


def _split_log(raw):
    records = json.loads(bytes(raw).decode())
    return ([r for r in records if r.get("split") != "eval"], [r for r in records if r.get("split") == "eval"])


@pytest.mark.parametrize("case", list(golden_runs.TRAINER_CASES))
def test_trainer_runs_end_with_the_parameters_they_ended_with_before(tmp_path, case):
    out = golden_runs.trainer_run(case, tmp_path / "run")
    dtype = golden_runs.TRAINER_CASES[case].get("dtype", "float64")
    assert_same(out["cell"], REFERENCE[f"trainer/{case}/cell"], f"{case} cell", dtype)
    assert_same(out["readout"], REFERENCE[f"trainer/{case}/readout"], f"{case} readout", dtype)
    train, evals = _split_log(out["log"])
    train_ref, evals_ref = _split_log(REFERENCE[f"trainer/{case}/log"])
    if SAME_ENV:
        assert train == train_ref
    assert [r["step"] for r in evals] == [r["step"] for r in evals_ref]
    for r, ref in zip(evals, evals_ref):
        # Held-out losses: the refactor moved evaluation onto the readout's own loss (one loss
        # implementation), which sums in another order than the numpy code it replaced.
        assert set(r) == set(ref)
        np.testing.assert_allclose(r["value"], ref["value"], rtol=1e-12 if SAME_ENV else ROUNDING[np.dtype(dtype)])


def test_the_recorded_environment_is_reported():
    # Not a check of the library: it tells a reader of the test log which kind of comparison ran.
    print(f"golden fixtures: recorded on {RECORDED_ENV['cpu']} (numba {RECORDED_ENV['numba']}, numpy "
          f"{RECORDED_ENV['numpy']}); {'bit for bit' if SAME_ENV else 'to rounding: another environment'}")
    assert set(RECORDED_ENV) == {"cpu", "features", "numba", "numpy"}


# -- format-1 checkpoints ---------------------------------------------------------------

EXPECTED = np.load(format1_runs.EXPECTED)


@pytest.mark.parametrize("kind", format1_runs.KINDS)
def test_format1_checkpoints_load_and_continue_as_before(kind):
    objs = format1_runs.build(kind, seed=1)  # other seeds: only the file can make the run agree
    format1_runs.restore(objs, checkpoint.load(os.path.join(format1_runs.FOLDER, f"{kind}.ckpt")))
    for key, value in format1_runs.after_load(objs).items():
        assert_same(value, EXPECTED[f"{kind}/{key}"], f"{kind} {key}", objs["cell"].dtype)


@pytest.mark.parametrize("kind", format1_runs.KINDS)
def test_without_the_format1_checkpoint_the_continuation_differs(kind):
    objs = format1_runs.build(kind, seed=1)
    format1_runs.before_save(objs)
    out = format1_runs.after_load(objs)
    assert any(out[k].tobytes() != EXPECTED[f"{kind}/{k}"].tobytes() for k in out)


def test_a_format1_run_folder_resumes_as_before(tmp_path):
    folder = shutil.copytree(os.path.join(format1_runs.FOLDER, "run"), tmp_path / "run")
    out = format1_runs.run_folder_result(folder)
    for key, value in out.items():
        assert_same(value, EXPECTED[f"run/{key}"], f"run {key}")
