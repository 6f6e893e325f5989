"""Sweeps: one ordinary run of the trainer per point of a grid of settings, on Dask.

A *spec* (a TOML file, or the same dict from Python) has

- ``base``: a run configuration (the fields of :class:`~sparse_rtrl.RunConfig`);
- ``grid``: lists of values over any of its fields (``learner``, ``lr``,
  ``seed``, ``n_hidden``, ...; a setting inside a table with a dotted name:
  ``"task.length"``, ``"learner_options.lr"``); every combination is a run;
- ``zip`` (optional): groups of fields that vary together, each a table of
  lists of one length (``n_hidden = [32, 64]`` with ``density = [1.0, 0.5]``
  is two settings, not four);
- ``tune`` (optional): ``field`` (e.g. ``"lr"``, one of the grid's), the
  ``seeds`` that choose it (a count: the first of the grid's seeds, or a
  list) and the ``metric`` (``"final_eval"``, the default, or
  ``"final_train"``). The grid's values of ``field`` are tried on those seeds;
  for each setting of the other fields the value with the lowest median
  metric is kept, and only it is run on all of the grid's seeds (Marschall et
  al.'s protocol: a rate per learner, then many seeds at it).

Each run lives in ``FOLDER/runs/NAME``: ``NAME`` spells the settings that vary
and ends with a hash of the run's configuration, so a rerun of the same spec
finds its runs again. A rerun skips finished runs, resumes interrupted ones
from their checkpoints (bit for bit, as :meth:`Trainer.resume` does), and
records diverged ones as diverged without training them again. A worker that
dies mid-run has its run given to another worker, which resumes it. Two
sweeps writing into one folder at once are refused, and each run folder is
trained by one process at a time (a lock held while it trains).

The results: ``results.csv`` (a row per run: its settings, status, final
train and held-out metrics, steps, seconds), ``summary.csv`` (per setting
other than the seed: counts, median and interquartile range over seeds),
``tuned.csv`` (with ``tune``: each candidate's median and the value kept), and
the plots ``lr.png`` (final metric against the learning rate, a band across
seeds) and ``curves.png`` (learning curves at each learner's best setting).
:func:`sweep_results` loads them again.

Dask's ``distributed`` is an optional dependency: ``pip install
"sparse_rtrl[dask]"``. Without a client, :func:`sweep` starts a
``LocalCluster`` of worker processes, one per core, one thread each, with
numba's and BLAS's threads set to one in every worker (the runs are the
parallelism).
"""

import contextlib
import copy
import csv
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import re
import statistics
import sys
import time

import numpy as np

from .._io import save_figure, write_csv, write_text
from .._validate import check_int
from .runlog import LOG, read_log

__all__ = ["SweepLocked", "SweepResults", "expand", "load_spec", "run_point", "sweep", "sweep_results"]

logger = logging.getLogger("sparse_rtrl")

