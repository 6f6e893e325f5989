"""Slow, obviously correct P-TNCN: dense loops straight from the equations, in float64.

The tests compare ``sr.PTNCN``'s kernels with this module step by step. Row
vectors, one stream at a time; weights are a dict ``name -> 2-D array``
(``"W1"``, ``"E1"``, ``"M1"``, ``"U1"``, ``"V1"``, ...), as
``PTNCN.weights`` names them. Nothing here is shared with the library.
"""

import math


def phi(name, v):
    if name == "tanh":
        return math.tanh(v)
    if name == "relu":
        return max(v, 0.0)
    if name == "hard_tanh":
        return min(max(v, -1.0), 1.0)
    if name == "identity":
        return v
    if name == "sign":
        return 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)
    if name == "step":
        return 1.0 if v >= 0 else 0.0
    raise ValueError(name)


def vecmat(v, W):
    """Row vector times matrix: ``out[j] = sum_i v[i] W[i][j]``."""
    rows, cols = len(W), len(W[0])
    out = [0.0] * cols
    for i in range(rows):
        for j in range(cols):
            out[j] += v[i] * W[i][j]
    return out


def outer(pre, err):
    return [[pre[i] * err[j] for j in range(len(err))] for i in range(len(pre))]


def norm(A):
    return math.sqrt(sum(v * v for row in A for v in row))


def scaled(A, f):
    return [[v * f for v in row] for row in A]


def clipped(A, clip):
    n = norm(A)
    return scaled(A, clip / n) if clip and n > clip else A


def transpose(A):
    return [[A[i][j] for i in range(len(A))] for j in range(len(A[0]))]


def softmax(v):
    top = max(v)
    ex = [math.exp(u - top) for u in v]
    s = sum(ex)
    return [u / s for u in ex]


def sigmoid(v):
    return [1.0 / (1.0 + math.exp(-u)) for u in v]


def step(weights, carried, x, m, *, L, activation="tanh", output="softmax", beta=0.1, gamma=1.0, alpha_e=0.001,
         clip=1.0, sparsity=0.0, w_error="temporal", e_update="transpose", masks=None):
    """One step of one stream.

    ``carried`` is ``{"y": [x_{t-1}, y_1, ..., y_L], "ev": [None, ev_1, ..., ev_L]}`` (the previous step's
    corrected states and temporal errors; the new one also lists under ``"inputs"`` every value an activation
    was applied to); ``m`` the stream's mask. ``masks`` (name -> 0/1 matrix) marks the stored entries of
    sparse weights: ``weights`` hold zeros elsewhere, and each update is formed on the stored entries only
    (zeroed elsewhere before it is clipped). Returns ``(x_hat, new_carried, deltas)``
    with ``deltas[name]`` the clipped update of weight ``name`` (not yet divided by the batch size).
    """
    f = lambda v: [phi(activation, u) for u in v]  # noqa: E731
    y = carried["y"]
    a, z = [None] * (L + 1), [None] * (L + 1)
    for l in range(1, L + 1):
        s = vecmat(y[l - 1], weights[f"M{l}"])
        if l < L:
            s = [p + q for p, q in zip(s, vecmat(y[l + 1], weights[f"U{l}"]))]
        s = [p + q for p, q in zip(s, vecmat(y[l], weights[f"V{l}"]))]
        a[l] = s
        z[l] = f(s)
    mu = [None] * L
    logits = vecmat(z[1], weights["W1"])
    mu[0] = softmax(logits) if output == "softmax" else sigmoid(logits)
    for l in range(2, L + 1):
        mu[l - 1] = vecmat(z[l], weights[f"W{l}"])
    e = [None] * L
    e[0] = [(p - q) * m for p, q in zip(mu[0], x)]
    for l in range(1, L):
        e[l] = [(p - q) * m for p, q in zip(mu[l], z[l])]
    y_new, ev = [list(x)] + [None] * L, [None] * (L + 1)
    inputs = []  # every value an activation was applied to (the tests look for values near a discontinuity)
    for l in range(1, L + 1):
        d = vecmat(e[l - 1], weights[f"E{l}"])
        if l < L:
            d = [p - alpha_e * q for p, q in zip(d, e[l])]
        if sparsity:
            d = [p + sparsity * (1.0 if u > 0 else (-1.0 if u < 0 else 0.0)) for p, u in zip(d, a[l])]
        pre = [u - beta * p for u, p in zip(a[l], d)]
        y_new[l] = f(pre)
        inputs += a[l] + pre
        ev[l] = [(p - q) * m for p, q in zip(z[l], y_new[l])]
    def on_pattern(A, name):
        if masks is None:
            return A
        return [[v * k for v, k in zip(row, keep)] for row, keep in zip(A, masks[name])]

    deltas = {}
    for l in range(1, L + 1):
        below = e[0] if l == 1 else (ev[l - 1] if w_error == "temporal" else e[l - 1])
        dW = clipped(on_pattern(outer(z[l], below), f"W{l}"), clip)
        deltas[f"W{l}"] = dW
        if e_update == "transpose":
            deltas[f"E{l}"] = clipped(scaled(transpose(dW), gamma), clip)
        else:
            change = [p - q for p, q in zip(ev[l], carried["ev"][l])]
            deltas[f"E{l}"] = clipped(scaled(on_pattern(outer(e[l - 1], change), f"E{l}"), -gamma), clip)
        deltas[f"M{l}"] = clipped(on_pattern(outer(y[l - 1], ev[l]), f"M{l}"), clip)
        if l < L:
            deltas[f"U{l}"] = clipped(on_pattern(outer(y[l + 1], ev[l]), f"U{l}"), clip)
        deltas[f"V{l}"] = clipped(on_pattern(outer(y[l], ev[l]), f"V{l}"), clip)
    return mu[0], {"y": y_new, "ev": ev, "inputs": inputs}, deltas


