"""Kronecker-factored approximations of RTRL: KF-RTRL and reverse KF-RTRL.

Both keep an unbiased, rank-one Kronecker estimate of the influence matrix
``J = ds/dtheta`` of a vanilla RNN, whose parameters are the entries
``(i, j)`` of ``[W U b]`` (unit ``i``, presynaptic index ``j`` into
``z = [h_prev; x; 1]``):

- :class:`KFRTRL` (Mujika, Meier & Steger 2018): ``J[k, (i, j)] ~ A[j] B[k, i]``;
- :class:`RKFRTRL` (Marschall, Cho & Savin 2020): ``J[k, (i, j)] ~ A[i] B[k, j]``.

They need the immediate Jacobian to be one Kronecker product,
``I[k, (i, j)] = delta_ki d_k z_j`` with ``d = coef[:, 0]``: true for a cell
with a single gate per unit and one state per unit (the VanillaRNN, leaky or
not, tanh or linear), false for the GRU and the LSTM, which they refuse.
"""

import numpy as np

from .._validate import check_float, check_seed
from ..cells import Cell
from .base import DynamicsValues, Learner
from .exact import blas_form


class _Kronecker(Learner):
    """Shared life cycle of the two Kronecker-factored learners.

    Subclasses set the factor shapes (``_factor_shapes``), the number of
    uniform draws per stream and step (``_n_draws``) and their kernels
    (``_kernels``).
    """

    structure = "Kronecker"
    stochastic = True
    unbiased = True
    # The factor B is stored as ``_Bf``: ``Learner`` uses ``_B`` for the batch size.
    _state_fields = {"factor_a": "_A", "factor_b": "_Bf", "rng": "_rng"}
    _memory_parts = {"influence": ("_A", "_Bf"), "plan": ("_dynamics.plan",)}

    @classmethod
    def supports(cls, cell):
        """Cells whose immediate Jacobian is one Kronecker product: one gate and one state per unit."""
        if not isinstance(cell, Cell):
            return f"cell must be a sparse_rtrl Cell, got {type(cell).__name__}"
        st = cell.structure
        if st.n_gates != 1 or st.n_state != st.n_hidden:
            return (
                f"{cls.__name__} needs a VanillaRNN (one gate and one state per unit), got a {type(cell).__name__} "
                f"with {st.n_gates} gates and {st.n_state // st.n_hidden} state(s) per unit: its Kronecker "
                f"factorisation assumes that parameter (i, j) reaches the state only through unit i's single "
                f"pre-activation, so that the immediate Jacobian I[k, (i, j)] = delta_ki d_k z_j is one Kronecker "
                f"product; with several gates per unit ({', '.join(cell.gate_names)}) it is a sum of them"
            )
        return None

    def __init__(self, cell, seed=0, batch_size: int = None, eps: float = 1e-7, parallel: bool = None):
        reason = self.supports(cell)
        if reason is not None:
            raise TypeError(reason)
        self.seed = check_seed(seed)
        eps = check_float(eps, "eps", 0.0, None, low_open=True)
        tiny = float(np.finfo(cell.dtype).tiny)
        if eps < tiny:
            # A guard that rounds to zero (or to a subnormal) in the cell's
            # dtype no longer guards the first step's 0 / 0.
            raise ValueError(f"eps must be at least {tiny:g} (the smallest normal {cell.dtype}), got {eps:g}")
        self.eps = eps
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        super().__init__(cell, batch_size, parallel)

    def _factor_shapes(self):
        raise NotImplementedError

    def _loop_class(self):
        """The NamedTuple class of this learner's loop state (in ``_kronecker_kernels``)."""
        raise NotImplementedError

    def _n_draws(self):
        raise NotImplementedError

    def _allocate(self):
        B, dt = self._B, self.cell.dtype
        a_shape, b_shape = self._factor_shapes()
        self._A = np.zeros((B, *a_shape), dt)
        self._Bf = np.zeros((B, *b_shape), dt)
        self._DB = np.zeros_like(self._Bf)
        S = self.cell.structure.n_state
        self._D_dense = np.zeros((B, S, S) if blas_form(self.cell.structure) else (B, 0, 0), dt)
        self._credit = np.zeros((B, b_shape[1]), dt)
        self._uniform = np.zeros((B, self._n_draws()), np.float64)
        self._eps = dt.type(self.eps)
        self._dynamics = DynamicsValues(self)

    def _bind(self):
        super()._bind()
        self._update, self._accumulate = self._kernels()

    def _kernels(self):
        """The (update, accumulate) drivers of this learner."""
        raise NotImplementedError

    def _reset(self):
        self._A[:] = 0.0
        self._Bf[:] = 0.0

    def _draw(self):
        """This step's uniform draws, one row per stream; a draw < 0.5 is the sign +1."""
        self._rng.random(out=self._uniform)

    def _after_step(self, coef, dloc, presyn):
        self._draw()
        self._dynamics.form()
        st = self.cell.structure
        self._update(st.dynamics.indptr, st.dynamics.indices, self._dynamics.values, coef, presyn, self._uniform,
                     self._A, self._Bf, self._DB, self._eps, self._D_dense)

    def _backward(self, c):
        self._accumulate(self.cell.structure.segments, self._A, self._Bf, c, self._credit, self._acc)

    def _loop_state(self, steps):
        st = self.cell.structure
        return self._loop_class()(st.dynamics.indptr, st.dynamics.indices, self._dynamics.plan,
                                  self._dynamics.values, self._A, self._Bf, self._DB, self._D_dense, st.segments,
                                  self._credit, self._eps)

    def _loop_draws(self):
        return "random", self._n_draws(), np.float64

    def factors(self):
        """The current factors ``(A, B)`` (copies): unbatched ``A`` is 1-D and ``B`` 2-D;
        batched, each has a leading stream axis."""
        return self._output(self._A), self._output(self._Bf)


