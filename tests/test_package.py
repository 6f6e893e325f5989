"""Promises about the package itself: cheap import, the CLI, README and CI in step."""

import os
import re
import subprocess
import sys

import pytest

from sparse_rtrl.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_does_not_load_numba_or_scipy():
    code = "import sys, sparse_rtrl; print('numba' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]


def test_ci_runs_exactly_the_readme_test_command():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci_lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    commands = [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip() and not ln.startswith("#")]
    test_commands = [c for c in commands if "pytest" in c]
    assert len(test_commands) == 1, test_commands
    assert ci_lines[-1] == test_commands[0]


def test_cli_gradcheck_runs_and_passes(capsys):
    code = main(["gradcheck", "--cell", "lstm", "--n-hidden", "4", "--n-in", "2", "--steps", "4",
                 "--learners", "rtrl,bptt,tbptt4,snap1,snap9,uoro"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "result: OK" in out
    for name in ("RTRL", "TBPTT(4)", "SnAp-1", "SnAp-9", "UORO"):
        assert name in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["gradcheck", "--learners", "snapx"], "unknown learner"),
        (["gradcheck", "--learners", "snap0"], ">= 1"),
        (["gradcheck", "--density", "0"], "density"),
        (["gradcheck", "--density", "1.5"], "density"),
        (["gradcheck", "--n-hidden", "0"], ">= 1"),
        (["gradcheck", "--cell", "rnn"], "unknown cell 'rnn'"),
        (["frobnicate"], "unknown command 'frobnicate'"),
    ],
)
def test_cli_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code != 0
    assert message in capsys.readouterr().err


def test_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "sparse_rtrl", "gradcheck", "--cell", "vanilla", "--n-hidden", "3",
         "--steps", "3", "--learners", "rtrl"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "result: OK" in out.stdout
