"""Recurrent cells with CSR-sparse weights: VanillaRNN, GRU and LSTM, and the contract for your own.

A cell maps a state and an input to the next state, ``s_t = f(s_{t-1}, x_t)``.
All of its trainable numbers live in one flat vector, ``cell.params``; every
weight matrix is a CSR matrix whose ``data`` is a view into that vector, so
an optimiser that writes into ``cell.params`` changes the cell.

Besides the step, a cell gives learners the two Jacobians they need, on fixed
sparse patterns and without ever forming a dense matrix:

- the immediate Jacobian ``I_t = ds_t/dtheta`` (``S x P``) in factored form:
  parameter ``p`` (gate ``g``, unit ``i``, presynaptic index ``j``) has
  ``I[k, p] = coef[k, g] * z[j]`` for each state ``k`` of unit ``i`` that its
  gate touches, where ``z = [h_{t-1}; x_t; 1]``;
- the dynamics Jacobian ``D_t = ds_t/ds_{t-1}`` (``S x S``), also factored:
  a pre-activation depends on ``h_j`` only through its weight, so
  ``D = D_local + sum over recurrent parameters p of coef[k, g] theta_p`` at
  ``(k, j)``, where ``D_local`` (the leak, the GRU's ``z h``, the LSTM's
  ``f c``) is a small block per unit. Its structure, ``cell.structure.dynamics``,
  follows from the patterns; learners that need its values form them on that
  pattern (or on the part they use).

Building a cell from your own matrices
--------------------------------------
``pattern=`` takes a ``scipy.sparse`` matrix (or a :class:`Pattern`) that
fixes which recurrent entries exist; values are drawn at random. For a gated
cell it may also be a dict naming each matrix (``{"W_hr": ..., "W_ii": ...}``).
Only the matrix's structure is used, not its values or dtype: the cell's
dtype is ``dtype=`` (float64 unless you ask). ``Cell.from_weights({...})``
takes both pattern and values from your matrices (``scipy.sparse`` for sparse
ones, numpy arrays for dense ones and biases), and its dtype from theirs
unless you pass ``dtype=``: float32 matrices give a float32 cell, and
``cell.weights[name].to_scipy()`` gives them back in that dtype.

Writing a cell of your own
--------------------------
Subclass :class:`Cell` and define the hooks it marks abstract: the weights
(``weight_specs``), which states each gate touches (``gate_touch``), the
unit-local part of ``D`` (``local_touch``), the arrays the compiled step reads
(``make_kernel_args``) and the compiled step itself (``kernel``); call
``self._build(...)`` from ``__init__``. The step's contract is in
``_cell_kernels``; ``sparse_rtrl.cellkit`` has the helpers the built-in cells
use. ``gradcheck(cell)`` then checks the Jacobians against finite
differences, and every learner that is not restricted to a cell type runs on
it. ``examples/minimal_gated_unit.py`` is a whole cell in one file.
"""

import abc
import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from ._validate import check_dtype, check_float, check_int, check_real_array, check_seed
from .patterns import Pattern
from .registry import Registered
from .state import Stateful

__all__ = ["GRU", "LSTM", "Cell", "CellStructure", "DynamicsPlan", "Jacobians", "Segments", "SparseWeight",
           "VanillaRNN", "WeightSpec"]


class SparseWeight:
    """A CSR weight matrix whose values are a writable view into ``cell.params``.

    Attributes
    ----------
    pattern : Pattern
        Which entries are stored (fixed).
    data : ndarray
        Stored values in CSR order; writing into it changes the cell.
    """

    __slots__ = ("pattern", "data")

    def __init__(self, pattern, data):
        self.pattern = pattern
        self.data = data

    @property
    def shape(self):
        return self.pattern.shape

    @property
    def indptr(self):
        return self.pattern.indptr

    @property
    def indices(self):
        return self.pattern.indices

    @property
    def nnz(self):
        return self.pattern.nnz

    def toarray(self):
        """Dense copy, zeros off the pattern."""
        out = np.zeros(self.shape, dtype=self.data.dtype)
        out[self.pattern.rows(), self.pattern.indices] = self.data
        return out

    def to_scipy(self):
        """``scipy.sparse.csr_matrix`` copy."""
        return self.pattern.to_scipy(self.data)

    def __repr__(self):
        return f"SparseWeight(shape={self.shape}, nnz={self.nnz}, dtype={self.data.dtype})"


class Segments(NamedTuple):
    """The parameters in row segments, as kernels read them (see ``CellStructure``)."""

    seg_ptr: np.ndarray  # int64 (n_segments + 1,)
    seg_unit: np.ndarray  # int32 (n_segments,)
    seg_gate: np.ndarray  # int32 (n_segments,)
    src: np.ndarray  # uint32 (P,): presynaptic index of each parameter
    touch: np.ndarray  # bool (n_gates, m)
    n: np.int64  # hidden units
    n_rec_seg: np.int64  # recurrent segments (a prefix)


class DynamicsPlan(NamedTuple):
    """Index plan that forms the values of ``D`` (``learners._base_kernels.form_dynamics``).

    Contribution ``t`` of run ``u`` adds ``coef[run_row[u], run_gate[u]] *
    theta[run_param[u] + t - run_ptr[u]]`` to entry ``run_entry[t]``; the
    unit-local entries come from ``local_entry``.
    """

    run_row: np.ndarray
    run_gate: np.ndarray
    run_param: np.ndarray
    run_ptr: np.ndarray
    run_entry: np.ndarray
    local_entry: np.ndarray