SPEC_KEYS = ("name", "base", "grid", "zip", "tune")
#: Fields of a run configuration that are tables: their settings vary with a dotted name (``"task.length"``).
TABLES = ("task", "learner_options", "model_options", "schedule_options")
TUNE_KEYS = ("field", "seeds", "metric")
METRICS = ("final_eval", "final_train")
#: Worker environment: the runs are the parallelism, so every run keeps to one thread.
ONE_THREAD = {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
INSTALL = 'sweeps run on Dask: pip install "sparse_rtrl[dask]"'
STATUSES = ("finished", "diverged", "failed")


class SweepLocked(RuntimeError):
    """Another sweep is writing into the folder."""


# -- the spec -------------------------------------------------------------------------------------------------------

def _read_toml(path):
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ImportError(f"reading {path} needs a TOML parser: pip install tomli (or \"sparse_rtrl[dask]\")")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None


def _run_fields():
    from .trainer import RunConfig

    return {f.name for f in dataclasses.fields(RunConfig)}


def _check_field(field, where):
    if not isinstance(field, str):
        raise TypeError(f"{where}: field names are strings, got {field!r}")
    head, dot, tail = field.partition(".")
    if head not in _run_fields():
        raise ValueError(f"{where}: unknown field {field!r} (a run configuration field, or a dotted setting of "
                         f"one of its tables: {', '.join(t + '.NAME' for t in TABLES)})")
    if dot and (head not in TABLES or not tail or "." in tail):
        raise ValueError(f"{where}: {field!r}: only the tables {', '.join(TABLES)} take dotted settings "
                         f"(TABLE.NAME)")
    return field


def _check_values(values, where):
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{where} must be a list of values, got {type(values).__name__}")
    if not values:
        raise ValueError(f"{where} is empty: give at least one value")
    return list(values)


def load_spec(spec) -> dict:
    """A sweep spec, checked: a path to a TOML file, or a dict of the same shape.

    Returns a new dict with ``name``, ``base``, ``grid``, ``zip`` (a list of
    tables) and ``tune`` (None or a table). Unknown keys, unknown fields, empty
    lists, zip groups of lists of different lengths, and a field that varies
    in two places are refused (``ValueError``/``TypeError`` naming them).
    Each run's configuration is checked by :func:`expand`.
    """
    if isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        spec = _read_toml(path)
        spec.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a path to a TOML file or a dict, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"spec: unknown key(s) {', '.join(map(repr, unknown))} (a spec has {', '.join(SPEC_KEYS)})")
    spec = copy.deepcopy(spec)
    name = spec.get("name", "sweep")
    if not isinstance(name, str) or not name:
        raise TypeError(f"spec name must be a non-empty string, got {name!r}")
    base = spec.get("base", {})
    if not isinstance(base, dict):
        raise TypeError(f"base must be a table of run configuration fields, got {type(base).__name__}")
    for field in base:
        if "." in field:
            raise ValueError(f"base: {field!r}: give a table's settings as a table (task = {{...}}), not dotted")
        _check_field(field, "base")
    grid = spec.get("grid", {})
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be a table of lists, got {type(grid).__name__}")
    seen = {}
    for field, values in grid.items():
        _check_field(field, "grid")
        grid[field] = _check_values(values, f"grid.{field}")
        seen[field] = "grid"
    zips = spec.get("zip", [])
    if isinstance(zips, dict):
        zips = [zips]
    if not isinstance(zips, list):
        raise TypeError(f"zip must be a list of tables of lists, got {type(zips).__name__}")
    for i, group in enumerate(zips, 1):
        where = f"zip group {i}"
        if not isinstance(group, dict) or not group:
            raise ValueError(f"{where} must be a non-empty table of lists")
        lengths = {}
        for field, values in group.items():
            _check_field(field, where)
            group[field] = _check_values(values, f"{where}: {field}")
            lengths[field] = len(group[field])
            if field in seen:
                raise ValueError(f"{where}: {field!r} already varies in the {seen[field]}: a field varies in one "
                                 f"place")
            seen[field] = where
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{where}: its lists vary together, so they need one length; got "
                             + ", ".join(f"{f}: {n}" for f, n in lengths.items()))
    tune = spec.get("tune")
    if tune is not None:
        tune = _check_tune(tune, grid)
    return {"name": name, "base": base, "grid": grid, "zip": zips, "tune": tune}


