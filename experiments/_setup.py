"""Shared by the reproduction scripts: arguments, output files, the results folder.

The CSV and figure writers, the figure maker and the steps between
updates of a learner spec are the perf scripts' (``perf/_common.py``), so the
two families write their results the same way (atomically, through
``sparse_rtrl._io``, with matplotlib's object API).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "perf"))

import _common  # noqa: E402

write_csv = _common.write_csv
save_figure = _common.save_figure
figure = _common.figure
grad_every = _common.grad_every


def parser(description):
    p = _common.parser(description)
    p.set_defaults(out=os.path.join(HERE, "results"))
    p.add_argument("--seeds", type=int, default=None, help="seeds per learner (default: the mode's)")
    return p


def train(config):
    """Train one ``RunConfig`` in a temporary folder.

    Returns the trainer (its network, learner and task as trained), the
    training log records and the seconds taken.
    """
    import tempfile
    import time

    from sparse_rtrl.training.trainer import Trainer, read_log

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trainer = Trainer(config, os.path.join(tmp, "run"), progress=False)
        trainer.run()
        seconds = time.perf_counter() - start
        log = [r for r in read_log(os.path.join(tmp, "run", "metrics.jsonl")) if r.get("split") == "train"]
    return trainer, log, seconds