@dataclass(frozen=True, eq=False)
class CellStructure:
    """What a learner needs to know about a cell's Jacobians, fixed at construction.

    Attributes
    ----------
    n_in, n_hidden, n_state, n_params, n_gates, n_presyn : int
        Sizes; ``n_state`` is ``S``, ``n_params`` is ``P``, ``n_presyn`` the
        length of the presynaptic vector ``z = [h; x; 1]``.
    dynamics : Pattern
        ``S x S`` structure of ``D_t`` (always includes the diagonal).
    param_unit, param_gate, param_src : int32 arrays, shape (P,)
        For each parameter: the unit (row) it enters, its gate, and its index
        into ``z``.
    gate_touch : bool array, shape (n_gates, m)
        ``gate_touch[g, a]`` is True when gate ``g``'s parameters of unit ``i``
        directly change state ``i + a * n_hidden`` (``m = S // n_hidden``).
    local_touch : bool array, shape (m, m)
        ``local_touch[a, c]``: state ``i + a n`` depends on ``i + c n`` directly,
        not through a weight (the structure of ``D_local``).
    n_rec_params : int
        The recurrent weights (presynaptic index ``< n_hidden``) are the first
        ``n_rec_params`` parameters.
    dyn_local_entry : int32 array, shape (n_hidden, m, m)
        Position in ``dynamics`` of each local entry (-1 where not structural).
    dyn_contrib_param, dyn_contrib_row, dyn_contrib_entry : int32 arrays
        One row per (recurrent parameter ``p``, touched state ``k``): ``D`` at
        entry ``e`` receives ``coef[k, gate[p]] * theta[p]``.
    seg_ptr, seg_unit, seg_gate : arrays
        Row segments: parameters ``seg_ptr[s]:seg_ptr[s+1]`` are one row of one
        weight matrix, all entering unit ``seg_unit[s]`` through gate
        ``seg_gate[s]``. Per-parameter kernels loop over segments so that they
        read one index (``param_src``) per parameter. Recurrent rows come
        first: the first ``n_rec_segments`` segments.
    """

    n_in: int
    n_hidden: int
    n_state: int
    n_params: int
    n_gates: int
    n_presyn: int
    dynamics: Pattern
    param_unit: np.ndarray
    param_gate: np.ndarray
    param_src: np.ndarray
    gate_touch: np.ndarray
    local_touch: np.ndarray
    n_rec_params: int
    dyn_local_entry: np.ndarray
    dyn_contrib_param: np.ndarray
    dyn_contrib_row: np.ndarray
    dyn_contrib_entry: np.ndarray
    seg_ptr: np.ndarray
    seg_unit: np.ndarray
    seg_gate: np.ndarray
    n_rec_segments: int

    @property
    def n_local(self):
        return self.gate_touch.shape[1]

    @cached_property
    def segments(self):
        """The row segments as kernels take them (:class:`Segments`), built once."""
        return Segments(self.seg_ptr, self.seg_unit, self.seg_gate, self.param_src.view(np.uint32),
                        self.gate_touch, np.int64(self.n_hidden), np.int64(self.n_rec_segments))

    def dynamics_plan(self, entries=None):
        """Index plan that forms the values of ``D`` (:class:`DynamicsPlan`).

        Parameters
        ----------
        entries : array of int, optional
            Positions in ``dynamics`` to form; default all. Learners that read
            only part of ``D`` (SnAp) form only that part.
        """
        c_param = self.dyn_contrib_param.astype(np.int64)
        c_row = self.dyn_contrib_row.astype(np.int64)
        c_entry = self.dyn_contrib_entry
        if entries is not None:
            keep = np.isin(c_entry, entries)
            c_param, c_row, c_entry = c_param[keep], c_row[keep], c_entry[keep]
        order = np.lexsort((c_param, c_row))
        c_param, c_row, c_entry = c_param[order], c_row[order], c_entry[order]
        gate = self.param_gate[c_param]
        brk = np.ones(c_param.shape[0], dtype=bool)
        if c_param.shape[0] > 1:
            brk[1:] = (np.diff(c_param) != 1) | (np.diff(c_row) != 0) | (np.diff(gate) != 0)
        starts = np.flatnonzero(brk)
        run_ptr = np.append(starts, c_param.shape[0]).astype(np.int64)
        return DynamicsPlan(c_row[starts].astype(np.int32), gate[starts].astype(np.int32),
                            c_param[starts].astype(np.int64), run_ptr, c_entry.astype(np.int32),
                            self.dyn_local_entry)

    def immediate_pattern(self):
        """``S x P`` structure of the immediate Jacobian ``I_t``."""
        rows, cols = [], []
        params = np.arange(self.n_params, dtype=np.int64)
        for m in range(self.gate_touch.shape[1]):
            hit = self.gate_touch[self.param_gate, m]
            rows.append(self.param_unit[hit].astype(np.int64) + m * self.n_hidden)
            cols.append(params[hit])
        rows = np.concatenate(rows)
        cols = np.concatenate(cols)
        order = np.lexsort((cols, rows))
        indptr = np.zeros(self.n_state + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=self.n_state), out=indptr[1:])
        return Pattern(indptr, cols[order], (self.n_state, self.n_params))


class Jacobians(NamedTuple):
    """Result of :meth:`Cell.jacobians`."""

    state: np.ndarray
    dynamics: object  # scipy.sparse.csr_matrix, S x S
    immediate: object  # scipy.sparse.csr_matrix, S x P


@dataclass(frozen=True)
class WeightSpec:
    """One weight of a cell: its name, the gate it feeds, and its source.

    ``source`` is ``"h"`` (recurrent, ``n x n``), ``"x"`` (input,
    ``n x n_in``) or ``"1"`` (bias, ``n``). Recurrent weights come first in a
    cell's parameter order.
    """

    name: str
    gate: int
    source: str


def _as_pattern(value, shape, name):
    if isinstance(value, Pattern):
        pat = value
    else:
        pat = Pattern.from_scipy(value, name=name)
    if pat.shape != shape:
        raise ValueError(f"pattern for {name} must have shape {shape}, got {pat.shape}")
    return pat


