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
- :func:`get_state` / :func:`set_state` turn the library's stateful objects
  (cells, learners, readouts, optimisers, numpy Generators) into state trees
  and back, so that a run interrupted after a checkpoint and resumed from it
  ends with exactly the parameters of an uninterrupted run (bit for bit).

Example::

    ckpt = {"cell": get_state(cell), "learner": get_state(learner),
            "readout": get_state(readout), "optimizer": get_state(opt),
            "data_rng": get_state(rng), "step": step}
    save("run.ckpt", ckpt)
    ...
    ckpt = load("run.ckpt")            # later, in a new process
    for obj, key in ((cell, "cell"), (learner, "learner"), ...):
        set_state(obj, ckpt[key])      # objects built as for the first run

What a learner's state holds. The walk covers every instance attribute
(``vars(learner)``): arrays are copied, Python and numpy scalars kept, and
Generators saved by their ``bit_generator.state``. So the state vector, the
influence matrix or its factors, traces, the gradient accumulator, stored
windows and their counters, stored weight copies, learned models (KeRNL's
``A`` and ``gamma``, DNI's ``A``, ``A'`` and ``Jhat``), flags of deferred
updates and the per-step buffers those deferred updates still read are all
saved. Left out: the cell (saved on its own), the structure and index plans
built at construction (tuples and dicts of constant arrays, listed per class
in ``_CONSTANT``), the ``parallel`` switch (results do not depend on it) and
the seed argument (the generator's position is what matters).
Constructor settings (``truncation``, ``n``, ``lr``, ...) and the cell's
sizes, dtype and sparsity pattern form the state's ``config``: ``set_state``
refuses a state whose config differs from the learner's, naming what
differs, and changes nothing then.
"""

import hashlib
import inspect
import io
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "sparse_rtrl.checkpoint"
VERSION = 1
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


def _fsync_directory(directory):
    """Make the rename durable; not every OS lets a directory be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode(path):
    """The permissions ``open(path, "w")`` would give: the old file's, or 0o666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def save(path, state):
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
    directory = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_zip(f, document, arrays)
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


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


def load(path):
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
    ValueError
        The file is missing, unreadable, truncated or corrupt (a zip or CRC
        error, a damaged ``.npy`` member, a bad or missing JSON document,
        members missing or unexpected); the message names ``path``.
    TypeError
        A member holds an object (pickled) array; it is never unpickled.
    """
    path = _check_path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path!r} does not exist") from None
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
                if doc.get("version") != VERSION:
                    raise _Corrupt(f"format version {doc.get('version')!r}; this library reads version {VERSION}")
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
                return state
        except TypeError as exc:
            raise TypeError(f"checkpoint {path!r}: {exc}") from None
        except (_Corrupt, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError,
                UnicodeDecodeError, OverflowError, NotImplementedError) as exc:
            raise ValueError(f"checkpoint {path!r} is truncated or corrupt: {exc}") from exc


# -- get_state / set_state ----------------------------------------------------------

def _dtype_name(dtype):
    return np.dtype(dtype).name


def _structure_digest(cell):
    """SHA-256 of the cell's structure (patterns, parameter order): equal digests, same Jacobian layout."""
    h = hashlib.sha256()
    st = cell.structure
    for name in sorted(vars(st)):
        value = getattr(st, name)
        h.update(name.encode())
        if isinstance(value, np.ndarray):
            h.update(f"{value.dtype.str}{value.shape}".encode())
            h.update(np.ascontiguousarray(value).tobytes())
        elif hasattr(value, "indptr") and hasattr(value, "indices"):
            h.update(repr(tuple(value.shape)).encode())
            h.update(np.ascontiguousarray(value.indptr, np.int64).tobytes())
            h.update(np.ascontiguousarray(value.indices, np.int64).tobytes())
        else:
            h.update(repr(value).encode())
    for name in cell.weight_names:
        pattern = cell.patterns.get(name)
        if pattern is not None:
            h.update(name.encode())
            h.update(np.ascontiguousarray(pattern.indptr, np.int64).tobytes())
            h.update(np.ascontiguousarray(pattern.indices, np.int64).tobytes())
    return h.hexdigest()


def _cell_config(cell):
    config = {
        "type": type(cell).__name__,
        "n_in": int(cell.n_in),
        "n_hidden": int(cell.n_hidden),
        "n_state": int(cell.n_state),
        "n_params": int(cell.n_params),
        "dtype": _dtype_name(cell.dtype),
        "structure": _structure_digest(cell),
    }
    for key, value in cell._hyperparameters().items():
        config[key] = float(value) if isinstance(value, float) else value
    return config


