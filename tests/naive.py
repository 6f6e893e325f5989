"""Slow, obviously-correct reference implementations for ``sparse_rtrl``.

Everything here is dense float64 numpy written straight from the equations
in ``ALGORITHMS.md`` (sections Cells, Exact methods, SnAp-n). Nothing is
optimised and nothing imports ``sparse_rtrl``: the library's fast code is
tested *against* this module, so this module must not depend on it.

Cells are duck-typed. A cell has

* ``kind`` in {"vanilla", "gru", "lstm"}, ``n_in``, ``n_hidden`` (n),
  ``n_state`` (S = n, or 2n for lstm; lstm state is ``[h; c]``),
  ``n_params`` (P) and, for vanilla, ``alpha`` (leak rate);
* ``weight_names``: parameter order (see ``WEIGHT_NAMES``);
* ``weights[name]``: for a matrix (name starting with ``'W'`` or equal to
  ``'U'``) a CSR-like object with ``shape``, ``indptr``, ``indices`` (sorted
  per row), ``data`` and ``toarray()``; for a bias a 1-D array of length n.

The flat parameter vector theta is the concatenation, in ``weight_names``
order, of each matrix's stored values in CSR order (row by row, columns
ascending) and of each bias. Only stored entries are parameters; a stored
entry whose value happens to be 0.0 is still a parameter and still part of
the structural pattern.

Conventions decided here (check these if the library disagrees):

* Time steps are 0-based in code: ``xs[t]`` drives the step from
  ``s_{t}`` (``states[t-1]``, or zeros for t = 0) to ``states[t]``, and
  ``cs[t]`` is the credit on ``states[t]``. ``D_t`` and ``I_t`` are evaluated
  at (previous state, ``xs[t]``). The initial state is zeros.
* The loss behind every gradient is ``L(theta) = sum_t cs[t] . states[t]``
  (the credits are treated as constants, i.e. a linear readout of the state).
* GRU: reset gate applied after the recurrent product (cuDNN/PyTorch form).
* Structural masks always include the diagonal of D (harmless for reach sets
  because R_k is always carried over into R_{k+1}).
"""

import numpy as np

#: Parameter order for each cell kind (the order of the flat theta).
WEIGHT_NAMES = {
    "vanilla": ("W", "U", "b"),
    "gru": ("W_hr", "W_hz", "W_hn", "W_ir", "W_iz", "W_in",
            "b_r", "b_z", "b_in", "b_hn"),
    "lstm": ("W_hi", "W_hf", "W_hg", "W_ho", "W_ii", "W_if", "W_ig", "W_io",
             "b_i", "b_f", "b_g", "b_o"),
}


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def _sigmoid(a):
    """Logistic function, float64."""
    return 1.0 / (1.0 + np.exp(-a))


def is_matrix_name(name):
    """Return True if weight ``name`` is a (sparse) matrix, False for a bias."""
    return name.startswith("W") or name == "U"


def _source(name):
    """Which vector a weight multiplies: 'h', 'x' or None (a bias).

    Vanilla ``W`` and every ``W_h*`` act on the hidden state, vanilla ``U``
    and every ``W_i*`` act on the input; biases multiply a constant 1.
    """
    if name == "W" or name.startswith("W_h"):
        return "h"
    if name == "U" or name.startswith("W_i"):
        return "x"
    return None


def _gate(name):
    """Gate letter of a gru/lstm weight name ('W_hr' -> 'r', 'b_in' -> 'n')."""
    return name[-1]


def _n_state(cell):
    """S, computed from the kind (and checked against ``cell.n_state``)."""
    n = int(cell.n_hidden)
    S = 2 * n if cell.key == "lstm" else n
    if int(cell.n_state) != S:
        raise ValueError("cell.n_state=%r but kind %r with n_hidden=%d needs %d"
                         % (cell.n_state, cell.key, n, S))
    return S


class _Leak(float):
    """A vanilla cell's leak rate, carrying its activation (``tanh`` or ``linear``)."""

    linear = False


def _alpha(cell):
    """Leak rate of a vanilla cell (1.0 for other kinds; unused), with its activation."""
    leak = _Leak(float(getattr(cell, "alpha", 1.0)))
    leak.linear = getattr(cell, "activation", "tanh") == "linear"
    return leak