def _check_tune(tune, grid):
    if isinstance(tune, str):
        tune = {"field": tune}
    if not isinstance(tune, dict):
        raise TypeError(f"tune must be a table (field, seeds, metric) or a field name, got {type(tune).__name__}")
    unknown = sorted(set(tune) - set(TUNE_KEYS))
    if unknown:
        raise ValueError(f"tune: unknown key(s) {', '.join(map(repr, unknown))} (tune has {', '.join(TUNE_KEYS)})")
    field = tune.get("field")
    if field is None:
        raise ValueError("tune: give the field to tune (e.g. field = \"lr\")")
    _check_field(field, "tune")
    if field not in grid or field == "seed":
        raise ValueError(f"tune: field {field!r} must be one of the grid's fields other than seed, with the values "
                         f"to try")
    seeds = tune.get("seeds", 2)
    if isinstance(seeds, (list, tuple)):
        seeds = _check_values(seeds, "tune.seeds")
        for s in seeds:
            check_int(s, "tune.seeds", minimum=0)
    else:
        check_int(seeds, "tune.seeds", minimum=1)
    metric = tune.get("metric", "final_eval")
    if metric not in METRICS:
        raise ValueError(f"tune.metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return {"field": field, "seeds": seeds, "metric": metric}


def _set(config, field, value):
    head, dot, tail = field.partition(".")
    if dot:
        table = dict(config.get(head) or {})
        table[tail] = value
        config[head] = table
    else:
        config[head] = value


def _get(config, field):
    head, dot, tail = field.partition(".")
    if dot:
        return (config.get(head) or {}).get(tail)
    return config.get(head)


def _word(value):
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "", text.replace(" ", "")) or "x"


def run_name(settings, config):
    """The folder name of a run: its varying settings, then a hash of its whole configuration."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]
    words = "_".join(f"{field.replace('_', '')}-{_word(value)}" for field, value in settings.items())
    return f"{words[:150]}_{digest}" if words else digest


def _axes(spec):
    """The grid as axes: one per grid field, one per zip group; each a list of {field: value}."""
    axes = [[{field: v} for v in values] for field, values in spec["grid"].items()]
    for group in spec["zip"]:
        fields = list(group)
        axes.append([dict(zip(fields, row)) for row in zip(*(group[f] for f in fields))])
    return axes


def expand(spec, *, seeds=None) -> list:
    """The runs of a spec, in grid order: dicts with ``name``, ``settings`` (the fields that vary, with their
    values) and ``config`` (the whole run configuration, as given).

    ``seeds`` (optional) replaces the grid's seeds. Every configuration is
    checked before anything runs: its fields (:meth:`RunConfig.validate`),
    its task, and that its learner runs on its cell.
    """
    from .. import registry
    from . import tasks
    from .trainer import RunConfig

    spec = load_spec(spec)
    grid = dict(spec["grid"])
    if seeds is not None:
        grid["seed"] = list(seeds)
    spec = dict(spec, grid=grid)
    runs = []
    checked_tasks, checked_cells = {}, {}
    for combo in itertools.product(*_axes(spec)):
        settings = {}
        for part in combo:
            settings.update(part)
        config = copy.deepcopy(spec["base"])
        for field, value in settings.items():
            _set(config, field, value)
        where = "run " + (", ".join(f"{f}={v!r}" for f, v in settings.items()) or "(the base)")
        try:
            cfg = RunConfig.from_dict(config)
            key = json.dumps([cfg.task, cfg.batch_size, cfg.dtype], sort_keys=True, default=str)
            if key not in checked_tasks:
                checked_tasks[key] = tasks.make_task(dict(cfg.task, batch_size=cfg.batch_size, seed=0,
                                                          dtype=cfg.dtype))
            task = checked_tasks[key]
            if cfg.model == "rnn":
                ckey = (cfg.cell, cfg.learner, task.n_in)
                if ckey not in checked_cells:
                    cell = registry.make_cell(cfg.cell, task.n_in, 2, 1.0, 0, cfg.dtype,
                                              alpha=cfg.alpha if cfg.cell == "vanilla" else None)
                    checked_cells[ckey] = registry.parse_learner(cfg.learner)[0].supports(cell)
                if checked_cells[ckey] is not None:
                    raise ValueError(f"learner {cfg.learner!r}: {checked_cells[ckey]}")
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        runs.append({"name": run_name(settings, config), "settings": settings, "config": config})
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"two points of the grid are the same run ({dup}): a list repeats a value")
    return runs


# -- one run ----------------------------------------------------------------------------------------------------------

def run_status(folder) -> str:
    """``"new"``, ``"finished"`` (it wrote its summary), ``"diverged"`` (its log says so) or ``"interrupted"``."""
    if os.path.exists(os.path.join(folder, "summary.json")):
        return "finished"
    if not os.path.exists(os.path.join(folder, "config.json")):
        return "new"
    log = os.path.join(folder, LOG)
    if os.path.exists(log) and any(r.get("event") == "diverged" for r in read_log(log)):
        return "diverged"
    return "interrupted"


@contextlib.contextmanager
def _locked(path, wait, message):
    """An exclusive lock on ``path`` for the duration (released by the system if the process dies)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, said once
        logger.warning("no file locks on this platform: %s is not protected", path)
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            raise SweepLocked(message + (f" (process {holder})" if holder else "")) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        f.close()