def _type_name(obj):
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_scalar(value):
    return isinstance(value, _JSON_SCALARS + (np.generic,))


def _generator_state(gen):
    return {"bit_generator": _copy_tree(gen.bit_generator.state)}


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
    """``"name: state X, this Y"`` for each entry of two config dicts that differ."""
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


def _require(state, keys, what):
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict (from get_state), got {type(state).__name__}")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"state is not the state of {what}: missing {missing}")


def _check_kind(state, kind, obj):
    _require(state, ("kind", "type", "config"), kind)
    if state["kind"] != kind:
        raise ValueError(f"state is the state of a {state['kind']}, not of a {kind} ({type(obj).__name__})")
    if state["type"] != _type_name(obj):
        raise ValueError(f"state is from a {state['type']}, not from a {_type_name(obj)}")


def _check_config(state, config, obj):
    diffs = _config_differences(state["config"], config)
    if diffs:
        raise ValueError(f"state does not match this {type(obj).__name__}: " + "; ".join(diffs))


def _check_array(saved, current, name, resizable=False):
    """Validate one saved array against the object's array; a message naming it."""
    if not isinstance(saved, np.ndarray):
        raise ValueError(f"state entry {name!r} must be an array, got {type(saved).__name__}")
    if saved.dtype != current.dtype:
        raise ValueError(f"state entry {name!r} has dtype {saved.dtype}, this object's has {current.dtype}")
    if saved.shape != current.shape:
        if not (resizable and saved.ndim == current.ndim and saved.shape[1:] == current.shape[1:]):
            raise ValueError(f"state entry {name!r} has shape {saved.shape}, this object's has {current.shape}")


def _check_generator(saved, gen, name):
    if not isinstance(saved, dict) or not isinstance(saved.get("bit_generator"), dict):
        raise ValueError(f"state entry {name!r} is not a generator state")
    kind = saved["bit_generator"].get("bit_generator")
    have = gen.bit_generator.state["bit_generator"]
    if kind != have:
        raise ValueError(f"state entry {name!r} is a {kind} generator state, this generator is a {have}")
    # Setting an invalid state raises inside numpy: try it on a twin first.
    twin = type(gen.bit_generator)()
    try:
        twin.state = saved["bit_generator"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"state entry {name!r} is not a valid {kind} state: {exc}") from exc


# -- learners ------------------------------------------------------------------------

#: Attributes that are not run state, per class (inherited): structure and
#: index plans built at construction, pure workspace whose size depends on
#: ``parallel`` (SnAp's ``_scratch``, overwritten before it is read), and the
#: seed argument (the generator's position is saved instead).
_CONSTANT = {
    "Learner": ("cell", "parallel", "_B", "_structure_args", "_no_credit"),
    "_FormsDynamics": ("_dyn_plan",),
    "SnAp": ("_plan", "_kernel_plan", "_chunk_ptr", "_diag_entry", "_scratch"),
    "UORO": ("seed",),
    "_Kronecker": ("seed",),
    "KeRNL": ("seed", "_initial_decay"),
}

#: Constructor settings, per class (inherited): must match between the
#: state and the learner it is loaded into.
_CONFIG = {
    "Learner": ("batch_size",),
    "TBPTT": ("truncation",),
    "SnAp": ("n",),
    "UORO": ("eps",),
    "_Kronecker": ("eps",),
    "KeRNL": ("lr", "sigma", "_step"),
    "FutureBPTT": ("truncation",),
    "DNI": ("lr", "fix_interval", "jacobian", "jacobian_lr", "_lr", "_jacobian_lr"),
}

#: Arrays that a learner reallocates as it runs (BPTT's growing window):
#: restored with the saved length, which may differ from a fresh learner's.
_RESIZABLE = {
    "BPTT": ("_coef_hist", "_dloc_hist", "_z_hist", "_c_hist", "_theta_hist", "_theta_idx"),
}


def _window_invariants(arrays, scalars):
    """TBPTT and BPTT: the window's counters index its arrays (kernels do not check bounds)."""
    cap = arrays["_coef_hist"].shape[0]
    out = []
    if cap < 1:
        out.append("the window has no room")
    for name in ("_dloc_hist", "_z_hist", "_c_hist", "_theta_idx"):
        if arrays[name].shape[0] != cap:
            out.append(f"{name} holds {arrays[name].shape[0]} steps, _coef_hist {cap}")
    if arrays["_theta_hist"].shape[0] != cap + 1:
        out.append(f"_theta_hist holds {arrays['_theta_hist'].shape[0]} copies, not {cap + 1}")
    w, end, n_snap = scalars["_w"], scalars["_credit_end"], scalars["_n_snap"]
    if not 0 <= w <= cap:
        out.append(f"_w = {w} outside [0, {cap}]")
    if not 0 <= end <= w:
        out.append(f"_credit_end = {end} outside [0, _w]")
    if not 0 <= n_snap <= cap + 1:
        out.append(f"_n_snap = {n_snap} outside [0, {cap + 1}]")
    idx = arrays["_theta_idx"][: max(0, min(w, cap))]
    if idx.size and (idx.min() < 0 or idx.max() >= n_snap):
        out.append(f"_theta_idx outside [0, _n_snap = {n_snap})")
    return out


