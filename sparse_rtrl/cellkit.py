"""Helpers for writing a cell of your own: the compiler settings and the building blocks of the built-in cells.

Import it explicitly (``from sparse_rtrl import cellkit``); it loads numba,
which ``import sparse_rtrl`` does not. ``examples/minimal_gated_unit.py``
uses everything here to define a whole cell in one file.

The contract in brief
---------------------
A cell (a subclass of :class:`sparse_rtrl.Cell`) hands learners one compiled
step with a fixed signature::

    kernel(args, s_prev, x, s_next, coef, dloc, presyn, want_jacobians)

- ``args`` is the cell's own ``NamedTuple`` of arrays and scalars
  (``Cell.make_kernel_args``), flat: each weight matrix as the triple
  ``Cell._matrix_arg(name)`` returns, ``(indptr, indices, data)``.
- ``s_prev`` ``(B, S)`` and ``x`` ``(B, n_in)`` are read; ``s_next``
  ``(B, S)`` is written. Only that when ``want_jacobians`` is False.
- Otherwise also ``coef`` ``(B, S, G)``: ``coef[b, k, g]`` is the derivative
  of state ``k`` with respect to the pre-activation of gate ``g`` at the unit
  of ``k`` (a pre-activation is a sum ``sum_j w_ij z_j`` over one weight row
  per source: that is what makes ``I`` and ``D`` factor);
  ``dloc`` ``(B, n, m, m)``: the unit-local block of ``D``, how state ``i +
  a n`` depends on state ``i + c n`` *not* through a weight (a leak, a gate
  times the old state); and ``presyn`` ``(B, n + n_in + 1)``: ``[h; x; 1]``
  (:func:`fill_presyn`).
- A pre-activation may depend on ``h_j`` only through its weight: write the
  GRU's reset *after* the recurrent product, ``r * (W h + c)``, and give the
  two halves of such a product gates of their own.
- Kernels never validate their arguments, and never call ``numba.njit``
  directly: use :func:`njit` / :func:`parallel_njit`, which add the
  package's on-disk cache and floating-point settings (``math="gather"``
  for loops over CSR rows).

Write a per-stream body and two drivers over the batch, a serial one and one
that spreads the streams with ``numba.prange`` (the results must be
identical). The full contract is in the docstring of
``sparse_rtrl._cell_kernels``, with the GRU (``_gru_stream``) as the model
to follow; :func:`sparse_rtrl.gradcheck` checks a new cell's Jacobians
against finite differences.

Contents
--------
njit, parallel_njit
    The project's ``numba.njit`` (see ``sparse_rtrl._jit``).
row_dot, row_dot2, row_dot3, row_dot4
    Row ``i`` of one to four weight matrices times a vector, each matrix given
    as its ``(indptr, indices, data)`` triple; ``row_dot2/3/4`` take a
    ``shared`` flag (``Cell._shared_flag``: ``True`` when the matrices share
    one pattern, else ``None``). Dense or sparse, shared or not, is chosen by
    type when the kernel is compiled.
fast_tanh, sigmoid
    The activations of the built-in cells (float32 stays float32 in ``fast_tanh``).
fill_presyn
    ``fill_presyn(h, x, z)`` writes ``z = [h; x; 1]``.
WeightSpec
    One weight of a cell: name, gate, source (``"h"``, ``"x"`` or ``"1"``).
"""

from numba import types, uint64

from ._cell_kernels import _fill_presyn, _is_dense, _sigmoid, fast_tanh, row_dot, row_dot3, row_dot4
from ._jit import njit, overload, parallel_njit
from .cells import WeightSpec

__all__ = ["WeightSpec", "fast_tanh", "fill_presyn", "njit", "parallel_njit", "row_dot", "row_dot2", "row_dot3",
           "row_dot4", "sigmoid"]

sigmoid = _sigmoid
fill_presyn = _fill_presyn
# Their docstrings live here, where they are public: editing the kernel module would invalidate
# the on-disk cache of every kernel in it.
sigmoid.__doc__ = """The logistic function ``1 / (1 + exp(-a))``, for compiled code."""
fill_presyn.__doc__ = """``z = [h; x; 1]``: the presynaptic vector of a step (compiled code only).

    ``z`` has length ``n_hidden + n_in + 1``; every parameter ``p`` reads ``z[src[p]]``.
    """


@njit
def _dense_dot2(r0, r1, v):
    a0 = r0.dtype.type(0.0)
    a1 = a0
    for k in range(v.shape[0]):
        vk = v[k]
        a0 += r0[k] * vk
        a1 += r1[k] * vk
    return a0, a1


@njit(math="gather")
def _sparse_dot2(indptr, indices, d0, d1, i, v):
    """Two matrices sharing one pattern: each ``v[j]`` is loaded once."""
    a0 = d0.dtype.type(0.0)
    a1 = a0
    for e in range(uint64(indptr[i]), uint64(indptr[i + 1])):
        vj = v[indices[e]]
        a0 += d0[e] * vj
        a1 += d1[e] * vj
    return a0, a1


def row_dot2(p0, i0, d0, p1, i1, d1, shared, i, v):
    """Row ``i`` of two matrices times ``v`` (compiled code only); ``shared`` as in ``row_dot3``."""
    if d0.ndim == 2 and d1.ndim == 2:
        return _dense_dot2(d0[i], d1[i], v)
    if d0.ndim == 1 and d1.ndim == 1 and shared is True:
        return _sparse_dot2(p0, i0, d0, d1, i, v)
    return row_dot(p0, i0, d0, i, v), row_dot(p1, i1, d1, i, v)


@overload(row_dot2)
def _row_dot2_impl(p0, i0, d0, p1, i1, d1, shared, i, v):
    dense = [_is_dense(d) for d in (d0, d1)]
    if all(dense):
        return lambda p0, i0, d0, p1, i1, d1, shared, i, v: _dense_dot2(d0[i], d1[i], v)
    if not any(dense) and isinstance(shared, types.Boolean):
        return lambda p0, i0, d0, p1, i1, d1, shared, i, v: _sparse_dot2(p0, i0, d0, d1, i, v)
    return lambda p0, i0, d0, p1, i1, d1, shared, i, v: (row_dot(p0, i0, d0, i, v), row_dot(p1, i1, d1, i, v))