def _one_thread():
    """Inside a Dask worker, numba keeps to one thread (the runs are the parallelism)."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return
    import numba

    if numba.get_num_threads() > 1:
        numba.set_num_threads(1)


def _record(folder, status):
    """What a run's files say about it (a row of ``results.csv`` without its settings)."""
    rec = {"status": status, "metric": None, "final_train": None, "final_eval": None, "steps": None,
           "seconds": None, "learner_name": None, "error": None}
    path = os.path.join(folder, "summary.json")
    if status == "finished" and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
        rec.update({k: summary.get(k) for k in ("metric", "final_train", "final_eval", "steps", "seconds")})
        rec["learner_name"] = summary.get("learner")
        # what the task adds to its summary (the copy curriculum's length), as columns of its own
        rec["extra"] = {k: v for k, v in summary.items() if k not in rec and k not in ("learner", "stopped")
                        and isinstance(v, (int, float, str))}
    elif os.path.exists(os.path.join(folder, LOG)):
        records = read_log(os.path.join(folder, LOG))
        train = [r for r in records if r.get("split") == "train" and r.get("value") is not None]
        evals = [r for r in records if r.get("split") == "eval"]
        ends = [r for r in records if r.get("event") in ("diverged", "end")]
        if train:
            rec.update(metric=train[-1].get("metric"), final_train=train[-1]["value"],
                       seconds=train[-1].get("seconds"))
        if evals:
            rec["final_eval"] = evals[-1].get("value")
        rec["steps"] = (ends[-1] if ends else (records[-1] if records else {})).get("step")
    return rec


def run_point(folder, config) -> dict:
    """Train (or resume, or just read) the run in ``folder``: what a sweep's worker does with one point.

    A finished or diverged run is read, not trained; an interrupted one is
    resumed from its checkpoint; a new one is started from ``config``. The
    run folder is locked while it trains, so a second process given the same
    run waits, then reads it. Returns the run's record (``status``,
    ``final_train``, ``final_eval``, ``steps``, ``seconds``, ...) and
    ``trained`` (whether this call trained it).
    """
    from .trainer import Trainer, TrainingDiverged

    folder = os.fspath(folder)
    with _locked(os.path.join(folder, ".lock"), True, f"{folder} is being trained"):
        status = run_status(folder)
        if status in ("finished", "diverged"):
            return dict(_record(folder, status), trained=False)
        _one_thread()
        if status == "interrupted":
            trainer = Trainer.resume(folder, progress=False)
        else:
            trainer = Trainer(config, folder, progress=False)
        try:
            trainer.run()
            status = "finished"
        except TrainingDiverged:
            status = "diverged"
    return dict(_record(folder, status), trained=True)


# -- running many -----------------------------------------------------------------------------------------------------

def _client(client, workers, scheduler):
    """(client, close) for the runs: the one given, one on ``scheduler``, or a new LocalCluster."""
    try:
        import distributed
    except ImportError:
        raise ImportError(INSTALL) from None
    if client is not None:
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        return client, lambda: None
    if scheduler is not None:
        c = distributed.Client(scheduler)
        return c, c.close
    n = workers or os.cpu_count() or 1
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, env=dict(ONE_THREAD),
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    c = distributed.Client(cluster)

    def close():
        c.close()
        cluster.close()
    return c, close


def _score(rec, metric):
    v = rec.get(metric)
    if v is None and metric == "final_eval":
        v = rec.get("final_train")
    return float(v) if rec["status"] == "finished" and v is not None and math.isfinite(v) else math.inf


