"""Checkpoints: the whole state of a training run in one file, written atomically.

Two layers:

- :func:`save` / :func:`load` write and read a *state tree*: a nested dict
  (string keys) whose leaves are numpy arrays, numpy scalars or JSON values
  (None, bool, int of any size, float including inf and nan, str, and lists
  of these). The file is a zip archive in the ``.npz`` layout: each array is
  a ``.npy`` member named by its ``"/"``-joined key path (``np.load`` can
  inspect it), and one JSON member, ``tree.json``, holds the tree's
  structure and its other leaves. Nothing is pickled; reading uses
  ``allow_pickle=False`` throughout.
- :func:`get_state` / :func:`set_state` wrap an object's own state protocol
  (``config()``, ``state_dict()``, ``load_state_dict()``; see
  :mod:`sparse_rtrl.state`) in a record that says what it is: the class's
  stable id (``"learner/snap"``, never a module path), what the state must
  match (``identity``: its settings and what it is built on, such as the
  cell's sizes, dtype and sparsity pattern) and the state itself, under
  public field names. A run interrupted after a checkpoint and resumed from
  it ends with exactly the parameters of an uninterrupted run (bit for bit).

Example::

    ckpt = {"cell": get_state(cell), "learner": get_state(learner),
            "readout": get_state(readout), "optimizer": get_state(opt),
            "data_rng": get_state(rng), "step": step}
    save("run.ckpt", ckpt)
    ...
    ckpt = load("run.ckpt")            # later, in a new process
    for obj, key in ((cell, "cell"), (learner, "learner"), ...):
        set_state(obj, ckpt[key])      # objects built as for the first run

Formats. Version 2 is the layout above. Files of version 1 (written before
objects owned their state: records named private attributes and module
paths) still load: :func:`load` converts their records (``_format1``), and
``set_state`` checks them against what version 1 compared. A version-1 record
of a class that version 1 did not know is refused, naming the version.
"""

import io
import json
import os
import zipfile

import numpy as np

from .._io import atomic_write

__all__ = ["FORMAT", "READABLE_VERSIONS", "VERSION", "get_state", "load", "save", "set_state"]

#: The ``format`` field of every checkpoint file's JSON document.
FORMAT = "sparse_rtrl.checkpoint"
#: The version written; ``load`` reads these.
VERSION = 2
READABLE_VERSIONS = (1, 2)
#: The zip member holding the JSON document (arrays are ``<path>.npy``).
TREE_MEMBER = "tree.json"

_JSON_SCALARS = (type(None), bool, int, float, str)


# -- save / load ----------------------------------------------------------------

def _check_path(path):
    if isinstance(path, (bytes, bytearray)) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must name a file with a str path, got {type(path).__name__}")
    if not path:
        raise ValueError("path must not be empty")
    return path


def _where(keys):
    return "state" + "".join(f"[{k!r}]" for k in keys)


