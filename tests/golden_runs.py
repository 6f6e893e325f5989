"""Fixed runs whose results were recorded before the architecture refactor.

``tests/fixtures/golden.npz`` holds what these functions returned on the code
as it was before the refactor (commit c1dd80f), recorded by
``python tests/golden_runs.py``; ``test_golden.py`` runs them again on the
code as it is and requires the same numbers, bit for bit. They use the
public API only (API.md), so the same functions run on both sides.

Every learner x every cell it supports x both dtypes is trained online three
ways (one stream with Adam and weights changing every step; a batch of two
over both cores with Nesterov SGD and random feedback on a cross-entropy
readout; frozen weights with random credits, gradients taken twice), and the
trainer runs six small configurations end to end.
"""

import json
import os
import sys
import tempfile

import numpy as np

import sparse_rtrl as sr

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "golden.npz")

CELLS = ("vanilla", "gru", "lstm")
DTYPES = ("float32", "float64")


def make_learner(name, cell, **kw):
    if name == "RTRL":
        return sr.RTRL(cell, **kw)
    if name == "BPTT":
        return sr.BPTT(cell, **kw)
    if name == "TBPTT3":
        return sr.TBPTT(cell, 3, **kw)
    if name.startswith("SnAp"):
        return sr.SnAp(cell, int(name[4:]), **kw)
    if name == "UORO":
        return sr.UORO(cell, seed=5, **kw)
    if name == "KFRTRL":
        return sr.KFRTRL(cell, seed=5, **kw)
    if name == "RKFRTRL":
        return sr.RKFRTRL(cell, seed=5, **kw)
    if name == "RFLO":
        return sr.RFLO(cell, **kw)
    if name == "KeRNL":
        return sr.KeRNL(cell, lr=1e-2, sigma=1e-2, seed=5, **kw)
    if name == "EProp":
        return sr.EProp(cell, **kw)
    if name == "FBPTT3":
        return sr.FutureBPTT(cell, 3, **kw)
    if name == "DNI":
        return sr.DNI(cell, lr=0.05, fix_interval=2, **kw)
    if name == "DNIb":
        return sr.DNIb(cell, lr=0.05, fix_interval=2, jacobian_lr=0.05, **kw)
    raise ValueError(name)


LEARNERS = ("RTRL", "BPTT", "TBPTT3", "SnAp1", "SnAp2", "SnAp3", "UORO", "KFRTRL", "RKFRTRL", "RFLO", "KeRNL",
            "EProp", "FBPTT3", "DNI", "DNIb")
VANILLA_ONLY = ("KFRTRL", "RKFRTRL", "RFLO", "KeRNL")


def cases():
    return [(name, kind, dtype) for name in LEARNERS for kind in CELLS for dtype in DTYPES
            if kind == "vanilla" or name not in VANILLA_ONLY]


def make_cell(kind, dtype, seed=7):
    dt = np.dtype(dtype)
    if kind == "vanilla":
        return sr.VanillaRNN(3, 5, density=0.5, alpha=0.6, seed=seed, dtype=dt)
    if kind == "gru":
        return sr.GRU(3, 5, density=0.5, seed=seed, dtype=dt)
    return sr.LSTM(3, 4, density=0.5, seed=seed, dtype=dt)