class _Runner:
    """Runs points in this process (``workers=0``) or on a Dask client started when first needed."""

    def __init__(self, folder, client, workers, scheduler, progress, stream):
        self.folder, self._given, self.workers, self.scheduler = folder, client, workers, scheduler
        self.progress, self.stream = progress, stream
        self.client = None
        self._close = None
        self.trained = []

    def close(self):
        if self._close is not None:
            self._close()
            self._close = None

    def _start(self):
        if self.client is None:
            self.client, self._close = _client(self._given, self.workers, self.scheduler)
            if self.progress:
                link = getattr(self.client, "dashboard_link", None)
                try:
                    import bokeh  # noqa: F401  (the dashboard needs it)
                except ImportError:
                    link = None
                n = len(self.client.scheduler_info().get("workers", {}))
                self.stream.write(f"sweep: {n} Dask worker(s)" + (f"; dashboard {link}" if link else "") + "\n")

    def run(self, points, metric, label):
        """Records of ``points`` (dicts with name, config), in their order."""
        records = {}
        todo = []
        for p in points:
            folder = os.path.join(self.folder, "runs", p["name"])
            status = run_status(folder)
            if status in ("finished", "diverged"):
                records[p["name"]] = dict(_record(folder, status), trained=False)
            else:
                todo.append(p)
        bar = self._bar(len(points), len(points) - len(todo), label)
        best = min((_score(r, metric) for r in records.values()), default=math.inf)
        try:
            if todo and self.workers == 0:
                for p in todo:
                    rec = self._safe(run_point, os.path.join(self.folder, "runs", p["name"]), p["config"])
                    records[p["name"]] = rec
                    best = self._done(bar, p["name"], rec, best, metric)
            elif todo:
                self._start()
                from distributed import as_completed

                futures = {}
                for p in todo:
                    fut = self.client.submit(run_point, os.path.join(self.folder, "runs", p["name"]), p["config"],
                                             key=f"sparse-rtrl-{p['name']}-{time.time_ns()}", pure=False)
                    futures[fut] = p["name"]
                for fut in as_completed(futures):
                    try:
                        rec = fut.result()
                    except Exception as exc:  # a run that failed (or whose workers kept dying): recorded, not raised
                        rec = dict(_record(os.path.join(self.folder, "runs", futures[fut]), "failed"),
                                   error=f"{type(exc).__name__}: {exc}", trained=False)
                    records[futures[fut]] = rec
                    best = self._done(bar, futures[fut], rec, best, metric)
        finally:
            if bar is not None:
                bar.close()
        return [dict(records[p["name"]], name=p["name"]) for p in points]

    @staticmethod
    def _safe(fn, *args):
        try:
            return fn(*args)
        except Exception as exc:
            return dict(_record(args[0], "failed"), error=f"{type(exc).__name__}: {exc}", trained=False)

    def _bar(self, total, done, label):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=done, desc=label, unit="run", file=self.stream, dynamic_ncols=True)

    def _done(self, bar, name, rec, best, metric):
        if rec.get("trained"):
            self.trained.append(name)
        best = min(best, _score(rec, metric))
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"best {metric} {best:.4g}" if math.isfinite(best) else "")
        elif rec.get("status") == "failed":
            logger.warning("a run failed: %s", rec.get("error"))
        return best


