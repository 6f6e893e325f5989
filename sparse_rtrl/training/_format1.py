"""Checkpoints of format version 1, converted on load.

Version 1 (the library before its objects owned their state) stored each
object as ``{"kind", "type", "config", ...}`` with the class's module path in
``type`` and, for learners, the private attributes the object happened to
have (``arrays``, ``scalars``, ``generators`` sections). This module is the
one place that still knows those names: a frozen table per class, from the
public state fields of version 2 to the version-1 attribute that held each.
A version-1 record is converted to ``{"class", "format1", "state"}``, where
``format1`` is the version-1 config; ``checkpoint.set_state`` compares it
with :func:`config_of` the object, which computes what version 1 computed.
"""

import hashlib

import numpy as np


class Unconvertible(ValueError):
    """A version-1 record this module cannot convert."""


#: Version-1 type names -> class ids.
CLASS_IDS = {
    "sparse_rtrl.learners.RTRL": "learner/rtrl", "sparse_rtrl.learners.BPTT": "learner/bptt",
    "sparse_rtrl.learners.TBPTT": "learner/tbptt", "sparse_rtrl.learners.SnAp": "learner/snap",
    "sparse_rtrl.learners.UORO": "learner/uoro", "sparse_rtrl.kronecker.KFRTRL": "learner/kfrtrl",
    "sparse_rtrl.kronecker.RKFRTRL": "learner/rkfrtrl", "sparse_rtrl.local.RFLO": "learner/rflo",
    "sparse_rtrl.local.KeRNL": "learner/kernl", "sparse_rtrl.local.EProp": "learner/eprop",
    "sparse_rtrl.future.FutureBPTT": "learner/fbptt", "sparse_rtrl.future.DNI": "learner/dni",
    "sparse_rtrl.future.DNIb": "learner/dnib",
    "sparse_rtrl.cells.VanillaRNN": "cell/vanilla", "sparse_rtrl.cells.GRU": "cell/gru",
    "sparse_rtrl.cells.LSTM": "cell/lstm",
    "sparse_rtrl.readouts.LinearReadout": "readout/linear",
    "sparse_rtrl.optim.SGD": "optimizer/sgd", "sparse_rtrl.optim.Adam": "optimizer/adam",
}

_BASE = {"state": ("arrays", "_state"), "immediate_coef": ("arrays", "_coef"),
         "local_dynamics": ("arrays", "_dloc"), "presynaptic": ("arrays", "_presyn"),
         "accumulator": ("arrays", "_acc"), "n_steps": ("scalars", "n_steps")}
_INFLUENCE = {"influence": ("arrays", "_J"), "dynamics": ("arrays", "_dyn"), "pending": ("scalars", "_pending")}
_WINDOW = {"window_coef": ("arrays", "_coef_hist"), "window_local_dynamics": ("arrays", "_dloc_hist"),
           "window_presynaptic": ("arrays", "_z_hist"), "window_credit": ("arrays", "_c_hist"),
           "window_weights": ("arrays", "_theta_hist"), "window_weight_index": ("arrays", "_theta_idx"),
           "window_steps": ("scalars", "_w"), "credit_end": ("scalars", "_credit_end"),
           "n_weight_copies": ("scalars", "_n_snap")}
_KRONECKER = {"factor_a": ("arrays", "_A"), "factor_b": ("arrays", "_Bf"), "rng": ("generators", "_rng")}
_DNI = {"model": ("arrays", "_A"), "model_frozen": ("arrays", "_A_frozen"), "jacobian_model": ("arrays", "_J_hat"),
        "features": ("arrays", "_feat"), "features_previous": ("arrays", "_feat_prev"),
        "synthetic_credit": ("arrays", "_chat"), "credit": ("arrays", "_credit"), "model_error": ("arrays", "_err"),
        "step_weights": ("arrays", "_theta_step"), "model_updates": ("scalars", "_n_updates"),
        "has_loss": ("scalars", "_has_loss"), "chat_pending": ("scalars", "_pending_chat")}

