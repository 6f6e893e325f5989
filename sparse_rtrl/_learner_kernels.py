"""Compiled kernels of the reference learners: RTRL, (T)BPTT and UORO.

All kernels are batched: the leading axis of every state-like array is the
stream index ``b``. They never validate and never allocate; the wrappers in
``learners.py`` own the buffers.

Shared arguments (from ``CellStructure``):
``dyn_ptr, dyn_idx``     CSR structure of the dynamics Jacobian D (S x S)
``unit, gate, src``      per-parameter unit, gate and presynaptic index
``touch``                (n_gates, S // n) which states of its unit a gate changes
``n``                    number of hidden units
"""

import numpy as np

from ._jit import njit


@njit(gather=True)
def immediate_vjp(v, coef, z, unit, gate, src, touch, n, out):
    """``out += v^T I`` for one stream: ``out[p] += z[src] sum_m v[k] coef[k, g]``."""
    n_touch = touch.shape[1]
    for p in range(unit.shape[0]):
        g = gate[p]
        i = unit[p]
        acc = v.dtype.type(0.0)
        for m in range(n_touch):
            if touch[g, m]:
                k = i + m * n
                acc += v[k] * coef[k, g]
        out[p] += acc * z[src[p]]


@njit(gather=True)
def csr_matvec(indptr, indices, data, x, out):
    """``out = A x`` for a CSR matrix ``A``."""
    for k in range(out.shape[0]):
        acc = out.dtype.type(0.0)
        for e in range(indptr[k], indptr[k + 1]):
            acc += data[e] * x[indices[e]]
        out[k] = acc


@njit(gather=True)
def csr_rmatvec(indptr, indices, data, x, out):
    """``out = A^T x`` for a CSR matrix ``A``."""
    out[:] = 0.0
    for k in range(indptr.shape[0] - 1):
        xk = x[k]
        if xk != 0.0:
            for e in range(indptr[k], indptr[k + 1]):
                out[indices[e]] += data[e] * xk


# -- RTRL ------------------------------------------------------------------------


@njit
def rtrl_update(dyn_ptr, dyn_idx, dyn, coef, z, unit, gate, src, touch, n,
                J, J_new, c, acc, accumulate):
    """``J_new = D J + I`` for every stream; if ``accumulate``, ``acc += c J_new``."""
    n_touch = touch.shape[1]
    P = J.shape[2]
    for b in range(J.shape[0]):
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
def dense_accumulate(J, c, acc):
    """``acc[b] += c[b] J[b]`` for a dense influence ``J`` (B, S, P)."""
    for b in range(J.shape[0]):
        accb = acc[b]
        for k in range(J.shape[1]):
            ck = c[b, k]
            if ck != 0.0:
                row = J[b, k]
                for p in range(J.shape[2]):
                    accb[p] += ck * row[p]


# -- BPTT over a stored window ---------------------------------------------------


@njit(gather=True)
def bptt_window(dyn_ptr, dyn_idx, unit, gate, src, touch, n,
                dyn_hist, coef_hist, z_hist, c_hist, t_stop, delta, scratch, acc):
    """Back-propagate the stored credits of steps ``[0, t_stop)`` of a window.

    The state entering the window is a constant (truncation), so the backward
    pass stops at the window's first step. ``delta`` and ``scratch`` are (B, S)
    work arrays.
    """
    for b in range(delta.shape[0]):
        dl = delta[b]
        dl[:] = 0.0
        for t in range(t_stop - 1, -1, -1):
            ct = c_hist[t, b]
            for k in range(dl.shape[0]):
                dl[k] += ct[k]
            immediate_vjp(dl, coef_hist[t, b], z_hist[t, b], unit, gate, src, touch, n, acc[b])
            if t > 0:
                csr_rmatvec(dyn_ptr, dyn_idx, dyn_hist[t, b], dl, scratch[b])
                dl[:] = scratch[b]


# -- UORO -----------------------------------------------------------------------


@njit(gather=True)
def uoro_update(dyn_ptr, dyn_idx, dyn, coef, z, unit, gate, src, touch, n,
                uniform, u, theta, nu, nu_I, Du, eps):
    """One UORO step for every stream (Tallec & Ollivier 2017).

    ``uniform`` (B, S) holds fresh U(0, 1) draws, turned into random signs
    ``nu``. Then ``u' = rho0 D u + rho1 nu`` and
    ``theta' = theta / rho0 + (nu^T I) / rho1`` with
    ``rho0 = sqrt((|theta| + eps) / (|D u| + eps))`` and
    ``rho1 = sqrt((|nu^T I| + eps) / (|nu| + eps))``. The eps guards make
    ``rho = 1`` at the start (u = theta = 0) and whenever a norm vanishes.
    """
    for b in range(u.shape[0]):
        nub = nu[b]
        for k in range(nub.shape[0]):
            nub[k] = 1.0 if uniform[b, k] < 0.5 else -1.0
        csr_matvec(dyn_ptr, dyn_idx, dyn[b], u[b], Du[b])
        vi = nu_I[b]
        vi[:] = 0.0
        immediate_vjp(nub, coef[b], z[b], unit, gate, src, touch, n, vi)
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


@njit
def uoro_accumulate(u, theta, c, acc):
    """``acc[b] += (c[b] . u[b]) theta[b]``."""
    for b in range(u.shape[0]):
        s = np.sum(c[b] * u[b])
        if s != 0.0:
            for p in range(theta.shape[1]):
                acc[b, p] += s * theta[b, p]