def _pattern(mat):
    """Boolean dense pattern of a CSR-like matrix from indptr/indices only.

    Values are never looked at, so a stored 0.0 still counts as structural.
    """
    rows, cols = mat.shape
    pat = np.zeros((rows, cols), dtype=bool)
    for i in range(rows):
        for k in range(mat.indptr[i], mat.indptr[i + 1]):
            pat[i, mat.indices[k]] = True
    return pat


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------

def param_index(cell):
    """Map each flat parameter index to the weight entry it is.

    Parameters
    ----------
    cell : cell-like
        See module docstring.

    Returns
    -------
    list of tuple
        ``out[p] = (name, i, j)`` for a matrix entry ``weights[name][i, j]``
        or ``(name, i, None)`` for a bias entry ``weights[name][i]``,
        for p = 0..P-1, in theta order.

    Raises
    ------
    ValueError
        If the count disagrees with ``cell.n_params``.
    """
    out = []
    for name in cell.weight_names:
        w = cell.weights[name]
        if is_matrix_name(name):
            # CSR order: row by row, stored columns ascending within a row.
            for i in range(w.shape[0]):
                for k in range(w.indptr[i], w.indptr[i + 1]):
                    out.append((name, i, int(w.indices[k])))
        else:
            for i in range(len(w)):
                out.append((name, i, None))
    if len(out) != int(cell.n_params):
        raise ValueError("param_index found %d parameters, cell.n_params=%r"
                         % (len(out), cell.n_params))
    return out


def get_params(cell):
    """Flat theta (P,) float64: matrices' ``.data`` then biases, in order."""
    parts = []
    for name in cell.weight_names:
        w = cell.weights[name]
        if is_matrix_name(name):
            parts.append(np.asarray(w.data, dtype=np.float64).ravel())
        else:
            parts.append(np.asarray(w, dtype=np.float64).ravel())
    if not parts:
        return np.zeros(0)
    return np.concatenate(parts)


def dense_weights(cell, theta=None):
    """Dense float64 copies of every weight, optionally from a given theta.

    Parameters
    ----------
    cell : cell-like
    theta : array_like, shape (P,), optional
        If given, the weights are rebuilt from this flat vector using
        ``param_index`` (so off-pattern entries stay exactly zero). If None,
        ``toarray()`` / the bias arrays of the cell are copied.

    Returns
    -------
    dict
        name -> new float64 ndarray (never a view of the cell's arrays, so
        callers may modify it freely).
    """
    out = {}
    if theta is None:
        for name in cell.weight_names:
            w = cell.weights[name]
            if is_matrix_name(name):
                out[name] = np.array(w.toarray(), dtype=np.float64)
            else:
                out[name] = np.array(w, dtype=np.float64)
        return out
    theta = np.asarray(theta, dtype=np.float64)
    index = param_index(cell)
    if theta.shape != (len(index),):
        raise ValueError("theta has shape %r, expected (%d,)"
                         % (theta.shape, len(index)))
    for name in cell.weight_names:
        w = cell.weights[name]
        if is_matrix_name(name):
            out[name] = np.zeros(w.shape, dtype=np.float64)
        else:
            out[name] = np.zeros(len(w), dtype=np.float64)
    for p, (name, i, j) in enumerate(index):
        if j is None:
            out[name][i] = theta[p]
        else:
            out[name][i, j] = theta[p]
    return out


# ---------------------------------------------------------------------------
# Forward pass (with all intermediates, shared by step and the Jacobians)
# ---------------------------------------------------------------------------

