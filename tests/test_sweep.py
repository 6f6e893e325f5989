"""Sweeps (``sr.sweep``, ``sparse-rtrl sweep``): the spec, its runs on Dask, resumption, aggregation, tuning.

Reference: every run of a sweep is an ordinary trainer run, so its final
parameters must equal, bit for bit, those of the same configuration trained
with :class:`Trainer` in this process; a run whose worker was killed must
end where an uninterrupted run ends.
"""

import copy
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest

import sparse_rtrl as sr
from sparse_rtrl import cli
from sparse_rtrl.training import sweep as sw

BASE = {"task": {"name": "add", "length": 20}, "cell": "vanilla", "n_hidden": 6, "density": 1.0, "steps": 200,
        "log_every": 50, "eval_every": 100, "eval_steps": 40, "checkpoint_every": 100, "dtype": "float64"}


def spec(**grid):
    return {"name": "t", "base": copy.deepcopy(BASE), "grid": grid or {"learner": ["snap1"], "seed": [0, 1]}}


def params(folder):
    state = sr.checkpoint.load(os.path.join(folder, "checkpoint.npz"))
    return {k: v for k, v in _flatten(state).items() if isinstance(v, np.ndarray)}


def _flatten(tree, prefix=""):
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}/{k}"))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(_flatten(v, f"{prefix}/{i}"))
    else:
        out[prefix] = tree
    return out


def assert_same_params(a, b):
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys() and pa
    for k in pa:
        assert pa[k].tobytes() == pb[k].tobytes(), k


def reference(tmp_path, run):
    """The run trained with the Trainer in this process, in a folder of its own."""
    folder = tmp_path / "reference" / run["name"]
    sr.Trainer(run["config"], folder, progress=False).run()
    return folder


# -- the spec ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,message", [
    ({"grid": {"learner": ["snap1"]}, "grids": {}}, "unknown key"),
    ({"grid": {"lrr": [0.1]}}, "unknown field 'lrr'"),
    ({"grid": {"lr": []}}, "grid.lr is empty"),
    ({"grid": {"lr": 0.1}}, "grid.lr must be a list"),
    ({"grid": {"n_hidden.x": [1]}}, "only the tables"),
    ({"grid": {"learner": ["kfrtrl"], "cell": ["gru"]}}, "learner 'kfrtrl'"),
    ({"grid": {"lr": [-1.0]}}, "lr"),
    ({"grid": {"task.length": [0]}}, "length"),
    ({"grid": {}, "zip": [{"n_hidden": [4, 8], "density": [1.0]}]}, "one length"),
    ({"grid": {"n_hidden": [4]}, "zip": [{"n_hidden": [4, 8], "density": [1.0, 0.5]}]}, "varies in one place"),
    ({"grid": {"lr": [0.1, 0.1]}}, "same run"),
    ({"grid": {"lr": [0.1]}, "tune": {"field": "seed"}}, "tune: field 'seed'"),
    ({"grid": {"lr": [0.1]}, "tune": {"field": "momentum"}}, "tune: field 'momentum'"),
    ({"grid": {"lr": [0.1]}, "tune": {"field": "lr", "metric": "loss"}}, "tune.metric"),
])
def test_bad_specs_are_refused_before_anything_runs_naming_the_field(tmp_path, bad, message):
    s = dict(spec(), **bad)
    with pytest.raises((ValueError, TypeError), match=message):
        sr.sweep(s, tmp_path / "sweep", workers=0)
    assert not (tmp_path / "sweep").exists()


def test_the_grid_is_every_combination_and_zip_groups_vary_together():
    s = spec(learner=["snap1", "uoro"], seed=[0, 1, 2])
    s["zip"] = [{"n_hidden": [4, 8], "density": [1.0, 0.5]}]
    runs = sw.expand(s)
    assert len(runs) == 2 * 3 * 2
    pairs = {(r["config"]["n_hidden"], r["config"]["density"]) for r in runs}
    assert pairs == {(4, 1.0), (8, 0.5)}
    assert len({r["name"] for r in runs}) == len(runs)
    assert sw.expand(s) == runs  # names are stable
    s["grid"]["task.length"] = [10]
    assert all(r["config"]["task"] == {"name": "add", "length": 10} for r in sw.expand(s))


