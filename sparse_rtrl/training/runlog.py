"""A run's log: ``metrics.jsonl`` (one JSON object per event) and its learning-curve plot.

Records are appended as the run goes; a resumed run first drops what was
logged after its checkpoint (and a last line cut short by an interruption),
so the log always matches the run. Plots use matplotlib's object API only
(a ``Figure`` saved to a file): the user's backend and figures are never
touched, so training from a notebook leaves inline figures working.
"""

import json
import math
import os

from .._io import save_figure, write_text

LOG = "metrics.jsonl"


def read_log(path):
    """The records of a ``metrics.jsonl``, skipping a last line cut short."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


def append(path, record):
    """Add one record (a JSON object on its own line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def truncate(path, step):
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


def plot_run(folder, path=None):
    """Plot a run's learning curve (train and held-out metric; the task's logged extras) to ``loss.png``.

    Returns the path written. Needs matplotlib (``pip install "sparse_rtrl[plot]"``).
    """
    from matplotlib.figure import Figure

    folder = os.fspath(folder)
    records = read_log(os.path.join(folder, LOG))
    train = [r for r in records if r.get("split") == "train" and r.get("value") is not None]
    evals = [r for r in records if r.get("split") == "eval" and r.get("value") is not None]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    metric = train[0]["metric"] if train else (evals[0]["metric"] if evals else "loss")
    if train:
        ax.plot([r["step"] for r in train], [r["value"] for r in train], label="train")
    if evals:
        ax.plot([r["step"] for r in evals], [r["value"] for r in evals], "o-", label="held out")
    ax.set_xlabel("step")
    ax.set_ylabel(metric.replace("_", " "))
    if any("length" in r for r in train):
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in train], [r.get("length", math.nan) for r in train], color="gray", lw=1,
                 label="copy length")
        ax2.set_ylabel("sequence length reached", color="gray")
    ax.legend(loc="upper left", fontsize=8)
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        ax.set_title(f"{cfg['task']['name']}: {cfg['cell']} n={cfg['n_hidden']} density={cfg['density']}, "
                     f"{cfg['learner']}", fontsize=9)
    except (OSError, KeyError, json.JSONDecodeError):
        pass
    fig.tight_layout()
    out = os.path.join(folder, "loss.png") if path is None else os.fspath(path)
    return save_figure(fig, out, dpi=110)