def _forward(kind, alpha, w, s, x):
    """One step on dense weights ``w``; return a dict of intermediates.

    The dict always has key ``'s_next'``. Other keys are the gate values the
    analytic Jacobians need.
    """
    s = np.asarray(s, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if kind == "vanilla":
        h = s
        a = w["W"] @ h + w["U"] @ x + w["b"]
        linear = getattr(alpha, "linear", False)
        phi = a if linear else np.tanh(a)
        dphi = np.ones_like(a) if linear else 1.0 - phi ** 2
        s_next = (1.0 - alpha) * h + alpha * phi
        return {"h": h, "x": x, "phi": phi, "dphi": dphi, "s_next": s_next}
    if kind == "gru":
        h = s
        r = _sigmoid(w["W_ir"] @ x + w["W_hr"] @ h + w["b_r"])
        z = _sigmoid(w["W_iz"] @ x + w["W_hz"] @ h + w["b_z"])
        # m is the recurrent product that the reset gate multiplies.
        m = w["W_hn"] @ h + w["b_hn"]
        nn = np.tanh(w["W_in"] @ x + w["b_in"] + r * m)
        s_next = (1.0 - z) * nn + z * h
        return {"h": h, "x": x, "r": r, "z": z, "m": m, "nn": nn,
                "s_next": s_next}
    if kind == "lstm":
        n = len(s) // 2
        h, c = s[:n], s[n:]
        gi = _sigmoid(w["W_ii"] @ x + w["W_hi"] @ h + w["b_i"])
        gf = _sigmoid(w["W_if"] @ x + w["W_hf"] @ h + w["b_f"])
        gg = np.tanh(w["W_ig"] @ x + w["W_hg"] @ h + w["b_g"])
        go = _sigmoid(w["W_io"] @ x + w["W_ho"] @ h + w["b_o"])
        c_next = gf * c + gi * gg
        tc = np.tanh(c_next)
        h_next = go * tc
        return {"h": h, "c": c, "x": x, "i": gi, "f": gf, "g": gg, "o": go,
                "c_next": c_next, "tc": tc,
                "s_next": np.concatenate([h_next, c_next])}
    raise ValueError("unknown cell kind %r" % (kind,))


def _check_sx(cell, s, x):
    """Cast s and x to float64 and check their shapes."""
    S = _n_state(cell)
    s = np.asarray(s, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if s.shape != (S,):
        raise ValueError("state has shape %r, expected (%d,)" % (s.shape, S))
    if x.shape != (int(cell.n_in),):
        raise ValueError("input has shape %r, expected (%d,)"
                         % (x.shape, cell.n_in))
    return s, x


def step(cell, s, x):
    """Next state ``f(s, x; theta)``.

    Parameters
    ----------
    cell : cell-like
    s : array_like, shape (S,)
        Current state (``[h; c]`` for lstm).
    x : array_like, shape (n_in,)

    Returns
    -------
    ndarray, shape (S,)
    """
    s, x = _check_sx(cell, s, x)
    return _forward(cell.key, _alpha(cell), dense_weights(cell), s, x)["s_next"]


# ---------------------------------------------------------------------------
# Analytic Jacobians
# ---------------------------------------------------------------------------

def dynamics_jacobian(cell, s, x):
    """Dynamics Jacobian ``D = d s_next / d s``, dense (S, S), analytic.

    Parameters
    ----------
    cell : cell-like
    s : array_like, shape (S,)
    x : array_like, shape (n_in,)

    Returns
    -------
    ndarray, shape (S, S)
    """
    s, x = _check_sx(cell, s, x)
    w = dense_weights(cell)
    alpha = _alpha(cell)
    v = _forward(cell.key, alpha, w, s, x)
    n = int(cell.n_hidden)

    if cell.key == "vanilla":
        # h' = (1-a) h + a phi(W h + ...):
        # dh'/dh = (1-a) I + a diag(phi') W, phi' = 1 - tanh^2 (or 1 if linear).
        return ((1.0 - alpha) * np.eye(n)
                + alpha * np.diag(v["dphi"]) @ w["W"])

    if cell.key == "gru":
        r, z, m, nn, h = v["r"], v["z"], v["m"], v["nn"], v["h"]
        # r = sig(. + W_hr h): dr/dh = diag(r(1-r)) W_hr; same for z.
        dr = np.diag(r * (1.0 - r)) @ w["W_hr"]
        dz = np.diag(z * (1.0 - z)) @ w["W_hz"]
        # pre-activation of n_: W_in x + b_in + r*m with m = W_hn h + b_hn:
        # product rule gives diag(m) dr/dh + diag(r) W_hn.
        dan = np.diag(m) @ dr + np.diag(r) @ w["W_hn"]
        # n_ = tanh(.): chain rule through tanh' = 1 - n_^2.
        dn = np.diag(1.0 - nn ** 2) @ dan
        # h' = (1-z) n_ + z h = n_ + z (h - n_):
        # dh'/dh = diag(1-z) dn/dh + diag(h - n_) dz/dh + diag(z).
        return (np.diag(1.0 - z) @ dn + np.diag(h - nn) @ dz + np.diag(z))

    if cell.key == "lstm":
        gi, gf, gg, go = v["i"], v["f"], v["g"], v["o"]
        c, tc = v["c"], v["tc"]
        # Gate derivatives w.r.t. h (each gate's pre-activation has W_h* h).
        di = np.diag(gi * (1.0 - gi)) @ w["W_hi"]
        df = np.diag(gf * (1.0 - gf)) @ w["W_hf"]
        dg = np.diag(1.0 - gg ** 2) @ w["W_hg"]
        do = np.diag(go * (1.0 - go)) @ w["W_ho"]
        # c' = f*c + i*g: dc'/dh = diag(c) df + diag(g) di + diag(i) dg,
        # dc'/dc = diag(f).
        dc_dh = np.diag(c) @ df + np.diag(gg) @ di + np.diag(gi) @ dg
        dc_dc = np.diag(gf)
        # h' = o * tanh(c'): dh'/dh = diag(tanh c') do + diag(o (1-tanh^2 c')) dc'/dh,
        # dh'/dc = diag(o (1-tanh^2 c')) dc'/dc.
        k = go * (1.0 - tc ** 2)
        dh_dh = np.diag(tc) @ do + np.diag(k) @ dc_dh
        dh_dc = np.diag(k) @ dc_dc
        D = np.zeros((2 * n, 2 * n))
        D[:n, :n] = dh_dh
        D[:n, n:] = dh_dc
        D[n:, :n] = dc_dh
        D[n:, n:] = dc_dc
        return D

    raise ValueError("unknown cell kind %r" % (cell.key,))


def immediate_jacobian(cell, s, x):
    """Immediate Jacobian ``I = d s_next / d theta`` (s held fixed), (S, P).

    Column p is the derivative with respect to parameter p of
    ``param_index(cell)``; only stored matrix entries are parameters.

    Parameters
    ----------
    cell : cell-like
    s : array_like, shape (S,)
    x : array_like, shape (n_in,)

    Returns
    -------
    ndarray, shape (S, P)
    """
    s, x = _check_sx(cell, s, x)
    w = dense_weights(cell)
    alpha = _alpha(cell)
    v = _forward(cell.key, alpha, w, s, x)
    n = int(cell.n_hidden)
    index = param_index(cell)
    S = _n_state(cell)
    I = np.zeros((S, len(index)))
    h = v["h"]

    for p, (name, i, j) in enumerate(index):
        # u = d(pre-activation_i)/d(theta_p) for a gate whose pre-activation
        # is linear in this parameter: the presynaptic value it multiplies.
        src = _source(name)
        if src == "h":
            u = h[j]
        elif src == "x":
            u = x[j]
        else:
            u = 1.0

        if cell.key == "vanilla":
            # h'_i = (1-a) h_i + a phi(a_i): d/d theta = a phi' u.
            I[i, p] = alpha * v["dphi"][i] * u

        elif cell.key == "gru":
            r, z, m, nn = v["r"][i], v["z"][i], v["m"][i], v["nn"][i]
            dh_dn = (1.0 - z) * (1.0 - nn ** 2)  # dh'_i/d(pre-act of n_)
            gate = _gate(name)
            if gate == "r":
                # pre-act of n_ contains r*m; r = sig(...): r(1-r) u.
                I[i, p] = dh_dn * m * r * (1.0 - r) * u
            elif gate == "z":
                # h'_i = n_ + z (h_i - n_): dz * (h_i - n_).
                I[i, p] = (h[i] - nn) * z * (1.0 - z) * u
            elif name in ("W_hn", "b_hn"):
                # inside the reset product r*(W_hn h + b_hn): factor r.
                I[i, p] = dh_dn * r * u
            elif name in ("W_in", "b_in"):
                # outside the reset product: factor 1.
                I[i, p] = dh_dn * u
            else:
                raise ValueError("unexpected gru weight %r" % (name,))

        elif cell.key == "lstm":
            gate = _gate(name)
            gi, gf, gg, go = v["i"][i], v["f"][i], v["g"][i], v["o"][i]
            c, tc = v["c"][i], v["tc"][i]
            # dc'_i/d theta: c' = f c + i g, product rule on the one gate hit.
            if gate == "i":
                dc = gg * gi * (1.0 - gi) * u
            elif gate == "f":
                dc = c * gf * (1.0 - gf) * u
            elif gate == "g":
                dc = gi * (1.0 - gg ** 2) * u
            elif gate == "o":
                dc = 0.0
            else:
                raise ValueError("unexpected lstm weight %r" % (name,))
            # h'_i = o tanh(c'_i): through c' always, through o for gate o.
            dh = go * (1.0 - tc ** 2) * dc
            if gate == "o":
                dh += tc * go * (1.0 - go) * u
            I[i, p] = dh
            I[n + i, p] = dc

        else:
            raise ValueError("unknown cell kind %r" % (cell.key,))
    return I


# ---------------------------------------------------------------------------
# Structural patterns and SnAp masks
# ---------------------------------------------------------------------------

def dynamics_structure(cell):
    """Structural nonzero pattern of D from the weight patterns, bool (S, S).

    vanilla: pattern(W) | identity.
    gru: pattern(W_hr) | pattern(W_hz) | pattern(W_hn) | identity.
    lstm (state [h; c]):
      h rows: [pattern(W_hi|W_hf|W_hg|W_ho) | identity, identity];
      c rows: [pattern(W_hi|W_hf|W_hg), identity]
      (c' does not depend on the output gate, and c_i depends on its own h_i
      only through a stored (i, i) entry of a gate matrix).
    The diagonal of D is always included, which never changes a reach set.
    """
    n = int(cell.n_hidden)
    S = _n_state(cell)
    eye = np.eye(n, dtype=bool)
    if cell.key == "vanilla":
        return _pattern(cell.weights["W"]) | eye
    if cell.key == "gru":
        return (_pattern(cell.weights["W_hr"]) | _pattern(cell.weights["W_hz"])
                | _pattern(cell.weights["W_hn"]) | eye)
    if cell.key == "lstm":
        c_part = (_pattern(cell.weights["W_hi"]) | _pattern(cell.weights["W_hf"])
                  | _pattern(cell.weights["W_hg"]))
        h_part = c_part | _pattern(cell.weights["W_ho"])
        out = np.zeros((S, S), dtype=bool)
        out[:n, :n] = h_part | eye
        out[:n, n:] = eye
        out[n:, :n] = c_part
        out[n:, n:] = eye
        return out
    raise ValueError("unknown cell kind %r" % (cell.key,))


def immediate_structure(cell):
    """Which state entries each parameter touches directly, bool (S, P).

    vanilla/gru: parameter of row i touches state i.
    lstm: gates i, f, g touch h_i and c_i (states i and n+i); gate o touches
    only h_i.
    """
    n = int(cell.n_hidden)
    S = _n_state(cell)
    index = param_index(cell)
    out = np.zeros((S, len(index)), dtype=bool)
    for p, (name, i, _j) in enumerate(index):
        out[i, p] = True
        if cell.key == "lstm" and _gate(name) != "o":
            out[n + i, p] = True
    return out


def snap_mask(cell, n_steps):
    """SnAp-n mask, bool (S, P).

    ``R_1 = immediate_structure``;
    ``R_{k+1} = R_k | (dynamics_structure @ R_k > 0)``; returns ``R_n``.

    Parameters
    ----------
    cell : cell-like
    n_steps : int
        n >= 1.
    """
    if int(n_steps) != n_steps or n_steps < 1:
        raise ValueError("n_steps must be an integer >= 1, got %r" % (n_steps,))
    Dstruct = dynamics_structure(cell).astype(np.int64)
    R = immediate_structure(cell)
    for _ in range(int(n_steps) - 1):
        # Integer product counts paths of length one; > 0 means reachable.
        R = R | ((Dstruct @ R.astype(np.int64)) > 0)
    return R


# ---------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------

def _check_seq(cell, xs, cs):
    """Cast xs (T, n_in) and cs (T, S) to float64 and check shapes."""
    S = _n_state(cell)
    xs = np.asarray(xs, dtype=np.float64)
    cs = np.asarray(cs, dtype=np.float64)
    if xs.ndim != 2 or xs.shape[1] != int(cell.n_in):
        raise ValueError("xs has shape %r, expected (T, %d)"
                         % (xs.shape, cell.n_in))
    if cs.shape != (xs.shape[0], S):
        raise ValueError("cs has shape %r, expected (%d, %d)"
                         % (cs.shape, xs.shape[0], S))
    return xs, cs


def _trajectory(cell, xs):
    """States (T, S) from s = 0, plus the previous state of each step.

    Returns
    -------
    states : ndarray (T, S)
        ``states[t]`` is the state after consuming ``xs[t]``.
    prev : ndarray (T, S)
        ``prev[t]`` is the state before consuming ``xs[t]`` (zeros for t=0);
        D_t and I_t are evaluated at ``(prev[t], xs[t])``.
    """
    S = _n_state(cell)
    T = xs.shape[0]
    states = np.zeros((T, S))
    prev = np.zeros((T, S))
    s = np.zeros(S)
    for t in range(T):
        prev[t] = s
        s = step(cell, s, xs[t])
        states[t] = s
    return states, prev


def rtrl(cell, xs, cs):
    """Exact RTRL with a dense influence matrix.

    ``J_0 = 0``, ``J_t = D_t J_{t-1} + I_t``, gradient ``sum_t cs[t] @ J_t``.

    Parameters
    ----------
    cell : cell-like
    xs : array_like, shape (T, n_in)
    cs : array_like, shape (T, S)
        Credit ``dL_t/ds_t`` for each step.

    Returns
    -------
    grad : ndarray, shape (P,)
    states : ndarray, shape (T, S)
    """
    xs, cs = _check_seq(cell, xs, cs)
    S = _n_state(cell)
    P = len(param_index(cell))
    J = np.zeros((S, P))
    s = np.zeros(S)
    grad = np.zeros(P)
    states = np.zeros((xs.shape[0], S))
    for t in range(xs.shape[0]):
        # D and I use the state *before* this step.
        D = dynamics_jacobian(cell, s, xs[t])
        I = immediate_jacobian(cell, s, xs[t])
        J = D @ J + I
        s = step(cell, s, xs[t])
        states[t] = s
        grad += cs[t] @ J
    return grad, states


def masked_rtrl(cell, xs, cs, mask):
    """RTRL with the influence matrix masked every step (SnAp when mask is
    ``snap_mask``): ``J_t = mask * (D_t J_{t-1} + I_t)``.

    Parameters
    ----------
    cell : cell-like
    xs : array_like, shape (T, n_in)
    cs : array_like, shape (T, S)
    mask : array_like of bool, shape (S, P)

    Returns
    -------
    grad : ndarray, shape (P,)
    """
    xs, cs = _check_seq(cell, xs, cs)
    S = _n_state(cell)
    P = len(param_index(cell))
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (S, P):
        raise ValueError("mask has shape %r, expected (%d, %d)"
                         % (mask.shape, S, P))
    J = np.zeros((S, P))
    s = np.zeros(S)
    grad = np.zeros(P)
    for t in range(xs.shape[0]):
        D = dynamics_jacobian(cell, s, xs[t])
        I = immediate_jacobian(cell, s, xs[t])
        # Mask after the full update (so I's entries are masked too).
        J = np.where(mask, D @ J + I, 0.0)
        s = step(cell, s, xs[t])
        grad += cs[t] @ J
    return grad


def bptt(cell, xs, cs):
    """Exact BPTT over the whole sequence.

    ``delta_T = c_T``, ``delta_{t-1} = c_{t-1} + D_t^T delta_t``,
    gradient ``sum_t delta_t @ I_t``.

    Returns
    -------
    grad : ndarray, shape (P,)
    """
    xs, cs = _check_seq(cell, xs, cs)
    T = xs.shape[0]
    P = len(param_index(cell))
    # Forward: keep the state entering every step.
    _states, prev = _trajectory(cell, xs)
    grad = np.zeros(P)
    if T == 0:
        return grad
    # Backward: delta holds dL/ds_t (total, through all later steps).
    delta = cs[T - 1].copy()
    for t in range(T - 1, -1, -1):
        grad += delta @ immediate_jacobian(cell, prev[t], xs[t])
        if t > 0:
            delta = cs[t - 1] + dynamics_jacobian(cell, prev[t], xs[t]).T @ delta
    return grad


def truncated_bptt(cell, xs, cs, truncation):
    """BPTT in consecutive windows of ``truncation`` steps, summed.

    Windows are steps ``[0, k)``, ``[k, 2k)``, ... (the last may be shorter).
    Within a window only that window's credits are back-propagated, and the
    state entering the window is a constant (no credit flows past the
    window's start). The states themselves come from the full, unbroken
    trajectory.

    Parameters
    ----------
    cell : cell-like
    xs : array_like, shape (T, n_in)
    cs : array_like, shape (T, S)
    truncation : int
        Window length, >= 1.

    Returns
    -------
    grad : ndarray, shape (P,)
    """
    xs, cs = _check_seq(cell, xs, cs)
    if int(truncation) != truncation or truncation < 1:
        raise ValueError("truncation must be an integer >= 1, got %r"
                         % (truncation,))
    k = int(truncation)
    T = xs.shape[0]
    P = len(param_index(cell))
    _states, prev = _trajectory(cell, xs)
    grad = np.zeros(P)
    for start in range(0, T, k):
        end = min(start + k, T)
        delta = cs[end - 1].copy()
        for t in range(end - 1, start - 1, -1):
            grad += delta @ immediate_jacobian(cell, prev[t], xs[t])
            if t > start:
                # Pass credit back through step t to the state prev[t]
                # (= states[t-1]), which also receives its own credit.
                delta = cs[t - 1] + dynamics_jacobian(cell, prev[t], xs[t]).T @ delta
    return grad


# ---------------------------------------------------------------------------
# Finite differences (self-checking only)
# ---------------------------------------------------------------------------

def _loss_dense(cell, w, xs, cs):
    """``sum_t cs[t] . s_t`` run on dense weights ``w`` from s = 0."""
    s = np.zeros(_n_state(cell))
    alpha = _alpha(cell)
    total = 0.0
    for t in range(xs.shape[0]):
        s = _forward(cell.key, alpha, w, s, xs[t])["s_next"]
        total += float(cs[t] @ s)
    return total


def finite_difference_grad(cell, xs, cs, eps=1e-6):
    """Central-difference gradient of ``L(theta) = sum_t cs[t] . s_t``.

    Each parameter is perturbed in a copy of theta and the dense weights are
    rebuilt from it, so the cell itself is never modified.

    Returns
    -------
    grad : ndarray, shape (P,)
    """
    xs, cs = _check_seq(cell, xs, cs)
    theta = get_params(cell)
    grad = np.zeros_like(theta)
    for p in range(theta.size):
        tp = theta.copy()
        tp[p] += eps
        tm = theta.copy()
        tm[p] -= eps
        lp = _loss_dense(cell, dense_weights(cell, tp), xs, cs)
        lm = _loss_dense(cell, dense_weights(cell, tm), xs, cs)
        grad[p] = (lp - lm) / (2.0 * eps)
    return grad


def finite_difference_jacobians(cell, s, x, eps=1e-6):
    """Central-difference D (S, S) and I (S, P) at ``(s, x)``.

    Returns
    -------
    D_fd : ndarray, shape (S, S)
    I_fd : ndarray, shape (S, P)
    """
    s, x = _check_sx(cell, s, x)
    alpha = _alpha(cell)
    w = dense_weights(cell)
    S = s.size
    D = np.zeros((S, S))
    for j in range(S):
        sp = s.copy()
        sp[j] += eps
        sm = s.copy()
        sm[j] -= eps
        D[:, j] = (_forward(cell.key, alpha, w, sp, x)["s_next"]
                   - _forward(cell.key, alpha, w, sm, x)["s_next"]) / (2.0 * eps)
    theta = get_params(cell)
    I = np.zeros((S, theta.size))
    for p in range(theta.size):
        tp = theta.copy()
        tp[p] += eps
        tm = theta.copy()
        tm[p] -= eps
        I[:, p] = (_forward(cell.key, alpha, dense_weights(cell, tp), s, x)["s_next"]
                   - _forward(cell.key, alpha, dense_weights(cell, tm), s, x)["s_next"]
                   ) / (2.0 * eps)
    return D, I