#: Per learner: version-2 field -> (version-1 section, attribute).
LEARNER_FIELDS = {
    "learner/rtrl": {**_BASE, **_INFLUENCE},
    "learner/tbptt": {**_BASE, **_WINDOW},
    "learner/bptt": {**_BASE, **_WINDOW},
    "learner/snap": {**_BASE, **_INFLUENCE},
    "learner/eprop": {**_BASE, **_INFLUENCE},
    "learner/uoro": {**_BASE, "state_factor": ("arrays", "_u"), "param_factor": ("arrays", "_theta"),
                     "rng": ("generators", "_rng")},
    "learner/kfrtrl": {**_BASE, **_KRONECKER},
    "learner/rkfrtrl": {**_BASE, **_KRONECKER},
    "learner/rflo": {**_BASE, "trace": ("arrays", "_trace"), "pending": ("scalars", "_pending")},
    "learner/kernl": {**_BASE, "trace": ("arrays", "_trace"), "pending": ("scalars", "_pending"),
                      "sensitivity": ("arrays", "_A"), "decay_rates": ("arrays", "_gamma"),
                      "copy_state": ("arrays", "_copy"), "omega": ("arrays", "_omega"),
                      "omega_gamma_derivative": ("arrays", "_big_gamma"), "trace_decay": ("arrays", "_decay"),
                      "error": ("arrays", "_err"), "rng": ("generators", "_rng")},
    "learner/fbptt": {**_BASE, "window_coef": ("arrays", "_coef_hist"),
                      "window_local_dynamics": ("arrays", "_dloc_hist"), "window_presynaptic": ("arrays", "_z_hist"),
                      "window_credit": ("arrays", "_delta_hist"), "window_weights": ("arrays", "_theta_hist"),
                      "window_weight_index": ("arrays", "_theta_idx"), "newest": ("scalars", "_newest"),
                      "count": ("scalars", "_count"), "credit_pending": ("scalars", "_credit"),
                      "weight_copy": ("scalars", "_copy"), "flushed": ("scalars", "_flushed")},
    "learner/dni": {**_BASE, **_DNI},
    "learner/dnib": {**_BASE, **_DNI},
}

#: Per learner: the settings version 1 compared (its ``_CONFIG`` table, inherited along its classes).
LEARNER_CONFIG = {
    "learner/rtrl": (), "learner/tbptt": ("truncation",), "learner/bptt": ("truncation",), "learner/snap": ("n",),
    "learner/eprop": ("n",), "learner/uoro": ("eps",), "learner/kfrtrl": ("eps",), "learner/rkfrtrl": ("eps",),
    "learner/rflo": (), "learner/kernl": ("lr", "sigma", "_step"), "learner/fbptt": ("truncation",),
    "learner/dni": ("lr", "fix_interval", "jacobian", "jacobian_lr", "_lr", "_jacobian_lr"),
    "learner/dnib": ("lr", "fix_interval", "jacobian", "jacobian_lr", "_lr", "_jacobian_lr"),
}

#: The fields of version 1's CellStructure, which its structure digest hashed.
STRUCTURE_FIELDS = ("n_in", "n_hidden", "n_state", "n_params", "n_gates", "n_presyn", "dynamics", "param_unit",
                    "param_gate", "param_src", "gate_touch", "local_touch", "n_rec_params", "dyn_local_entry",
                    "dyn_contrib_param", "dyn_contrib_row", "dyn_contrib_entry", "seg_ptr", "seg_unit", "seg_gate",
                    "n_rec_segments")


