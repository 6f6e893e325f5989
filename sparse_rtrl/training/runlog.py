"""A run's log: ``metrics.jsonl`` (one JSON object per event) and its learning-curve plots.

Records are appended as the run goes; a resumed run first drops what was
logged after its checkpoint (and a last line cut short by an interruption),
so the log always matches the run. :func:`plot_run` draws one run's curve
(``loss.png``), :func:`plot_runs` overlays several runs in one figure.

Plots use matplotlib's object API only (a ``Figure`` saved to a file): the
user's backend, figures and ``rcParams`` are never touched, so training from
a notebook leaves inline figures working. They are readable at any run
length: a run that logged one point shows it as a marker, one that logged
nothing yet says so, and the legend sits below the axes, off the data.
"""

import json
import math
import os

from .._io import save_figure, write_text

__all__ = ["LOG", "append", "plot_run", "plot_runs", "read_log", "truncate"]

#: The log's file name inside a run folder.
LOG = "metrics.jsonl"

#: Curves with fewer points than this also mark each point (a short run stays visible).
_MARK_BELOW = 40


def read_log(path) -> list:
    """The records of a ``metrics.jsonl``, skipping a last line cut short.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist; the message names it.
    """
    path = os.fspath(path)
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(2, "no run log at this path", path) from None
    out = []
    with f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


def append(path, record) -> None:
    """Add one record (a JSON object on its own line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def truncate(path, step) -> None:
    """Keep the records up to ``step`` (none after it, no end or divergence), rewriting the file atomically."""
    kept = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by the interruption: it and what follows are dropped
                if rec.get("step", 0) > step or rec.get("event") in ("end", "diverged"):
                    break
                kept.append(line if line.endswith("\n") else line + "\n")
    write_text(path, "".join(kept))


# -- plots ------------------------------------------------------------------------------------

def _run_log(folder):
    """The records of the run in ``folder``; a FileNotFoundError naming the log if there is none."""
    path = os.path.join(folder, LOG)
    if not os.path.isfile(path):
        what = "is not a folder" if not os.path.isdir(folder) else f"holds no run log ({LOG})"
        raise FileNotFoundError(2, f"{folder!r} {what}", path)
    return read_log(path)


def _run_config(folder):
    """The run's ``config.json`` as a dict, or ``{}`` when it is missing or unreadable."""
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _task_name(cfg):
    task = cfg.get("task")
    return task.get("name") if isinstance(task, dict) else task


def _describe(cfg):
    """``"add task: vanilla n=6 density=0.5, snap2"`` from a run config (what of it is there)."""
    task = _task_name(cfg)
    net = " ".join(str(p) for p in (cfg.get("cell"),
                                    f"n={cfg['n_hidden']}" if "n_hidden" in cfg else None,
                                    f"density={cfg['density']}" if "density" in cfg else None) if p)
    parts = [p for p in (net, cfg.get("learner")) if p]
    text = ", ".join(str(p) for p in parts)
    return f"{task} task: {text}" if task and text else str(task or text)


def _number(value):
    """``value`` as a finite float, or None (a missing or non-finite record value is not drawn)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _series(records, split, metric):
    """``(steps, values)`` of the records of ``split`` that carry ``metric``.

    ``metric`` names either the task's logged metric (a record's ``"metric"``,
    whose number is ``"value"``) or a numeric field of the records (``"loss"``).
    """
    steps, values = [], []
    for r in records:
        if r.get("split") != split:
            continue
        v = _number(r.get("value")) if r.get("metric") == metric else _number(r.get(metric))
        if v is not None and _number(r.get("step")) is not None:
            steps.append(r["step"])
            values.append(v)
    return steps, values


def _logged_metric(records):
    return next((r["metric"] for r in records if isinstance(r.get("metric"), str)), None)


def _curve(ax, steps, values, style, **kwargs):
    """One curve; with few points each is marked (a single point is a marker, not an invisible line)."""
    if len(steps) < _MARK_BELOW:
        kwargs.setdefault("marker", "o")
        kwargs.setdefault("markersize", 4 if len(steps) > 1 else 6)
    return ax.plot(steps, values, style, **kwargs)[0]


def _say_nothing_yet(ax, what):
    ax.set_axis_off()
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.4")


def _legend_below(fig, handles, ncols):
    """The legend under the axes, outside the data (needs the figure's constrained layout)."""
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=max(1, min(ncols, len(handles))),
                   fontsize=8, frameon=False)


def _figure(n_legend_rows=1):
    from matplotlib.figure import Figure

    return Figure(figsize=(7, 4.2 + 0.2 * max(0, n_legend_rows - 1)), layout="constrained")