def _future_invariants(arrays, scalars):
    """F-BPTT: ring positions and weight-copy indices within the window."""
    T = arrays["_coef_hist"].shape[0]
    out = []
    if not 0 <= scalars["_newest"] < T:
        out.append(f"_newest = {scalars['_newest']} outside [0, {T})")
    if not 0 <= scalars["_count"] <= T:
        out.append(f"_count = {scalars['_count']} outside [0, {T}]")
    if not -1 <= scalars["_copy"] < T:
        out.append(f"_copy = {scalars['_copy']} outside [-1, {T})")
    idx = arrays["_theta_idx"]
    if idx.size and (idx.min() < 0 or idx.max() >= T):
        out.append(f"_theta_idx outside [0, {T})")
    return out


def _counter_invariants(arrays, scalars):
    return [f"{name} = {scalars[name]} is negative"
            for name in ("n_steps", "_n_updates") if name in scalars and scalars[name] < 0]


#: Checks of a saved learner state beyond dtypes and shapes, per class
#: (inherited): counters that kernels use as indices must be in range.
_INVARIANTS = {
    "Learner": _counter_invariants,
    "TBPTT": _window_invariants,
    "FutureBPTT": _future_invariants,
}


def _by_class(table, obj):
    out = set()
    for cls in type(obj).__mro__:
        out.update(table.get(cls.__name__, ()))
    return out


def _learner_parts(learner):
    """Split ``vars(learner)`` into config, arrays, scalars and generators (no copies)."""
    constant = _by_class(_CONSTANT, learner)
    config_names = _by_class(_CONFIG, learner)
    config = {"cell": _cell_config(learner.cell)}
    arrays, scalars, generators = {}, {}, {}
    for name, value in vars(learner).items():
        if name in constant:
            continue
        if name in config_names:
            if not _is_scalar(value):
                raise TypeError(f"{type(learner).__name__}.{name} is a setting but holds a {type(value).__name__}")
            config[name] = value
        elif isinstance(value, np.random.Generator):
            generators[name] = value
        elif isinstance(value, np.ndarray):
            arrays[name] = value
        elif _is_scalar(value):
            scalars[name] = value
        else:
            raise TypeError(
                f"get_state does not know whether {type(learner).__name__}.{name} ({type(value).__name__}) is run "
                f"state: list it in sparse_rtrl.checkpoint._CONSTANT if it is fixed at construction"
            )
    return config, arrays, scalars, generators


def _learner_state(learner):
    config, arrays, scalars, generators = _learner_parts(learner)
    return {
        "kind": "learner",
        "type": _type_name(learner),
        "config": config,
        "arrays": {k: v.copy() for k, v in arrays.items()},
        "scalars": dict(scalars),
        "generators": {k: _generator_state(g) for k, g in generators.items()},
    }


def _set_learner_state(learner, state):
    _check_kind(state, "learner", learner)
    _require(state, ("arrays", "scalars", "generators"), "a learner")
    config, arrays, scalars, generators = _learner_parts(learner)
    _check_config(state, config, learner)
    resizable = _by_class(_RESIZABLE, learner)
    for section, mine in (("arrays", arrays), ("scalars", scalars), ("generators", generators)):
        saved = state[section]
        if not isinstance(saved, dict):
            raise ValueError(f"state[{section!r}] must be a dict, got {type(saved).__name__}")
        if set(saved) != set(mine):
            missing, extra = sorted(set(mine) - set(saved)), sorted(set(saved) - set(mine))
            raise ValueError(f"state[{section!r}] does not match this {type(learner).__name__}: "
                             f"missing {missing}, unknown {extra}")
    for name, current in arrays.items():
        _check_array(state["arrays"][name], current, name, name in resizable)
    for name, current in scalars.items():
        saved = state["scalars"][name]
        if type(saved) is not type(current):
            raise ValueError(f"state entry {name!r} is a {type(saved).__name__}, this learner's is a "
                             f"{type(current).__name__}")
    for name, gen in generators.items():
        _check_generator(state["generators"][name], gen, name)
    problems = []
    for cls in type(learner).__mro__:
        check = _INVARIANTS.get(cls.__name__)
        if check is not None:
            problems.extend(check(state["arrays"], state["scalars"]))
    if problems:
        raise ValueError(f"state of {type(learner).__name__} is inconsistent: " + "; ".join(problems))
    # Everything checked: now write. Arrays in place (views of them stay valid),
    # unless the saved one has another length (a grown window).
    for name, current in arrays.items():
        saved = state["arrays"][name]
        if saved.shape == current.shape:
            np.copyto(current, saved)
        else:
            setattr(learner, name, np.array(saved, copy=True, order="C"))
    for name in scalars:
        setattr(learner, name, state["scalars"][name])
    for name, gen in generators.items():
        gen.bit_generator.state = _copy_tree(state["generators"][name]["bit_generator"])


