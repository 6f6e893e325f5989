"""Compiled kernels of the reference learners: RTRL, (T)BPTT and UORO.

All kernels are batched: the leading axis of every state-like array is the
stream index ``b``. They never validate and never allocate; the wrappers in
``learners.py`` own the buffers.

Shared arguments (from ``CellStructure``):
``dyn_ptr, dyn_idx``     CSR structure of the dynamics Jacobian D (S x S)
``seg_ptr, seg_unit, seg_gate``  row segments: parameters sharing unit and gate
``src``                  per-parameter presynaptic index
``touch``                (n_gates, m) which states of its unit a gate changes
``n``, ``n_rec_seg``     hidden units; recurrent row segments (a prefix)

``D`` is formed (``form_dynamics``) only where a learner multiplies by it
entry by entry (RTRL, SnAp); BPTT and UORO use its factored form.
"""

from numba import prange, uint64

from .._jit import njit, parallel_njit


@njit(gather=True)
def gate_credit(v, coef, touch, n, u):
    """``u[i, g] = sum_a touch[g, a] coef[i + a n, g] v[i + a n]``: credit per unit and gate."""
    G = touch.shape[0]
    for i in range(n):
        for g in range(G):
            acc = v.dtype.type(0.0)
            for a in range(touch.shape[1]):
                if touch[g, a]:
                    k = i + a * n
                    acc += v[k] * coef[k, g]
            u[i, g] = acc


@njit(gather=True)
def immediate_vjp(v, coef, z, seg_ptr, seg_unit, seg_gate, src, touch, n, u, out):
    """``out += v^T I`` for one stream (``u`` is an (n, G) work array)."""
    gate_credit(v, coef, touch, n, u)
    for s in range(seg_unit.shape[0]):
        val = u[seg_unit[s], seg_gate[s]]
        if val != 0.0:
            for p in range(uint64(seg_ptr[s]), uint64(seg_ptr[s + 1])):
                out[p] += val * z[src[p]]


@njit(gather=True)
def dynamics_matvec(theta, coef, dloc, seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg, v, w, out):
    """``out = D v`` from the factored form (``w`` is an (n, G) work array).

    ``D = D_local + sum over recurrent p of coef[k, g] theta_p e_k e_src^T``.
    """
    m = touch.shape[1]
    w[:, :] = 0.0
    for s in range(n_rec_seg):
        acc = v.dtype.type(0.0)
        for p in range(uint64(seg_ptr[s]), uint64(seg_ptr[s + 1])):
            acc += theta[p] * v[src[p]]
        w[seg_unit[s], seg_gate[s]] += acc
    for a in range(m):
        for i in range(n):
            k = i + a * n
            acc = v.dtype.type(0.0)
            for c in range(m):
                acc += dloc[i, a, c] * v[i + c * n]
            for g in range(touch.shape[0]):
                if touch[g, a]:
                    acc += coef[k, g] * w[i, g]
            out[k] = acc


@njit(gather=True)
def _form_dynamics_stream(b, theta, coef, dloc, run_row, run_gate, run_param, run_ptr, run_entry, local_entry, dyn):
    n = local_entry.shape[0]
    m = local_entry.shape[1]
    d = dyn[b]
    for t in range(run_entry.shape[0]):
        d[run_entry[t]] = 0.0
    for i in range(n):
        for a in range(m):
            for c in range(m):
                e = local_entry[i, a, c]
                if e >= 0:
                    d[e] = dloc[b, i, a, c]
    cb = coef[b]
    for u in range(run_row.shape[0]):
        cg = cb[run_row[u], run_gate[u]]
        lo = uint64(run_ptr[u])
        p0 = uint64(run_param[u])
        for t in range(uint64(run_ptr[u + 1]) - lo):
            d[run_entry[lo + t]] += cg * theta[p0 + t]


@njit(gather=True)
def form_dynamics(theta, coef, dloc, run_row, run_gate, run_param, run_ptr, run_entry, local_entry, dyn):
    """Values of D on its pattern (or on the subset of entries the plan lists).

    The plan (``CellStructure.dynamics_plan``) lists the weights' contributions
    ``D[k, j] += coef[k, g] theta_p`` in runs of consecutive parameters that
    share the state ``k`` and gate ``g``: the coefficient is loaded once per
    run and the weights are streamed. ``dyn`` must start zeroed: entries
    outside the plan are never written.
    """
    for b in range(dyn.shape[0]):
        _form_dynamics_stream(b, theta, coef, dloc, run_row, run_gate, run_param, run_ptr, run_entry, local_entry, dyn)


@parallel_njit(gather=True)
def form_dynamics_par(theta, coef, dloc, run_row, run_gate, run_param, run_ptr, run_entry, local_entry, dyn):
    """``form_dynamics`` with the streams spread over the cores (same result)."""
    for b in prange(dyn.shape[0]):
        _form_dynamics_stream(b, theta, coef, dloc, run_row, run_gate, run_param, run_ptr, run_entry, local_entry, dyn)


# -- RTRL ------------------------------------------------------------------------


@njit
def _take_grad_range(acc, out, lo, hi):
    # Plain loops: numba's slice assignment takes a generic path that was
    # measured 2x slower than the copy itself.
    # Unsigned bounds: with signed ones numba keeps a negative-index check in
    # the loop and LLVM does not vectorise it (8 x 27k summed: 345 -> 60 us).
    a0 = acc[0]
    for p in range(uint64(lo), uint64(hi)):
        out[p] = a0[p]
        a0[p] = 0.0
    for b in range(1, acc.shape[0]):
        ab = acc[b]
        for p in range(uint64(lo), uint64(hi)):
            out[p] += ab[p]
            ab[p] = 0.0


@njit
def take_grad(acc, out):
    """``out = acc.sum(axis=0)`` and ``acc = 0`` in one pass."""
    _take_grad_range(acc, out, 0, out.shape[0])


@parallel_njit
def take_grad_par(acc, out):
    """``take_grad`` over chunks of parameters on all cores (same result)."""
    chunk = 8192
    n_chunks = (out.shape[0] + chunk - 1) // chunk
    for c in prange(n_chunks):
        _take_grad_range(acc, out, c * chunk, min(out.shape[0], (c + 1) * chunk))


# -- UORO -----------------------------------------------------------------------