def sweep(spec, folder, client=None, *, workers=None, scheduler=None, tune=None, progress=None,
          stream=None) -> "SweepResults":
    """Run every point of ``spec`` (see the module's description) under ``folder``, and aggregate them.

    Parameters
    ----------
    spec : dict or path
        A sweep spec, or a TOML file holding one (:func:`load_spec`).
    folder : path
        Where the runs (``runs/NAME``) and the results go; created if needed.
        A second sweep writing into it at the same time is refused
        (:class:`SweepLocked`).
    client : distributed.Client, optional
        Where the runs go. Default: a ``LocalCluster`` of ``workers`` processes
        (one per core), one thread each, started only if something is left to
        train, and closed at the end.
    workers : int, optional
        Worker processes of the default cluster; ``0`` runs every run in this
        process, one after another (no Dask needed).
    scheduler : str, optional
        The address of a running Dask scheduler (``tcp://host:8786``) to
        submit to, instead of a local cluster.
    tune : str or dict, optional
        The spec's ``tune`` table, or the field to tune (``"lr"``).
    progress : bool, optional
        A bar of finished runs with the best metric so far (default: when
        ``stream`` is a terminal).

    Returns
    -------
    SweepResults
        What :func:`sweep_results` loads; ``trained`` lists the runs this call
        trained or resumed.
    """
    spec = load_spec(spec)
    if tune is not None:
        spec["tune"] = _check_tune(tune, spec["grid"])
    if client is not None and (workers is not None or scheduler is not None):
        raise ValueError("give client, or workers/scheduler to start one, not both")
    if workers is not None and scheduler is not None:
        raise ValueError("give workers (a local cluster) or scheduler (a running one), not both")
    if workers is not None:
        check_int(workers, "workers", minimum=0)
    folder = os.fspath(folder)
    t = spec["tune"]
    final_seeds = spec["grid"].get("seed", [spec["base"].get("seed", 0)])
    if t is not None:
        tune_seeds = final_seeds[:t["seeds"]] if isinstance(t["seeds"], int) else t["seeds"]
        tuning = expand(spec, seeds=tune_seeds)
        expand(spec)  # the final stage's configurations are checked too, before anything runs
    else:
        points = expand(spec)
    stream = sys.stderr if stream is None else stream
    if progress is None:
        progress = hasattr(stream, "isatty") and stream.isatty()
    os.makedirs(folder, exist_ok=True)
    with _locked(os.path.join(folder, ".sweep.lock"), False, f"another sweep is writing into {folder}"):
        write_text(os.path.join(folder, "sweep.json"), json.dumps(spec, indent=2, default=str) + "\n")
        runner = _Runner(folder, client, workers, scheduler, bool(progress), stream)
        metric = t["metric"] if t else "final_eval"
        try:
            tuned = []
            if t is not None:
                tried = runner.run(tuning, metric, f"{spec['name']}: tuning {t['field']}")
                chosen, tuned = _choose(spec, tuning, tried, t)
                points = [p for p in expand(spec) if _get(p["config"], t["field"]) == chosen[_group_key(p, t)]]
                records = runner.run(points, metric, f"{spec['name']}: seeds")
                records = _stage(tried, tuning, "tune") + _stage(records, points, "final")
                points = tuning + points
            else:
                records = _stage(runner.run(points, metric, spec["name"]), points, "final")
        finally:
            runner.close()
        rows, settings = _result_rows(points, records)
        _write_results(folder, rows, settings, tuned, spec)
    results = sweep_results(folder)
    results.trained = list(runner.trained)
    return results


def _stage(records, points, stage):
    return [dict(r, stage=stage) for r in records]


def _group_key(point, t):
    """A run's setting other than the tuned field and the seed (what the tuned value is chosen for)."""
    return json.dumps({f: v for f, v in point["settings"].items() if f not in (t["field"], "seed")},
                      sort_keys=True, default=str)


def _choose(spec, points, records, t):
    """The tuned value per setting: the lowest median metric over the tuning seeds (diverged: infinity)."""
    scores = {}
    for p, rec in zip(points, records):
        scores.setdefault(_group_key(p, t), {}).setdefault(json.dumps(_get(p["config"], t["field"]), default=str),
                                                           []).append(_score(rec, t["metric"]))
    chosen, rows = {}, []
    for key, by_value in scores.items():
        medians = {v: statistics.median(s) for v, s in by_value.items()}
        best = min(medians, key=lambda v: (medians[v], list(medians).index(v)))
        chosen[key] = json.loads(best)
        for v, m in medians.items():
            rows.append({**json.loads(key), t["field"]: json.loads(v), f"median_{t['metric']}": m,
                         "chosen": v == best})
    return chosen, rows