def test_a_toml_spec_is_the_same_sweep_as_its_dict(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "t"\n[base]\ncell = "vanilla"\nn_hidden = 6\ndensity = 1.0\nsteps = 200\n'
                    'log_every = 50\neval_every = 100\neval_steps = 40\ncheckpoint_every = 100\n'
                    'dtype = "float64"\ntask = {name = "add", length = 20}\n[grid]\nlearner = ["snap1"]\n'
                    'seed = [0, 1]\n')
    assert sw.expand(path) == sw.expand(spec())


# -- running, resuming, recording --------------------------------------------------------------------------------------

def test_a_sweep_in_process_skips_what_is_done_and_trains_only_what_is_missing(tmp_path):
    s = spec(learner=["snap1", "uoro"], seed=[0, 1])
    first = sr.sweep(s, tmp_path / "sw", workers=0, progress=False)
    assert sorted(first.trained) == sorted(r["name"] for r in sw.expand(s))
    assert [r["status"] for r in first.runs] == ["finished"] * 4
    again = sr.sweep(s, tmp_path / "sw", workers=0, progress=False)
    assert again.trained == [] and again.runs == first.runs
    s["grid"]["seed"] = [0, 1, 2]
    more = sr.sweep(s, tmp_path / "sw", workers=0, progress=False)
    new = [r["name"] for r in sw.expand(s) if r["config"]["seed"] == 2]
    assert sorted(more.trained) == sorted(new)
    # an interrupted run (stopped after its checkpoint at step 100, as by kill -9) is resumed, and ends where an
    # uninterrupted run ends
    run = sw.expand(s)[0]
    folder = tmp_path / "sw" / "runs" / run["name"]
    shutil.rmtree(folder)

    class Crash(sr.Callback):
        def on_checkpoint(self, trainer, path):
            if trainer.step >= 100:
                raise KeyboardInterrupt

    trainer = sr.Trainer(run["config"], folder, progress=False, callbacks=[Crash()])
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert sw.run_status(str(folder)) == "interrupted"
    resumed = sr.sweep(s, tmp_path / "sw", workers=0, progress=False)
    assert resumed.trained == [run["name"]]
    assert_same_params(folder, reference(tmp_path, run))
    for rec in resumed.runs:
        assert rec["status"] == "finished" and rec["steps"] == 200 and rec["final_eval"] is not None


def test_a_diverged_run_is_recorded_as_diverged_and_not_trained_again(tmp_path):
    s = spec(lr=[1e6, 1e-3])
    s["base"].update(optimizer="sgd", clip_norm=None, learner="rtrl")
    s["grid"]["seed"] = [0]
    first = sr.sweep(s, tmp_path / "sw", workers=0, progress=False)
    status = {r["lr"]: r["status"] for r in first.runs}
    assert status == {1e6: "diverged", 1e-3: "finished"}
    assert sr.sweep(s, tmp_path / "sw", workers=0, progress=False).trained == []
    row = next(r for r in first.summary if r["lr"] == 1e6)
    assert row["diverged"] == 1 and row["final_eval_median"] is None


def test_two_sweeps_into_one_folder_are_refused(tmp_path):
    os.makedirs(tmp_path / "sw")
    with sw._locked(str(tmp_path / "sw" / ".sweep.lock"), False, "held"):
        with pytest.raises(sr.SweepLocked, match="another sweep is writing"):
            sr.sweep(spec(), tmp_path / "sw", workers=0)


