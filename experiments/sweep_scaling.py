"""Sweeps scale out: one small sweep on a LocalCluster of 1 and of 2 workers, and end to end on a cluster
started by hand (a scheduler and worker processes, as on a real cluster), through the command line.

1. The same sweep (learners x seeds on Add, a 32-unit vanilla RNN) into a
   fresh folder on a ``LocalCluster`` of 1 worker, then of 2 workers. The wall
   times give the speed-up; every run's final parameters are checked equal
   between the two.
2. A scheduler (``python -m dask scheduler``) and two worker processes
   (``python -m dask worker --nthreads 1``) are started as separate processes.
   ``sparse-rtrl sweep SPEC --scheduler ADDRESS`` then runs the sweep on them,
   and the results are checked the same as the local cluster's.

    python experiments/sweep_scaling.py            # 16 runs of 200k steps (~2 min on two cores)
    python experiments/sweep_scaling.py --quick    # smoke test

Writes ``sweep_scaling_{full,quick}.csv`` and ``.png``.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from _setup import figure, parser, save_figure, write_csv

LEARNERS = ["snap1", "uoro", "rflo", "kfrtrl"]


def spec(args):
    return {"name": "scaling",
            "base": {"task": {"name": "add", "length": 100}, "cell": "vanilla", "n_hidden": 32, "density": 0.25,
                     "alpha": 0.5, "steps": args.steps, "log_every": max(args.steps // 10, 1),
                     "eval_every": args.steps, "eval_steps": 500, "checkpoint_every": args.steps,
                     "dtype": "float64"},
            "grid": {"learner": args.learners, "seed": list(range(args.seeds))}}


def final_params(folder):
    import sparse_rtrl as sr

    state = sr.checkpoint.load(os.path.join(folder, "checkpoint.npz"))
    return {"cell": state["cell"], "readout": state["readout"]}


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return a.tobytes() == b.tobytes()
    return a == b


def local(s, folder, workers):
    import distributed

    import sparse_rtrl as sr
    from sparse_rtrl.training.sweep import ONE_THREAD

    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, env=dict(ONE_THREAD),
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        client.run(lambda: __import__("sparse_rtrl"))  # workers ready and the package imported: not timed
        t = time.perf_counter()
        res = sr.sweep(s, folder, client)
        return time.perf_counter() - t, res
    finally:
        client.close()
        cluster.close()


def by_hand(s, folder, tmp, workers):
    """A scheduler and worker processes started by hand; the sweep submitted by the command line."""
    from sparse_rtrl.training.sweep import ONE_THREAD

    env = dict(os.environ, **ONE_THREAD)
    info = os.path.join(tmp, "scheduler.json")
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--port", "0", "--dashboard-address",
                               ":0", "--scheduler-file", info], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not os.path.exists(info) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        with open(info) as f:
            address = json.load(f)["address"]
        for i in range(workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                                           "--name", f"by-hand-{i}"], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        import distributed

        with distributed.Client(address) as client:
            client.wait_for_workers(workers, timeout=120)
            client.run(lambda: __import__("sparse_rtrl"))
        toml = os.path.join(tmp, "spec.toml")
        with open(toml, "w") as f:
            f.write(_toml(s))
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "sparse_rtrl", "sweep", toml, "--out", folder, "--scheduler",
                              address, "--no-progress"], capture_output=True, text=True)
        seconds = time.perf_counter() - t
        if out.returncode != 0:
            raise RuntimeError(f"sparse-rtrl sweep --scheduler failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return seconds, out.stdout
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def _toml(s):
    def value(v):
        return json.dumps(v) if not isinstance(v, dict) else "{" + ", ".join(f"{k} = {value(x)}"
                                                                               for k, x in v.items()) + "}"
    lines = [f"name = {value(s['name'])}", "[base]"]
    lines += [f"{k} = {value(v)}" for k, v in s["base"].items()]
    lines += ["[grid]"] + [f"{k} = {value(v)}" for k, v in s["grid"].items()]
    return "\n".join(lines) + "\n"


def main():
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200_000)
    args = p.parse_args()
    import sparse_rtrl as sr

    args.seeds = args.seeds or 4
    args.learners = LEARNERS
    if args.quick:
        args.steps, args.seeds, args.learners = 200, 2, ["snap1"]
    s = spec(args)
    tmp = tempfile.mkdtemp()
    rows = []
    try:
        # compile in this process first, so that the workers read every kernel from the disk cache
        sr.sweep(dict(s, grid={"learner": args.learners, "seed": [0]}), os.path.join(tmp, "warm"), workers=0,
                 progress=False)
        results = {}
        for workers in (1, 2):
            folder = os.path.join(tmp, f"local{workers}")
            seconds, res = local(s, folder, workers)
            results[workers] = (folder, res)
            rows.append({"how": f"LocalCluster, {workers} worker(s)", "workers": workers, "runs": len(res.runs),
                         "finished": sum(r["status"] == "finished" for r in res.runs), "seconds": seconds})
            print(f"LocalCluster of {workers}: {len(res.runs)} runs in {seconds:.1f} s")
        folder = os.path.join(tmp, "by_hand")
        seconds, stdout = by_hand(s, folder, tmp, 2)
        res = sr.sweep_results(folder)
        rows.append({"how": "scheduler + 2 workers started by hand, sparse-rtrl sweep --scheduler", "workers": 2,
                     "runs": len(res.runs), "finished": sum(r["status"] == "finished" for r in res.runs),
                     "seconds": seconds})
        print(f"by hand, 2 workers, through the command line: {len(res.runs)} runs in {seconds:.1f} s")
        # the same runs everywhere, bit for bit
        for r in results[1][1].runs:
            ref = final_params(os.path.join(results[1][0], "runs", r["name"]))
            for other in (results[2][0], folder):
                assert same(ref, final_params(os.path.join(other, "runs", r["name"]))), (r["name"], other)
        print("every run's final parameters are the same on 1 worker, 2 workers and the hand-started cluster")
        speedup = rows[0]["seconds"] / rows[1]["seconds"]
        for row in rows:
            row["speedup_vs_1"] = rows[0]["seconds"] / row["seconds"]
        print(f"speed-up of 2 workers over 1: {speedup:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tag = "quick" if args.quick else "full"
    write_csv(os.path.join(args.out, f"sweep_scaling_{tag}.csv"), rows)
    fig = figure(figsize=(7, 3.2))
    ax = fig.subplots()
    ax.barh(range(len(rows)), [r["seconds"] for r in rows], color="tab:blue")
    ax.set_yticks(range(len(rows)), [f"{r['how']} ({r['speedup_vs_1']:.2f}x)" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"wall seconds for {rows[0]['runs']} runs of {args.steps} steps")
    fig.tight_layout()
    save_figure(fig, os.path.join(args.out, f"sweep_scaling_{tag}.png"))


if __name__ == "__main__":
    main()