class KFRTRL(_Kronecker, key="kfrtrl"):
    """Kronecker-Factored RTRL (Mujika, Meier & Steger, NeurIPS 2018).

    Parameters
    ----------
    cell : VanillaRNN
        A cell with one gate and one state per unit (leaky or not, tanh or
        linear). A GRU or LSTM raises ``TypeError``: their immediate Jacobian
        is not one Kronecker product.
    seed : int or numpy.random.Generator
        Seed of the random signs (one independent stream of draws per learner).
    batch_size : int, optional
    eps : float > 0
        Guard in the normalisers ``rho0``, ``rho1`` (at least the smallest
        normal number of the cell's dtype).
    parallel : bool, optional
        Spread the streams of a batch over the cores (default: when the batch
        is large enough to gain from it). Results are identical either way.

    Notes
    -----
    Parameter ``p`` is entry ``(i, j) = (unit(p), src(p))`` of ``[W U b]``;
    ``z = [h_{t-1}; x_t; 1]`` (length ``n_presyn``) and ``d = coef[:, 0]``
    (``d_i = alpha phi'(a_i)``), so ``I_t = z (x) diag(d)``:
    ``I[k, (i, j)] = z_j delta_ki d_k``. The influence is kept as one
    Kronecker product, ``J[k, (i, j)] ~ A[j] B[k, i]`` with ``A`` of shape
    ``(n_presyn,)`` and ``B`` of shape ``(n, n)``. Each step, with two
    independent random signs ``nu0, nu1`` in ``{-1, +1}``::

        A' = nu0 rho0 A + nu1 rho1 z
        B' = nu0 (D B) / rho0 + nu1 diag(d) / rho1
        rho0 = sqrt((||D B|| + eps) / (||A|| + eps))
        rho1 = sqrt((||d|| + eps) / (||z|| + eps))        (Frobenius norms)

    and each ``backward(c)`` adds ``g_p += A[src(p)] (c^T B)[unit(p)]``, read
    only at the stored parameters (a sparse ``W`` contributes its ``nnz``
    entries; no ``S x P`` matrix is ever formed).

    Unbiasedness: ``A' (x) B' = A (x) D B + z (x) diag(d) + nu0 nu1 (cross
    terms)``, and the cross terms vanish in expectation because ``nu0 nu1``
    has zero mean and is independent of everything else in them. That needs
    the normalisers to be strictly positive, finite and free of this step's
    signs, which is what the guard gives: ``eps`` is added to the numerator
    and to the denominator of each ratio (as in UORO), never clipped against
    a sign-dependent quantity. So ``E[A_t (x) B_t] = J_t`` (RTRL's influence),
    by induction from ``A = 0``, ``B = 0`` after ``reset()`` (``J_0 = 0``
    exactly). The first step after a reset has ``rho0 = 1`` and gives
    ``A (x) B = z (x) diag(d) = I_1`` exactly, whatever the signs.

    Draws: each step takes ``rng.random((batch, 2))`` from the learner's
    generator; stream ``b`` uses row ``b``, a draw below 0.5 being ``+1``
    (``nu0`` from column 0, ``nu1`` from column 1). ``reset()`` zeroes the
    state, the factors and the accumulator; the generator runs on, so a
    reset learner draws fresh signs.

    Cost per stream and step: forming ``D`` (``O(nnz(W) + n)``), ``D B``
    (``nnz(D) n`` multiply-adds; ``nnz(D) ~ density n^2 + n``), the update
    (``O(n^2 + n_presyn)``); each ``backward`` ``O(n^2 + P)``. Memory:
    ``n^2 + n_presyn`` numbers of influence (``memory()["influence"]``), plus
    an ``n^2`` work array for ``D B`` and ``nnz(D)`` values of ``D``. On a
    dense or nearly dense ``D`` (as RTRL decides, ``exact.blas_form``) ``D B``
    is one BLAS product of ``n^3`` multiply-adds on ``D`` held dense (``n^2``
    more numbers of work).
    """

    def _kernels(self):
        from . import _kronecker_kernels as k

        return self._pick(k.kf_update, k.kf_update_par), self._pick(k.kf_accumulate, k.kf_accumulate_par)

    def _loop_class(self):
        from ._kronecker_kernels import KFLoop

        return KFLoop

    def _factor_shapes(self):
        st = self.cell.structure
        return (st.n_presyn,), (st.n_state, st.n_hidden)

    def _n_draws(self):
        return 2

    def exact_for(self, n_steps):
        # From A = B = 0 the first step is I_1 itself, whatever the signs.
        return n_steps <= 1

    @property
    def name(self):
        return "KF-RTRL"