def test_tuning_keeps_the_best_rate_per_learner_then_runs_every_seed_at_it(tmp_path):
    s = spec(learner=["snap1", "rtrl"], lr=[1e6, 1e-2], seed=[0, 1, 2])
    s["base"].update(optimizer="sgd", clip_norm=None)
    s["tune"] = {"field": "lr", "seeds": 1}
    res = sr.sweep(s, tmp_path / "sw", workers=0, progress=False)
    tune = [r for r in res.runs if r["stage"] == "tune"]
    final = [r for r in res.runs if r["stage"] == "final"]
    assert len(tune) == 4 and {r["seed"] for r in tune} == {0}
    assert len(final) == 6 and {r["lr"] for r in final} == {1e-2}
    chosen = [r for r in res.tuned if r["chosen"]]
    assert sorted((r["learner"], r["lr"]) for r in chosen) == [("rtrl", 1e-2), ("snap1", 1e-2)]
    # the seed-0 runs of the final stage are the tuning runs (one folder, trained once)
    assert len(res.trained) == 4 + 4
    loaded = sr.sweep_results(tmp_path / "sw")
    assert loaded.column("final_eval", table="summary").shape == (2,)
    steps, values = loaded.curve(final[0]["name"])
    assert steps[-1] == 200 and np.all(np.isfinite(values))
    for name in ("results.csv", "summary.csv", "tuned.csv", "lr.png", "curves.png"):
        assert (tmp_path / "sw" / name).stat().st_size > 0


# -- on Dask ----------------------------------------------------------------------------------------------------------

distributed = pytest.importorskip("distributed", reason="the Dask tests need the dask extra (distributed)")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, env=dict(sw.ONE_THREAD),
                                       dashboard_address=None, silence_logs=50)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_runs_on_a_two_worker_cluster_equal_the_same_runs_in_process(tmp_path, client):
    s = spec(learner=["snap1", "uoro"], seed=[0, 1])
    refs = {r["name"]: reference(tmp_path, r) for r in sw.expand(s)}  # also compiles before the workers start
    res = sr.sweep(s, tmp_path / "sw", client)
    assert sorted(res.trained) == sorted(refs)
    for name, ref in refs.items():
        assert_same_params(tmp_path / "sw" / "runs" / name, ref)


def test_a_worker_killed_mid_run_has_its_run_resumed_elsewhere_to_the_same_end(tmp_path, client):
    s = spec(learner=["snap1", "rtrl"], seed=[0])
    s["base"].update(steps=3000, checkpoint_every=200, log_every=200, eval_every=1000)
    runs = sw.expand(s)
    refs = {r["name"]: reference(tmp_path, r) for r in runs}
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("res", sr.sweep(s, tmp_path / "sw", client)))
    thread.start()
    killed = None
    deadline = time.time() + 120
    while killed is None and time.time() < deadline and thread.is_alive():
        for r in runs:
            folder = tmp_path / "sw" / "runs" / r["name"]
            log = folder / "metrics.jsonl"
            if not (folder / "summary.json").exists() and log.exists() and log.stat().st_size > 0:
                records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
                busy = [w for w, keys in client.processing().items() if any(r["name"] in k for k in keys)]
                if busy and any(rec.get("step", 0) >= 400 for rec in records):
                    killed = client.run(os.getpid, workers=busy)[busy[0]]
                    os.kill(killed, 9)  # the worker training this run, mid-way
                    break
        time.sleep(0.05)
    thread.join(timeout=300)
    assert killed is not None, "no run was caught mid-way"
    res = out["res"]
    assert [r["status"] for r in res.runs] == ["finished", "finished"]
    for name, ref in refs.items():
        assert_same_params(tmp_path / "sw" / "runs" / name, ref)


# -- the command line -------------------------------------------------------------------------------------------------

def test_the_command_line_lists_runs_and_refuses_bad_specs(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('[base]\ncell = "vanilla"\n[grid]\nlearner = ["snap1", "uoro"]\nseed = [0, 1]\n')
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "4 runs" in capsys.readouterr().out
    path.write_text('[grid]\nleaner = ["snap1"]\n')
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "unknown field 'leaner'" in capsys.readouterr().err
    path.write_text('[grid\n')
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_command_line_runs_a_sweep_in_process(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('[base]\ncell = "vanilla"\nn_hidden = 6\ndensity = 1.0\nsteps = 100\nlog_every = 50\n'
                    'eval_every = 100\neval_steps = 40\ncheckpoint_every = 100\ntask = {name = "add", length = 20}\n'
                    '[grid]\nlearner = ["snap1"]\nseed = [0, 1]\n')
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "o"), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "2 runs (2 finished); 2 trained now" in out and "learner=snap1" in out
    assert (tmp_path / "o" / "results.csv").exists()
