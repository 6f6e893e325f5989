"""Every perf and reproduction script runs in its --quick mode and writes its CSV and PNG."""

import csv
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(p for folder in ("perf", "experiments") for p in glob.glob(os.path.join(ROOT, folder, "*.py"))
                 if not os.path.basename(p).startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_perf_script_quick_mode(script, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, script, "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    csvs = list(tmp_path.glob("*.csv"))
    pngs = list(tmp_path.glob("*.png"))
    assert csvs and pngs, os.listdir(tmp_path)
    for path in csvs:
        with open(path) as f:
            rows = list(csv.DictReader(f))
        assert rows, path
    for path in pngs:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
