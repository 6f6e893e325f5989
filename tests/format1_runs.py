"""Checkpoints in format 1 (the layout before the architecture refactor), kept as fixtures.

``python tests/format1_runs.py`` was run once on the code of commit c1dd80f.
It wrote, into ``tests/fixtures/format1/``:

- three checkpoint files of objects saved in the middle of online training
  (a SnAp-2 on a GRU with a deferred update pending, a batched UORO on a
  vanilla RNN, a DNI on an LSTM with its models learned), each holding a
  cell, a learner, a readout, an optimiser and a data generator;
- ``run/``, a trainer run folder interrupted at step 200 of 300;
- ``expected.npz``: what the old code computed after loading each of them
  and training on (parameters, losses), recorded in the same call.

``test_golden.py`` loads the files with the code as it is and requires the
same continuations, bit for bit. Only public names are used here.
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np

import sparse_rtrl as sr
from sparse_rtrl import checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
FOLDER = os.path.join(HERE, "fixtures", "format1")
EXPECTED = os.path.join(FOLDER, "expected.npz")

KINDS = ("snap_gru", "uoro_vanilla_batch", "dni_lstm")


def build(kind, seed=0):
    """Fresh objects as the saved ones were built (``seed`` offsets what a checkpoint must override)."""
    if kind == "snap_gru":
        cell = sr.GRU(2, 5, density=0.5, seed=1, dtype=np.float32)
        learner = sr.SnAp(cell, 2)
        readout = sr.LinearReadout(cell, 2, loss="mse", seed=2 + seed)
        opt = sr.Adam([cell.params, readout.params], lr=1e-2, clip_norm=1.0)
    elif kind == "uoro_vanilla_batch":
        cell = sr.VanillaRNN(2, 5, density=0.5, alpha=0.5, seed=1, dtype=np.float64)
        learner = sr.UORO(cell, seed=3 + seed, batch_size=2)
        readout = sr.LinearReadout(cell, 3, loss="cross_entropy", seed=2 + seed, feedback="random")
        opt = sr.SGD([cell.params, readout.params], lr=0.05, momentum=0.9)
    else:
        cell = sr.LSTM(2, 4, density=0.5, seed=1, dtype=np.float64)
        learner = sr.DNI(cell, lr=0.05, fix_interval=3)
        readout = sr.LinearReadout(cell, 2, loss="mse", seed=2 + seed)
        opt = sr.SGD([cell.params, readout.params], lr=0.05, momentum=0.5, nesterov=True)
    rng = np.random.default_rng(100 + seed)
    return {"cell": cell, "learner": learner, "readout": readout, "optimizer": opt, "data_rng": rng}


def _stream(objs, steps):
    cell, readout, rng = objs["cell"], objs["readout"], objs["data_rng"]
    B = objs["learner"].batch_size
    lead = (steps,) if B is None else (steps, B)
    xs = rng.normal(size=lead + (cell.n_in,)).astype(cell.dtype)
    if readout.loss == "mse":
        ys = rng.normal(size=lead + (readout.n_out,)).astype(cell.dtype)
    else:
        ys = rng.integers(0, readout.n_out, size=lead)
    return xs, ys


def before_save(objs):
    """Train, then take one more step without its credit (a deferred update pending)."""
    xs, ys = _stream(objs, 12)
    sr.train_online(objs["learner"], objs["readout"], objs["optimizer"], xs, ys, update_every=2)
    x, _ = _stream(objs, 1)
    objs["learner"].forward(x[0])


def after_load(objs):
    """The credit of the pending step, then more training: the arrays that must not change."""
    learner, readout = objs["learner"], objs["readout"]
    _, y = _stream(objs, 1)
    _, credit = readout.step(learner.state, y[0])
    learner.backward(credit)
    xs, ys = _stream(objs, 10)
    losses = sr.train_online(learner, readout, objs["optimizer"], xs, ys, update_every=2)
    return {"losses": losses, "cell": objs["cell"].params.copy(), "readout": readout.params.copy(),
            "grad": learner.grad()}


def restore(objs, tree):
    for key, obj in objs.items():
        checkpoint.set_state(obj, tree[key])


def run_folder_result(folder):
    trainer = sr.Trainer.resume(folder, progress=False)
    trainer.run()
    return {"cell": trainer.cell.params.copy(), "readout": trainer.readout.params.copy()}


RUN_CONFIG = dict(task={"name": "add", "length": 20}, cell="vanilla", n_hidden=6, density=0.5, alpha=0.5,
                  learner="snap2", optimizer="adam", lr=1e-2, steps=300, log_every=50, eval_every=100,
                  eval_steps=40, checkpoint_every=100, dtype="float64", seed=3)


def record():
    RunConfig, Trainer = sr.RunConfig, sr.Trainer
    os.makedirs(FOLDER, exist_ok=True)
    expected = {}
    for kind in KINDS:
        objs = build(kind)
        before_save(objs)
        path = os.path.join(FOLDER, f"{kind}.ckpt")
        checkpoint.save(path, {key: checkpoint.get_state(obj) for key, obj in objs.items()})
        for key, value in after_load(objs).items():
            expected[f"{kind}/{key}"] = value
    run = os.path.join(FOLDER, "run")
    shutil.rmtree(run, ignore_errors=True)
    trainer = Trainer(RunConfig(**dict(RUN_CONFIG, steps=200)), run, progress=False)
    trainer.run()
    for name in ("summary.json", "loss.png"):
        if os.path.exists(os.path.join(run, name)):
            os.remove(os.path.join(run, name))
    # The folder as a run interrupted at step 200 of 300 leaves it.
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(dict(RunConfig(**RUN_CONFIG).to_dict()), f, indent=2)
        f.write("\n")
    lines = open(os.path.join(run, "metrics.jsonl")).read().splitlines(True)
    with open(os.path.join(run, "metrics.jsonl"), "w") as f:
        f.writelines(line for line in lines if '"event": "end"' not in line)
    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copytree(run, os.path.join(tmp, "run"))
        for key, value in run_folder_result(copy).items():
            expected[f"run/{key}"] = value
    np.savez_compressed(EXPECTED, **expected)
    print(f"format-1 fixtures -> {FOLDER}")


if __name__ == "__main__":
    sys.exit(record())
