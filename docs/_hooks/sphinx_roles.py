"""Griffe extension: the Sphinx roles of the docstrings become cross-references on the site.

The docstrings are numpydoc and name other objects the Sphinx way
(``:class:`Cell```, ``:meth:`held_out```, ``:func:`~sparse_rtrl.gradcheck```),
which reads well in ``help()``. Markdown has no such roles, so this extension
resolves each name as Sphinx would (the object itself, then its enclosing
classes and module, then the package) and turns it into a cross-reference that
mkdocs-autorefs links to the object's API entry:

- a name that resolves to an object the site documents becomes a link;
- one that resolves to an object the site does not show (a private helper, a
  module left out of the reference) stays code, without a link;
- a Python or third-party name (``:class:`ValueError```,
  ``:func:`numpy.einsum```) stays code;
- a name that resolves to nothing is a broken reference: a warning, which
  fails the strict build, naming the file and line.

It also reads reST's literal-block marker as Sphinx does: ``text::`` before
an indented block shows as ``text:`` (Markdown already takes the indented
block as code), and a ``::`` alone on its line is dropped.
"""

import builtins
import html
import importlib.util
import re

import griffe

# reST's literal-block marker: "text::" shows as "text:", a lone "::" not at all.
_LITERAL_MARK = re.compile(r"(?m)(?:(?<=\S)(::)|^[ \t]*(::))[ \t]*$(?=\n[ \t]*\n[ \t]+\S)")
_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|exc|obj|const):`(~?)([^`<>]+?)`")
_logger = griffe.get_logger("griffe.sphinx_roles")


def _member(obj, name):
    """``obj``'s member ``name`` (inherited ones too), or None."""
    try:
        members = obj.all_members if obj.is_class else obj.members
        return members.get(name)
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _walk(root, path):
    """The object at ``path`` (dotted, relative to ``root``), or None."""
    obj = root
    for part in path.split("."):
        obj = _member(obj, part)
        if obj is None:
            return None
    return obj


def _scopes(obj):
    """Where a relative name is looked up, innermost first: the object, its parents, the package."""
    scope = obj
    while scope is not None:
        if scope.is_class or scope.is_module:
            yield scope
        scope = scope.parent


def _resolve(obj, package, name):
    name = name.lstrip(".")
    root, _, rest = name.partition(".")
    if root == package.name:
        return package if not rest else _walk(package, rest)
    for scope in _scopes(obj):
        target = _walk(scope, name)
        if target is not None:
            return target
    return None


def _external(name, package):
    """A name of Python itself or of another installed package: stays code."""
    root = name.lstrip(".").partition(".")[0]
    return root != package.name and (hasattr(builtins, root) or importlib.util.find_spec(root) is not None)


class SphinxRoles(griffe.Extension):
    """Rewrites ``:role:`name``` in every docstring of the package to an autorefs cross-reference."""

    def on_package(self, *, pkg, **kwargs):
        seen = set()
        self._rewrite(pkg, pkg, seen)

    def _rewrite(self, obj, package, seen):
        if obj.is_alias or id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.docstring is not None:
            text = _ROLE.sub(lambda m: self._reference(obj, package, m), obj.docstring.value)
            obj.docstring.value = _LITERAL_MARK.sub(lambda m: ":" if m.group(1) else "", text)
        for member in list(obj.members.values()):
            self._rewrite(member, package, seen)

    def _reference(self, obj, package, match):
        short, name = match.group(1), match.group(2).strip()
        title = html.escape(name.rsplit(".", 1)[-1] if short else name.lstrip("."))
        target = _resolve(obj, package, name)
        if target is None:
            if not _external(name, package):
                where = f"{obj.relative_filepath}:{obj.docstring.lineno}"
                _logger.warning(f"{where}: {match.group(0)} in the docstring of {obj.path} names no object")
            return f"<code>{title}</code>"
        try:
            identifier = target.canonical_path
        except griffe.AliasResolutionError:  # an import of a third-party object
            return f"<code>{title}</code>"
        return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'