def _dynamics_structure(n, unit, gate, src, touch, local):
    """Pattern of D and the index plan that forms its values (see CellStructure)."""
    m = touch.shape[1]
    S = n * m
    params = np.arange(unit.shape[0], dtype=np.int64)
    c_param, c_row, c_col = [], [], []
    for a in range(m):
        hit = touch[gate, a]
        c_param.append(params[hit])
        c_row.append(unit[hit].astype(np.int64) + a * n)
        c_col.append(src[hit].astype(np.int64))
    c_param = np.concatenate(c_param)
    c_row = np.concatenate(c_row)
    c_col = np.concatenate(c_col)
    units = np.arange(n, dtype=np.int64)
    loc_rows, loc_cols = [], []
    for a in range(m):
        for c in range(m):
            if local[a, c]:
                loc_rows.append(units + a * n)
                loc_cols.append(units + c * n)
    diag = np.arange(S, dtype=np.int64)
    keys = [c_row * S + c_col, diag * S + diag] + [r * S + c for r, c in zip(loc_rows, loc_cols)]
    all_keys = np.unique(np.concatenate(keys))
    indptr = np.zeros(S + 1, dtype=np.int64)
    np.cumsum(np.bincount(all_keys // S, minlength=S), out=indptr[1:])
    local_entry = np.full((n, m, m), -1, dtype=np.int32)
    for a in range(m):
        for c in range(m):
            if local[a, c]:
                local_entry[:, a, c] = np.searchsorted(all_keys, (units + a * n) * S + units + c * n)
    order = np.argsort(c_param, kind="stable")
    return {
        "dynamics": Pattern(indptr, all_keys % S, (S, S)),
        "dyn_local_entry": local_entry,
        "dyn_contrib_param": c_param[order].astype(np.int32),
        "dyn_contrib_row": c_row[order].astype(np.int32),
        "dyn_contrib_entry": np.searchsorted(all_keys, (c_row * S + c_col)[order]).astype(np.int32),
    }


class Cell(Stateful, Registered, abc.ABC):
    """Base class of the recurrent cells.

    A cell class defines the hooks marked abstract below, calls
    :meth:`_build` from its ``__init__``, and joins the cell table with a key
    (``class MyCell(Cell, key="mycell")``; optional). See the module docstring.

    Attributes
    ----------
    n_in, n_hidden, n_state, n_params : int
    dtype : numpy.dtype
    params : ndarray, shape (P,)
        The flat parameter vector (writable; every weight is a view into it).
    weights : dict
        Name -> :class:`SparseWeight` (matrices) or 1-D view (biases).
    structure : CellStructure
    """

    _family = "cell"
    _built_on = ("pattern",)
    _state_fields = {"params": "_params"}
    #: Names of the gates, in the order of the columns of ``coef``.
    gate_names = ()
    #: States per unit (``S = n_state_per_unit * n_hidden``): 1, or 2 for the LSTM's ``[h; c]``.
    n_state_per_unit = 1

    # -- the hooks a cell defines -----------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def weight_specs(cls):
        """The weights, in parameter order (recurrent ones first): a list of :class:`WeightSpec`."""

    @abc.abstractmethod
    def gate_touch(self):
        """``touch[g][a]``: gate ``g``'s parameters of unit ``i`` change state ``i + a n`` directly.

        A list of ``len(gate_names)`` lists of ``n_state_per_unit`` booleans.
        """

    @abc.abstractmethod
    def local_touch(self):
        """``local[a][c]``: state ``i + a n`` depends on ``i + c n`` directly, not through a weight.

        An ``m x m`` list of booleans (``m = n_state_per_unit``): the structure
        of the unit-local block of ``D`` that the kernel writes into ``dloc``.
        """

    @abc.abstractmethod
    def make_kernel_args(self):
        """The arrays and scalars the compiled step reads, as one NamedTuple (``_build`` keeps it as
        ``self.kernel_args``).

        Weight matrices enter through :meth:`_matrix_arg`, flattened into the
        tuple (numba's parallel loops do not take nested tuples of arrays).
        """

    @property
    @abc.abstractmethod
    def kernel(self):
        """The compiled step, ``kernel(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians)``
        (see ``_cell_kernels``)."""

    @property
    def kernel_par(self):
        """The step with the streams of a batch spread over the cores; by default the serial one."""
        return self.kernel

    # -- construction -------------------------------------------------------------------
    def _build(self, n_in, n_hidden, density, seed, dtype, input_density, pattern, shared_pattern):
        """Validate the sizes, draw or take the patterns, lay out the parameters, build the structure."""
        rng = self._check_settings(n_in, n_hidden, density, seed, dtype, input_density, pattern, shared_pattern)
        specs = self.weight_specs()
        self._specs_list = specs
        self._patterns = self._draw_patterns(specs, pattern, rng)
        offsets = self._lay_out_params(specs)
        self.structure = self._build_structure(specs, offsets)
        self._init_values(rng)
        self.kernel_args = self.make_kernel_args()

    def _check_settings(self, n_in, n_hidden, density, seed, dtype, input_density, pattern, shared_pattern):
        self.n_in = check_int(n_in, "n_in", minimum=1)
        self.n_hidden = check_int(n_hidden, "n_hidden", minimum=1)
        self.dtype = check_dtype(dtype)
        seed = check_seed(seed)
        if pattern is not None and density is not None:
            raise ValueError("give either density or pattern, not both")
        density = 1.0 if density is None else check_float(density, "density", 0.0, 1.0, low_open=True)
        input_density = check_float(input_density, "input_density", 0.0, 1.0, low_open=True)
        if not isinstance(shared_pattern, (bool, np.bool_)):
            raise TypeError(f"shared_pattern must be a bool, got {shared_pattern!r}")
        self.seed = seed if not isinstance(seed, np.random.Generator) else None
        self.n_state = self.n_state_per_unit * self.n_hidden
        self.density = density
        self.input_density = input_density
        self.shared_pattern = bool(shared_pattern)
        return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def _weight_shape(self, spec):
        n = self.n_hidden
        return (n, n) if spec.source == "h" else (n, self.n_in) if spec.source == "x" else (n, 1)

    def _draw_patterns(self, specs, pattern, rng):
        """Each weight's pattern: given, or drawn at its density (shared by a source when asked)."""
        given = {}
        if pattern is not None:
            if isinstance(pattern, dict):
                unknown = set(pattern) - {s.name for s in specs if s.source != "1"}
                if unknown:
                    raise ValueError(
                        f"pattern names {sorted(unknown)} are not weight matrices of {type(self).__name__}; "
                        f"its matrices are {[s.name for s in specs if s.source != '1']}"
                    )
                given = {k: _as_pattern(v, self._weight_shape(next(s for s in specs if s.name == k)), k)
                         for k, v in pattern.items()}
            else:
                for s in specs:
                    if s.source == "h":
                        given[s.name] = _as_pattern(pattern, self._weight_shape(s), "pattern")
        patterns, shared = {}, {}
        for s in specs:
            if s.name in given:
                patterns[s.name] = given[s.name]
            elif s.source == "1":
                patterns[s.name] = Pattern.dense((self.n_hidden, 1))
            else:
                dens = self.density if s.source == "h" else self.input_density
                if self.shared_pattern and s.source in shared:
                    patterns[s.name] = shared[s.source]
                else:
                    patterns[s.name] = Pattern.random(self._weight_shape(s), dens, rng)
                    shared[s.source] = patterns[s.name]
        return patterns

    def _lay_out_params(self, specs):
        """The flat parameter vector, in spec order; each weight a view into it. Returns the offsets."""
        sizes = [self._patterns[s.name].nnz for s in specs]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_params = int(offsets[-1])
        self._params = np.zeros(self.n_params, dtype=self.dtype)
        self.weight_names = tuple(s.name for s in specs)
        self.weights = {}
        self._slices = {}
        for s, lo, hi in zip(specs, offsets[:-1], offsets[1:]):
            view = self._params[lo:hi]
            self._slices[s.name] = slice(int(lo), int(hi))
            self.weights[s.name] = view if s.source == "1" else SparseWeight(self._patterns[s.name], view)
        return offsets

    def _build_structure(self, specs, offsets):
        """Per-parameter metadata, row segments and the structure of ``D`` (a read-only CellStructure)."""
        base = {"h": 0, "x": self.n_hidden, "1": self.n_hidden + self.n_in}
        unit, gate, src = [], [], []
        seg_ptr, seg_unit, seg_gate = [np.zeros(1, np.int64)], [], []
        n_rec_seg = 0
        for s, lo in zip(specs, offsets[:-1]):
            pat = self._patterns[s.name]
            unit.append(pat.rows())
            gate.append(np.full(pat.nnz, s.gate, dtype=np.int32))
            src.append(pat.indices.astype(np.int32) + base[s.source])
            seg_ptr.append(lo + pat.indptr[1:].astype(np.int64))
            seg_unit.append(np.arange(self.n_hidden, dtype=np.int32))
            seg_gate.append(np.full(self.n_hidden, s.gate, dtype=np.int32))
            if s.source == "h":
                n_rec_seg += self.n_hidden
        touch = np.array(self.gate_touch(), dtype=bool)
        local = np.array(self.local_touch(), dtype=bool)
        m = self.n_state_per_unit
        if touch.shape != (len(self.gate_names), m) or local.shape != (m, m):
            raise TypeError(f"{type(self).__name__}: gate_touch() must be {len(self.gate_names)} x {m} and "
                            f"local_touch() {m} x {m} (gates x states per unit), got {touch.shape} and "
                            f"{local.shape}")
        param_unit = np.concatenate(unit).astype(np.int32)
        param_gate = np.concatenate(gate)
        param_src = np.concatenate(src)
        n_rec = int(np.count_nonzero(param_src < self.n_hidden))
        if not np.all(param_src[:n_rec] < self.n_hidden):
            raise TypeError(f"{type(self).__name__}: recurrent weights must come first in weight_specs()")
        dyn = _dynamics_structure(self.n_hidden, param_unit[:n_rec], param_gate[:n_rec],
                                  param_src[:n_rec], touch, local)
        structure = CellStructure(
            n_in=self.n_in, n_hidden=self.n_hidden, n_state=self.n_state, n_params=self.n_params,
            n_gates=len(self.gate_names), n_presyn=self.n_hidden + self.n_in + 1,
            param_unit=param_unit, param_gate=param_gate, param_src=param_src,
            gate_touch=touch, local_touch=local, n_rec_params=n_rec,
            seg_ptr=np.concatenate(seg_ptr), seg_unit=np.concatenate(seg_unit), seg_gate=np.concatenate(seg_gate),
            n_rec_segments=n_rec_seg, **dyn,
        )
        for value in vars(structure).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
        return structure

    def _init_values(self, rng):
        """Recurrent and input weights ~ N(0, 1/k) with k the mean stored entries per row; biases 0."""
        for s in self._specs_list:
            if s.source == "1":
                continue
            w = self.weights[s.name]
            fan = max(1.0, w.nnz / self.n_hidden)
            w.data[:] = rng.normal(0.0, 1.0 / np.sqrt(fan), size=w.nnz)

    def _shared_flag(self, *names):
        """``True`` if the named matrices share one pattern (the kernel then
        reads the pattern once for all of them), else ``None``: a flag whose
        type, not value, tells the kernel (see ``_cell_kernels.row_dot3``)."""
        first = self._patterns[names[0]]
        return True if all(self._patterns[k] == first for k in names[1:]) else None

    def _matrix_arg(self, name):
        """A weight matrix as the kernels take it: ``(indptr, indices, data)``
        with the column indices as an unsigned view (numba then skips
        negative-index wraparound on every gather: measured 20-25% faster),
        and ``data`` a 2-D view when the pattern is dense, so that the kernels
        choose a contiguous, vectorised row loop by type."""
        w = self.weights[name]
        data = w.data.reshape(w.shape) if w.nnz == w.shape[0] * w.shape[1] else w.data
        return (w.indptr, w.indices.view(np.uint32), data)

    # -- public API -------------------------------------------------------------
    @property
    def params(self):
        """The flat parameter vector (a writable array; weights are views into it)."""
        return self._params

    @params.setter
    def params(self, value):
        value = check_real_array(value, "params", (self.n_params,), self.dtype)
        self._params[:] = value

    @property
    def patterns(self):
        """Name -> :class:`Pattern` of every weight matrix (biases excluded)."""
        return {s.name: self._patterns[s.name] for s in self._specs_list if s.source != "1"}

    @property
    def n_presyn(self):
        return self.structure.n_presyn

    def init_state(self) -> np.ndarray:
        """Zero state of shape ``(S,)`` in the cell's dtype."""
        return np.zeros(self.n_state, dtype=self.dtype)

    def check_state_input(self, s, x):
        """``s`` and ``x`` validated as a batch: ``(s (B, S), x (B, n_in), batched)``."""
        s_arr = np.asarray(s)
        batched = s_arr.ndim == 2
        if batched:
            B = s_arr.shape[0]
            s = check_real_array(s, "s", (B, self.n_state), self.dtype)
            x = check_real_array(x, "x", (B, self.n_in), self.dtype)
        else:
            s = check_real_array(s, "s", (self.n_state,), self.dtype)[None]
            x = check_real_array(x, "x", (self.n_in,), self.dtype)[None]
        return s, x, batched

    def step(self, s, x) -> np.ndarray:
        """The next state ``f(s, x)``.

        Parameters
        ----------
        s : array_like, shape (S,) or (B, S)
        x : array_like, shape (n_in,) or (B, n_in)

        Returns
        -------
        ndarray of the same shape as ``s``, in the cell's dtype. Pure: neither
        the cell nor the arguments change.
        """
        s, x, batched = self.check_state_input(s, x)
        out = np.empty_like(s)
        dt = self.dtype
        self.kernel(
            self.kernel_args, s, x, out,
            np.empty((0, 0, 0), dt), np.empty((0, 0, 0, 0), dt), np.empty((0, 0), dt), False,
        )
        return out if batched else out[0]

    def advance(self, s_prev, x, s_next, coef, dloc, presyn, parallel=False, jacobians=True):
        """Low-level step for learner authors: no validation, batched buffers.

        Writes ``s_next`` (B, S) and, with ``jacobians`` (the default), ``coef``
        (B, S, n_gates), ``dloc`` (B, n_hidden, m, m) and ``presyn`` (B,
        n_presyn). All arrays must be C-contiguous and of the cell's dtype;
        see ``_cell_kernels``. With ``parallel=True`` the streams are spread
        over the cores (same result).
        """
        kernel = self.kernel_par if parallel else self.kernel
        kernel(self.kernel_args, s_prev, x, s_next, coef, dloc, presyn, jacobians)

    def jacobians(self, s, x) -> Jacobians:
        """The next state and both Jacobians at ``(s, x)``, as scipy CSR matrices.

        Returns
        -------
        Jacobians
            ``state`` (S,), ``dynamics`` (S x S, on ``structure.dynamics``) and
            ``immediate`` (S x P, on ``structure.immediate_pattern()``).
        """
        import scipy.sparse as sp

        from .learners._base_kernels import form_dynamics

        s, x, batched = self.check_state_input(s, x)
        if batched:
            raise ValueError("jacobians() takes one state of shape (S,), not a batch")
        st = self.structure
        out = np.empty_like(s)
        coef = np.empty((1, st.n_state, st.n_gates), self.dtype)
        dloc = np.empty((1, st.n_hidden, st.n_local, st.n_local), self.dtype)
        z = np.empty((1, st.n_presyn), self.dtype)
        self.advance(s, x, out, coef, dloc, z)
        dyn = np.zeros((1, st.dynamics.nnz), self.dtype)
        form_dynamics(self.params, coef, dloc, st.dynamics_plan(), dyn)
        D = st.dynamics.to_scipy(dyn[0])
        rows, cols, vals = [], [], []
        params = np.arange(st.n_params)
        for m in range(st.gate_touch.shape[1]):
            hit = st.gate_touch[st.param_gate, m]
            k = st.param_unit[hit].astype(np.int64) + m * st.n_hidden
            rows.append(k)
            cols.append(params[hit])
            vals.append(coef[0, k, st.param_gate[hit]] * z[0, st.param_src[hit]])
        I = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(st.n_state, st.n_params),
        )
        I.sort_indices()
        return Jacobians(out[0], D, I)

    def weight_slice(self, name):
        """The slice of ``params`` that holds weight ``name``."""
        if name not in self._slices:
            raise KeyError(f"{type(self).__name__} has no weight {name!r}; it has {list(self.weight_names)}")
        return self._slices[name]

    #: Settings that only decide the patterns (which ``structure_digest`` covers) or the initial values.
    _restored_settings = ("seed", "density", "input_density", "shared_pattern")

    def _identity(self):
        return {"config": self._compared_config(), "structure": self.structure_digest()}

    def structure_digest(self):
        """SHA-256 of what fixes the Jacobians' layout: the weights' names, order and patterns."""
        h = hashlib.sha256()
        h.update(f"{type(self).__name__} {self.n_in} {self.n_hidden} {self.n_state}".encode())
        for s in self._specs_list:
            pat = self._patterns[s.name]
            h.update(f"{s.name} {s.gate} {s.source} {pat.shape}".encode())
            h.update(np.ascontiguousarray(pat.indptr, np.int64).tobytes())
            h.update(np.ascontiguousarray(pat.indices, np.int64).tobytes())
        return h.hexdigest()

    def astype(self, dtype):
        """A copy of the cell with parameters cast to ``dtype`` (same patterns)."""
        config = {k: v for k, v in self.config().items() if k not in ("n_in", "n_hidden", "density", "seed")}
        new = type(self)(self.n_in, self.n_hidden, **dict(config, dtype=dtype, pattern=self.patterns))
        new.params[:] = self.params
        return new

    def copy(self):
        """An independent copy (same patterns, values and dtype)."""
        return self.astype(self.dtype)

    @classmethod
    def from_weights(cls, weights, dtype=None, **kwargs):
        """Build a cell whose patterns and values come from ``weights``.

        Parameters
        ----------
        weights : dict
            Every weight name of the cell (``cls.weight_names_for()``) mapped to
            a ``scipy.sparse`` matrix (its stored entries are the pattern), a
            2-D numpy array (dense) or, for biases, a 1-D array.
        dtype : float32 or float64, optional
            The cell's dtype. Default: the common float type of your arrays
            and matrices (``numpy.result_type``), so float32 weights give a
            float32 cell and a float64 one anywhere gives float64; float16
            becomes float32, and weights of which none is a float array give
            float64. A ``dtype`` you pass casts the values.
        **kwargs
            Other hyperparameters (e.g. ``alpha`` for VanillaRNN).

        Raises
        ------
        TypeError
            ``dtype`` is not float32 or float64, or is None and the weights are
            of a float type the cells do not compute in (longdouble): pass ``dtype``.
        """
        import scipy.sparse as sp

        if not isinstance(weights, dict):
            raise TypeError(f"weights must be a dict of name -> matrix, got {type(weights).__name__}")
        specs = cls.weight_specs()
        expected = [s.name for s in specs]
        missing = [k for k in expected if k not in weights]
        extra = [k for k in weights if k not in expected]
        if missing or extra:
            raise ValueError(f"weights must name exactly {expected}; missing {missing}, unknown {extra}")
        first_h = next(s.name for s in specs if s.source == "h")
        first_x = next(s.name for s in specs if s.source == "x")
        shape_h = np.shape(weights[first_h])
        if len(shape_h) != 2 or shape_h[0] != shape_h[1]:
            raise ValueError(f"{first_h} must be a square (n_hidden, n_hidden) matrix, got shape {shape_h}")
        n_hidden = int(shape_h[0])
        shape_x = np.shape(weights[first_x])
        if len(shape_x) != 2 or shape_x[0] != n_hidden:
            raise ValueError(f"{first_x} must have shape (n_hidden={n_hidden}, n_in), got {shape_x}")
        n_in = int(shape_x[1])
        if dtype is None:
            dtype = _dtype_of(weights.values())
        patterns, values = {}, {}
        for s in specs:
            w = weights[s.name]
            if s.source == "1":
                values[s.name] = check_real_array(w, s.name, (n_hidden,), np.float64)
                continue
            if sp.issparse(w):
                pat = Pattern.from_scipy(w, name=s.name)
                csr = w.tocsr()
                vals = np.asarray(csr.data)
            else:
                arr = np.asarray(w)
                if arr.ndim != 2:
                    raise ValueError(f"{s.name} must be a 2-D array or scipy.sparse matrix")
                pat = Pattern.dense(arr.shape)
                vals = arr.ravel()
            patterns[s.name] = pat
            values[s.name] = check_real_array(vals, s.name, (pat.nnz,), np.float64)
        cell = cls(n_in, n_hidden, pattern=patterns, dtype=dtype, **kwargs)
        for name, v in values.items():
            cell.params[cell.weight_slice(name)] = v
        return cell

    @classmethod
    def weight_names_for(cls):
        """The weight names of this cell class, in parameter order."""
        return tuple(s.name for s in cls.weight_specs())

    def _repr_settings(self):
        shown = super()._repr_settings()
        recurrent = [self._patterns[s.name] for s in self._specs_list if s.source == "h"]
        total = sum(p.shape[0] * p.shape[1] for p in recurrent)
        stored = sum(p.nnz for p in recurrent) / total if total else 1.0
        if self.density == 1.0 and stored < 1.0:  # built from given patterns: say how dense they are
            shown["density"] = float(f"{stored:.3g}")
        return shown


def _dtype_of(matrices):
    """The float dtype that holds the values of ``matrices`` (scipy or numpy): float64 if none is a float."""
    floats = [np.dtype(m.dtype) for m in matrices if hasattr(m, "dtype") and np.dtype(m.dtype).kind == "f"]
    if not floats:
        return np.dtype(np.float64)
    common = np.result_type(*floats)
    if common.itemsize < 4:
        return np.dtype(np.float32)
    return check_dtype(common, "the weights' dtype (pass dtype= to choose one)")


def _touch_all(n_gates, per_unit=1):
    return [[True] * per_unit for _ in range(n_gates)]


class VanillaArgs(NamedTuple):
    """What the vanilla step reads (``_cell_kernels.vanilla_kernel``)."""

    W_ptr: np.ndarray
    W_idx: np.ndarray
    W_val: np.ndarray
    U_ptr: np.ndarray
    U_idx: np.ndarray
    U_val: np.ndarray
    b: np.ndarray
    alpha: np.floating
    linear: object  # True for the identity, None for tanh: a type, chosen at compile time


class VanillaRNN(Cell, key="vanilla"):
    """Leaky vanilla RNN: ``h' = (1 - alpha) h + alpha phi(W h + U x + b)``.

    Parameters
    ----------
    n_in, n_hidden : int
    density : float in (0, 1], optional
        Fraction of stored entries of ``W`` (random pattern; default 1.0).
    alpha : float in (0, 1]
        Leak rate; ``alpha = 1`` is the plain RNN.
    seed : int or numpy.random.Generator
    dtype : numpy.float32 or numpy.float64
    input_density : float in (0, 1]
        Fraction of stored entries of ``U`` (default dense).
    pattern : scipy.sparse matrix, Pattern or dict, optional
        Fixed structure for ``W`` instead of a random one (see module docs).
    activation : {"tanh", "linear"}
        ``phi``; a linear network is useful where an exact answer is known in
        closed form (e.g. the credit DNI should learn).

    Notes
    -----
    Weights, in parameter order: ``W`` (n x n, CSR), ``U`` (n x n_in), ``b``.
    ``D = (1 - alpha) I + alpha diag(phi') W``.
    """

    gate_names = ("tanh",)

    def __init__(self, n_in: int, n_hidden: int, density: float = None, alpha: float = 1.0, seed=0,
                 dtype=np.float64, *, input_density: float = 1.0, pattern=None, activation: str = "tanh"):
        self.alpha = check_float(alpha, "alpha", 0.0, 1.0, low_open=True)
        if activation not in ("tanh", "linear"):
            raise ValueError(f"activation must be 'tanh' or 'linear', got {activation!r}")
        self.activation = activation
        self._build(n_in, n_hidden, density, seed, dtype, input_density, pattern, True)

    @classmethod
    def weight_specs(cls):
        return [WeightSpec("W", 0, "h"), WeightSpec("U", 0, "x"), WeightSpec("b", 0, "1")]

    def gate_touch(self):
        return _touch_all(1)

    def local_touch(self):
        return [[True]]  # the leak (1 - alpha); zero but harmless when alpha = 1

    def make_kernel_args(self):
        return VanillaArgs(*self._matrix_arg("W"), *self._matrix_arg("U"), self.weights["b"],
                           self.dtype.type(self.alpha), True if self.activation == "linear" else None)

    @property
    def kernel(self):
        from ._cell_kernels import vanilla_kernel

        return vanilla_kernel

    @property
    def kernel_par(self):
        from ._cell_kernels import vanilla_kernel_par

        return vanilla_kernel_par

    @classmethod
    def reservoir(cls, n_in: int, n_hidden: int, spectral_radius: float = 0.9, input_scaling: float = 1.0,
                  leak: float = 1.0, density: float = 0.1, seed=0, dtype=np.float64, *,
                  input_density: float = 1.0, bias_scaling: float = 0.0) -> "VanillaRNN":
        """An echo-state reservoir (Jaeger 2001): a tanh cell with ``W`` rescaled to a given spectral radius.

        Train it with ``sr.ReadoutOnly`` (the reservoir keeps its weights) and
        a ``sr.LinearReadout``: that is an echo-state network, whose readout
        alone learns, online (LMS for the squared error).

        Parameters
        ----------
        n_in, n_hidden : int
        spectral_radius : float >= 0
            The largest modulus of an eigenvalue of ``W`` after rescaling
            (below 1 for the echo-state property in the usual rule of thumb).
            As in Lukosevicius (2012), the radius of ``W`` itself, not of the
            leaky step's ``(1 - leak) I + leak W``.
        input_scaling : float >= 0
            ``U`` is drawn uniformly from ``[-input_scaling, input_scaling]``.
        leak : float in (0, 1]
            The leaking rate, the cell's ``alpha``:
            ``h' = (1 - leak) h + leak tanh(W h + U x + b)``.
        density : float in (0, 1]
            Fraction of stored entries of ``W`` (random pattern).
        seed : int, numpy.random.Generator or None
            Draws the patterns, ``W``, ``U`` and ``b``; the same seed gives the same reservoir.
        dtype : numpy.float32 or numpy.float64
        input_density : float in (0, 1]
            Fraction of stored entries of ``U``.
        bias_scaling : float >= 0
            ``b`` is drawn uniformly from ``[-bias_scaling, bias_scaling]`` (default 0: no bias).

        Returns
        -------
        VanillaRNN
            A plain cell (its ``config()`` rebuilds the pattern, its
            ``state_dict()`` holds the rescaled weights).

        Raises
        ------
        ValueError
            A bad argument (named), or a pattern whose ``W`` has spectral
            radius 0 (nilpotent: too sparse to rescale; raise ``density``).

        Notes
        -----
        ``W`` is drawn as for any cell (``N(0, 1/k)`` on its pattern), then
        multiplied by ``spectral_radius / rho(W)``, with ``rho`` computed in
        float64: from all eigenvalues (``numpy.linalg.eigvals``) up to 500
        units, by ARPACK (``scipy.sparse.linalg.eigs``, a fixed start
        vector) above.
        """
        spectral_radius = check_float(spectral_radius, "spectral_radius", low=0.0)
        input_scaling = check_float(input_scaling, "input_scaling", low=0.0)
        leak = check_float(leak, "leak", 0.0, 1.0, low_open=True)
        if density is None:
            density = 1.0
        density = check_float(density, "density", 0.0, 1.0, low_open=True)
        bias_scaling = check_float(bias_scaling, "bias_scaling", low=0.0)
        seed = check_seed(seed)
        cell = cls(n_in, n_hidden, density=density, alpha=leak, seed=seed, dtype=dtype, input_density=input_density)
        # Another stream than the cell's own draws (which made the patterns and W) for U and b.
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(
            None if seed is None else [seed, 1])
        W = cell.weights["W"]
        values = W.data.astype(np.float64)
        rho = _spectral_radius(W.pattern.to_scipy(values))
        if rho <= 1e-12 * float(np.abs(values).max(initial=0.0)) or rho == 0.0:
            raise ValueError(f"the recurrent weights drawn at density={density} (seed={seed}) have spectral "
                             f"radius 0 (a nilpotent pattern): raise density or change seed")
        W.data[:] = values * (spectral_radius / rho)
        U = cell.weights["U"]
        U.data[:] = rng.uniform(-input_scaling, input_scaling, size=U.nnz)
        cell.weights["b"][:] = rng.uniform(-bias_scaling, bias_scaling, size=cell.n_hidden)
        return cell


#: Above this many units, ``VanillaRNN.reservoir`` finds the spectral radius by ARPACK, not all eigenvalues.
_DENSE_EIGVALS_MAX = 500


def _spectral_radius(W):
    """The largest modulus of an eigenvalue of the float64 CSR matrix ``W`` (square)."""
    n = W.shape[0]
    if n <= _DENSE_EIGVALS_MAX:
        return float(np.max(np.abs(np.linalg.eigvals(W.toarray()))))
    from scipy.sparse.linalg import ArpackNoConvergence, eigs

    try:
        # A fixed start vector: ARPACK's own is random, and the reservoir must not depend on it. Six
        # eigenvalues on 60 Arnoldi vectors: a random matrix has many eigenvalues of nearly the largest
        # modulus, and with k=1 ARPACK can settle on one 1% short of it (n=2000).
        start = np.random.default_rng(0).uniform(-1.0, 1.0, size=n)
        vals = eigs(W, k=6, ncv=60, which="LM", return_eigenvectors=False, v0=start, maxiter=100 * n, tol=1e-10)
        return float(np.max(np.abs(vals)))
    except ArpackNoConvergence:
        return float(np.max(np.abs(np.linalg.eigvals(W.toarray()))))


class GRUArgs(NamedTuple):
    """What the GRU step reads (``_cell_kernels.gru_kernel``)."""

    Whr_p: np.ndarray
    Whr_i: np.ndarray
    Whr_d: np.ndarray
    Whz_p: np.ndarray
    Whz_i: np.ndarray
    Whz_d: np.ndarray
    Whn_p: np.ndarray
    Whn_i: np.ndarray
    Whn_d: np.ndarray
    Wir_p: np.ndarray
    Wir_i: np.ndarray
    Wir_d: np.ndarray
    Wiz_p: np.ndarray
    Wiz_i: np.ndarray
    Wiz_d: np.ndarray
    Win_p: np.ndarray
    Win_i: np.ndarray
    Win_d: np.ndarray
    b_r: np.ndarray
    b_z: np.ndarray
    b_in: np.ndarray
    b_hn: np.ndarray
    shared_h: object  # True when the recurrent matrices share one pattern, else None
    shared_x: object  # the same for the input matrices


class GRU(Cell, key="gru"):
    """GRU with the reset gate applied after the recurrent product (cuDNN form).

    ``r = sig(W_ir x + W_hr h + b_r)``, ``z = sig(W_iz x + W_hz h + b_z)``,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``.

    Parameters
    ----------
    n_in, n_hidden : int
    density : float in (0, 1], optional
        Fraction of stored entries of each recurrent matrix (default 1.0).
    seed : int or numpy.random.Generator
    dtype : numpy.float32 or numpy.float64
    input_density : float in (0, 1]
        Fraction of stored entries of each input matrix (default dense).
    shared_pattern : bool
        If True (default) the three recurrent matrices share one random
        pattern (unit j feeds unit i or not), and so do the input matrices;
        ``D`` then has the density of one matrix. If False each is drawn on
        its own and ``D``'s pattern is their union.
    pattern : scipy.sparse matrix, Pattern or dict, optional

    Notes
    -----
    Weights, in parameter order: ``W_hr, W_hz, W_hn, W_ir, W_iz, W_in, b_r,
    b_z, b_in, b_hn``. Gates of the factored immediate Jacobian: 0 reset,
    1 update, 2 candidate (input half), 3 candidate (recurrent half).
    """

    gate_names = ("reset", "update", "candidate_input", "candidate_hidden")

    def __init__(self, n_in: int, n_hidden: int, density: float = None, seed=0, dtype=np.float64, *,
                 input_density: float = 1.0, shared_pattern: bool = True, pattern=None):
        self._build(n_in, n_hidden, density, seed, dtype, input_density, pattern, shared_pattern)

    @classmethod
    def weight_specs(cls):
        return [
            WeightSpec("W_hr", 0, "h"), WeightSpec("W_hz", 1, "h"), WeightSpec("W_hn", 3, "h"),
            WeightSpec("W_ir", 0, "x"), WeightSpec("W_iz", 1, "x"), WeightSpec("W_in", 2, "x"),
            WeightSpec("b_r", 0, "1"), WeightSpec("b_z", 1, "1"),
            WeightSpec("b_in", 2, "1"), WeightSpec("b_hn", 3, "1"),
        ]

    def gate_touch(self):
        return _touch_all(4)

    def local_touch(self):
        return [[True]]  # z * h

    def make_kernel_args(self):
        w = self.weights
        return GRUArgs(
            *(a for k in ("W_hr", "W_hz", "W_hn", "W_ir", "W_iz", "W_in") for a in self._matrix_arg(k)),
            w["b_r"], w["b_z"], w["b_in"], w["b_hn"],
            self._shared_flag("W_hr", "W_hz", "W_hn"), self._shared_flag("W_ir", "W_iz", "W_in"),
        )

    @property
    def kernel(self):
        from ._cell_kernels import gru_kernel

        return gru_kernel

    @property
    def kernel_par(self):
        from ._cell_kernels import gru_kernel_par

        return gru_kernel_par


class LSTMArgs(NamedTuple):
    """What the LSTM step reads (``_cell_kernels.lstm_kernel``)."""

    Whi_p: np.ndarray
    Whi_i: np.ndarray
    Whi_d: np.ndarray
    Whf_p: np.ndarray
    Whf_i: np.ndarray
    Whf_d: np.ndarray
    Whg_p: np.ndarray
    Whg_i: np.ndarray
    Whg_d: np.ndarray
    Who_p: np.ndarray
    Who_i: np.ndarray
    Who_d: np.ndarray
    Wii_p: np.ndarray
    Wii_i: np.ndarray
    Wii_d: np.ndarray
    Wif_p: np.ndarray
    Wif_i: np.ndarray
    Wif_d: np.ndarray
    Wig_p: np.ndarray
    Wig_i: np.ndarray
    Wig_d: np.ndarray
    Wio_p: np.ndarray
    Wio_i: np.ndarray
    Wio_d: np.ndarray
    b_i: np.ndarray
    b_f: np.ndarray
    b_g: np.ndarray
    b_o: np.ndarray
    shared_h: object
    shared_x: object


class LSTM(Cell, key="lstm"):
    """LSTM with state ``[h; c]`` (``S = 2 n``).

    ``i, f, o = sig(W_i* x + W_h* h + b_*)``, ``g = tanh(W_ig x + W_hg h + b_g)``,
    ``c' = f c + i g``, ``h' = o tanh(c')``.

    Parameters are as for :class:`GRU`; the forget-gate bias starts at 1.

    Notes
    -----
    Weights, in parameter order: ``W_hi, W_hf, W_hg, W_ho, W_ii, W_if, W_ig,
    W_io, b_i, b_f, b_g, b_o``. Parameters of gates i, f, g touch both
    ``h_i`` and ``c_i``; those of the output gate touch only ``h_i``. The
    structure of ``D``: rows of ``h`` depend on ``h`` through all four
    recurrent matrices and on their own ``c``; rows of ``c`` depend on ``h``
    through ``W_hi, W_hf, W_hg`` only and on their own ``c``.
    """

    gate_names = ("input", "forget", "cell", "output")
    n_state_per_unit = 2

    def __init__(self, n_in: int, n_hidden: int, density: float = None, seed=0, dtype=np.float64, *,
                 input_density: float = 1.0, shared_pattern: bool = True, pattern=None):
        self._build(n_in, n_hidden, density, seed, dtype, input_density, pattern, shared_pattern)

    @classmethod
    def weight_specs(cls):
        return [
            WeightSpec("W_hi", 0, "h"), WeightSpec("W_hf", 1, "h"),
            WeightSpec("W_hg", 2, "h"), WeightSpec("W_ho", 3, "h"),
            WeightSpec("W_ii", 0, "x"), WeightSpec("W_if", 1, "x"),
            WeightSpec("W_ig", 2, "x"), WeightSpec("W_io", 3, "x"),
            WeightSpec("b_i", 0, "1"), WeightSpec("b_f", 1, "1"),
            WeightSpec("b_g", 2, "1"), WeightSpec("b_o", 3, "1"),
        ]

    def gate_touch(self):
        return [[True, True], [True, True], [True, True], [True, False]]

    def local_touch(self):
        # h' depends on its own c through c' = f c + ..., and so does c'.
        return [[False, True], [False, True]]

    def _init_values(self, rng):
        super()._init_values(rng)
        self.weights["b_f"][:] = 1.0

    def make_kernel_args(self):
        w = self.weights
        return LSTMArgs(
            *(a for k in ("W_hi", "W_hf", "W_hg", "W_ho", "W_ii", "W_if", "W_ig", "W_io")
              for a in self._matrix_arg(k)),
            w["b_i"], w["b_f"], w["b_g"], w["b_o"],
            self._shared_flag("W_hi", "W_hf", "W_hg", "W_ho"),
            self._shared_flag("W_ii", "W_if", "W_ig", "W_io"),
        )

    @property
    def kernel(self):
        from ._cell_kernels import lstm_kernel

        return lstm_kernel

    @property
    def kernel_par(self):
        from ._cell_kernels import lstm_kernel_par

        return lstm_kernel_par
