"""MkDocs hook: the site shows files that live outside ``docs/``, written once.

- ``README.md`` is the home page (``index.md``): the guide is not copied by hand.
- ``algorithms.md`` is the README's ``## Algorithms`` section, with each learner
  in its table linked to its API reference.
- ``CHANGELOG.md``, ``LICENSE`` and the notebooks in ``notebooks/`` appear at
  their own paths (mkdocs-jupyter renders the notebooks, without running them).
- Every relative link or image of ``README.md`` (the plots under
  ``perf/results/`` and ``experiments/results/``, ...) is published at its own
  path too, so the README's links work on the site as they do on GitHub. A
  link to a file that does not exist stops the build, naming it.
"""

import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ALGORITHMS_HEADING = "## Algorithms"

# Site path -> repository file, besides the README's own links.
MOUNTS = {
    "index.md": "README.md",
    "CHANGELOG.md": "CHANGELOG.md",
    "LICENSE": "LICENSE",
}

# ![alt](target "title") and [text](target "title"); the target is group 1.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
# A learner's row of the algorithms table: | `SnAp(n)` | ...
_TABLE_NAME = re.compile(r"^\| `([A-Za-z_][A-Za-z0-9_]*)(\([^`]*\))?` \|", re.MULTILINE)


def _readme_text():
    return README.read_text(encoding="utf-8")


def _relative_targets(markdown):
    """The repository paths that the relative links and images of ``markdown`` point to."""
    prose = _FENCE.sub("", markdown)
    targets = []
    for match in _LINK.finditer(prose):
        target = match.group(1).split("#", 1)[0].split("?", 1)[0]
        if not target or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("/"):
            continue  # an anchor on the same page, a URL, or an absolute path
        targets.append(target)
    return targets


def _algorithms_section(markdown):
    """The README's algorithms section (down to the next ``## `` heading), learners linked to the API."""
    lines = markdown.splitlines()
    try:
        start = lines.index(ALGORITHMS_HEADING)
    except ValueError:
        raise PluginError(f"docs/_hooks/repo_files.py: README.md has no line {ALGORITHMS_HEADING!r}; "
                          f"the site's algorithms page is that section") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    section = "\n".join(["# Algorithms", *lines[start + 1:end]]) + "\n"

    import sparse_rtrl

    def link(match):
        name, args = match.group(1), match.group(2) or ""
        if name not in sparse_rtrl.__all__:
            return match.group(0)
        return f"| [`{name}{args}`][sparse_rtrl.{name}] |"

    return _TABLE_NAME.sub(link, section)


@event_priority(100)  # before mkdocs-jupyter wraps the notebooks it finds among the files
def on_files(files, config):
    mounts = dict(MOUNTS)
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        mounts[f"notebooks/{notebook.name}"] = f"notebooks/{notebook.name}"
    readme = _readme_text()
    for target in _relative_targets(readme):
        mounts.setdefault(target, target)

    for site_path, repo_path in mounts.items():
        source = (ROOT / repo_path).resolve()
        if not source.is_file() or ROOT not in source.parents:
            raise PluginError(f"README.md or docs/_hooks/repo_files.py links to {repo_path!r}, "
                              f"which is not a file of the repository")
        if files.get_file_from_path(site_path) is not None:
            raise PluginError(f"docs/{site_path} would hide the repository's {repo_path}; remove one of them")
        if site_path == repo_path:  # a plain file whose docs folder is the repository (mkdocs-jupyter needs one)
            files.append(File(site_path, src_dir=str(ROOT), dest_dir=config.site_dir,
                              use_directory_urls=config.use_directory_urls))
        else:
            files.append(File.generated(config, site_path, abs_src_path=str(source)))
    files.append(File.generated(config, "algorithms.md", content=_algorithms_section(readme)))
    return files


def on_serve(server, config, builder):
    """``mkdocs serve`` rebuilds when a mounted file outside docs/ changes."""
    for path in [README, ROOT / "CHANGELOG.md", ROOT / "notebooks", ROOT / "sparse_rtrl"]:
        if path.exists():
            server.watch(str(path))
    return server
