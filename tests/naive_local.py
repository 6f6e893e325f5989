"""Slow float64 references for the local learners (RFLO, KeRNL, e-prop).

Dense numpy written straight from the equations, on top of ``naive.py``
(cells, Jacobians, masks); like ``naive.py`` it never imports
``sparse_rtrl``. Sequences follow ``naive.py``'s conventions: ``xs[t]`` drives
the step from the previous state (zeros at ``t = 0``), ``cs[t]`` is the credit
on the new state, and ``D_t``, ``I_t`` are evaluated at (previous state,
``xs[t]``). ``params[t]``, when given, are the weights in force at step ``t``.
"""

import numpy as np

import naive


def _set_params(cell, params, t):
    if params is not None:
        cell.params[:] = params[t]


def d_local(cell, s, x):
    """The unit-local part of ``D`` (S, S): the paths that bypass the weights.

    vanilla: ``(1 - alpha) I``; GRU: ``diag(z)`` (from ``h' = ... + z h``);
    LSTM (state ``[h; c]``): ``dc'/dc = diag(f)``, ``dh'/dc = diag(o tanh'(c') f)``,
    zero elsewhere (``h'`` depends on ``h`` only through the weights).
    """
    s = np.asarray(s, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    v = naive._forward(cell.key, naive._alpha(cell), naive.dense_weights(cell), s, x)
    n = int(cell.n_hidden)
    if cell.key == "vanilla":
        return (1.0 - float(cell.alpha)) * np.eye(n)
    if cell.key == "gru":
        return np.diag(v["z"])
    if cell.key == "lstm":
        D = np.zeros((2 * n, 2 * n))
        D[n:, n:] = np.diag(v["f"])
        D[:n, n:] = np.diag(v["o"] * (1.0 - v["tc"] ** 2) * v["f"])
        return D
    raise ValueError(cell.key)


def rflo(cell, xs, cs, params=None):
    """RTRL with ``D`` replaced by ``(1 - alpha) I``: ``J_t = (1 - alpha) J_{t-1} + I_t``.

    Returns ``(grad, J_T)``.
    """
    S, P = cell.n_state, cell.n_params
    s, J, g = np.zeros(S), np.zeros((S, P)), np.zeros(P)
    leak = 1.0 - float(cell.alpha)
    for t in range(len(xs)):
        _set_params(cell, params, t)
        J = leak * J + naive.immediate_jacobian(cell, s, xs[t])
        s = naive.step(cell, s, xs[t])
        g += np.asarray(cs[t], dtype=np.float64) @ J
    return g, J


def eprop(cell, xs, cs, params=None):
    """``e_t = mask1 * (D_local_t e_{t-1} + I_t)``, ``grad = sum_t c_t e_t``. Returns ``(grad, e_T)``."""
    S, P = cell.n_state, cell.n_params
    mask = naive.snap_mask(cell, 1)
    s, e, g = np.zeros(S), np.zeros((S, P)), np.zeros(P)
    for t in range(len(xs)):
        _set_params(cell, params, t)
        e = np.where(mask, d_local(cell, s, xs[t]) @ e + naive.immediate_jacobian(cell, s, xs[t]), 0.0)
        s = naive.step(cell, s, xs[t])
        g += np.asarray(cs[t], dtype=np.float64) @ e
    return g, e


def kernl(cell, xs, cs, normals, lr, sigma, decay, A=None, params=None, noise_in_target=True, skip=()):
    """KeRNL on a batch of streams sharing ``A`` and ``gamma``, step by step.

    Parameters
    ----------
    xs : (T, B, n_in); cs : (T, B, n); normals : (T, B, n) N(0, 1) draws
    lr, sigma : the step size (divided by ``sigma^2``) and the noise scale
    decay : (n,) initial ``gamma``; A : (n, n) initial sensitivity (default I)
    noise_in_target : compare ``A Omega`` with the copy's state including this
        step's noise (the library's choice); False compares with the copy
        before it (Marschall et al.'s code).
    skip : steps whose credit is left out of the gradient (no backward)

    Per step, for every stream: the copy steps from its perturbed state;
    ``k = 1 - gamma``; ``Gamma = k Gamma - Omega``; ``Omega = k Omega + zeta``;
    perturbed state ``= copy + zeta``; ``e = A Omega - (target - h)``. Then
    ``A -= lr/sigma^2 sum_b e_b Omega_b^T``,
    ``gamma = clip(gamma - lr/sigma^2 sum_b (e_b^T A_old) Gamma_b, 0, 1)``;
    trace ``B = k B + I`` (per parameter, at its unit) and
    ``grad += (c^T A_new)_unit B``.

    Returns
    -------
    dict with ``grads`` (T, P) the gradient added by each step (summed over
    streams), ``states`` (T, B, n), ``A`` (T, n, n) and ``gamma`` (T, n) after
    each step, ``noise_loss`` (T,) ``sum_b |e_b|^2 / sigma^2``.
    """
    xs = np.asarray(xs, dtype=np.float64)
    T, B = xs.shape[:2]
    n, P = cell.n_hidden, cell.n_params
    unit = np.array([i for (_, i, _) in naive.param_index(cell)])
    A = np.eye(n) if A is None else np.array(A, dtype=np.float64)
    gamma = np.array(decay, dtype=np.float64)
    step = lr / sigma ** 2
    h = np.zeros((B, n))
    perturbed = np.zeros((B, n))
    omega = np.zeros((B, n))
    big_gamma = np.zeros((B, n))
    trace = np.zeros((B, P))
    out = {"grads": np.zeros((T, P)), "states": np.zeros((T, B, n)), "A": np.zeros((T, n, n)),
           "gamma": np.zeros((T, n)), "noise_loss": np.zeros(T)}
    for t in range(T):
        _set_params(cell, params, t)
        k = 1.0 - gamma
        errs, rows = [], []
        for b in range(B):
            imm = naive.immediate_jacobian(cell, h[b], xs[t, b])[unit, np.arange(P)]
            h[b] = naive.step(cell, h[b], xs[t, b])
            copy = naive.step(cell, perturbed[b], xs[t, b])
            zeta = sigma * normals[t, b]
            big_gamma[b] = k * big_gamma[b] - omega[b]
            omega[b] = k * omega[b] + zeta
            perturbed[b] = copy + zeta
            target = perturbed[b] if noise_in_target else copy
            e = A @ omega[b] - (target - h[b])
            errs.append(e)
            rows.append(e @ A)
            trace[b] = k[unit] * trace[b] + imm
        out["noise_loss"][t] = sum(float(e @ e) for e in errs) / sigma ** 2
        A = A - step * sum(np.outer(e, o) for e, o in zip(errs, omega))
        gamma = np.clip(gamma - step * sum(r * g for r, g in zip(rows, big_gamma)), 0.0, 1.0)
        if t not in skip:
            for b in range(B):
                out["grads"][t] += (np.asarray(cs[t, b], dtype=np.float64) @ A)[unit] * trace[b]
        out["states"][t] = h
        out["A"][t] = A
        out["gamma"][t] = gamma
    return out
