"""Several learners on one trajectory: alignment with exact RTRL and estimator variance.

What ``sparse-rtrl compare`` runs. The network and its readout are frozen at
their initial weights, so every learner sees the same states; the credits
``c_t = dL_t/ds_t`` come from the readout's loss on the task's targets.
"""

import os

import numpy as np

from . import registry
from ._io import save_figure, write_csv


def stream_credits(cell, readout, task, steps: int) -> tuple:
    """Inputs ``(steps, n_in)`` of ``task`` and the credits ``(steps, S)`` of ``readout``'s loss
    along the cell's trajectory, weights frozen. Clears the readout's accumulated gradient."""
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


def compare(task_cfg: dict, cell_kind: str, n_hidden: int, density: float, alpha, learners, steps: int = 400,
            every: int = 1, seeds: int = 40,
            dtype="float64", seed=0, out=None):
    """Alignment of ``learners`` (specs) with RTRL, and variance of the stochastic ones.

    Returns a dict with ``alignment`` (from :func:`sparse_rtrl.alignment`),
    ``variance`` (spec -> :func:`sparse_rtrl.estimator_variance` result, over
    ``seeds`` seeds), ``table`` (text) and ``files`` written to ``out``
    (``compare.csv``, ``variance.csv``, ``compare.png``).
    """
    from .metrics import alignment, estimator_variance

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
        files = _write(out, align, variance, [names[s] for s in learners])
    return {"alignment": align, "variance": variance, "table": "\n".join(lines), "files": files}


def _write(out, align, variance, order):
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
    fig = Figure(figsize=(12 if variance else 6.5, 4))
    axes = fig.subplots(1, 2 if variance else 1, squeeze=False)
    ax = axes[0, 0]
    means = [align["mean_cosine"][n] for n in order]
    ax.bar(range(len(order)), means)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("mean cosine with RTRL")
    ax.axhline(0, color="k", lw=0.5)
    if variance:
        ax = axes[0, 1]
        for n, v in variance.items():
            ax.semilogy(np.arange(1, len(v["relative_variance"]) + 1), v["relative_variance"], label=n)
        ax.set_xlabel("step")
        ax.set_ylabel("variance / |exact gradient|^2")
        ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(save_figure(fig, os.path.join(out, "compare.png"), dpi=110))
    return files