def plot_run(folder, path=None) -> str:
    """Plot a run's learning curve (train and held-out metric; the task's logged extras).

    Parameters
    ----------
    folder : str or os.PathLike
        A run folder (what ``Trainer`` writes): ``metrics.jsonl`` and, for the
        title, ``config.json``.
    path : str or os.PathLike, optional
        Where to write the figure (its extension picks the format); default
        ``folder/loss.png``.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    FileNotFoundError
        ``folder`` holds no ``metrics.jsonl``; the message names it.
    ImportError
        matplotlib is not installed (``pip install "sparse_rtrl[plot]"``).

    Notes
    -----
    Any length of run gives a readable figure: curves of few points mark
    every point (a run logged once shows one marker), a log with no records
    yet gives a figure that says so, and the legend sits below the axes.
    A divergence recorded in the log is drawn as a dotted red line.
    """
    folder = os.fspath(folder)
    records = _run_log(folder)
    cfg = _run_config(folder)
    out = os.path.join(folder, "loss.png") if path is None else os.fspath(path)
    metric = _logged_metric(records) or "loss"
    train = _series(records, "train", metric)
    evals = _series(records, "eval", metric)
    fig = _figure()
    ax = fig.subplots()
    ax.set_title(_describe(cfg) or os.path.basename(os.path.abspath(folder)), fontsize=9)
    if not train[0] and not evals[0]:
        _say_nothing_yet(ax, "no records yet")
        return save_figure(fig, out, dpi=110)
    handles = []
    if train[0]:
        handles.append(_curve(ax, *train, "-", lw=1.2, label="train"))
    if evals[0]:
        handles.append(_curve(ax, *evals, "-", lw=1.2, marker="o", markersize=4, label="held out"))
    diverged = [r["step"] for r in records if r.get("event") == "diverged" and _number(r.get("step")) is not None]
    for step in diverged[:1]:
        handles.append(ax.axvline(step, color="tab:red", ls=":", lw=1.2, label=f"diverged at step {step}"))
    ax.set_xlabel("step")
    ax.set_ylabel(metric.replace("_", " "))
    length = _series(records, "train", "length")
    if length[0]:
        ax2 = ax.twinx()
        handles.append(_curve(ax2, *length, "-", color="gray", lw=1, label="copy length"))
        ax2.set_ylabel("sequence length reached", color="gray")
    _legend_below(fig, handles, ncols=4)
    return save_figure(fig, out, dpi=110)


def plot_runs(folders, path, metric: str = None) -> str:
    """Overlay the learning curves of several runs in one figure.

    Each run gets one colour: its training curve solid, its held-out curve
    dashed with markers. Runs are labelled by folder name and learner.

    Parameters
    ----------
    folders : sequence of str or os.PathLike
        Run folders (what ``Trainer`` writes); one path is taken as one run.
    path : str or os.PathLike
        Where to write the figure (its extension picks the format, e.g. ``.png``).
    metric : str, optional
        What to plot: the task's metric as logged (``"mse"``,
        ``"bits_per_char"``, ...) or another numeric field of the records
        (``"loss"``: the training loss, which has no held-out curve).
        Default: the metric the runs log, which must then be the same for all.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    FileNotFoundError
        A folder holds no ``metrics.jsonl``; the message names it.
    ValueError
        No folder is given, or ``metric`` is None and the runs log different
        metrics.
    ImportError
        matplotlib is not installed (``pip install "sparse_rtrl[plot]"``).
    """
    from matplotlib.lines import Line2D

    if isinstance(folders, (str, bytes, os.PathLike)):
        folders = [folders]
    folders = [os.fspath(f) for f in folders]
    if not folders:
        raise ValueError("folders must name at least one run folder")
    if metric is not None and not isinstance(metric, str):
        raise TypeError(f"metric must be a str or None, got {type(metric).__name__}")
    runs = [(f, _run_log(f), _run_config(f)) for f in folders]
    if metric is None:
        logged = {f: m for f, records, _ in runs if (m := _logged_metric(records)) is not None}
        if len(set(logged.values())) > 1:
            listing = ", ".join(f"{f}: {m}" for f, m in logged.items())
            raise ValueError(f"the runs log different metrics ({listing}); pass metric= one of them, or 'loss'")
        metric = next(iter(logged.values()), "loss")
    names = [os.path.basename(os.path.normpath(f)) or f for f in folders]
    if len(set(names)) < len(names):
        names = [os.path.normpath(f) for f in folders]
    fig = _figure(n_legend_rows=(len(runs) + 2) // 3)
    ax = fig.subplots()
    tasks = {_task_name(cfg) for _, _, cfg in runs}
    about = f"{tasks.pop()} task, " if len(tasks) == 1 and None not in tasks else ""
    ax.set_title(f"{about}{metric.replace('_', ' ')} of {len(runs)} run{'s' if len(runs) > 1 else ''}",
                 fontsize=9)
    handles, any_eval, n_drawn = [], False, 0
    for (folder, records, cfg), name in zip(runs, names):
        learner = cfg.get("learner")
        label = f"{name} ({learner})" if learner and learner != name else name
        train = _series(records, "train", metric)
        evals = _series(records, "eval", metric)
        if not train[0] and not evals[0]:
            handles.append(Line2D([], [], ls="none", label=f"{label}: no records yet"))
            continue
        color = f"C{n_drawn}"  # the next colour of the user's colour cycle
        n_drawn += 1
        if train[0]:
            _curve(ax, *train, "-", lw=1.2, color=color)
        if evals[0]:
            _curve(ax, *evals, "--", lw=1, marker="o", markersize=3, color=color)
            any_eval = True
        handles.append(Line2D([], [], color=color, lw=2, label=label))  # one entry per run, its colour
    if not n_drawn:
        _say_nothing_yet(ax, f"no {metric!r} in these logs" if any(r for _, r, _ in runs) else "no records yet")
    else:
        ax.set_xlabel("step")
        ax.set_ylabel(metric.replace("_", " "))
    if any_eval:
        handles += [Line2D([], [], color="0.3", ls="-", label="train"),
                    Line2D([], [], color="0.3", ls="--", marker="o", markersize=3, label="held out")]
    _legend_below(fig, handles, ncols=3)
    return save_figure(fig, os.fspath(path), dpi=110)
