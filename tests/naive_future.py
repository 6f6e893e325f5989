"""Slow float64 references for the future-facing learners, straight from the equations.

Built on ``naive`` (dense Jacobians of the cells); nothing here imports
``sparse_rtrl``. Time steps are 0-based: ``xs[t]`` drives step ``t`` from
``s_{t-1}`` (zeros for ``t = 0``) to ``s_t``; ``D_t`` and ``I_t`` are
evaluated at ``(s_{t-1}, xs[t])`` with the weights of step ``t``
(``params[t]`` when a schedule is given).
"""

import numpy as np

import naive


def trajectory(cell, xs, params=None, s0=None):
    """Previous states, dense ``D_t`` (S, S) and ``I_t`` (S, P), and states of every step.

    With ``params`` (T, P), step ``t`` runs with ``params[t]``; the cell's
    parameters are restored afterwards. ``s0``: the state before step 0
    (default zeros).
    """
    saved = cell.params.copy()
    S = cell.n_state
    s = np.zeros(S) if s0 is None else np.asarray(s0, dtype=np.float64)
    prev, Ds, Is, states = [], [], [], []
    try:
        for t in range(len(xs)):
            if params is not None:
                cell.params[:] = params[t]
            prev.append(s)
            Ds.append(naive.dynamics_jacobian(cell, s, xs[t]))
            Is.append(naive.immediate_jacobian(cell, s, xs[t]))
            s = naive.step(cell, s, xs[t])
            states.append(s)
    finally:
        cell.params[:] = saved
    return np.array(prev), np.array(Ds), np.array(Is), np.array(states)


def future_bptt(cell, xs, cs, truncation, params=None, s0=None):
    """F-BPTT(T): what is emitted at each forward(), and at the final flush().

    ``delta_tau = sum_{t = tau}^{tau + T - 1} (D_t ... D_{tau+1})^T c_t``
    (terms past the sequence's end left out); step ``tau``'s gradient
    ``delta_tau^T I_tau`` is emitted by the forward() of step ``tau + T``,
    or by the flush() when that step does not exist. ``s0``: the state before
    step 0 (default zeros).

    Returns
    -------
    emitted : ndarray (len(xs) + 1, P)
        ``emitted[t]``: emitted by the forward() of step ``t``;
        ``emitted[-1]``: emitted by flush() after the last step.
    """
    xs = np.asarray(xs, dtype=np.float64)
    cs = np.asarray(cs, dtype=np.float64)
    _, Ds, Is, _ = trajectory(cell, xs, params, s0)
    n, T = len(xs), int(truncation)
    emitted = np.zeros((n + 1, cell.n_params))
    for tau in range(n):
        delta = np.zeros(cell.n_state)
        for t in range(tau, min(tau + T, n)):
            v = cs[t]
            for k in range(t, tau, -1):  # D_t ... D_{tau+1}, transposed, applied from D_t down
                v = Ds[k].T @ v
            delta += v
        emitted[min(tau + T, n)] += delta @ Is[tau]
    return emitted


def lyapunov_future_credit(D, Q):
    """The ``M`` with ``M = D^T (Q + M) D``, by a Kronecker solve (needs spectral radius of D < 1).

    ``M s`` is the credit ``d/ds sum_{k >= 1} 0.5 |V D^k s|^2`` of all future
    losses for a linear network ``s' = D s`` and losses ``0.5 |V s|^2``,
    ``Q = V^T V``.
    """
    S = D.shape[0]
    # vec(D^T M D) = kron(D^T, D^T) vec(M) in column-major (Fortran) order.
    K = np.kron(D.T, D.T)
    rhs = (D.T @ Q @ D).reshape(-1, order="F")
    return np.linalg.solve(np.eye(S * S) - K, rhs).reshape(S, S, order="F")


def dni(cell, xs, cs, lr, fix_interval, jacobian, jacobian_lr, A0, J0=None, params=None,
        n_updates=0, states=None):
    """DNI / DNIb over one sequence of ``B`` streams, float64.

    Parameters
    ----------
    xs : (T, B, n_in); cs : (T, B, S)
        Inputs and total credits (a step without backward() has zero credit).
    A0 : (S, S + n_in + 1)
        ``A`` and ``A'`` at the start; ``J0`` likewise ``Jhat``.
    n_updates : int
        Updates of ``A`` made before the sequence (the ``A'`` refresh counter).
    states : (T, B, S), optional
        Use these states (e.g. the learner's own) instead of computing them:
        the Jacobians are then evaluated at the same points as the learner's.

    Returns
    -------
    dict
        ``grads`` (T, P): the gradient of each step, ``sum_b (c_t + chat_t)^T I_t``;
        ``A``, ``A_frozen``, ``J`` at the end; ``losses``: the bootstrap loss of
        each update of ``A``; ``chat`` (T, B, S).

    Notes
    -----
    Step ``t`` (0-based): before it, if ``t >= 2``, the target of step
    ``t - 2`` is ``D_{t-1}^T (c_{t-1} + A' f_{t-1})`` (or ``Jhat^T``), and
    ``A -= lr sum_b (A f_{t-2} - target) f_{t-2}^T``; every ``fix_interval``
    updates ``A' := A``. Then ``s_t``, ``f_t = [s_t; x_t; 1]``,
    ``chat_t = A f_t``; with a learned Jacobian and ``t >= 1``,
    ``Jhat -= jacobian_lr sum_b (Jhat s_{t-1} - s_t) s_{t-1}^T``.
    """
    xs = np.asarray(xs, dtype=np.float64)
    cs = np.asarray(cs, dtype=np.float64)
    n, B = xs.shape[:2]
    S, P = cell.n_state, cell.n_params
    A = np.array(A0, dtype=np.float64)
    Af = A.copy()
    J = None if J0 is None else np.array(J0, dtype=np.float64)
    saved = cell.params.copy()
    grads = np.zeros((n, P))
    chat = np.zeros((n, B, S))
    feats = np.zeros((n, B, A.shape[1]))
    Ds = np.zeros((n, B, S, S))
    s_all = np.zeros((n, B, S))
    losses = []
    try:
        s = np.zeros((B, S))
        for t in range(n):
            if params is not None:
                cell.params[:] = params[t]
            if t >= 2:
                err = np.zeros((B, S))
                for b in range(B):
                    v = cs[t - 1, b] + Af @ feats[t - 1, b]
                    target = (Ds[t - 1, b].T if jacobian == "exact" else J.T) @ v
                    err[b] = A @ feats[t - 2, b] - target
                losses.append(0.5 * np.sum(err ** 2))
                A = A - lr * err.T @ feats[t - 2]
                n_updates += 1
                if n_updates % fix_interval == 0:
                    Af = A.copy()
            for b in range(B):
                Ds[t, b] = naive.dynamics_jacobian(cell, s[b], xs[t, b])
                I = naive.immediate_jacobian(cell, s[b], xs[t, b])
                nxt = naive.step(cell, s[b], xs[t, b]) if states is None else np.asarray(states[t, b], np.float64)
                s_all[t, b] = nxt
                feats[t, b] = np.concatenate([nxt, xs[t, b], [1.0]])
                chat[t, b] = A @ feats[t, b]
                grads[t] += (cs[t, b] + chat[t, b]) @ I
            if jacobian == "learned" and t >= 1:
                e = s_all[t - 1] @ J.T - s_all[t]
                J = J - jacobian_lr * e.T @ s_all[t - 1]
            s = s_all[t]
    finally:
        cell.params[:] = saved
    return {"grads": grads, "A": A, "A_frozen": Af, "J": J, "losses": np.array(losses), "chat": chat,
            "n_updates": n_updates}