def _encode(value, keys, arrays):
    """The JSON node of ``value``; arrays go into ``arrays`` under their path.

    Nodes are one-key objects: ``{"dict": {...}}``, ``{"list": [...]}``,
    ``{"array": path}``, ``{"scalar": path}`` (a numpy scalar, stored as a
    0-d array), ``{"int": hex}``, ``{"float": hex}``, ``{"bool": b}``,
    ``{"str": s}``, ``{"none": null}``. Ints and floats are written in hex:
    exact, of any size (decimal conversion of huge ints is limited), and
    valid JSON for inf and nan.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be str: {_where(keys)} has key {key!r} of type {type(key).__name__}")
            if not key:
                raise ValueError(f"keys must not be empty: {_where(keys)} has an empty key")
            if "/" in key:
                raise ValueError(f"keys may not contain '/' (it joins the key paths): {_where(keys + (key,))}")
            if "\x00" in key:
                raise ValueError(f"keys may not contain NUL characters: {_where(keys + (key,))}")
            try:
                key.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"keys must be encodable as UTF-8: {_where(keys + (key,))}") from exc
            out[key] = _encode(item, keys + (key,), arrays)
        return {"dict": out}
    if isinstance(value, list):
        return {"list": [_encode(item, keys + (str(k),), arrays) for k, item in enumerate(value)]}
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{_where(keys)} is a masked array: save its data and mask as two arrays")
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(f"{_where(keys)} is an array of dtype {arr.dtype} holding Python objects: "
                            f"checkpoints store numbers, not pickles")
        path = "/".join(keys)
        arrays[path] = arr
        return {"array" if isinstance(value, np.ndarray) else "scalar": path}
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": hex(int(value))}
    if isinstance(value, float):
        return {"float": float(value).hex()}
    if isinstance(value, str):
        return {"str": value}
    if value is None:
        return {"none": None}
    kind = "tuple (use a list)" if isinstance(value, tuple) else type(value).__name__
    raise TypeError(f"{_where(keys)} is a {kind}: leaves must be numpy arrays or JSON values "
                    f"(None, bool, int, float, str, list)")


def _write_zip(fileobj, document, arrays):
    """Write the archive: the JSON document, then one ``.npy`` member per array."""
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(TREE_MEMBER, document)
        for path, arr in arrays.items():
            with zf.open(path + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def save(path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file (any name; replaced if it exists).
    state : dict
        Nested dicts with ``str`` keys (non-empty, without ``"/"`` or NUL);
        leaves are numpy arrays (any shape including 0-d and empty, any dtype
        but object), numpy scalars, or JSON values: None, bool, int (any
        size), float (inf and nan included), str, and lists of leaves or
        dicts. Tuples are refused (they would come back as lists).

    Notes
    -----
    The state is checked and encoded first, so a bad state raises
    ``TypeError``/``ValueError`` before any file is touched. The archive is
    written to a temporary file in the same directory, flushed and
    ``fsync``-ed, then renamed onto ``path`` with ``os.replace`` (atomic on
    POSIX and Windows), and the directory is ``fsync``-ed where the OS
    allows it. A failure or crash at any point leaves the previous file at
    ``path`` intact and no partial file under that name; on an exception the
    temporary file is removed. Loading returns dtypes, shapes, byte orders
    and values exactly.
    """
    path = _check_path(path)
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    arrays = {}
    tree = _encode(state, (), arrays)
    document = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree},
                          allow_nan=False, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    with atomic_write(path, "wb") as f:
        _write_zip(f, document, arrays)


class _Corrupt(Exception):
    """Internal: the tree document does not describe a valid state."""


def _decode(node, members, used):
    if not isinstance(node, dict) or len(node) != 1:
        raise _Corrupt(f"a node must be an object with one key, got {node!r:.80}")
    (tag, value), = node.items()
    if tag == "dict":
        if not isinstance(value, dict):
            raise _Corrupt("a dict node must hold an object")
        return {key: _decode(item, members, used) for key, item in value.items()}
    if tag == "list":
        if not isinstance(value, list):
            raise _Corrupt("a list node must hold an array")
        return [_decode(item, members, used) for item in value]
    if tag in ("array", "scalar"):
        if not isinstance(value, str) or value not in members:
            raise _Corrupt(f"array {value!r} has no member in the archive")
        if value in used:
            raise _Corrupt(f"array {value!r} is referenced twice")
        used.add(value)
        arr = members[value]
        return arr[()] if tag == "scalar" else arr
    try:
        if tag == "int" and isinstance(value, str):
            return int(value, 16)
        if tag == "float" and isinstance(value, str):
            return float.fromhex(value)
    except ValueError as exc:
        raise _Corrupt(f"bad {tag} {value!r}") from exc
    if tag == "bool" and isinstance(value, bool):
        return value
    if tag == "str" and isinstance(value, str):
        return value
    if tag == "none" and value is None:
        return None
    raise _Corrupt(f"unknown node {tag!r} holding {value!r:.80}")