# -- cells, readouts, optimizers, generators ------------------------------------

def _cell_state(cell):
    return {"kind": "cell", "type": _type_name(cell), "config": _cell_config(cell), "params": cell.params.copy()}


def _set_cell_state(cell, state):
    _check_kind(state, "cell", cell)
    _require(state, ("params",), "a cell")
    _check_config(state, _cell_config(cell), cell)
    _check_array(state["params"], cell.params, "params")
    np.copyto(cell.params, state["params"])


def _readout_config(readout):
    return {"n_out": readout.n_out, "loss": readout.loss, "feedback": readout.feedback,
            "n_hidden": readout.n_hidden, "n_state": readout.n_state, "dtype": _dtype_name(readout.dtype)}


def _readout_state(readout):
    state = {"kind": "readout", "type": _type_name(readout), "config": _readout_config(readout),
             "params": readout._params.copy(), "acc": readout._acc.copy()}
    if readout.feedback == "random":
        # The fixed random feedback matrix: drawn from the seed at construction, part of the model.
        state["feedback_weights"] = readout._feedback.copy()
    return state


def _set_readout_state(readout, state):
    _check_kind(state, "readout", readout)
    keys = ("params", "acc") + (("feedback_weights",) if readout.feedback == "random" else ())
    _require(state, keys, "a readout")
    _check_config(state, _readout_config(readout), readout)
    _check_array(state["params"], readout._params, "params")
    _check_array(state["acc"], readout._acc, "acc")
    if readout.feedback == "random":
        _check_array(state["feedback_weights"], readout._feedback, "feedback_weights")
    np.copyto(readout._params, state["params"])
    np.copyto(readout._acc, state["acc"])
    if readout.feedback == "random":
        feedback = np.array(state["feedback_weights"], copy=True, order="C")
        feedback.flags.writeable = False
        readout._feedback = feedback


def _optimizer_hyper_names(opt):
    names = [p for p in inspect.signature(type(opt).__init__).parameters if p not in ("self", "params")]
    for name in names:
        if not hasattr(opt, name):
            raise TypeError(f"{type(opt).__name__} keeps no attribute {name!r} for its argument of that name")
    return names


def _optimizer_state(opt):
    return {
        "kind": "optimizer",
        "type": _type_name(opt),
        "config": {"n_params": len(opt.params),
                   "shapes": [[int(d) for d in p.shape] for p in opt.params],
                   "dtypes": [_dtype_name(p.dtype) for p in opt.params]},
        "hyperparameters": {name: getattr(opt, name) for name in _optimizer_hyper_names(opt)},
        "n_updates": int(opt.n_updates),
        "slots": [[s.copy() for s in slots] for slots in opt._state],
    }


def _set_optimizer_state(opt, state):
    _check_kind(state, "optimizer", opt)
    _require(state, ("hyperparameters", "n_updates", "slots"), "an optimizer")
    mine = _optimizer_state(opt)
    _check_config(state, mine["config"], opt)
    hyper = state["hyperparameters"]
    if not isinstance(hyper, dict) or set(hyper) != set(mine["hyperparameters"]):
        raise ValueError(f"state['hyperparameters'] must name {sorted(mine['hyperparameters'])}")
    # The constructor's checks, on a throwaway optimizer, validate the saved hyperparameters.
    type(opt)([np.zeros(1)], **hyper)
    n_updates = state["n_updates"]
    if isinstance(n_updates, (bool, np.bool_)) or not isinstance(n_updates, (int, np.integer)) or n_updates < 0:
        raise ValueError(f"state['n_updates'] must be an integer >= 0, got {n_updates!r}")
    slots = state["slots"]
    if not isinstance(slots, list) or len(slots) != len(opt._state):
        raise ValueError(f"state['slots'] must list {len(opt._state)} parameter arrays' slots")
    for k, (saved, current) in enumerate(zip(slots, opt._state)):
        if not isinstance(saved, list) or len(saved) != len(current):
            raise ValueError(f"state['slots'][{k}] must hold {len(current)} arrays")
        for j, (s, c) in enumerate(zip(saved, current)):
            _check_array(s, c, f"slots[{k}][{j}]")
    for saved, current in zip(slots, opt._state):
        for s, c in zip(saved, current):
            np.copyto(c, s)
    for name, value in hyper.items():
        setattr(opt, name, value)
    opt.n_updates = int(n_updates)


