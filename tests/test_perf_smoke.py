"""Every perf and reproduction script runs in its --quick mode and writes its CSV and PNG.

Each script runs in the background from the start of the session (see
``conftest.py``), and its test checks the output at the end.
"""

import csv
import glob
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(p for folder in ("perf", "experiments") for p in glob.glob(os.path.join(ROOT, folder, "*.py"))
                 if not os.path.basename(p).startswith("_"))


def _quick_run(script):
    def command(folder):
        out = os.path.join(folder, "out")
        os.makedirs(out)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
        return dict(args=[sys.executable, script, "--quick", "--out", out], env=env, cwd=ROOT)
    return command


RUNS = {script: _quick_run(script) for script in SCRIPTS}  # one command object per script: the run's key


@pytest.mark.parametrize("script", [pytest.param(s, id=os.path.basename(s),
                                                 marks=pytest.mark.background.with_args(RUNS[s]))
                                    for s in SCRIPTS])
def test_perf_script_quick_mode(script, background):
    out = background.result(timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    folder = os.path.join(background.folder, "out")
    csvs = glob.glob(os.path.join(folder, "*.csv"))
    pngs = glob.glob(os.path.join(folder, "*.png"))
    assert csvs and pngs, os.listdir(folder)
    for path in csvs:
        with open(path) as f:
            rows = list(csv.DictReader(f))
        assert rows, path
    for path in pngs:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
