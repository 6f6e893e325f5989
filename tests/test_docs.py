"""The documentation site: it builds with every warning an error, and shows what it should.

`mkdocs build --strict` fails on a docstring whose parameters do not match
its signature, a broken cross-reference (``:class:`Nothing```), a README
link to a file that does not exist, or a notebook that does not render. The
docs packages are part of the ``test`` extra, so this is never skipped.
"""

import html
import importlib.util
import logging
import os
import re
import sys
from pathlib import Path

import pytest

import sparse_rtrl as sr
from conftest import background_run

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "docs" / "_hooks"


def _build_site(folder):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # mkdocs-material's notice about MkDocs 2.0, not a warning
    return dict(args=[sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", os.path.join(folder, "site")],
                cwd=ROOT, env=env)


# The build (about 15 s) runs in the background from the start of the session (see conftest.py); the tests
# that read the site wait for it at the end.
on_the_site = pytest.mark.background.with_args(_build_site)


@pytest.fixture(scope="module")
def site(request):
    run = background_run(request.config, _build_site)
    out = run.result(timeout=300)
    assert out.returncode == 0, f"mkdocs build --strict failed:\n{out.stdout}\n{out.stderr}"
    return Path(run.folder) / "site"


def _page(site, path):
    file = site / path
    assert file.is_file(), f"{path} is missing from the site"
    return file.read_text(encoding="utf-8")


def _section(page, anchor):
    """The HTML of one API entry: from its heading to the next heading of the same or a higher level."""
    start = page.index(f'id="{anchor}"')
    level = int(page[page.rfind("<h", 0, start) + 2])
    ends = [page.find(f"<h{k}", start) for k in range(1, level + 1)]
    return page[start:min([e for e in ends if e > 0], default=len(page))]


@on_the_site
def test_home_is_the_readme_with_its_plots(site):
    home = _page(site, "index.html")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", home))
    for heading in re.findall(r"^## (.+)$", readme, re.MULTILINE):
        assert heading.replace("`", "") in text, heading
    for image in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme):
        assert (site / image).is_file(), image


@on_the_site
def test_algorithms_page_links_each_learner_to_its_reference(site):
    page = _page(site, "algorithms/index.html")
    for name in ("RTRL", "SnAp", "UORO", "KFRTRL", "EProp", "ReadoutOnly"):
        assert f'href="../api/learners/#sparse_rtrl.{name}"' in page, name


@on_the_site
def test_snap_reference_shows_its_parameters_and_notes(site):
    page = _page(site, "api/learners/index.html")
    snap = _section(page, "sparse_rtrl.SnAp")
    assert "Sparse n-step Approximation of RTRL" in snap
    for name in ("cell", "n", "batch_size", "parallel", "mask_size", "saturated"):  # parameters, attributes
        assert re.search(rf">{name}</(code|span)>", snap), name
    assert "Menick" in snap and "Parameters" in snap


@on_the_site
def test_api_pages_cover_each_group(site):
    expected = {
        "api/cells/index.html": ["sparse_rtrl.GRU", "sparse_rtrl.Pattern", "sparse_rtrl.SparseWeight"],
        "api/cellkit/index.html": ["sparse_rtrl.cellkit.row_dot"],
        "api/training/index.html": ["sparse_rtrl.train_online", "sparse_rtrl.RunConfig", "sparse_rtrl.Adam"],
        "api/tasks/index.html": ["sparse_rtrl.tasks.Copy", "sparse_rtrl.tasks.CharLM"],
        "api/checking/index.html": ["sparse_rtrl.gradcheck", "sparse_rtrl.estimator_variance"],
        "api/registry/index.html": ["sparse_rtrl.registry.make_learner", "sparse_rtrl.checkpoint.save"],
    }
    for path, anchors in expected.items():
        page = _page(site, path)
        for anchor in anchors:
            assert f'id="{anchor}"' in page, (path, anchor)


@on_the_site
def test_notebooks_and_changelog_are_rendered(site):
    for name in ("gradient_check", "alignment_and_variance"):
        page = _page(site, f"notebooks/{name}/index.html")
        assert "jp-Notebook" in page or "jupyter-wrapper" in page, name
        assert "import sparse_rtrl" in page, name
    changelog = _page(site, "CHANGELOG/index.html")
    assert "Unreleased" in changelog and "0.1.0" in changelog


