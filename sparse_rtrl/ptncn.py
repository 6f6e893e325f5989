"""The Parallel Temporal Neural Coding Network (P-TNCN) trained by Local Representation Alignment.

Ororbia & Mali's recurrent model (Ororbia, Mali, Kifer & Giles 2018; IEEE
TNNLS 2019) learns without gradients: at every step it predicts, compares,
corrects its states, and updates each weight by a local product of an
activity and an error. There is no unrolling and no activation derivative,
so the non-differentiable ``sign`` and ``step`` units train too. The
equations are those of the authors' public two-layer code
(github.com/AnkurMali/ContinualPTNCN, ``ptncn_2lyr.py``), generalised to any
number of layers; ``ALGORITHMS.md`` lists them for two.

Kernels are in :mod:`sparse_rtrl._ptncn_kernels`; this module checks and
prepares every argument and owns the model's arrays and state.
"""

import hashlib
import numbers

import numpy as np

from ._validate import check_dtype, check_float, check_int, check_real_array, check_seed
from .cells import SparseWeight
from .patterns import Pattern
from .registry import Registered
from .state import Stateful

__all__ = ["PTNCN"]

#: Hidden activations by name (the kernels' codes follow this order).
ACTIVATIONS = ("tanh", "relu", "hard_tanh", "identity", "sign", "step")
#: Output functions by name: ``softmax`` for symbols (one-hot), ``sigmoid`` for pixels in [0, 1].
OUTPUTS = ("softmax", "sigmoid")
#: Where ``Delta W_l`` (l >= 2) takes its error: the code's temporal error, or the paper's prediction error.
W_ERRORS = ("temporal", "prediction")
#: How the error weights learn: the code's transposed ``gamma Delta W``, or the paper's temporal error rule.
E_UPDATES = ("transpose", "temporal")
#: The matrices of a layer, in their order in ``params``.
MATRICES = ("W", "E", "M", "U", "V")


def _choice(value, name, choices):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {', '.join(choices)}; got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _transposed(pattern):
    """The transposed pattern, and for each of its entries (CSR order) the position of its mirror in
    ``pattern``'s entries."""
    rows, cols = pattern.rows(), pattern.indices
    order = np.lexsort((rows, cols))  # by column, then row: the transpose's CSR order
    indptr = np.zeros(pattern.shape[1] + 1, np.int64)
    np.cumsum(np.bincount(cols, minlength=pattern.shape[1]), out=indptr[1:])
    return Pattern(indptr, rows[order], (pattern.shape[1], pattern.shape[0])), order.astype(np.int64)


def _sizes(n_hidden, n_layers):
    """The hidden sizes per layer, bottom first, from ``n_hidden`` (int or sequence) and ``n_layers``."""
    if isinstance(n_hidden, (bool, np.bool_)):
        raise TypeError(f"n_hidden must be an integer or a sequence of integers, got {n_hidden!r}")
    if isinstance(n_hidden, numbers.Integral):
        layers = 2 if n_layers is None else check_int(n_layers, "n_layers", minimum=1)
        return (check_int(n_hidden, "n_hidden", minimum=1),) * layers
    try:
        sizes = tuple(n_hidden)
    except TypeError:
        raise TypeError(f"n_hidden must be an integer or a sequence of integers, "
                        f"got {type(n_hidden).__name__}") from None
    if not sizes:
        raise ValueError("n_hidden must name at least one layer")
    sizes = tuple(check_int(n, f"n_hidden[{k}]", minimum=1) for k, n in enumerate(sizes))
    if n_layers is not None and check_int(n_layers, "n_layers", minimum=1) != len(sizes):
        raise ValueError(f"n_layers = {n_layers} but n_hidden lists {len(sizes)} layer sizes")
    return sizes


