"""Several learners on one trajectory: alignment with exact RTRL and estimator variance.

What ``sparse-rtrl compare`` runs. The network and its readout are frozen at
their initial weights, so every learner sees the same states; the credits
``c_t = dL_t/ds_t`` come from the readout's loss on the task's targets.
"""

import os

import numpy as np

from . import registry
from ._io import save_figure, write_csv

__all__ = ["compare", "default_learners", "stream_credits", "trajectory"]


def stream_credits(cell, readout, task, steps: int) -> tuple:
    """Inputs of a task and the credits ``c_t = dL_t/ds_t`` of a readout's loss, weights frozen.

    Runs ``cell`` from its initial state on the first ``steps`` steps of
    ``task``'s stream (one continuing trajectory: the state is not reset
    between segments or episodes) and takes, at every step, the credit of
    ``readout``'s loss on the task's target. Nothing learns, so every
    learner fed these inputs follows the same states, and the pair is what
    :func:`sparse_rtrl.alignment` and :func:`sparse_rtrl.estimator_variance`
    take.

    Parameters
    ----------
    cell : Cell
        The network; its weights are not changed.
    readout : LinearReadout
        Built on ``cell`` with the task's ``n_out`` and ``loss``. The
        gradient it accumulates on these steps is cleared before returning.
    task : Task
        An unbatched task (``batch_size=None``) of the cell's dtype, e.g.
        ``sr.tasks.Add(seed=0, dtype=np.float64)``. Its stream advances by
        whole segments (past ``steps`` when a segment is cut).
    steps : int
        Length ``T`` of the trajectory, at least 1.

    Returns
    -------
    inputs : ndarray, shape (T, n_in)
        The task's inputs, in the task's dtype.
    credits : ndarray, shape (T, S)
        ``dL_t/ds_t`` of the readout's loss at each step, in the cell's dtype.

    Raises
    ------
    TypeError
        If ``steps`` is not an integer.
    ValueError
        If ``steps`` is below 1 or ``task`` is batched.

    Examples
    --------
    >>> import numpy as np, sparse_rtrl as sr
    >>> task = sr.tasks.Add(seed=0, dtype=np.float64)
    >>> cell = sr.VanillaRNN(task.n_in, 16, density=0.25, alpha=0.5, seed=0)
    >>> readout = sr.LinearReadout(cell, task.n_out, loss=task.loss, seed=0)
    >>> inputs, credits = sr.stream_credits(cell, readout, task, steps=50)
    >>> inputs.shape, credits.shape
    ((50, 2), (50, 16))
    """
    from ._validate import check_int

    steps = check_int(steps, "steps", minimum=1)
    if getattr(task, "batch_size", None) is not None:
        raise ValueError(f"task must be unbatched (batch_size=None), got batch_size={task.batch_size}")
    xs, ys = [], []
    while sum(len(x) for x in xs) < steps:
        seg = task.segment()
        xs.append(seg.inputs)
        ys.append(seg.targets)
    inputs = np.concatenate(xs)[:steps]
    targets = np.concatenate(ys)[:steps]
    s = cell.init_state()
    credits = np.empty((steps, cell.n_state), cell.dtype)
    for t in range(steps):
        s = cell.step(s, inputs[t])
        credits[t] = readout.step(s, targets[t])[1]
    readout.grad()  # drop the gradient these steps accumulated
    return inputs, credits


def trajectory(task_cfg, cell_kind, n_hidden, density, alpha, steps, dtype="float64", seed=0):
    """The cell, its inputs ``(T, n_in)`` and credits ``(T, S)`` along ``steps`` steps of the task."""
    from .training import tasks
    from .training.readouts import LinearReadout

    seeds = np.random.SeedSequence(seed).generate_state(3)
    task = tasks.make_task(dict(task_cfg, batch_size=None, seed=int(seeds[0]), dtype=dtype))
    cell = registry.make_cell(cell_kind, task.n_in, n_hidden, density, int(seeds[1]), dtype, alpha=alpha)
    readout = LinearReadout(cell, task.n_out, loss=task.loss, seed=int(seeds[2]))
    inputs, credits = stream_credits(cell, readout, task, steps)
    return cell, inputs, credits


def default_learners(cell_kind: str) -> list:
    """The learners ``compare`` measures by default: every one of the learner table that runs on this kind of
    cell, but the exact references (RTRL is the one compared against)."""
    probe = registry.make_cell(cell_kind, 1, 2)
    out = []
    for spec in registry.example_specs(probe):
        cls = registry.parse_learner(spec)[0]
        if not (cls.unbiased and not cls.stochastic):
            out.append(spec)
    return out


#: Marschall et al.'s leak, the default of the vanilla cell in ``compare``.
VANILLA_ALPHA = 0.5


