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

import numpy as np

from numba import prange, uint64

from ._jit import njit, parallel_njit


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
def _rtrl_update_stream(b, dyn_ptr, dyn_idx, dyn, coef, z, unit, gate, src, touch, n, J, J_new, c, acc, accumulate):
    n_touch = touch.shape[1]
    P = J.shape[2]
    Jb = J[b]
    Nb = J_new[b]
    d = dyn[b]
    for k in range(Jb.shape[0]):
        row = Nb[k]
        row[:] = 0.0
        for e in range(dyn_ptr[k], dyn_ptr[k + 1]):
            dk = d[e]
            src_row = Jb[dyn_idx[e]]
            for p in range(P):
                row[p] += dk * src_row[p]
    for p in range(P):
        g = gate[p]
        zp = z[b, src[p]]
        for m in range(n_touch):
            if touch[g, m]:
                k = unit[p] + m * n
                Nb[k, p] += coef[b, k, g] * zp
    if accumulate:
        accb = acc[b]
        for k in range(Nb.shape[0]):
            ck = c[b, k]
            if ck != 0.0:
                row = Nb[k]
                for p in range(P):
                    accb[p] += ck * row[p]


@njit
def rtrl_update(dyn_ptr, dyn_idx, dyn, coef, z, unit, gate, src, touch, n,
                J, J_new, c, acc, accumulate):
    """``J_new = D J + I`` for every stream; if ``accumulate``, ``acc += c J_new``."""
    for b in range(J.shape[0]):
        _rtrl_update_stream(b, dyn_ptr, dyn_idx, dyn, coef, z, unit, gate, src, touch, n, J, J_new, c, acc, accumulate)


@parallel_njit()
def rtrl_update_par(dyn_ptr, dyn_idx, dyn, coef, z, unit, gate, src, touch, n,
                J, J_new, c, acc, accumulate):
    """``rtrl_update`` with the streams spread over the cores (same result)."""
    for b in prange(J.shape[0]):
        _rtrl_update_stream(b, dyn_ptr, dyn_idx, dyn, coef, z, unit, gate, src, touch, n, J, J_new, c, acc, accumulate)


@njit
def _dense_accumulate_stream(b, J, c, acc):
    accb = acc[b]
    for k in range(J.shape[1]):
        ck = c[b, k]
        if ck != 0.0:
            row = J[b, k]
            for p in range(J.shape[2]):
                accb[p] += ck * row[p]


@njit
def dense_accumulate(J, c, acc):
    """``acc[b] += c[b] J[b]`` for a dense influence ``J`` (B, S, P)."""
    for b in range(J.shape[0]):
        _dense_accumulate_stream(b, J, c, acc)


@parallel_njit()
def dense_accumulate_par(J, c, acc):
    """``dense_accumulate`` with the streams spread over the cores (same result)."""
    for b in prange(J.shape[0]):
        _dense_accumulate_stream(b, J, c, acc)


# -- BPTT over a stored window ---------------------------------------------------


@njit(gather=True)
def snapshot_if_changed(theta, n_rec, theta_hist, n_snap):
    """Keep a copy of the recurrent weights when they differ from the last copy.

    Returns the number of stored copies; the current weights are copy
    ``n_snap - 1`` afterwards. Cheap when nothing changed (one compare pass).
    """
    if n_snap > 0:
        last = theta_hist[n_snap - 1]
        same = True
        for p in range(n_rec):
            if last[p] != theta[p]:
                same = False
                break
        if same:
            return n_snap
    dst = theta_hist[n_snap]
    for p in range(n_rec):
        dst[p] = theta[p]
    return n_snap + 1


@njit(gather=True)
def _bptt_window_stream(b, seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg, coef_hist, dloc_hist, z_hist, c_hist, theta_hist, theta_idx, t_stop, delta, scratch, u, acc):
    m = touch.shape[1]
    dl = delta[b]
    dl[:] = 0.0
    ub = u[b]
    accb = acc[b]
    out = scratch[b]
    for t in range(t_stop - 1, -1, -1):
        ct = c_hist[t, b]
        for k in range(dl.shape[0]):
            dl[k] += ct[k]
        gate_credit(dl, coef_hist[t, b], touch, n, ub)
        zt = z_hist[t, b]
        if t > 0:
            dl_t = dloc_hist[t, b]
            for i in range(n):
                for c in range(m):
                    acc_c = dl.dtype.type(0.0)
                    for a in range(m):
                        acc_c += dl_t[i, a, c] * dl[i + a * n]
                    out[i + c * n] = acc_c
            th = theta_hist[theta_idx[t]]
            for s in range(n_rec_seg):
                val = ub[seg_unit[s], seg_gate[s]]
                if val != 0.0:
                    for p in range(uint64(seg_ptr[s]), uint64(seg_ptr[s + 1])):
                        j = src[p]
                        accb[p] += val * zt[j]
                        out[j] += val * th[p]
            first = n_rec_seg
        else:
            first = 0
        for s in range(first, seg_unit.shape[0]):
            val = ub[seg_unit[s], seg_gate[s]]
            if val != 0.0:
                for p in range(uint64(seg_ptr[s]), uint64(seg_ptr[s + 1])):
                    accb[p] += val * zt[src[p]]
        if t > 0:
            dl[:] = out