def _result_rows(points, records):
    """The rows of ``results.csv``, and the settings (columns) that tell runs apart besides the seed."""
    varied = list(dict.fromkeys(f for p in points for f in p["settings"]))
    shown = list(dict.fromkeys(varied + ["learner", "lr", "seed"]))
    rows = []
    for p, rec in zip(points, records):
        from .trainer import RunConfig

        full = RunConfig.from_dict(p["config"]).to_dict()
        row = {"name": p["name"], "stage": rec["stage"]}
        for f in shown:
            row[f] = _get(full, f)
        for k in ("status", "metric", "final_train", "final_eval", "steps", "seconds", "learner_name", "error"):
            row[k] = rec.get(k)
        row.update(rec.get("extra") or {})
        rows.append(row)
    return rows, [f for f in shown if f != "seed"]


def _quartiles(values):
    if not values:
        return None, None, None
    q = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return float(q[1]), float(q[0]), float(q[2])


def _summary_rows(rows, settings):
    """Per setting (every column of ``settings``): counts, then the median and quartiles over the finished
    seeds of the final metrics and of any number the task added to its summaries (the copy task's length)."""
    known = set(settings) | {"name", "stage", "seed", "status", "metric", "final_train", "final_eval", "steps",
                             "seconds", "learner_name", "error"}
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in known
             and all(isinstance(r.get(k), (int, float)) or r.get(k) is None for r in rows)]
    groups = {}
    for r in rows:
        if r["stage"] != "final":
            continue
        groups.setdefault(tuple(json.dumps(r[f], default=str) for f in settings), []).append(r)
    out = []
    for key, members in groups.items():
        row = dict(zip(settings, (json.loads(k) for k in key)))
        done = [m for m in members if m["status"] == "finished"]
        row.update(runs=len(members), finished=len(done), diverged=sum(m["status"] == "diverged" for m in members),
                   failed=sum(m["status"] == "failed" for m in members), metric=next(
                       (m["metric"] for m in members if m["metric"]), None))
        for k in METRICS + tuple(extra):
            med, lo, hi = _quartiles([m[k] for m in done if m.get(k) is not None])
            row.update({f"{k}_median": med, f"{k}_q25": lo, f"{k}_q75": hi})
        out.append(row)
    return out


def _write_results(folder, rows, settings, tuned, spec):
    _csv(os.path.join(folder, "results.csv"), rows)
    _csv(os.path.join(folder, "summary.csv"), _summary_rows(rows, settings))
    if tuned:
        _csv(os.path.join(folder, "tuned.csv"), tuned)
    elif os.path.exists(os.path.join(folder, "tuned.csv")):
        os.remove(os.path.join(folder, "tuned.csv"))  # from an earlier, tuned sweep into this folder
    try:
        _plot(folder, rows, settings, spec)
    except ImportError:
        logger.warning('no sweep plots: matplotlib is missing (pip install "sparse_rtrl[plot]")')


def _csv(path, rows):
    fields = list(dict.fromkeys(k for r in rows for k in r))
    write_csv(path, fields, [["" if r.get(k) is None else r.get(k) for k in fields] for r in rows])


# -- reading them back ------------------------------------------------------------------------------------------------

def _value(text):
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text[:1] in "{[":
        try:
            return json.loads(text.replace("'", '"'))
        except ValueError:
            pass
    return text


def _read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(f)]


