"""Every code block of README.md works as pasted.

- The ```python blocks run in order in one fresh interpreter, sharing one
  namespace (what a reader who pastes them all gets), from an empty working
  directory that must stay empty: files go to a temporary folder.
- Each python block also runs alone, in a fresh namespace, since readers
  paste one block. A block meant to use the names of the blocks above says
  so with the line ``<!-- continues the block above -->`` just before its
  fence (an HTML comment: invisible on the rendered page).
- The ```bash blocks' ``sparse-rtrl ...`` command lines parse with the CLI's
  own parser (none is run), and the scripts they name exist.

New README sections are covered without touching this file.
"""

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

from sparse_rtrl.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
CONTINUES = "<!-- continues the block above -->"

# A fence opens and closes at the same indentation (blocks inside list items are indented).
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)


@dataclass(frozen=True)
class Block:
    lang: str
    number: int   # 1-based among the README's blocks of this language
    line: int     # README line of the block's first code line
    code: str     # dedented
    continues: bool

    @property
    def first(self):
        return next((ln for ln in self.code.splitlines() if ln.strip()), "")

    def label(self):
        return f"README.md {self.lang} block {self.number} (line {self.line}: {self.first.strip()!r})"


def _blocks(lang, text=None):
    if text is None:
        with open(README, encoding="utf-8") as f:
            text = f.read()
    out = []
    for m in FENCE.finditer(text):
        if m["lang"] != lang:
            continue
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        out.append(Block(lang, len(out) + 1, text.count("\n", 0, m.start("body")) + 1,
                         textwrap.dedent(m["body"]), before == CONTINUES))
    return out


# Runs the blocks given as JSON on stdin, in one namespace ("in-order") or each in a fresh one ("alone",
# except blocks marked as continuing). Code is compiled under README.md's path with its own line numbers,
# so a traceback shows the README line that failed.
RUNNER = r"""
import json, sys, traceback
mode, readme = sys.argv[1], sys.argv[2]
shared = {"__name__": "__main__"}
for b in json.load(sys.stdin):
    if mode == "alone" and not b["continues"]:
        shared = {"__name__": "__main__"}
    code = "\n" * (b["line"] - 1) + b["code"]
    try:
        exec(compile(code, readme, "exec"), shared)
    except BaseException as exc:
        sys.stdout.flush()
        print(f"\n{b['label']} failed ({mode}):", file=sys.stderr)
        traceback.print_exc()
        if mode == "alone" and isinstance(exc, NameError):
            print(f"\nThe block uses a name it does not define. Make it self-contained (readers paste one "
                  f"block), or put the line {b['marker']!r} just before its fence.", file=sys.stderr)
        sys.exit(1)
"""


def _run_python_blocks(mode, tmp_path):
    blocks = _blocks("python")
    assert blocks, "README.md has no python blocks"
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    payload = [dict(line=b.line, code=b.code, continues=b.continues, label=b.label(), marker=CONTINUES)
               for b in blocks]
    env = dict(os.environ, TMPDIR=str(tmp), MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, "-c", RUNNER, mode, README], input=json.dumps(payload),
                         capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert out.returncode == 0, f"{out.stderr}\n--- stdout ---\n{out.stdout[-3000:]}"
    assert sorted(os.listdir(cwd)) == [], "README blocks wrote into the working directory; use tempfile"


def test_python_blocks_run_in_order_in_one_namespace(tmp_path):
    _run_python_blocks("in-order", tmp_path)


def test_python_blocks_run_alone(tmp_path):
    _run_python_blocks("alone", tmp_path)


def test_every_fence_is_paired():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    fence_lines = [ln for ln in text.splitlines() if ln.lstrip().startswith("```")]
    assert len(fence_lines) == 2 * len(list(FENCE.finditer(text))), "a ``` fence is unpaired or misindented"


def test_extraction_handles_indented_and_continuing_blocks():
    text = f"x\n```python\na = 1\n```\n- item\n\n  {CONTINUES}\n  ```python\n  print(a)\n  ```\n"
    first, second = _blocks("python", text)
    assert (first.line, first.code, first.continues) == (3, "a = 1\n", False)
    assert (second.line, second.code, second.continues) == (9, "print(a)\n", True)


# -- bash blocks ---------------------------------------------------------------------------------------

def _commands():
    """``(block, argv)`` of every simple command of the bash blocks (split at ``&&``, ``||``, ``;``, ``|``)."""
    for block in _blocks("bash"):
        for line in block.code.replace("\\\n", " ").splitlines():
            argv = []
            for token in shlex.split(line, comments=True) + [";"]:
                if token in ("&&", "||", ";", "|"):
                    if argv:
                        yield block, argv
                    argv = []
                else:
                    argv.append(token)


def _cli_commands():
    out = []
    for block, argv in _commands():
        if os.path.basename(argv[0]) == "sparse-rtrl":
            out.append((block, argv[1:]))
        elif argv[1:3] == ["-m", "sparse_rtrl"]:
            out.append((block, argv[3:]))
    return out


CLI_COMMANDS = _cli_commands()


def test_readme_shows_command_lines():
    assert len(CLI_COMMANDS) >= 3, CLI_COMMANDS


@pytest.mark.parametrize("block, args", CLI_COMMANDS, ids=[" ".join(a)[:60] for _, a in CLI_COMMANDS])
def test_cli_command_line_parses(block, args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:  # --help and --version exit 0
            assert exc.code == 0, f"{block.label()}: `sparse-rtrl {' '.join(args)}` does not parse:\n{err.getvalue()}"


def test_scripts_named_in_bash_blocks_exist():
    missing = []
    for block, argv in _commands():
        if os.path.basename(argv[0]).startswith("python") and len(argv) > 1 and argv[1].endswith(".py"):
            if not os.path.isfile(os.path.join(ROOT, argv[1])):
                missing.append(f"{block.label()}: {argv[1]}")
    assert not missing, missing