def _set_generator_state(gen, state):
    _require(state, ("kind", "bit_generator"), "a Generator")
    if state["kind"] != "generator":
        raise ValueError(f"state is the state of a {state['kind']}, not of a generator")
    _check_generator(state, gen, "bit_generator")
    gen.bit_generator.state = _copy_tree(state["bit_generator"])


def get_state(obj):
    """The run state of a library object, as a tree :func:`save` can write.

    Parameters
    ----------
    obj : Learner, Cell, LinearReadout, Optimizer or numpy.random.Generator

    Returns
    -------
    dict
        ``kind``, ``type`` and ``config`` (what must match to load it back),
        and the state proper, copied (the object may run on without changing
        it):

        - learner: every mutable attribute (see the module docstring):
          ``arrays``, ``scalars`` and ``generators`` (bit-generator states);
        - cell: ``params``;
        - readout: ``params``, the gradient accumulator ``acc`` and, with
          ``feedback="random"``, the fixed ``feedback_weights``;
        - optimizer: ``hyperparameters`` (``lr``, ...), ``n_updates`` and the
          per-parameter ``slots`` (momentum, Adam's moments); the parameter
          arrays themselves belong to their cell and readout;
        - Generator: ``bit_generator``, its ``bit_generator.state``.
    """
    from ..cells import Cell
    from ..learners.base import Learner
    from .optim import Optimizer
    from .readouts import LinearReadout

    if isinstance(obj, Learner):
        return _learner_state(obj)
    if isinstance(obj, Cell):
        return _cell_state(obj)
    if isinstance(obj, LinearReadout):
        return _readout_state(obj)
    if isinstance(obj, Optimizer):
        return _optimizer_state(obj)
    if isinstance(obj, np.random.Generator):
        return {"kind": "generator", "type": "numpy.random.Generator", **_generator_state(obj)}
    raise TypeError(f"obj must be a Learner, Cell, LinearReadout, Optimizer or numpy Generator, "
                    f"got {type(obj).__name__}")


def set_state(obj, state):
    """Load a state from :func:`get_state` (or :func:`load`) into ``obj``.

    Parameters
    ----------
    obj : Learner, Cell, LinearReadout, Optimizer or numpy.random.Generator
        Built as the saved object was (same class, cell sizes and pattern,
        batch size, dtype and settings); for a learner, on a cell that gets
        its own state restored too.
    state : dict

    Raises
    ------
    ValueError
        The state is of another kind or class, or its config differs (the
        message names each difference: cell type, sizes, pattern, dtype,
        batch size, truncation, ...), or an entry is missing, unknown, or of
        the wrong dtype or shape. Everything is checked before anything is
        written, so a refused state leaves ``obj`` unchanged.

    Notes
    -----
    Arrays are written into the object's own arrays, so views of them (a
    cell's weight matrices, an optimiser's list of parameters) stay valid;
    an array a learner reallocates as it runs (BPTT's window) is replaced
    when its saved length differs. A Generator is set in place: objects
    sharing it (one passed as ``seed=``) see the restored position.
    An optimiser takes the saved hyperparameters (a schedule may have
    changed ``lr``).
    """
    from ..cells import Cell
    from ..learners.base import Learner
    from .optim import Optimizer
    from .readouts import LinearReadout

    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict (from get_state), got {type(state).__name__}")
    if isinstance(obj, Learner):
        return _set_learner_state(obj, state)
    if isinstance(obj, Cell):
        return _set_cell_state(obj, state)
    if isinstance(obj, LinearReadout):
        return _set_readout_state(obj, state)
    if isinstance(obj, Optimizer):
        return _set_optimizer_state(obj, state)
    if isinstance(obj, np.random.Generator):
        return _set_generator_state(obj, state)
    raise TypeError(f"obj must be a Learner, Cell, LinearReadout, Optimizer or numpy Generator, "
                    f"got {type(obj).__name__}")