def learner_run(name, kind, dtype):
    """Arrays that must not change: parameters after online training, losses, gradients."""
    dt = np.dtype(dtype)
    rng = np.random.default_rng(11)
    out = {}

    # 1. One stream, Adam, an update every step. SnAp and e-prop train in the compiled loop, as they did
    # when these values were recorded; the others step by step, which calls the kernels whose numbers
    # this pins down (every learner's compiled loop equals its step-by-step path: tests/test_loop.py),
    # without compiling a loop for each of the 70 learner x cell x dtype cases.
    cell = make_cell(kind, dtype)
    learner = make_learner(name, cell)
    readout = sr.LinearReadout(cell, 2, loss="mse", seed=3)
    opt = sr.Adam([cell.params, readout.params], lr=1e-2, clip_norm=1.0)
    xs = rng.normal(size=(10, 3)).astype(dt)
    ys = rng.normal(size=(10, 2)).astype(dt)
    fused = name.startswith("SnAp") or name == "EProp"
    out["online_losses"] = sr.train_online(learner, readout, opt, xs, ys, update_every=1, fused=fused)
    out["online_cell"] = cell.params.copy()
    out["online_readout"] = readout.params.copy()

    # 2. Two streams over both cores, Nesterov SGD, random feedback, cross-entropy with unlabelled steps.
    cell = make_cell(kind, dtype)
    learner = make_learner(name, cell, batch_size=2, parallel=True)
    readout = sr.LinearReadout(cell, 3, loss="cross_entropy", seed=4, feedback="random")
    opt = sr.SGD([cell.params, readout.params], lr=0.1, momentum=0.9, nesterov=True)
    xs = rng.normal(size=(9, 2, 3)).astype(dt)
    ys = rng.integers(-1, 3, size=(9, 2))
    out["batch_losses"] = sr.train_online(learner, readout, opt, xs, ys, update_every=2)
    out["batch_cell"] = cell.params.copy()
    out["batch_readout"] = readout.params.copy()

    # 3. Frozen weights, random credits, one stream split over the cores where a learner can.
    cell = make_cell(kind, dtype)
    learner = make_learner(name, cell, parallel=True)
    xs = rng.normal(size=(9, 3)).astype(dt)
    cs = rng.normal(size=(9, cell.n_state)).astype(dt)
    states = []
    for t in range(9):
        states.append(learner.forward(xs[t]))
        if t != 4:
            learner.backward(cs[t])
        if t == 5:
            out["frozen_grad_mid"] = learner.grad()
    if isinstance(learner, sr.FutureBPTT):
        learner.flush()
    out["frozen_grad_end"] = learner.grad()
    out["frozen_states"] = np.array(states)
    return out


TRAINER_CASES = {
    "copy_gru_snap2": dict(task={"name": "copy"}, cell="gru", learner="snap2", steps=400),
    "add_vanilla_uoro_batch": dict(task={"name": "add", "length": 25}, cell="vanilla", alpha=0.5, learner="uoro",
                                   batch_size=2, update_every=3),
    "mimic_lstm_fbptt": dict(task={"name": "mimic", "length": 30}, cell="lstm", learner="fbptt4", optimizer="sgd",
                             momentum=0.9, update_every=2),
    "charlm_vanilla_kernl": dict(task={"name": "charlm", "text": "the cat sat on the mat. " * 20, "length": 30},
                                 cell="vanilla", learner="kernl", batch_size=2, dtype="float32"),
    "copy_lstm_dni": dict(task={"name": "copy"}, cell="lstm", learner="dni", update_every=2, steps=400),
    "add_vanilla_rflo_random": dict(task={"name": "add", "length": 25}, cell="vanilla", learner="rflo",
                                    feedback="random", dtype="float64"),
}


def trainer_run(case, folder):
    base = dict(n_hidden=6, density=0.5, optimizer="adam", lr=1e-2, steps=300, log_every=50, eval_every=100,
                eval_steps=40, checkpoint_every=100, dtype="float64", seed=2)
    base.update(TRAINER_CASES[case])
    trainer = sr.Trainer(sr.RunConfig(**base), folder, progress=False)
    trainer.run()
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        log = [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in f]
    return {"cell": trainer.cell.params.copy(), "readout": trainer.readout.params.copy(),
            "log": np.frombuffer(json.dumps(log, sort_keys=True).encode(), dtype=np.uint8).copy()}


def environment():
    """What the compiled arithmetic depends on: the CPU numba compiles for and the library versions."""
    import llvmlite.binding as ll
    import numba

    return {"cpu": ll.get_host_cpu_name(), "features": ll.get_host_cpu_features().flatten(),
            "numba": numba.__version__, "numpy": np.__version__}


def record():
    data = {}
    for name, kind, dtype in cases():
        for key, value in learner_run(name, kind, dtype).items():
            data[f"learner/{name}/{kind}/{dtype}/{key}"] = value
    for case in TRAINER_CASES:
        with tempfile.TemporaryDirectory() as tmp:
            for key, value in trainer_run(case, os.path.join(tmp, "run")).items():
                data[f"trainer/{case}/{key}"] = value
    env = environment()
    data["environment"] = np.frombuffer(json.dumps(env).encode(), dtype=np.uint8).copy()
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    np.savez_compressed(FIXTURE, **data)
    print(f"{len(data)} arrays -> {FIXTURE} ({env['cpu']}, numba {env['numba']}, numpy {env['numpy']})")


if __name__ == "__main__":
    sys.exit(record())