class PTNCN(Stateful, Registered, key="ptncn"):
    r"""Parallel Temporal Neural Coding Network trained by Local Representation Alignment.

    Parameters
    ----------
    n_x : int
        Size of the observation ``x_t`` (symbols one-hot, or pixels). The
        model predicts ``x_t`` from ``x_{t-1}`` and its states.
    n_hidden : int or sequence of int
        Units per hidden layer, bottom first; an int gives ``n_layers``
        layers of that size.
    n_layers : int, optional
        Number of layers when ``n_hidden`` is an int (default 2, the paper's);
        with a sequence it must match its length if given.
    activation : str
        ``"tanh"`` (default), ``"relu"``, ``"hard_tanh"``, ``"identity"``, or
        the non-differentiable ``"sign"`` and ``"step"`` (1 where the input
        is >= 0, the authors' ``gte``).
    output : str
        ``"softmax"`` (symbols) or ``"sigmoid"`` (pixels in [0, 1]).
    beta : float
        Step size of the state correction ``y = phi(a - beta d)`` (>= 0).
    gamma : float
        Scale of the error-weight updates (>= 0).
    alpha_e : float
        Weight of a layer's own prediction error in its correction (>= 0).
    clip : float or None
        Each update matrix is rescaled to Frobenius norm at most ``clip``
        (then divided by the batch size); None turns clipping off.
    sparsity : float
        The paper's lateral sparsity term: ``lambda sign(a_l)`` is added to
        every correction ``d_l`` (>= 0; 0, the code's setting, turns it off).
    w_error : str
        ``"temporal"`` (the code): ``Delta W_l = z_l^T ev_{l-1}`` for
        ``l >= 2``; ``"prediction"`` (the paper): ``z_l^T e_{l-1}``.
    e_update : str
        ``"transpose"`` (the code): ``Delta E_l = gamma Delta W_l^T`` from the
        clipped ``Delta W_l``; ``"temporal"`` (the paper's temporal error
        rule): ``Delta E_l = -gamma e_{l-1}^T (ev_l(t) - ev_l(t-1))``.
    init_std : float
        Standard deviation of the normal initial weights (> 0; the code's 0.05).
    density : float
        Fraction of stored entries in every matrix, in (0, 1]. Below 1, each
        matrix is CSR on a random pattern fixed at construction (``E_l`` on
        the transpose of ``W_l``'s, so that ``Delta E_l = gamma Delta W_l^T``
        stays entry for entry); products and updates then touch the stored
        entries only, and each update is clipped by its norm there. 1 (the
        default) is dense, multiplied through BLAS.
    batch_size : int, optional
        ``B`` independent streams; None (the default) is the unbatched form.
    seed : int or numpy.random.Generator
        Seeds the initial weights.
    dtype : numpy.float32 or numpy.float64

    Attributes
    ----------
    n_x, n_layers, sizes
        ``sizes = (n_x, n_1, ..., n_L)``.
    params : ndarray, shape (n_params,)
        Every weight, flat; a writable array that the optimisers update in
        place (``weights[name]`` are views into it).
    weights : dict
        Name (``"W1"``, ``"E1"``, ``"M1"``, ``"U1"``, ``"V1"``, ``"W2"``,
        ...) -> 2-D view of ``params``, row-vector convention (``x M``);
        with ``density < 1`` a :class:`~sparse_rtrl.SparseWeight` whose
        ``data`` is the view.
    patterns : dict
        Name -> :class:`~sparse_rtrl.Pattern` of each matrix (dense ones too).
    n_steps : int
        Steps since the last ``reset()``.

    Notes
    -----
    Row-vector form; ``y_0`` is the observation, ``m`` the per-stream mask,
    ``phi`` the activation and ``y_l`` the corrected states carried from
    step ``t - 1`` (all zero after ``reset()``). Layer ``l`` (1..L) has the
    matrices ``M_l`` (bottom-up, from the layer below), ``U_l`` (top-down,
    from the layer above; none at the top), ``V_l`` (recurrent), ``W_l``
    (predicts the layer below from ``z_l``) and ``E_l`` (carries the error
    of the layer below up). One step:

    1. predict: ``a_l = y_{l-1} M_l + y_{l+1} U_l + y_l V_l`` (last term
       dropped at the top), ``z_l = phi(a_l)``; ``mu_{l-1} = z_l W_l``, and
       the prediction of the input ``x_hat = out(z_1 W_1)``.
    2. errors: ``e_0 = (x_hat - x_t) * m``; ``e_l = (mu_l - z_l) * m`` for
       ``1 <= l < L``.
    3. corrections: ``d_l = e_{l-1} E_l - alpha_e e_l`` (``l < L``),
       ``d_L = e_{L-1} E_L`` (plus ``sparsity sign(a_l)``).
    4. corrected states ``y_l = phi(a_l - beta d_l)``, temporal errors
       ``ev_l = (z_l - y_l) * m``.
    5. updates ``Delta W_1 = z_1^T e_0``, ``Delta W_l = z_l^T ev_{l-1}``,
       ``Delta E_l = gamma Delta W_l^T``, ``Delta M_l = y_{l-1}^T ev_l``,
       ``Delta U_l = y_{l+1}^T ev_l``, ``Delta V_l = y_l^T ev_l`` (the
       ``y`` of step ``t - 1``), each clipped to norm ``clip`` and divided
       by the batch size.

    The generalisation: each layer predicts the one below and corrects
    itself from the error of the one below through ``E_l``, as layer 2 does
    for layer 1 in the two-layer model, and every layer but the top is
    also pulled towards the prediction from above (``- alpha_e e_l``) and
    receives the top-down input ``U_l``. With ``L = 2`` these are exactly
    the equations of the authors' code and of ``ALGORITHMS.md``; with
    ``L = 1`` the single layer has no layer above (``d_1 = e_0 E_1``).

    The updates are in the optimisers' sign convention (the optimiser does
    ``params -= lr * grad``): ``sr.SGD(model.params, lr=0.075,
    momentum=0.95, nesterov=True)`` with ``model.grad()`` after every step
    trains as the authors' code does. The code takes no update at a
    sequence's first step (``t' = 1``): pass ``learn=False`` there.

    References
    ----------
    A. Ororbia, A. Mali, D. Kifer, C. L. Giles, "Continual learning of
    recurrent neural networks by locally aligning distributed
    representations", IEEE TNNLS 2020 (arXiv:1810.07411, 2018).

    Examples
    --------
    >>> import sparse_rtrl as sr
    >>> model = sr.PTNCN(5, n_hidden=16, batch_size=2, seed=0)
    >>> opt = sr.SGD(model.params, lr=0.075, momentum=0.95, nesterov=True)
    >>> x_hat = model.step_symbols([1, 3], learn=False)
    >>> x_hat = model.step_symbols([2, -1])    # stream 1 is padding here
    >>> opt.step(model.grad())
    """

    _family = "model"
    _not_settings = ()
    _state_fields = {"params": "_params", "previous_input": "_x_prev", "states": "_states",
                     "temporal_errors": "_temporal_errors", "accumulator": "_acc", "n_steps": "n_steps"}
    _restored_settings = ("seed", "init_std")
    _repr_always = ("n_x", "n_hidden", "dtype")

    def __init__(self, n_x: int, n_hidden=128, n_layers: int = None, activation: str = "tanh",
                 output: str = "softmax", beta: float = 0.1, gamma: float = 1.0, alpha_e: float = 0.001,
                 clip: float = 1.0, sparsity: float = 0.0, w_error: str = "temporal", e_update: str = "transpose",
                 init_std: float = 0.05, density: float = 1.0, batch_size: int = None, seed=0,
                 dtype=np.float64):
        self.n_x = check_int(n_x, "n_x", minimum=1)
        hidden = _sizes(n_hidden, n_layers)
        self.n_hidden = list(hidden)
        self.n_layers = len(hidden)
        self.sizes = (self.n_x,) + hidden
        self.activation = _choice(activation, "activation", ACTIVATIONS)
        self.output = _choice(output, "output", OUTPUTS)
        self.beta = check_float(beta, "beta", 0.0, None)
        self.gamma = check_float(gamma, "gamma", 0.0, None)
        self.alpha_e = check_float(alpha_e, "alpha_e", 0.0, None)
        self.clip = None if clip is None else check_float(clip, "clip", 0.0, None, low_open=True)
        self.sparsity = check_float(sparsity, "sparsity", 0.0, None)
        self.w_error = _choice(w_error, "w_error", W_ERRORS)
        self.e_update = _choice(e_update, "e_update", E_UPDATES)
        self.init_std = check_float(init_std, "init_std", 0.0, None, low_open=True)
        self.density = check_float(density, "density", 0.0, 1.0, low_open=True)
        self.batch_size = None if batch_size is None else check_int(batch_size, "batch_size", minimum=1)
        self.dtype = check_dtype(dtype)
        seed = check_seed(seed)
        self.seed = None if isinstance(seed, np.random.Generator) else seed
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._lay_out(rng)
        self._params[:] = rng.normal(0.0, self.init_std, self.n_params)
        self._allocate()
        self.reset()

    # -- construction -------------------------------------------------------------------
    def _lay_out(self, rng):
        """Patterns, then the flat parameter vector layer by layer (W, E, M, U, V); each weight a view into it."""
        from ._ptncn_kernels import CSR, DENSE

        L, n = self.n_layers, self.sizes
        sparse = self.density < 1.0
        # offset, rows, cols, kind, nnz, ptr, col_ptr
        layout = np.zeros((L, len(MATRICES), 7), np.int64)
        patterns = {}
        for l in range(1, L + 1):
            for name in MATRICES:
                shape = {"W": (n[l], n[l - 1]), "E": (n[l - 1], n[l]), "M": (n[l - 1], n[l]),
                         "U": (n[l + 1], n[l]) if l < L else None, "V": (n[l], n[l])}[name]
                if shape is None:
                    continue
                if not sparse:
                    patterns[f"{name}{l}"] = Pattern.dense(shape)
                elif name == "E":
                    patterns[f"E{l}"] = _transposed(patterns[f"W{l}"])[0]
                else:
                    patterns[f"{name}{l}"] = Pattern.random(shape, self.density, rng)
        names, offset, ptr, col_ptr = [], 0, 0, 0
        indptr, indices, col_indptr, col_rows, col_position = [], [], [], [], []
        for l in range(1, L + 1):
            for k, name in enumerate(MATRICES):
                key = f"{name}{l}"
                if key not in patterns:
                    layout[l - 1, k] = (offset, 0, n[l], DENSE, 0, ptr, col_ptr)
                    continue
                pat = patterns[key]
                layout[l - 1, k] = (offset, pat.shape[0], pat.shape[1], CSR if sparse else DENSE, pat.nnz, ptr,
                                    col_ptr)
                if sparse:
                    # The column plan: the transposed pattern's rows are this one's columns, and its order
                    # lists the entries by column (so E_l's values, in order, mirror W_l's by column);
                    # position is where each entry goes in that order.
                    by_column, order = _transposed(pat)
                    indptr.append(pat.indptr.astype(np.int64))
                    indices.append(pat.indices)
                    col_indptr.append(by_column.indptr.astype(np.int64))
                    col_rows.append(by_column.indices)
                    position = np.empty_like(order)
                    position[order] = np.arange(order.size)
                    col_position.append(offset + position)
                    ptr += pat.shape[0] + 1
                    col_ptr += pat.shape[1] + 1
                names.append(key)
                offset += pat.nnz
        self.n_params = offset
        self._params = np.zeros(offset, self.dtype)
        self._layout = layout
        self.patterns = patterns
        self.weight_names = tuple(names)
        self._slices, self.weights = {}, {}
        for l in range(1, L + 1):
            for k, name in enumerate(MATRICES):
                key = f"{name}{l}"
                if key in patterns:
                    lo, nnz = int(layout[l - 1, k, 0]), int(layout[l - 1, k, 4])
                    self._slices[key] = slice(lo, lo + nnz)
                    view = self._params[lo:lo + nnz]
                    self.weights[key] = (SparseWeight(patterns[key], view) if sparse
                                         else view.reshape(patterns[key].shape))
        if sparse and offset >= 2**31:
            raise ValueError(f"a sparse PTNCN indexes its weights with int32, so holds fewer than 2**31; "
                             f"these sizes and density give {offset}")

        def join(parts, dtype):
            return np.concatenate(parts).astype(dtype) if sparse else np.zeros(0, dtype)

        self._indptr, self._indices = join(indptr, np.int64), join(indices, np.int32)
        self._col_indptr, self._col_rows = join(col_indptr, np.int64), join(col_rows, np.int32)
        self._col_position = join(col_position, np.int32)
        self._offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def _allocate(self):
        from ._ptncn_kernels import SPREAD_WORK, PTNCNArgs, PTNCNBuffers, sparse_schedule, update_plan

        B = self._B = self.batch_size or 1
        dt, off = self.dtype, self._offsets
        sparse = self.density < 1.0
        total = B * int(off[-1])
        plan = update_plan(self.n_layers, W_ERRORS.index(self.w_error), E_UPDATES.index(self.e_update))
        item_ptr, chunks = sparse_schedule(self._layout, plan)
        largest = int(max(p.nnz for p in self.patterns.values()))
        buf = PTNCNBuffers(y=np.zeros(total, dt), y_new=np.zeros(total, dt), a=np.zeros(total, dt),
                           z=np.zeros(total, dt), mu=np.zeros(total, dt), e=np.zeros(total, dt),
                           d=np.zeros(total, dt), ev=np.zeros(total, dt), ev_prev=np.zeros(total, dt),
                           change=np.zeros(total, dt), tmp=np.zeros(0 if sparse else B * max(self.sizes), dt),
                           delta=np.zeros(self.n_params if sparse else largest, dt),
                           by_column=np.zeros(self.n_params if sparse else 0, dt),
                           row_sq=np.zeros(int(item_ptr[-1]) if sparse else 0, np.float64),
                           factors=np.zeros(len(plan), np.float64), acc=np.zeros(self.n_params, dt))
        self._buf = buf
        self._acc = buf.acc

        def layer(flat, l):
            # The kernels keep a layer as an (n_l, B) block, streams last; the model shows it as (B, n_l).
            return flat[B * off[l]:B * off[l + 1]].reshape(self.sizes[l], B).T

        views = [layer(buf.y, l) for l in range(self.n_layers + 1)]
        self._x_prev = views[0]
        self._states = views[1:]
        self._temporal_errors = [layer(buf.ev_prev, l) for l in range(1, self.n_layers + 1)]
        self._prediction = layer(buf.mu, 0)
        self._mask_ones = np.ones(B, dt)
        self._args = PTNCNArgs(
            params=self._params, layout=self._layout, indptr=self._indptr, indices=self._indices,
            col_indptr=self._col_indptr, col_rows=self._col_rows, col_position=self._col_position,
            offsets=self._offsets, plan=plan, item_ptr=item_ptr, chunks=chunks,
            activation=np.int64(ACTIVATIONS.index(self.activation)), output=np.int64(OUTPUTS.index(self.output)),
            beta=self.beta, gamma=self.gamma, alpha_e=self.alpha_e,
            clip=0.0 if self.clip is None else self.clip, sparsity=self.sparsity,
            spread=bool(sparse and self.n_params * B >= SPREAD_WORK))

    # -- parameters -----------------------------------------------------------------------
    @property
    def params(self) -> np.ndarray:
        """The flat parameter vector (writable; the weights are views into it)."""
        return self._params

    @params.setter
    def params(self, value):
        self._params[:] = check_real_array(value, "params", (self.n_params,), self.dtype)

    def weight_slice(self, name: str) -> slice:
        """The slice of ``params`` that holds weight ``name`` (``"W1"``, ``"E2"``, ...)."""
        if name not in self._slices:
            raise KeyError(f"PTNCN has no weight {name!r}; it has {list(self.weight_names)}")
        return self._slices[name]

    # -- life cycle -----------------------------------------------------------------------
    def reset(self) -> None:
        """Start new sequences: states, previous input, temporal errors and accumulator := 0."""
        for arr in self._buf:
            arr[:] = 0.0
        self.n_steps = 0

    def _check_batch(self, value, name, width):
        if self.batch_size is None:
            shape = (width,) if width else ()
            arr = check_real_array(value, name, shape, self.dtype)
            return arr.reshape(1, -1) if width else arr.reshape(1)
        return check_real_array(value, name, (self.batch_size, width) if width else (self.batch_size,), self.dtype)

    def step(self, x, mask=None, learn: bool = True) -> np.ndarray:
        """One step: predict ``x`` from the state, compare, correct the states, accumulate the updates.

        Parameters
        ----------
        x : array_like, shape (n_x,) or (B, n_x) when batched
            The observation of this step (one-hot symbols or pixels).
        mask : array_like, shape () or (B,), optional
            Per stream, 1 for a real observation and 0 for padding (its
            errors, and so its updates, are zeroed; its states still advance,
            as in the authors' code). Values in [0, 1]; default all ones.
        learn : bool
            Accumulate this step's updates for ``grad()`` (False: predict and
            correct only, e.g. the first step of a sequence or evaluation).

        Returns
        -------
        ndarray, shape (n_x,) or (B, n_x)
            The prediction ``x_hat_t`` made before seeing ``x`` (probabilities
            for ``softmax``, pixel means for ``sigmoid``), a copy.
        """
        x = self._check_batch(x, "x", self.n_x)
        if mask is None:
            mask = self._mask_ones
        else:
            mask = self._check_batch(mask, "mask", 0)
            if mask.min() < 0.0 or mask.max() > 1.0:
                raise ValueError("mask must lie in [0, 1] (1: a real observation, 0: padding)")
        if not isinstance(learn, (bool, np.bool_)):
            raise TypeError(f"learn must be a bool, got {learn!r}")
        return self._run(x, mask, bool(learn))

    def step_symbols(self, symbols, learn: bool = True) -> np.ndarray:
        """:meth:`step` with symbol indices: one-hot, and ``-1`` marks padding (masked), as in the authors' code.

        Parameters
        ----------
        symbols : int or array_like of int, shape () or (B,)
            Indices in ``[0, n_x)``, or -1 for a padded position.
        learn : bool
            As in :meth:`step`.

        Returns
        -------
        ndarray, shape (n_x,) or (B, n_x)
            The prediction made before seeing the symbols.
        """
        if self.output != "softmax":
            raise ValueError("step_symbols needs output='softmax' (symbols); use step() for pixels")
        arr = np.asarray(symbols)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"symbols must be integers, got dtype {arr.dtype}")
        want = () if self.batch_size is None else (self.batch_size,)
        if arr.shape != want:
            raise ValueError(f"symbols must have shape {want}, got {arr.shape}")
        arr = arr.reshape(-1).astype(np.int64)
        if arr.size and (arr.min() < -1 or arr.max() >= self.n_x):
            raise ValueError(f"symbols must lie in [0, {self.n_x}) or be -1 (padding)")
        if not isinstance(learn, (bool, np.bool_)):
            raise TypeError(f"learn must be a bool, got {learn!r}")
        x = np.zeros((self._B, self.n_x), self.dtype)
        real = arr >= 0
        x[np.flatnonzero(real), arr[real]] = 1.0
        return self._run(x, real.astype(self.dtype), bool(learn))

    def _run(self, x, mask, learn):
        from ._ptncn_kernels import ptncn_step

        ptncn_step(self._args, self._buf, x, mask, learn)
        self.n_steps += 1
        return self._prediction[0].copy() if self.batch_size is None else self._prediction.copy()

    def grad(self) -> np.ndarray:
        """The updates accumulated since the last ``grad()`` or ``reset()``, shape (n_params,), in the
        optimisers' sign convention (``params -= lr * grad``); clears the accumulator."""
        # Hand the accumulator over and start a fresh one (zeroed lazily by the OS): no copy.
        out = self._acc
        self._acc = np.zeros_like(out)
        self._buf = self._buf._replace(acc=self._acc)
        return out

    def loss(self, prediction, x, mask=None) -> float:
        """The negative log-likelihood of ``x`` under ``prediction``, in nats, summed over the streams.

        Categorical cross-entropy for ``softmax`` (``-sum x log x_hat``),
        Bernoulli cross-entropy for ``sigmoid``; padded streams (``mask`` 0)
        count for nothing. Probabilities are floored at 1e-8, as in the
        authors' evaluation.
        """
        x = self._check_batch(x, "x", self.n_x)
        p = self._check_batch(prediction, "prediction", self.n_x)
        m = np.ones(self._B) if mask is None else self._check_batch(mask, "mask", 0)
        return self._loss(p, x, m)

    def _loss(self, prediction, x, m):
        """:meth:`loss` on checked ``(B, n_x)`` arrays and a ``(B,)`` mask."""
        p = np.clip(prediction.astype(np.float64), 1e-8, 1.0)
        if self.output == "softmax":
            per = -(x * np.log(p)).sum(axis=1)
        else:
            q = np.clip(1.0 - p, 1e-8, 1.0)
            per = -(x * np.log(p) + (1.0 - x) * np.log(q)).sum(axis=1)
        return float((per * m).sum())

    @property
    def states(self) -> list:
        """The corrected states ``y_1 .. y_L`` carried to the next step (copies; (n_l,) or (B, n_l))."""
        return [s[0].copy() if self.batch_size is None else s.copy() for s in self._states]

    # -- what it holds --------------------------------------------------------------------
    def memory(self) -> dict:
        """Bytes held, by part: ``weights`` (the parameters), ``structure`` (layout and CSR indices),
        ``states`` (what is carried between steps: states, previous input, temporal errors),
        ``accumulator`` and ``workspace`` (per-step buffers)."""
        b = self._buf
        out = {"weights": self._params.nbytes,
               "structure": sum(a.nbytes for a in (self._layout, self._indptr, self._indices, self._col_indptr,
                                                   self._col_rows, self._col_position, self._args.plan,
                                                   self._args.item_ptr, self._args.chunks)),
               "states": b.y.nbytes + b.ev_prev.nbytes,
               "accumulator": b.acc.nbytes}
        counted = {id(self._params), id(b.y), id(b.ev_prev), id(b.acc)}
        out["workspace"] = sum(a.nbytes for a in (*b, self._offsets, self._mask_ones) if id(a) not in counted)
        return out

    @property
    def nbytes(self) -> int:
        """Total bytes held (see ``memory()``)."""
        return sum(self.memory().values())

    def _identity(self):
        """Settings, and for a sparse model the patterns (which the seed draws and no state carries)."""
        out = {"config": self._compared_config()}
        if self.density < 1.0:
            digest = hashlib.sha256()
            for name in self.weight_names:
                pat = self.patterns[name]
                digest.update(f"{name} {pat.shape}".encode())
                digest.update(np.ascontiguousarray(pat.indptr, np.int64).tobytes())
                digest.update(np.ascontiguousarray(pat.indices, np.int32).tobytes())
            out["structure"] = digest.hexdigest()
        return out

    def _state_problems(self, state):
        return [] if state["n_steps"] >= 0 else [f"n_steps = {state['n_steps']} is negative"]
