"""Comparing learners: gradient alignment and estimator variance.

Two measurements from the papers this library implements:

- :func:`alignment` (Marschall, Cho & Savin 2020): run several learners side
  by side on one trajectory and record, step by step, the cosine between
  each one's gradient and the exact one, and their norms. The paper's point
  is that alignment alone does not predict how well a learner trains.
- :func:`estimator_variance` (Mujika, Meier & Steger 2018): run a stochastic
  learner with many seeds on one trajectory and record, step by step, how far
  its gradient estimates spread around their mean and around the exact
  gradient.

Both take learners that are already built, so any learner (and any
hyperparameter) can be compared, and both leave the cell's parameters alone:
with frozen weights every learner sees the same trajectory.
"""

import numpy as np

from ._validate import check_int, check_real_array

__all__ = ["alignment", "estimator_variance"]


def _check_sequence(cell, inputs, credits):
    inputs = np.asarray(inputs)
    if inputs.ndim != 2:
        raise ValueError(f"inputs must have shape (T, n_in), got {inputs.shape}")
    T = inputs.shape[0]
    if T < 1:
        raise ValueError("inputs must hold at least one step")
    xs = check_real_array(inputs, "inputs", (T, cell.n_in), cell.dtype)
    cs = check_real_array(credits, "credits", (T, cell.n_state), cell.dtype)
    return xs, cs


def _check_learner(learner, cell, name):
    from .learners import Learner

    if not isinstance(learner, Learner):
        raise TypeError(f"{name} must be a sparse_rtrl Learner, got {type(learner).__name__}")
    if learner.cell is not cell:
        raise ValueError(f"{name} must be built on the same cell as the others")
    if learner.batch_size is not None:
        raise ValueError(f"{name} must be unbatched (batch_size=None): the comparison follows one trajectory")


def _cosine(a, b):
    na = float(np.linalg.norm(a))
    nb = float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return float("nan")
    return float(np.dot(a, b) / (na * nb))


def alignment(learners: dict, inputs, credits, reference=None, every: int = 1) -> dict:
    """Cosine of each learner's gradient with a reference's, along one trajectory.

    Parameters
    ----------
    learners : dict
        Name -> learner, all built on one cell, unbatched. They are reset first.
    inputs : array_like, shape (T, n_in)
    credits : array_like, shape (T, S)
        ``c_t = dL_t/ds_t`` of the step, the same for every learner.
    reference : Learner, optional
        Default: exact RTRL on the same cell.
    every : int
        Steps per window: each learner's ``grad()`` is taken every ``every``
        steps (and at the end) and compared with the reference's for the same
        window. ``every=1`` compares per-step gradients.

    Returns
    -------
    dict
        ``"steps"`` (K,): the last step (1-based) of each window;
        ``"cosine"``: name -> (K,) cosines (NaN where either gradient is 0);
        ``"norm"``: name -> (K,) gradient norms; ``"reference_norm"`` (K,);
        ``"mean_cosine"``: name -> mean over windows whose cosine is defined.

    Raises
    ------
    ValueError
        If the learners do not follow the same trajectory (their states
        differ), e.g. because they were built on different cells.

    Notes
    -----
    Past-facing learners (RTRL and its approximations) and future-facing ones
    (F-BPTT, DNI) split the same total gradient into different per-step
    pieces: a future-facing learner's gradient at step ``t`` belongs to an
    earlier step. Compare those over windows (``every`` larger than their
    delay) or with a future-facing reference.
    """
    from .learners import RTRL

    if not isinstance(learners, dict) or not learners:
        raise TypeError("learners must be a non-empty dict of name -> learner")
    cell = next(iter(learners.values())).cell
    for name, learner in learners.items():
        _check_learner(learner, cell, f"learners[{name!r}]")
    if reference is None:
        reference = RTRL(cell)
    _check_learner(reference, cell, "reference")
    every = check_int(every, "every", minimum=1)
    xs, cs = _check_sequence(cell, inputs, credits)
    T = xs.shape[0]
    order = list(learners)
    steps, ref_norm = [], []
    cosine = {k: [] for k in order}
    norm = {k: [] for k in order}
    reference.reset()
    for learner in learners.values():
        learner.reset()
    tol = 1e-5 if cell.dtype == np.float32 else 1e-10
    for t in range(T):
        s_ref = reference.forward(xs[t])
        reference.backward(cs[t])
        for name in order:
            s = learners[name].forward(xs[t])
            if not np.allclose(s, s_ref, rtol=tol, atol=tol):
                raise ValueError(f"learner {name!r} left the reference's trajectory at step {t}")
            learners[name].backward(cs[t])
        if (t + 1) % every == 0 or t == T - 1:
            g_ref = reference.grad().astype(np.float64)
            steps.append(t + 1)
            ref_norm.append(float(np.linalg.norm(g_ref)))
            for name in order:
                g = learners[name].grad().astype(np.float64)
                cosine[name].append(_cosine(g, g_ref))
                norm[name].append(float(np.linalg.norm(g)))
    out = {
        "steps": np.array(steps),
        "cosine": {k: np.array(v) for k, v in cosine.items()},
        "norm": {k: np.array(v) for k, v in norm.items()},
        "reference_norm": np.array(ref_norm),
    }
    out["mean_cosine"] = {k: float(np.nanmean(v)) if np.any(np.isfinite(v)) else float("nan")
                          for k, v in out["cosine"].items()}
    return out