def zero_carried(sizes):
    L = len(sizes) - 1
    return {"y": [[0.0] * n for n in sizes], "ev": [None] + [[0.0] * sizes[l] for l in range(1, L + 1)]}


def batch_step(weights, carried, X, mask, *, L, **settings):
    """One step of ``B`` streams with shared weights. The updates are clipped per batch, as in the
    authors' code: each ``Delta`` is the batch's summed outer product, clipped, divided by ``B``.

    ``carried`` is a list of per-stream dicts. Returns ``(x_hats, new_carried, deltas)``.
    """
    B = len(X)
    clip = settings.pop("clip", 1.0)
    gamma = settings.get("gamma", 1.0)
    e_update = settings.get("e_update", "transpose")
    outs, news, raw = [], [], None
    for b in range(B):
        # Unclipped per-stream products, summed below, then clipped once for the batch.
        x_hat, new, d = step(weights, carried[b], X[b], mask[b], L=L, clip=0.0, **settings)
        outs.append(x_hat)
        news.append(new)
        if raw is None:
            raw = d
        else:
            raw = {k: [[p + q for p, q in zip(r1, r2)] for r1, r2 in zip(raw[k], d[k])] for k in raw}
    deltas = {}
    for l in range(1, L + 1):
        dW = clipped(raw[f"W{l}"], clip)
        deltas[f"W{l}"] = scaled(dW, 1.0 / B)
        for k in raw:
            if k.startswith(("M", "U", "V")) and k[1:] == str(l):
                deltas[k] = scaled(clipped(raw[k], clip), 1.0 / B)
        if e_update == "transpose":
            deltas[f"E{l}"] = scaled(clipped(scaled(transpose(dW), gamma), clip), 1.0 / B)
        else:
            deltas[f"E{l}"] = scaled(clipped(raw[f"E{l}"], clip), 1.0 / B)
    return outs, news, deltas