@dataclasses.dataclass
class SweepResults:
    """A sweep's results, as :func:`sweep_results` loads them.

    ``runs`` (a record per run, as in ``results.csv``), ``summary`` (per
    setting, as in ``summary.csv``) and ``tuned`` (``tuned.csv``; empty
    without tuning) are lists of dicts; :meth:`column` gives a field as an
    array, and :meth:`curve` a run's learning curve.
    """

    folder: str
    runs: list
    summary: list
    tuned: list
    trained: list = dataclasses.field(default_factory=list)

    def column(self, name, table="runs", **where):
        """Field ``name`` of ``table`` (``"runs"``, ``"summary"``, ``"tuned"``) as an array, over the records
        whose fields equal ``where`` (``results.column("final_eval", learner="snap1")``)."""
        records = [r for r in getattr(self, table) if all(r.get(k) == v for k, v in where.items())]
        values = [r.get(name) for r in records]
        if all(isinstance(v, (int, float)) or v is None for v in values):
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        return np.array(values, dtype=object)

    def curve(self, name, split="train"):
        """``(steps, values)`` of run ``name``'s logged metric (``split``: ``"train"`` or ``"eval"``)."""
        records = [r for r in read_log(os.path.join(self.folder, "runs", name, LOG))
                   if r.get("split") == split and r.get("value") is not None]
        return (np.array([r["step"] for r in records], dtype=np.int64),
                np.array([r["value"] for r in records], dtype=np.float64))


def sweep_results(folder) -> SweepResults:
    """Load the results a sweep wrote into ``folder`` (``results.csv``, ``summary.csv``, ``tuned.csv``)."""
    folder = os.fspath(folder)
    if not os.path.exists(os.path.join(folder, "results.csv")):
        raise FileNotFoundError(f"{folder} holds no sweep results (no results.csv)")
    return SweepResults(folder, _read_csv(os.path.join(folder, "results.csv")),
                        _read_csv(os.path.join(folder, "summary.csv")), _read_csv(os.path.join(folder, "tuned.csv")))


# -- plots ----------------------------------------------------------------------------------------------------------

def _label(row, fields):
    return ", ".join(f"{f}={row[f]}" for f in fields) or "all"


def _plot(folder, rows, settings, spec):
    from matplotlib.figure import Figure

    final = [r for r in rows if r["stage"] == "final"]
    if not final:
        return
    metric = next((r["metric"] for r in final if r["metric"]), "metric")
    pick = "final_eval" if any(r["final_eval"] is not None for r in final) else "final_train"
    others = [f for f in settings if f != "lr"]
    all_rows = rows if spec.get("tune") else final
    groups = {}
    for r in all_rows:
        groups.setdefault(_label(r, others), []).append(r)

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for label, members in groups.items():
        lrs = sorted({r["lr"] for r in members})
        med, lo, hi, xs = [], [], [], []
        for lr in lrs:
            vals = [r[pick] for r in members if r["lr"] == lr and r["status"] == "finished" and r[pick] is not None]
            if vals:
                m, a, b = _quartiles(vals)
                xs.append(lr)
                med.append(m)
                lo.append(a)
                hi.append(b)
        if xs:
            line, = ax.plot(xs, med, "o-", label=label)
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"{pick.replace('_', ' ')} {metric} (median, band: quartiles over seeds)")
    ax.set_title(spec["name"], fontsize=9)
    if groups:
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, os.path.join(folder, "lr.png"), dpi=110)

    # learning curves at each setting's best rate (the lowest median final metric)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    results = SweepResults(folder, rows, [], [])
    for label, members in groups.items():
        by_lr = {}
        for r in members:
            if r["stage"] == "final" and r["status"] == "finished" and r[pick] is not None:
                by_lr.setdefault(r["lr"], []).append(r)
        if not by_lr:
            continue
        lr = min(by_lr, key=lambda v: statistics.median(r[pick] for r in by_lr[v]))
        curves = [results.curve(r["name"]) for r in by_lr[lr]]
        curves = [c for c in curves if len(c[0])]
        if not curves:
            continue
        n = min(len(c[0]) for c in curves)
        values = np.array([c[1][:n] for c in curves])
        steps = curves[0][0][:n]
        line, = ax.plot(steps, np.median(values, axis=0), label=f"{label}, lr={lr:g}")
        ax.fill_between(steps, np.percentile(values, 25, axis=0), np.percentile(values, 75, axis=0),
                        color=line.get_color(), alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel(f"train {metric} (median over seeds, band: quartiles)")
    ax.set_title(f"{spec['name']}: learning curves at the best rate", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, os.path.join(folder, "curves.png"), dpi=110)