def estimator_variance(make_learner, inputs, credits, seeds, reference=None) -> dict:
    """Spread of a stochastic learner's gradient estimates across seeds, step by step.

    Parameters
    ----------
    make_learner : callable
        ``make_learner(seed)`` returns a fresh unbatched learner; all must be
        built on one cell.
    inputs : array_like, shape (T, n_in)
    credits : array_like, shape (T, S)
    seeds : sequence of int
        At least two.
    reference : Learner, optional
        The exact learner the estimates are compared with (default RTRL).

    Returns
    -------
    dict of (T,) arrays, for the per-step gradient ``g_t`` (``grad()`` after
    each step's ``backward``):
        ``"variance"``: ``sum_p Var_seeds(g_tp)`` (unbiased sample variance);
        ``"exact_sq_norm"``: ``|g*_t|^2`` of the reference;
        ``"relative_variance"``: ``variance / |g*_t|^2``;
        ``"bias_sq"``: ``|mean_seeds(g_t) - g*_t|^2`` (it includes the
        sampling error of the mean, ``variance / N`` in expectation);
        ``"mean_sq_error"``: ``mean_seeds |g_t - g*_t|^2``.

    Notes
    -----
    Mujika et al. (2018) compare KF-RTRL's noise with UORO's through this
    kind of measurement, as a function of time and of network size. Sums
    over seeds are accumulated per step (Welford), so memory is ``O(T P)``
    whatever the number of seeds.
    """
    from .learners import RTRL

    seeds = list(seeds)
    if len(seeds) < 2:
        raise ValueError("seeds must hold at least two seeds")
    if not callable(make_learner):
        raise TypeError("make_learner must be a callable seed -> learner")
    first = make_learner(seeds[0])
    cell = first.cell
    _check_learner(first, cell, "make_learner(seed)")
    xs, cs = _check_sequence(cell, inputs, credits)
    T, P = xs.shape[0], cell.n_params
    if reference is None:
        reference = RTRL(cell)
    _check_learner(reference, cell, "reference")
    exact = np.empty((T, P))
    reference.reset()
    for t in range(T):
        reference.forward(xs[t])
        reference.backward(cs[t])
        exact[t] = reference.grad()
    mean = np.zeros((T, P))
    m2 = np.zeros((T, P))
    sq_err = np.zeros(T)
    for k, seed in enumerate(seeds):
        learner = first if k == 0 else make_learner(seed)
        _check_learner(learner, cell, "make_learner(seed)")
        learner.reset()
        for t in range(T):
            learner.forward(xs[t])
            learner.backward(cs[t])
            g = learner.grad().astype(np.float64)
            delta = g - mean[t]
            mean[t] += delta / (k + 1)
            m2[t] += delta * (g - mean[t])
            sq_err[t] += float(np.sum((g - exact[t]) ** 2))
    N = len(seeds)
    variance = m2.sum(axis=1) / (N - 1)
    exact_sq = np.sum(exact ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(exact_sq > 0, variance / exact_sq, np.nan)
    return {
        "variance": variance,
        "exact_sq_norm": exact_sq,
        "relative_variance": relative,
        "bias_sq": np.sum((mean - exact) ** 2, axis=1),
        "mean_sq_error": sq_err / N,
    }
