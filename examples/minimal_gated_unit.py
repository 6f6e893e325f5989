"""A cell of your own in one file: the minimal gated unit (Zhou et al. 2016).

This file defines a complete ``sparse_rtrl`` cell outside the library. Every
learner that is not tied to a cell type (RTRL, BPTT, TBPTT, SnAp-n, UORO,
KF-RTRL, ...) runs on it, with sparse or dense weights, in float32 or
float64, batched, on one core or all of them. Run it to see its gradient
check::

    python examples/minimal_gated_unit.py

The cell
--------
One forget gate ``f`` both gates the update and resets the candidate; the
reset is applied after the recurrent product (the cuDNN-GRU form)::

    f  = sigmoid(W_f h + U_f x + b_f)
    n  = tanh(U_n x + b_n + f * (W_n h + c_n))
    h' = (1 - f) * h + f * n

Writing a cell, step by step
----------------------------
1. **Weights** (``weight_specs``): one :class:`~sparse_rtrl.cellkit.WeightSpec`
   per matrix or bias, recurrent ones (``source="h"``) first, each naming the
   *gate* whose pre-activation it feeds. A gate is any quantity of the form
   ``sum_j w_ij z_j`` over one row per source, with ``z = [h; x; 1]``. The
   product ``f * (W_n h + c_n)`` is not such a sum, so its two factors get
   gates of their own: gate 0 ``a_f = W_f h + U_f x + b_f`` (forget), gate 1
   ``a_in = U_n x + b_n`` (candidate, input half) and gate 2
   ``r = W_n h + c_n`` (candidate, recurrent half). Then every
   pre-activation depends on ``h_j`` only through its weight, which is what
   lets learners form both Jacobians from a few numbers per state.

2. **Touch** (``gate_touch``, ``local_touch``): which states of unit ``i``
   each gate changes directly (one state per unit here, so every gate touches
   it), and which states of unit ``i`` depend on each other directly, not
   through a weight: ``h'_i`` on ``h_i`` through ``(1 - f) h``.

3. **The step** (``kernel``): a compiled function with the fixed signature
   ``kernel(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians)``
   (see ``sparse_rtrl.cellkit``). Besides the new state it writes, per unit,
   the derivative of ``h'`` with respect to each gate's pre-activation
   (``coef``), the unit-local block of the dynamics Jacobian (``dloc``) and
   ``z`` (``presyn``). With ``dn = 1 - n**2``::

       dh'/da_f  = ((n - h) + f * dn * r) * f * (1 - f)
       dh'/da_in = f * dn
       dh'/dr    = f * dn * f
       dloc      = 1 - f            (dh'_i/dh_i not through a weight)

   Learners rebuild ``I[k, p] = coef[k, gate(p)] * z[src(p)]`` and
   ``D = dloc + sum over recurrent p of coef[k, gate(p)] * theta_p``.

4. **Arguments** (``make_kernel_args``): the arrays the step reads, as one
   flat NamedTuple. ``self._matrix_arg(name)`` gives a matrix as
   ``(indptr, indices, data)`` (``data`` 2-D when the pattern is dense, so
   the compiled row products pick a vectorised loop), and
   ``self._shared_flag(...)`` says whether matrices share a pattern.

5. **Check** with ``sr.gradcheck(cell)``: the Jacobians against finite
   differences, the declared patterns against the entries that are really
   nonzero, and the learners' gradients against BPTT.

The class has no registry key (``class MinimalGatedUnit(Cell, key="mgu")``
would add it to the library's cell table, and so to the command line);
checkpoints name it by its Python path.
"""

from typing import NamedTuple

import numpy as np
from numba import prange

import sparse_rtrl as sr
from sparse_rtrl import cellkit
from sparse_rtrl.cellkit import WeightSpec, fast_tanh, fill_presyn, row_dot2, sigmoid

__all__ = ["MGUArgs", "MinimalGatedUnit", "main"]


class MGUArgs(NamedTuple):
    """What the MGU step reads: each matrix as its (indptr, indices, data) triple, the biases, two flags."""

    Wf_p: np.ndarray
    Wf_i: np.ndarray
    Wf_d: np.ndarray
    Wn_p: np.ndarray
    Wn_i: np.ndarray
    Wn_d: np.ndarray
    Uf_p: np.ndarray
    Uf_i: np.ndarray
    Uf_d: np.ndarray
    Un_p: np.ndarray
    Un_i: np.ndarray
    Un_d: np.ndarray
    b_f: np.ndarray
    b_n: np.ndarray
    c_n: np.ndarray
    shared_h: object  # True when W_f and W_n share one pattern, else None (a type: chosen at compile time)
    shared_x: object  # the same for U_f and U_n