def _read_array(data, key):
    """One ``.npy`` member, refusing object dtypes before reading any data."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        shape, fortran, dtype = np.lib.format._read_array_header(stream, version)
    if dtype.hasobject:
        raise TypeError(f"array {key!r} has dtype {dtype} holding Python objects (a pickle): refused")
    stream.seek(0)
    arr = np.lib.format.read_array(stream, allow_pickle=False)
    if stream.read(1):
        raise ValueError(f"array {key!r} has trailing bytes")
    return arr


def load(path) -> dict:
    """Read a state written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        The state tree, with arrays as new numpy arrays of the saved dtype,
        shape and values, numpy scalars as numpy scalars, and JSON values as
        Python values.

    Raises
    ------
    FileNotFoundError
        There is no file at ``path``; the message names it.
    ValueError
        The file is unreadable, truncated or corrupt (a zip or CRC error, a
        damaged ``.npy`` member, a bad or missing JSON document, members
        missing or unexpected); the message names ``path``.
    TypeError
        A member holds an object (pickled) array; it is never unpickled.
    """
    path = _check_path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(2, "no checkpoint file at this path", path) from None
    except OSError as exc:
        raise ValueError(f"cannot read checkpoint {path!r}: {exc}") from exc
    with f:
        try:
            with zipfile.ZipFile(f) as zf:
                names = zf.namelist()
                if len(set(names)) != len(names):
                    raise _Corrupt("the archive has duplicate member names")
                if TREE_MEMBER not in names:
                    raise _Corrupt(f"no {TREE_MEMBER} member")
                doc = json.loads(zf.read(TREE_MEMBER).decode("ascii"))
                if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                    raise _Corrupt(f"not a {FORMAT} document")
                version = doc.get("version")
                if version not in READABLE_VERSIONS:
                    raise _Corrupt(f"format version {version!r}; this library reads versions "
                                   f"{', '.join(map(str, READABLE_VERSIONS))}")
                members = {}
                for name in names:
                    if name == TREE_MEMBER:
                        continue
                    if not name.endswith(".npy"):
                        raise _Corrupt(f"unexpected member {name!r}")
                    key = name[:-4]
                    members[key] = _read_array(zf.read(name), key)
                used = set()
                state = _decode(doc.get("tree"), members, used)
                if not isinstance(state, dict):
                    raise _Corrupt("the top of the tree is not a dict")
                unused = sorted(set(members) - used)
                if unused:
                    raise _Corrupt(f"members not in the tree: {unused[:5]}")
        except TypeError as exc:
            raise TypeError(f"checkpoint {path!r}: {exc}") from None
        except (_Corrupt, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError,
                UnicodeDecodeError, OverflowError, NotImplementedError) as exc:
            raise ValueError(f"checkpoint {path!r} is truncated or corrupt: {exc}") from exc
    if version == 1:
        from . import _format1

        try:
            state = _format1.upgrade(state)
        except _format1.Unconvertible as exc:
            raise ValueError(f"checkpoint {path!r} (format version 1): {exc}") from None
    return state


# -- objects: get_state / set_state ----------------------------------------------------

#: The class id of numpy Generators in records.
GENERATOR = "numpy.random.Generator"


def _family_and_name(class_id):
    """``("learner", "SnAp")`` for ``"learner/snap"``; the family and the Python name when known."""
    from ..registry import _FAMILIES

    if class_id == GENERATOR:
        return "generator", "Generator"
    family, _, key = class_id.partition("/")
    if family in _FAMILIES and key in _FAMILIES[family]:
        return family, _FAMILIES[family][key].__name__
    return None, class_id


def get_state(obj) -> dict:
    """The state of a library object, as a record :func:`save` can write.

    Parameters
    ----------
    obj : Cell, Learner, LinearReadout, Optimizer (any object with the state
        protocol of :mod:`sparse_rtrl.state`) or numpy.random.Generator

    Returns
    -------
    dict
        ``class`` (the class's stable id, e.g. ``"learner/snap"``),
        ``identity`` (what the state must match to load: the object's
        settings and what it is built on) and ``state`` (``obj.state_dict()``:
        public field names, arrays copied, so the object may run on without
        changing the record).
    """
    from ..registry import class_id
    from ..state import Stateful, generator_state

    if isinstance(obj, np.random.Generator):
        return {"class": GENERATOR, "identity": {}, "state": {"bit_generator": generator_state(obj)}}
    if not isinstance(obj, Stateful):
        raise TypeError(f"obj must be a Learner, Cell, LinearReadout, Optimizer or numpy Generator, "
                        f"got {type(obj).__name__}")
    return {"class": class_id(type(obj)), "identity": obj._identity(), "state": obj.state_dict()}


def set_state(obj, record: dict) -> None:
    """Load a record from :func:`get_state` (or :func:`load`) into ``obj``.

    Parameters
    ----------
    obj : as for :func:`get_state`
        Built as the saved object was (same class, cell sizes and pattern,
        batch size, dtype and settings); for a learner, on a cell that gets
        its own state restored too.
    record : dict

    Raises
    ------
    ValueError
        The record is of another class, or its identity differs (the message
        names each difference: cell type, sizes, pattern, dtype, batch size,
        truncation, a subclass's own setting...), or a field is missing,
        unknown, or of the wrong kind, dtype or shape. Everything is checked
        before anything is written, so a refused record leaves ``obj``
        unchanged.

    Notes
    -----
    Arrays are written into the object's own arrays, so views of them (a
    cell's weight matrices, an optimiser's list of parameters) stay valid. A
    Generator is set in place: objects sharing it (one passed as ``seed=``)
    see the restored position. An optimiser takes the saved hyperparameters
    (a schedule may have changed ``lr``).
    """
    from ..registry import class_id
    from ..state import Stateful, check_generator_state

    if not isinstance(record, dict):
        raise TypeError(f"state must be a dict (from get_state), got {type(record).__name__}")
    if isinstance(obj, np.random.Generator):
        mine = GENERATOR
    elif isinstance(obj, Stateful):
        mine = class_id(type(obj))
    else:
        raise TypeError(f"obj must be a Learner, Cell, LinearReadout, Optimizer or numpy Generator, "
                        f"got {type(obj).__name__}")
    missing = [k for k in ("class", "state") if k not in record]
    if missing:
        raise ValueError(f"state is not a record from get_state: missing {missing}")
    if record["class"] != mine:
        saved_family, saved_name = _family_and_name(record["class"])
        my_family, my_name = _family_and_name(mine)
        if saved_family != my_family and saved_family is not None and my_family is not None:
            raise ValueError(f"state is the state of a {saved_family} ({saved_name}), not of a {my_family} "
                             f"({type(obj).__name__})")
        raise ValueError(f"state is from a {saved_name} ({record['class']}), not from a {type(obj).__name__} "
                         f"({mine})")
    if isinstance(obj, np.random.Generator):
        state = record["state"]
        if not isinstance(state, dict):
            raise ValueError("state['state'] is not a generator state")
        check_generator_state(state.get("bit_generator"), obj, "bit_generator")
        obj.bit_generator.state = _copy_tree(state["bit_generator"])
        return
    if "format1" in record:
        from . import _format1

        diffs = _config_differences(record["format1"], _format1.config_of(obj))
    else:
        if "identity" not in record:
            raise ValueError("state is not a record from get_state: missing ['identity']")
        diffs = _config_differences(record["identity"], obj._identity())
    if diffs:
        raise ValueError(f"state does not match this {type(obj).__name__}: " + "; ".join(diffs))
    obj.load_state_dict(record["state"])


def _copy_tree(value):
    if isinstance(value, dict):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy_tree(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _same_scalar(a, b):
    """Equal values of the same kind (nan equals nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (float, np.floating)) and np.isnan(a) and np.isnan(b):
        return True
    return bool(a == b)


def _config_differences(saved, current, prefix=""):
    """``"name: state X, this Y"`` for each entry of two nested dicts that differ."""
    out = []
    if not isinstance(saved, dict):
        return [f"{prefix or 'config'}: state has {saved!r}, this has a dict"]
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        if key not in saved:
            out.append(f"{name}: missing from the state")
        elif key not in current:
            out.append(f"{name}: unknown setting in the state")
        elif isinstance(current[key], dict):
            out.extend(_config_differences(saved[key], current[key], name + "."))
        elif not _same_scalar(saved[key], current[key]):
            out.append(f"{name}: state {saved[key]!r}, this {current[key]!r}")
    return out
