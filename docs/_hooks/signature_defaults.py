"""Griffe extension: the defaults the reference shows are the ones the code has.

- A dataclass field declared through a helper (``RunConfig``'s
  ``cell: str = _setting("gru", "recurrent cell")``) shows its value, read
  from the class (``'gru'``), not the helper call. It runs after griffe's own
  ``dataclasses`` extension, which writes the ``__init__`` (mkdocs.yml lists
  that one first).
- The default in a Parameters table is the signature's: griffe gives every
  name of a combined line (``beta1, beta2 : float``) the first name's default.
- numpydoc reads the first value of a set of choices
  (``dtype : {"float32", "float64"}``) as the default. When the signature's
  default is another of the values, the docstring is wrong: a warning, which
  fails the strict build, naming the file and line.
"""

import ast
import dataclasses
import importlib
import re
from functools import cached_property

import griffe

_logger = griffe.get_logger("griffe.signature_defaults")
_UNKNOWN = object()


def _literal(text):
    try:
        return ast.literal_eval(str(text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _UNKNOWN


# A numpydoc parameter line with a set of choices: "dtype : {"float32", "float64"}, optional".
_CHOICES = re.compile(r"^\s*(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s+:\s+\{([^}]*)\}", re.MULTILINE)


def _choices(docstring):
    """Parameter name -> the values its line lists in braces (griffe keeps only their names)."""
    found = {}
    for match in _CHOICES.finditer(docstring.value):
        values = _literal(f"[{match.group(2)}]")
        if isinstance(values, list):
            for name in re.split(r"\s*,\s*", match.group(1)):
                found[name.lstrip("*")] = values
    return found


def _use_signature_defaults(docstring, sections):
    try:
        signature = docstring.parent.parameters
    except AttributeError:  # a module or an attribute: no signature
        return
    listed = _choices(docstring)
    for section in sections:
        if section.kind is not griffe.DocstringSectionKind.parameters:
            continue
        for item in section.value:
            if item.name not in signature:
                continue
            default = signature[item.name].default
            choices = listed.get(item.name)
            value = _literal(default) if default is not None else _UNKNOWN
            if (isinstance(choices, list) and len(choices) > 1 and value is not _UNKNOWN and value in choices
                    and choices[0] != value):
                where = f"{docstring.parent.relative_filepath}:{docstring.lineno}"
                _logger.warning(f"{where}: parameter '{item.name}' of {docstring.parent.path} lists "
                                f"{choices[0]!r} first, which numpydoc reads as the default; the default is {value!r}")
            item.value = default


class _SignatureDocstring(griffe.Docstring):
    """A docstring whose parsed Parameters take their defaults from the signature."""

    @cached_property
    def parsed(self):
        sections = self.parse()
        _use_signature_defaults(self, sections)
        return sections


def _runtime_object(obj):
    """The Python object ``obj`` describes, imported, or None."""
    module = obj.module
    try:
        value = importlib.import_module(module.path)
        for part in obj.path[len(module.path) + 1:].split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError):
        return None
    return value


def _dataclass_defaults(cls):
    init = cls.members.get("__init__")
    if init is None or init.is_alias or init.lineno:  # a hand-written __init__ shows its own signature
        return
    runtime = _runtime_object(cls)
    if runtime is None or not dataclasses.is_dataclass(runtime):
        return
    for field in dataclasses.fields(runtime):
        if field.name not in init.parameters:
            continue
        if field.default is not dataclasses.MISSING:
            init.parameters[field.name].default = repr(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            init.parameters[field.name].default = repr(field.default_factory())


class SignatureDefaults(griffe.Extension):
    """Defaults from the code: dataclass fields' values, and each documented parameter's own."""

    def on_package(self, *, pkg, **kwargs):
        self._visit(pkg, set())

    def _visit(self, obj, seen):
        if obj.is_alias or id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.is_class:
            _dataclass_defaults(obj)
        if obj.docstring is not None and type(obj.docstring) is griffe.Docstring:
            obj.docstring.__class__ = _SignatureDocstring
        for member in list(obj.members.values()):
            self._visit(member, seen)
