"""Every code block of README.md works as pasted.

- Each ```python block runs alone, in a fresh namespace, since readers
  paste one block. A block meant to use the names of the blocks above says
  so with the line ``<!-- continues the block above -->`` just before its
  fence (an HTML comment: invisible on the rendered page).
- The blocks also work pasted all together, in order, into one namespace.
  One run checks both: the blocks run in order in one fresh interpreter,
  each in a fresh namespace, from an empty working directory that must stay
  empty (files go to a temporary folder). A block that runs alone can read
  something else pasted after the others in one case only: a builtin
  (``sum``, ``input``) that an earlier block rebinds; the blocks' symbol
  tables rule that out. The run goes in the background (see
  ``conftest.py``).
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


# Runs the blocks given as JSON on stdin, each in a fresh namespace (a block marked as continuing in its
# predecessor's), in order. Before a block runs, the global names it reads (its symbol table's) must not be
# builtins that an earlier block rebinds: pasted together, it would read that block's value instead of the
# builtin it reads alone. Code is compiled under README.md's path with its own line numbers, so a traceback
# shows the README line that failed.
RUNNER = r"""
import builtins, json, symtable, sys, traceback

def reads(table):
    names = {s.get_name() for s in table.get_symbols()
             if s.is_referenced() and (table.get_type() == "module" or s.is_global())}
    for child in table.get_children():
        names |= reads(child)
    return names

readme = sys.argv[1]
namespace, rebound, group = None, {}, {}  # builtins rebound by earlier groups / by this one -> the block
for b in json.load(sys.stdin):
    if not b["continues"]:
        rebound.update((n, lb) for n, lb in group.items() if n not in rebound)
        namespace, group = {"__name__": "__main__"}, {}
    label = b["label"]
    code = "\n" * (b["line"] - 1) + b["code"]
    try:
        clash = sorted(n for n in reads(symtable.symtable(code, readme, "exec")) if n in rebound)
    except SyntaxError:
        clash = []  # exec reports it
    if clash:
        print(f"\n{label} reads the builtin {clash[0]!r}, which {rebound[clash[0]]} rebinds: pasted together "
              f"with that block, it gets that block's value instead. Rename the variable.", file=sys.stderr)
        sys.exit(1)
    try:
        exec(compile(code, readme, "exec"), namespace)
    except BaseException as exc:
        sys.stdout.flush()
        print(f"\n{label} failed:", file=sys.stderr)
        traceback.print_exc()
        if isinstance(exc, NameError):
            print(f"\nThe block uses a name it does not define. Make it self-contained (readers paste one "
                  f"block), or put the line {b['marker']!r} just before its fence.", file=sys.stderr)
        sys.exit(1)
    for n in namespace:
        if hasattr(builtins, n) and not n.startswith("__"):
            group.setdefault(n, label)
"""


def _runner_command(blocks, folder):
    cwd, tmp = os.path.join(folder, "cwd"), os.path.join(folder, "tmp")
    os.makedirs(cwd)
    os.makedirs(tmp)
    payload = [dict(line=b.line, code=b.code, continues=b.continues, label=b.label(), marker=CONTINUES)
               for b in blocks]
    env = dict(os.environ, TMPDIR=tmp, MPLBACKEND="Agg")
    return dict(args=[sys.executable, "-c", RUNNER, README], input=json.dumps(payload), env=env, cwd=cwd)


def _readme_blocks(folder):
    blocks = _blocks("python")
    assert blocks, "README.md has no python blocks"
    return _runner_command(blocks, folder)


@pytest.mark.background.with_args(_readme_blocks)
def test_python_blocks_run_alone_and_pasted_together(background):
    out = background.result(timeout=900)
    assert out.returncode == 0, f"{out.stderr}\n--- stdout ---\n{out.stdout[-3000:]}"
    assert os.listdir(os.path.join(background.folder, "cwd")) == [], \
        "README blocks wrote into the working directory; use tempfile"


@pytest.mark.parametrize("second, fails", [("print(sum([1]))", True), ("print(x.sum())", False),
                                           ("def f():\n    return sum([1])\nf()", True)])
def test_a_block_reading_a_builtin_an_earlier_block_rebinds_is_refused(tmp_path, second, fails):
    first = "import numpy as np\nx = np.ones(2)\nsum = 3\n"
    text = f"```python\n{first}```\n\n```python\nimport numpy as np\nx = np.ones(2)\n{second}\n```\n"
    cmd = _runner_command(_blocks("python", text), str(tmp_path))
    out = subprocess.run(cmd["args"], input=cmd["input"], env=cmd["env"], cwd=cmd["cwd"], capture_output=True,
                         text=True, timeout=120)
    assert (out.returncode != 0) == fails, out.stderr
    assert ("reads the builtin 'sum'" in out.stderr) == fails, out.stderr


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