def compare(task_cfg: dict = None, cell_kind: str = "vanilla", n_hidden: int = 32, density: float = 0.25,
            alpha: float = None, learners=None, steps: int = 400, every: int = 1, seeds: int = 40,
            dtype: str = "float64", seed: int = 0, out=None) -> dict:
    """Alignment of ``learners`` (specs) with RTRL, and variance of the stochastic ones.

    ``sparse-rtrl compare`` runs this; its defaults are these.

    Parameters
    ----------
    task_cfg : dict, optional
        The task's configuration (default ``{"name": "add"}``).
    cell_kind : str
        A key of the cell table.
    n_hidden : int
    density : float in (0, 1]
    alpha : float, optional
        Leak of the vanilla cell (default 0.5, Marschall et al.'s); only for
        the vanilla cell.
    learners : list of str, optional
        Learner specs (default: :func:`default_learners` of the cell).
    steps : int
        Length of the trajectory.
    every : int
        Steps per alignment window.
    seeds : int
        Seeds for the variance of the stochastic learners (0: skip).
    dtype : {"float32", "float64"}
    seed : int
    out : str, optional
        Folder for ``compare.csv``, ``variance.csv`` and ``compare.png``.

    Returns
    -------
    dict
        ``alignment`` (from :func:`sparse_rtrl.alignment`), ``variance``
        (spec -> :func:`sparse_rtrl.estimator_variance` result, over ``seeds``
        seeds), ``table`` (text) and ``files`` written to ``out``.
    """
    from .metrics import alignment, estimator_variance

    task_cfg = {"name": "add"} if task_cfg is None else task_cfg
    if alpha is None and cell_kind == "vanilla":
        alpha = VANILLA_ALPHA
    learners = default_learners(cell_kind) if learners is None else list(learners)
    cell, inputs, credits = trajectory(task_cfg, cell_kind, n_hidden, density, alpha, steps, dtype, seed)
    built = {spec: registry.make_learner(spec, cell, seed=seed) for spec in learners}
    names = {spec: learner.name for spec, learner in built.items()}
    align = alignment({names[s]: built[s] for s in learners}, inputs, credits, every=every)
    variance = {}
    if seeds:
        for spec in learners:
            if built[spec].stochastic:
                variance[names[spec]] = estimator_variance(
                    lambda sd, spec=spec: registry.make_learner(spec, cell, seed=sd), inputs, credits,
                    range(seeds))
    lines = [f"{cell!r}, {task_cfg['name']} task, {steps} steps, frozen weights",
             f"{'learner':>12}  {'mean cosine with RTRL':>22}  {'relative variance (median)':>26}"]
    for spec in learners:
        n = names[spec]
        v = variance.get(n)
        vtxt = f"{float(np.nanmedian(v['relative_variance'])):26.4g}" if v is not None else f"{'':>26}"
        lines.append(f"{n:>12}  {align['mean_cosine'][n]:22.3f}  {vtxt}")
    files = []
    if out is not None:
        title = (f"{task_cfg['name']} task: {cell_kind} n={n_hidden} density={density}, "
                 f"{steps} steps, frozen weights")
        files = _write(out, align, variance, [names[s] for s in learners], title)
    return {"alignment": align, "variance": variance, "table": "\n".join(lines), "files": files}


def _write(out, align, variance, order, title):
    os.makedirs(out, exist_ok=True)
    files = [os.path.join(out, "compare.csv")]
    rows = []
    for k, step in enumerate(align["steps"]):
        for n in order:
            rows.append([int(step), n, align["cosine"][n][k], align["norm"][n][k], align["reference_norm"][k]])
    write_csv(files[0], ["step", "learner", "cosine", "norm", "rtrl_norm"], rows)
    if variance:
        files.append(os.path.join(out, "variance.csv"))
        rows = [[t + 1, n, v["variance"][t], v["relative_variance"][t], v["bias_sq"][t]]
                for n, v in variance.items() for t in range(len(v["variance"]))]
        write_csv(files[-1], ["step", "learner", "variance", "relative_variance", "bias_sq"], rows)
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return files
    fig = Figure(figsize=(12 if variance else 6.5, 4.4), layout="constrained")
    fig.suptitle(title, fontsize=10)
    axes = fig.subplots(1, 2 if variance else 1, squeeze=False)
    ax = axes[0, 0]
    ax.set_title("alignment with exact RTRL", fontsize=9)
    means = [align["mean_cosine"][n] for n in order]
    ax.bar(range(len(order)), means)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("mean cosine with RTRL")
    ax.axhline(0, color="k", lw=0.5)
    if variance:
        ax = axes[0, 1]
        ax.set_title("variance of the stochastic estimators", fontsize=9)
        for n, v in variance.items():
            ax.semilogy(np.arange(1, len(v["relative_variance"]) + 1), v["relative_variance"], label=n)
        ax.set_xlabel("step")
        ax.set_ylabel("variance / |exact gradient|^2")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    files.append(save_figure(fig, os.path.join(out, "compare.png"), dpi=110))
    return files