def upgrade(tree):
    """A version-1 tree with every object record converted (other nodes as they are)."""
    if isinstance(tree, dict):
        if "kind" in tree and "type" in tree and tree.get("kind") in (
                "learner", "cell", "readout", "optimizer", "generator"):
            return _convert(tree)
        return {k: upgrade(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [upgrade(v) for v in tree]
    return tree


def _need(record, keys, what):
    missing = [k for k in keys if k not in record]
    if missing:
        raise Unconvertible(f"the state of {what} lacks {missing}")


def _convert(record):
    kind, type_name = record["kind"], record["type"]
    if kind == "generator":
        _need(record, ("bit_generator",), "a generator")
        return {"class": "numpy.random.Generator", "identity": {}, "state": {"bit_generator": record["bit_generator"]}}
    class_id = CLASS_IDS.get(type_name)
    if class_id is None:
        raise Unconvertible(f"a {kind} state of type {type_name!r} cannot be converted to this version's format "
                            f"(version 1 records of the library's own classes can)")
    _need(record, ("config",), type_name)
    out = {"class": class_id, "format1": record["config"]}
    if kind == "cell":
        _need(record, ("params",), type_name)
        out["state"] = {"params": record["params"]}
    elif kind == "readout":
        _need(record, ("params", "acc"), type_name)
        out["state"] = {"params": record["params"], "accumulator": record["acc"]}
        if "feedback_weights" in record:
            out["state"]["feedback_weights"] = record["feedback_weights"]
    elif kind == "optimizer":
        _need(record, ("hyperparameters", "n_updates", "slots"), type_name)
        names = ("velocity",) if class_id == "optimizer/sgd" else ("mu", "nu")
        slots = record["slots"]
        if not isinstance(slots, list) or any(not isinstance(s, list) or len(s) != len(names) for s in slots):
            raise Unconvertible(f"the slots of {type_name} are not {len(names)} arrays per parameter array")
        out["state"] = {"hyperparameters": record["hyperparameters"], "n_updates": record["n_updates"],
                        **{name: [s[k] for s in slots] for k, name in enumerate(names)}}
    else:
        _need(record, ("arrays", "scalars", "generators"), type_name)
        state = {}
        for field, (section, attr) in LEARNER_FIELDS[class_id].items():
            if not isinstance(record[section], dict) or attr not in record[section]:
                raise Unconvertible(f"the state of {type_name} lacks {section}[{attr!r}]")
            state[field] = record[section][attr]
        out["state"] = state
    return out


# -- what version 1 compared ------------------------------------------------------------

def _structure_digest(cell):
    h = hashlib.sha256()
    st = cell.structure
    for name in sorted(STRUCTURE_FIELDS):
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
    config = {"type": type(cell).__name__, "n_in": int(cell.n_in), "n_hidden": int(cell.n_hidden),
              "n_state": int(cell.n_state), "n_params": int(cell.n_params), "dtype": np.dtype(cell.dtype).name,
              "structure": _structure_digest(cell)}
    if cell.key == "vanilla":
        config["alpha"] = float(cell.alpha)
        config["activation"] = cell.activation
    elif cell.key in ("gru", "lstm"):
        config["shared_pattern"] = cell.shared_pattern
    return config


def _learner_setting(learner, name):
    dt = learner.cell.dtype.type
    if name == "_step":
        return dt(learner.lr / learner.sigma ** 2)
    if name == "_lr":
        return dt(learner.lr)
    if name == "_jacobian_lr":
        return dt(learner.jacobian_lr)
    return getattr(learner, name, None)  # BPTT had truncation = None


def config_of(obj):
    """The config version 1 recorded for an object like ``obj``."""
    from ..cells import Cell
    from ..learners.base import Learner
    from ..registry import class_id
    from .optim import Optimizer
    from .readouts import LinearReadout

    if isinstance(obj, Cell):
        return _cell_config(obj)
    if isinstance(obj, Learner):
        config = {"cell": _cell_config(obj.cell), "batch_size": obj.batch_size}
        for name in LEARNER_CONFIG.get(class_id(type(obj)), ()):
            config[name] = _learner_setting(obj, name)
        return config
    if isinstance(obj, LinearReadout):
        return {"n_out": obj.n_out, "loss": obj.loss, "feedback": obj.feedback, "n_hidden": obj.n_hidden,
                "n_state": obj.n_state, "dtype": np.dtype(obj.dtype).name}
    if isinstance(obj, Optimizer):
        return {"n_params": len(obj.params), "shapes": [[int(d) for d in p.shape] for p in obj.params],
                "dtypes": [np.dtype(p.dtype).name for p in obj.params]}
    raise Unconvertible(f"version 1 had no {type(obj).__name__}")