@njit(gather=True)
def bptt_window(seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg, coef_hist, dloc_hist, z_hist,
                c_hist, theta_hist, theta_idx, t_stop, delta, scratch, u, acc):
    """Back-propagate the stored credits of steps ``[0, t_stop)`` of a window.

    The state entering the window is a constant (truncation), so the backward
    pass stops at the window's first step. Step ``t`` uses the recurrent
    weights it ran with (``theta_hist[theta_idx[t]]``). One pass over the
    parameters per step does both ``acc += delta I_t`` and
    ``delta <- D_t^T delta``, from the factored forms.
    """
    for b in range(delta.shape[0]):
        _bptt_window_stream(b, seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg, coef_hist, dloc_hist, z_hist, c_hist, theta_hist, theta_idx, t_stop, delta, scratch, u, acc)


@parallel_njit(gather=True)
def bptt_window_par(seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg, coef_hist, dloc_hist, z_hist,
                c_hist, theta_hist, theta_idx, t_stop, delta, scratch, u, acc):
    """``bptt_window`` with the streams spread over the cores (same result)."""
    for b in prange(delta.shape[0]):
        _bptt_window_stream(b, seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg, coef_hist, dloc_hist, z_hist, c_hist, theta_hist, theta_idx, t_stop, delta, scratch, u, acc)


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


@njit(gather=True)
def _uoro_update_stream(b, theta_params, coef, dloc, z, seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg, uniform, u, theta, nu, nu_I, Du, work, eps):
    nub = nu[b]
    for k in range(nub.shape[0]):
        nub[k] = 1.0 if uniform[b, k] < 0.5 else -1.0
    dynamics_matvec(theta_params, coef[b], dloc[b], seg_ptr, seg_unit, seg_gate, src, touch, n,
                    n_rec_seg, u[b], work[b], Du[b])
    vi = nu_I[b]
    vi[:] = 0.0
    immediate_vjp(nub, coef[b], z[b], seg_ptr, seg_unit, seg_gate, src, touch, n, work[b], vi)
    n_theta = np.sqrt(np.sum(theta[b] * theta[b]))
    n_du = np.sqrt(np.sum(Du[b] * Du[b]))
    n_vi = np.sqrt(np.sum(vi * vi))
    n_nu = np.sqrt(np.float64(nub.shape[0]))
    rho0 = np.sqrt((n_theta + eps) / (n_du + eps))
    rho1 = np.sqrt((n_vi + eps) / (n_nu + eps))
    ub = u[b]
    for k in range(ub.shape[0]):
        ub[k] = rho0 * Du[b, k] + rho1 * nub[k]
    tb = theta[b]
    inv0 = 1.0 / rho0
    inv1 = 1.0 / rho1
    for p in range(tb.shape[0]):
        tb[p] = tb[p] * inv0 + vi[p] * inv1


@njit(gather=True)
def uoro_update(theta_params, coef, dloc, z, seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg,
                uniform, u, theta, nu, nu_I, Du, work, eps):
    """One UORO step for every stream (Tallec & Ollivier 2017).

    ``uniform`` (B, S) holds fresh U(0, 1) draws, turned into random signs
    ``nu``. Then ``u' = rho0 D u + rho1 nu`` and
    ``theta' = theta / rho0 + (nu^T I) / rho1`` with
    ``rho0 = sqrt((|theta| + eps) / (|D u| + eps))`` and
    ``rho1 = sqrt((|nu^T I| + eps) / (|nu| + eps))``. The eps guards make
    ``rho = 1`` at the start (u = theta = 0) and whenever a norm vanishes.
    ``D u`` and ``nu^T I`` use the factored Jacobians; ``work`` is (B, n, G).
    """
    for b in range(u.shape[0]):
        _uoro_update_stream(b, theta_params, coef, dloc, z, seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg, uniform, u, theta, nu, nu_I, Du, work, eps)


@parallel_njit(gather=True)
def uoro_update_par(theta_params, coef, dloc, z, seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg,
                uniform, u, theta, nu, nu_I, Du, work, eps):
    """``uoro_update`` with the streams spread over the cores (same result)."""
    for b in prange(u.shape[0]):
        _uoro_update_stream(b, theta_params, coef, dloc, z, seg_ptr, seg_unit, seg_gate, src, touch, n, n_rec_seg, uniform, u, theta, nu, nu_I, Du, work, eps)


@njit
def _uoro_accumulate_stream(b, u, theta, c, acc):
    s = np.sum(c[b] * u[b])
    if s != 0.0:
        for p in range(theta.shape[1]):
            acc[b, p] += s * theta[b, p]


@njit
def uoro_accumulate(u, theta, c, acc):
    """``acc[b] += (c[b] . u[b]) theta[b]``."""
    for b in range(u.shape[0]):
        _uoro_accumulate_stream(b, u, theta, c, acc)


@parallel_njit()
def uoro_accumulate_par(u, theta, c, acc):
    """``uoro_accumulate`` with the streams spread over the cores (same result)."""
    for b in prange(u.shape[0]):
        _uoro_accumulate_stream(b, u, theta, c, acc)