class MinimalGatedUnit(sr.Cell):
    """Minimal gated unit: ``h' = (1 - f) h + f tanh(U_n x + b_n + f (W_n h + c_n))``, ``f = sig(W_f h + U_f x + b_f)``.

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
        If True (default) ``W_f`` and ``W_n`` share one random pattern, and so
        do ``U_f`` and ``U_n``.
    pattern : scipy.sparse matrix, Pattern or dict, optional
        Fixed structure instead of a random one (as for ``sr.GRU``).

    Notes
    -----
    Weights, in parameter order: ``W_f, W_n, U_f, U_n, b_f, b_n, c_n``.
    Gates: 0 forget, 1 candidate (input half), 2 candidate (recurrent half).
    """

    gate_names = ("forget", "candidate_input", "candidate_hidden")

    def __init__(self, n_in: int, n_hidden: int, density: float = None, seed=0, dtype=np.float64, *,
                 input_density: float = 1.0, shared_pattern: bool = True, pattern=None):
        self._build(n_in, n_hidden, density, seed, dtype, input_density, pattern, shared_pattern)

    @classmethod
    def weight_specs(cls):
        return [
            WeightSpec("W_f", 0, "h"), WeightSpec("W_n", 2, "h"),
            WeightSpec("U_f", 0, "x"), WeightSpec("U_n", 1, "x"),
            WeightSpec("b_f", 0, "1"), WeightSpec("b_n", 1, "1"), WeightSpec("c_n", 2, "1"),
        ]

    def gate_touch(self):
        return [[True], [True], [True]]  # every gate changes the unit's one state

    def local_touch(self):
        return [[True]]  # (1 - f) h: h'_i depends on h_i directly

    def make_kernel_args(self):
        w = self.weights
        return MGUArgs(
            *self._matrix_arg("W_f"), *self._matrix_arg("W_n"),
            *self._matrix_arg("U_f"), *self._matrix_arg("U_n"),
            w["b_f"], w["b_n"], w["c_n"],
            self._shared_flag("W_f", "W_n"), self._shared_flag("U_f", "U_n"),
        )

    @property
    def kernel(self):
        return mgu_kernel

    @property
    def kernel_par(self):
        return mgu_kernel_par


@cellkit.njit(math="gather")
def _mgu_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb):
    """One stream ``bb`` of the batch: the new state and, if asked, the Jacobian factors."""
    (Wf_p, Wf_i, Wf_d, Wn_p, Wn_i, Wn_d, Uf_p, Uf_i, Uf_d, Un_p, Un_i, Un_d,
     b_f, b_n, c_n, shared_h, shared_x) = args
    n = s_prev.shape[1]
    one = s_prev.dtype.type(1.0)
    h = s_prev[bb]
    xb = x[bb]
    for i in range(n):
        h_f, h_n = row_dot2(Wf_p, Wf_i, Wf_d, Wn_p, Wn_i, Wn_d, shared_h, i, h)
        x_f, x_n = row_dot2(Uf_p, Uf_i, Uf_d, Un_p, Un_i, Un_d, shared_x, i, xb)
        a_f = b_f[i] + h_f + x_f  # gate 0
        a_in = b_n[i] + x_n  # gate 1
        r = c_n[i] + h_n  # gate 2
        f = sigmoid(a_f)
        c = fast_tanh(a_in + f * r)
        s_next[bb, i] = (one - f) * h[i] + f * c
        if want_jacobians:
            # The candidate's pre-activation is a_in + f * r: its input half
            # enters with slope 1, its recurrent half scaled by f, and f
            # enters both the mix (1 - f) h + f c and, through r, c itself.
            dc = f * (one - c * c)  # dh'/da_in
            coef[bb, i, 0] = (c - h[i] + dc * r) * f * (one - f)
            coef[bb, i, 1] = dc
            coef[bb, i, 2] = dc * f
            dloc[bb, i, 0, 0] = one - f
    if want_jacobians:
        fill_presyn(h, xb, presyn[bb])


@cellkit.njit(math="gather")
def mgu_kernel(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    """The MGU step over a batch, one stream after the other."""
    for bb in range(s_prev.shape[0]):
        _mgu_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb)


@cellkit.parallel_njit(math="gather")
def mgu_kernel_par(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians):
    """The MGU step with the streams of a batch spread over the cores (same numbers)."""
    for bb in prange(s_prev.shape[0]):
        _mgu_stream(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians, bb)


def main():
    """Check a sparse MGU's Jacobians and the exact and approximate learners' gradients; print the report."""
    cell = MinimalGatedUnit(3, 8, density=0.3, seed=0)
    learners = {
        "RTRL": sr.RTRL,
        "TBPTT(4)": lambda c: sr.TBPTT(c, 4),
        "SnAp-1": lambda c: sr.SnAp(c, 1),
        "SnAp-2": lambda c: sr.SnAp(c, 2),
        "SnAp-9": lambda c: sr.SnAp(c, 9),  # saturated on 8 units: exact
        "UORO": lambda c: sr.UORO(c, seed=0),
    }
    report = sr.gradcheck(cell, learners, n_steps=10, seed=0)
    print(report)
    return report


if __name__ == "__main__":
    # Run the copy of this file imported under its module name: numba's disk
    # cache knows the kernels' argument type by its class, and a class of
    # __main__ would miss the cache (and add an entry) on every run.
    import importlib
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    module = importlib.import_module("minimal_gated_unit")
    raise SystemExit(0 if module.main().ok else 1)