class RKFRTRL(_Kronecker, key="rkfrtrl"):
    """Reverse Kronecker-Factored RTRL (Marschall, Cho & Savin, JMLR 2020).

    Parameters
    ----------
    cell : VanillaRNN
        A cell with one gate and one state per unit (leaky or not, tanh or
        linear). A GRU or LSTM raises ``TypeError``.
    seed : int or numpy.random.Generator
        Seed of the random signs (one independent stream of draws per learner).
    batch_size : int, optional
    eps : float > 0
        Guard in the normalisers ``rho0``, ``rho1`` (at least the smallest
        normal number of the cell's dtype).
    parallel : bool, optional
        Spread the streams of a batch over the cores (default: when the batch
        is large enough to gain from it). Results are identical either way.

    Notes
    -----
    With ``z``, ``d`` and parameter ``p = (unit(p), src(p)) = (i, j)`` as in
    :class:`KFRTRL`, the factors swap roles: ``J[k, (i, j)] ~ A[i] B[k, j]``
    with ``A`` of shape ``(n,)`` and ``B`` of shape ``(n, n_presyn)``. The
    immediate Jacobian ``I[k, (i, j)] = delta_ki d_k z_j`` is a sum of ``n``
    Kronecker products ``e_i (x) d_i e_i z^T``, reduced to one with a fresh
    sign vector ``nu`` in ``{-1, +1}^n`` per step::

        A' = rho0 A + rho1 nu
        B' = (D B) / rho0 + (nu * d) z^T / rho1
        rho0 = sqrt((||D B|| + eps) / (||A|| + eps))
        rho1 = sqrt((||nu * d|| ||z|| + eps) / (||nu|| + eps))

    and each ``backward(c)`` adds ``g_p += A[unit(p)] (c^T B)[src(p)]``.

    Unbiasedness: ``E[nu_i nu_k] = delta_ik`` turns ``nu (x) (nu * d) z^T``
    into ``I`` in expectation, and the two cross terms are odd in ``nu``.
    Any normaliser that is even in ``nu`` (unchanged when ``nu -> -nu``)
    keeps the odd terms at zero mean; ``rho1`` above balances the norms of
    the two new terms, ``||rho1 nu|| = ||(nu * d) z^T|| / rho1`` (the
    Frobenius norm of an outer product is the product of the norms), and is
    in fact independent of ``nu`` altogether (``|nu_i| = 1``): it equals
    ``sqrt((||d|| ||z|| + eps) / (sqrt(n) + eps))``. ``rho0`` depends on the
    past only. The guard ``eps`` is added to both sides of each ratio, so
    the normalisers stay positive and finite, and ``A = 0``, ``B = 0`` after
    ``reset()`` (``J_0 = 0`` exactly, ``rho0 = 1`` on the first step). Then
    ``E[A_t (x) B_t] = J_t``. Unlike KF-RTRL, the first step is not exact:
    its estimate ``nu_i nu_k d_k z_j`` is right only on average.

    Draws: each step takes ``rng.random((batch, n))`` from the learner's
    generator; stream ``b`` uses row ``b``, a draw below 0.5 being ``+1``.
    ``reset()`` zeroes the state, the factors and the accumulator; the
    generator runs on, so a reset learner draws fresh signs.

    Cost per stream and step: forming ``D`` (``O(nnz(W) + n)``), ``D B``
    (``nnz(D) n_presyn`` multiply-adds), the update (``O(n n_presyn)``);
    each ``backward`` ``O(n n_presyn + P)``. Memory: ``n + n n_presyn``
    numbers of influence (``memory()["influence"]``), plus an
    ``n x n_presyn`` work array for ``D B`` and ``nnz(D)`` values of ``D``.
    On a dense or nearly dense ``D`` (``exact.blas_form``) ``D B`` is one
    BLAS product on ``D`` held dense (``n^2`` more numbers of work).
    """

    def _kernels(self):
        from . import _kronecker_kernels as k

        return self._pick(k.rkf_update, k.rkf_update_par), self._pick(k.rkf_accumulate, k.rkf_accumulate_par)

    def _loop_class(self):
        from ._kronecker_kernels import RKFLoop

        return RKFLoop

    def _factor_shapes(self):
        st = self.cell.structure
        return (st.n_hidden,), (st.n_state, st.n_presyn)

    def _n_draws(self):
        return self.cell.structure.n_hidden

    @property
    def name(self):
        return "R-KF-RTRL"
