"""Compiled kernels every learner family uses: the factored Jacobians' products, D's values, the gradient.

All kernels are batched: the leading axis of every state-like array is the
stream index ``b``. They never validate and never allocate; the learners own
the buffers.

``seg`` is the cell's :class:`~sparse_rtrl.cells.Segments` (row segments of
the parameters, their presynaptic indices, which states each gate touches,
the number of units and of recurrent segments); ``plan`` a
:class:`~sparse_rtrl.cells.DynamicsPlan`. ``D`` is formed (``form_dynamics``)
only where a learner multiplies by it entry by entry (RTRL, SnAp, the
Kronecker learners); the others use its factored form.
"""

from numba import prange, uint64

from .._jit import njit, parallel_njit


@njit(math="gather")
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


@njit(math="gather")
def immediate_vjp(v, coef, z, seg, u, out):
    """``out += v^T I`` for one stream (``u`` is an (n, G) work array)."""
    seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg = seg
    gate_credit(v, coef, touch, n, u)
    for s in range(seg_unit.shape[0]):
        val = u[seg_unit[s], seg_gate[s]]
        if val != 0.0:
            for p in range(uint64(seg_ptr[s]), uint64(seg_ptr[s + 1])):
                out[p] += val * z[src[p]]


@njit(math="gather")
def dynamics_matvec(theta, coef, dloc, seg, v, w, out):
    """``out = D v`` from the factored form (``w`` is an (n, G) work array).

    ``D = D_local + sum over recurrent p of coef[k, g] theta_p e_k e_src^T``.
    """
    seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg = seg
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


@njit(math="gather")
def dynamics_rmatvec(theta, coef, dloc, seg, v, u, out):
    """``out = D^T v`` for one stream from the factored form (``u`` is (n, G) work).

    ``D = D_local + sum over recurrent p of coef[k, g] theta_p e_k e_src^T``,
    so ``D^T v = D_local^T v + sum_p u[unit_p, g_p] theta_p e_src`` with
    ``u[i, g] = sum over the states k of unit i that gate g touches of
    coef[k, g] v[k]``. ``theta`` needs only the recurrent weights.
    """
    seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg = seg
    m = touch.shape[1]
    gate_credit(v, coef, touch, n, u)
    for i in range(n):
        for c in range(m):
            acc = v.dtype.type(0.0)
            for a in range(m):
                acc += dloc[i, a, c] * v[i + a * n]
            out[i + c * n] = acc
    for s in range(n_rec_seg):
        val = u[seg_unit[s], seg_gate[s]]
        if val != 0.0:
            for p in range(uint64(seg_ptr[s]), uint64(seg_ptr[s + 1])):
                out[src[p]] += val * theta[p]


@njit(math="gather")
def _form_dynamics_stream(b, theta, coef, dloc, plan, dyn):
    run_row, run_gate, run_param, run_ptr, run_entry, local_entry = plan
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


@njit(math="gather")
def form_dynamics(theta, coef, dloc, plan, dyn):
    """Values of D on its pattern (or on the subset of entries the plan lists).

    The plan (``CellStructure.dynamics_plan``) lists the weights' contributions
    ``D[k, j] += coef[k, g] theta_p`` in runs of consecutive parameters that
    share the state ``k`` and gate ``g``: the coefficient is loaded once per
    run and the weights are streamed. ``dyn`` must start zeroed: entries
    outside the plan are never written.
    """
    for b in range(dyn.shape[0]):
        _form_dynamics_stream(b, theta, coef, dloc, plan, dyn)


@parallel_njit(math="gather")
def form_dynamics_par(theta, coef, dloc, plan, dyn):
    """``form_dynamics`` with the streams spread over the cores (same result)."""
    for b in prange(dyn.shape[0]):
        _form_dynamics_stream(b, theta, coef, dloc, plan, dyn)


# -- one trace per parameter: SnAp-1's diagonal layout, RFLO's and KeRNL's traces -----------


@njit(math="gather")
def _trace_update_stream(b, seg, decay, decay_index, coef, z, u, trace, acc, accumulate):
    seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg = seg
    tb = trace[b]
    ab = acc[b]
    zb = z[b]
    cb = coef[b]
    db = decay[b]
    ub = u[b]
    for s in range(seg_unit.shape[0]):
        i = seg_unit[s]
        a = db[decay_index[i]]
        bc = cb[i, seg_gate[s]]
        lo = uint64(seg_ptr[s])
        hi = uint64(seg_ptr[s + 1])
        if accumulate:
            ui = ub[i]
            for p in range(lo, hi):
                v = a * tb[p] + bc * zb[src[p]]
                tb[p] = v
                ab[p] += ui * v
        else:
            for p in range(lo, hi):
                tb[p] = a * tb[p] + bc * zb[src[p]]


@njit(math="gather")
def trace_update(seg, decay, decay_index, coef, z, u, trace, acc, accumulate):
    """``trace[p] <- decay_i trace[p] + coef[i, g] z[src(p)]``; if ``accumulate``, ``acc[p] += u_i trace[p]``.

    One trace per parameter ``p`` (unit ``i``, gate ``g``), in parameter
    order, for cells whose gates each touch one state. The decay of unit
    ``i`` is ``decay[b, decay_index[i]]``: SnAp-1 reads ``D_ii`` from D's
    values (``decay_index`` = the diagonal's entries), RFLO the leak and
    KeRNL its learned rates (``decay_index`` = ``arange(n)``). ``u`` (B, n
    or more) is the credit of each unit. One streaming pass over the
    parameters, segment by segment (a segment shares its unit and gate).
    """
    for b in range(trace.shape[0]):
        _trace_update_stream(b, seg, decay, decay_index, coef, z, u, trace, acc, accumulate)


@parallel_njit(math="gather")
def trace_update_par(seg, decay, decay_index, coef, z, u, trace, acc, accumulate):
    """``trace_update`` with the streams spread over the cores (same result)."""
    for b in prange(trace.shape[0]):
        _trace_update_stream(b, seg, decay, decay_index, coef, z, u, trace, acc, accumulate)


@njit
def _trace_accumulate_stream(b, seg, u, trace, acc):
    seg_ptr, seg_unit = seg.seg_ptr, seg.seg_unit
    tb = trace[b]
    ab = acc[b]
    ub = u[b]
    for s in range(seg_unit.shape[0]):
        ui = ub[seg_unit[s]]
        if ui != 0.0:
            for p in range(uint64(seg_ptr[s]), uint64(seg_ptr[s + 1])):
                ab[p] += ui * tb[p]


@njit
def trace_accumulate(seg, u, trace, acc):
    """``acc += u * trace`` without changing the trace (a second credit for one step)."""
    for b in range(trace.shape[0]):
        _trace_accumulate_stream(b, seg, u, trace, acc)


@parallel_njit
def trace_accumulate_par(seg, u, trace, acc):
    """``trace_accumulate`` with the streams spread over the cores (same result)."""
    for b in prange(trace.shape[0]):
        _trace_accumulate_stream(b, seg, u, trace, acc)


# -- the accumulated gradient ---------------------------------------------------------


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
