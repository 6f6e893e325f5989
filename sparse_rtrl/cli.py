"""The ``sparse-rtrl`` command line.

``sparse-rtrl gradcheck`` checks a cell's Jacobians and the learners'
gradients against BPTT and finite differences on a random sequence and exits
non-zero if an exact learner disagrees.
"""

import argparse
import sys

import numpy as np

CELLS = ("vanilla", "gru", "lstm")


def _learner_factory(spec):
    """Parse one learner spec: rtrl, bptt, uoro, snap<n>, tbptt<T>."""
    from . import BPTT, RTRL, TBPTT, UORO, SnAp

    s = spec.strip().lower()
    if s == "rtrl":
        return RTRL
    if s == "bptt":
        return BPTT
    if s == "uoro":
        return lambda cell: UORO(cell, seed=0)
    for prefix, make in (("snap", lambda cell, k: SnAp(cell, k)), ("tbptt", lambda cell, k: TBPTT(cell, k))):
        if s.startswith(prefix) and s[len(prefix):].lstrip("-").isdigit():
            k = int(s[len(prefix):].lstrip("-"))
            if k < 1:
                raise argparse.ArgumentTypeError(f"{spec}: the number must be >= 1")
            return lambda cell, k=k, make=make: make(cell, k)
    raise argparse.ArgumentTypeError(
        f"unknown learner {spec!r}; use rtrl, bptt, uoro, snap<n> (e.g. snap2) or tbptt<T> (e.g. tbptt4)"
    )


def _learner_list(text):
    return [(s.strip(), _learner_factory(s)) for s in text.split(",") if s.strip()]


def _density(text):
    v = float(text)
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"density must be in (0, 1], got {text}")
    return v


def _positive_int(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def build_parser():
    parser = argparse.ArgumentParser(prog="sparse-rtrl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("gradcheck", help="check Jacobians and gradients against BPTT and finite differences")
    g.add_argument("--cell", choices=CELLS, default="gru")
    g.add_argument("--n-in", type=_positive_int, default=3)
    g.add_argument("--n-hidden", type=_positive_int, default=12)
    g.add_argument("--density", type=_density, default=0.25)
    g.add_argument("--steps", type=_positive_int, default=8)
    g.add_argument("--learners", type=_learner_list, default=_learner_list("rtrl,tbptt8,snap1,snap2,snap3,uoro"))
    g.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=_cmd_gradcheck)
    return parser


def _make_cell(kind, n_in, n_hidden, density, seed, dtype):
    from . import GRU, LSTM, VanillaRNN

    cls = {"vanilla": VanillaRNN, "gru": GRU, "lstm": LSTM}[kind]
    return cls(n_in, n_hidden, density=density, seed=seed, dtype=np.dtype(dtype))


def _cmd_gradcheck(args):
    from .gradcheck import gradcheck

    cell = _make_cell(args.cell, args.n_in, args.n_hidden, args.density, args.seed, args.dtype)
    learners = [factory for _, factory in args.learners]
    report = gradcheck(cell, learners, n_steps=args.steps, seed=args.seed)
    print(report)
    return 0 if report.ok else 1


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"sparse-rtrl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