def test_every_public_name_has_a_reference_entry():
    """A name exported from ``sparse_rtrl`` and missing from ``docs/api/*.md`` fails here."""
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented.update(re.findall(r"^::: (\S+)", page.read_text(encoding="utf-8"), re.MULTILINE))
    missing = [name for name in sr.__all__ if f"sparse_rtrl.{name}" not in documented]
    assert not missing, f"add to a page of docs/api/: {', '.join(f'::: sparse_rtrl.{n}' for n in missing)}"


def _load_hook(name):
    spec = importlib.util.spec_from_file_location(f"_docs_hook_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_links_found_outside_code():
    hook = _load_hook("repo_files")
    text = ("![a plot](perf/results/a.png) [docs](https://example.org) [top](#quickstart)\n"
            "```python\nx = d[i](j)  # [not](a_link.md)\n```\n[the log](CHANGELOG.md#unreleased)\n")
    assert hook._relative_targets(text) == ["perf/results/a.png", "CHANGELOG.md"]


def test_sphinx_roles_become_references_and_broken_ones_warn(tmp_path, caplog):
    import griffe  # mkdocstrings[python] brings it: part of the test extra
    package = tmp_path / "toypkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Toy."""\nfrom .mod import Thing, helper\n')
    (package / "mod.py").write_text(
        'class Thing:\n'
        '    """See :meth:`go`, :func:`~toypkg.mod.helper`, :class:`ValueError` and :class:`Nothing`.\n'
        '\n'
        '    Example::\n'
        '\n'
        '        thing.go()\n'
        '    """\n'
        '\n'
        '    def go(self):\n'
        '        """Go."""\n'
        '\n'
        '\n'
        'def helper():\n'
        '    """Help."""\n')
    extensions = griffe.load_extensions(str(HOOKS / "sphinx_roles.py"))
    with caplog.at_level(logging.WARNING):
        pkg = griffe.load("toypkg", search_paths=[str(tmp_path)], extensions=extensions)
    doc = pkg["mod.Thing"].docstring.value
    assert '<autoref identifier="toypkg.mod.Thing.go" optional><code>go</code></autoref>' in doc
    assert '<autoref identifier="toypkg.mod.helper" optional><code>helper</code></autoref>' in doc
    assert "<code>ValueError</code>" in doc and "Example:\n\n    thing.go()" in doc
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(":class:`Nothing`" in w and "names no object" in w for w in warnings), warnings
    assert not any("ValueError" in w or "helper" in w for w in warnings), warnings


def test_reference_shows_the_code_s_defaults(tmp_path, caplog):
    import griffe
    package = tmp_path / "toydefaults"
    package.mkdir()
    (package / "__init__.py").write_text(
        'import dataclasses\n'
        '\n'
        '\n'
        'def _setting(default, help=""):\n'
        '    return dataclasses.field(default=default, metadata={"help": help})\n'
        '\n'
        '\n'
        '@dataclasses.dataclass\n'
        'class Config:\n'
        '    """Settings.\n'
        '\n'
        '    Parameters\n'
        '    ----------\n'
        '    cell : str\n'
        '    """\n'
        '\n'
        '    cell: str = _setting("gru", "recurrent cell")\n'
        '\n'
        '\n'
        'def adam(lr=1e-3, beta1=0.9, beta2=0.999, dtype="float64"):\n'
        '    """Adam.\n'
        '\n'
        '    Parameters\n'
        '    ----------\n'
        '    lr : float\n'
        '    beta1, beta2 : float\n'
        '    dtype : {"float32", "float64"}\n'
        '    """\n')
    sys.path.insert(0, str(tmp_path))  # the extension reads dataclass defaults from the class itself
    try:
        extensions = griffe.load_extensions("dataclasses", str(HOOKS / "signature_defaults.py"))
        pkg = griffe.load("toydefaults", search_paths=[str(tmp_path)], extensions=extensions,
                          docstring_parser="numpy")
        with caplog.at_level(logging.WARNING):
            config = {p.name: p.value for s in pkg["Config"].docstring.parsed if s.kind.value == "parameters"
                      for p in s.value}
            adam = {p.name: p.value for s in pkg["adam"].docstring.parsed if s.kind.value == "parameters"
                    for p in s.value}
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("toydefaults", None)
    assert str(pkg["Config"].parameters["cell"].default) == "'gru'" and config == {"cell": "'gru'"}
    assert {k: str(v) for k, v in adam.items()} == {"lr": "0.001", "beta1": "0.9", "beta2": "0.999",
                                                   "dtype": "'float64'"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("'dtype'" in w and "'float32' first" in w for w in warnings), warnings
