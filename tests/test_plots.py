"""Plots: readable at any run length, titled, warning-free, and the user's matplotlib left alone."""

import json
import os
import warnings

import pytest

pytest.importorskip("matplotlib")

from sparse_rtrl.training import runlog  # noqa: E402
from sparse_rtrl.training.runlog import plot_run, plot_runs, read_log  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def make_run(folder, n_train, n_eval=0, metric="mse", learner="snap2", task="add", config=True, length=False):
    """A run folder as the trainer leaves it: ``n_train`` train and ``n_eval`` eval records."""
    os.makedirs(folder, exist_ok=True)
    log = os.path.join(folder, runlog.LOG)
    open(log, "w").close()
    for k in range(n_train):
        rec = {"step": 10 * (k + 1), "split": "train", "metric": metric, "value": 1.0 / (k + 1),
               "loss": 0.5 / (k + 1), "seconds": 0.01 * k}
        if length:
            rec["length"] = 1 + k // 3
        runlog.append(log, rec)
    for k in range(n_eval):
        runlog.append(log, {"step": 40 * (k + 1), "split": "eval", "metric": metric, "value": 1.2 / (k + 1)})
    if config:
        cfg = {"task": {"name": task}, "cell": "gru", "n_hidden": 8, "density": 0.25, "learner": learner}
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f)
    return str(folder)


@pytest.fixture
def figures(monkeypatch):
    """The Figures the plot functions save, kept for inspection (they are saved as usual)."""
    import sparse_rtrl.compare as compare_module

    kept = []

    def keep(fig, path, **kwargs):
        kept.append(fig)
        return real(fig, path, **kwargs)

    real = runlog.save_figure
    monkeypatch.setattr(runlog, "save_figure", keep)
    monkeypatch.setattr(compare_module, "save_figure", keep)
    return kept


def no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


def legend_texts(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


# -- one run ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n_train, n_eval", [(0, 0), (1, 0), (0, 1), (1, 1), (2, 1), (3000, 30)])
def test_plot_run_gives_a_titled_png_without_warnings_at_any_length(tmp_path, figures, n_train, n_eval):
    folder = make_run(tmp_path / "run", n_train, n_eval)
    path = no_warnings(plot_run, folder)
    assert path == os.path.join(folder, "loss.png") and is_png(path)
    (fig,) = figures
    ax = fig.axes[0]
    assert ax.get_title() == "add task: gru n=8 density=0.25, snap2"
    if n_train == n_eval == 0:
        assert [t.get_text() for t in ax.texts] == ["no records yet"] and not ax.axison
        return
    assert ax.get_legend() is None and fig.legends  # the legend is the figure's, outside the axes
    lines = {line.get_label(): line for line in ax.lines}
    if n_train:
        assert len(lines["train"].get_xdata()) == n_train
    if n_eval:
        assert len(lines["held out"].get_xdata()) == n_eval
    for line in ax.lines:
        if len(line.get_xdata()) == 1:  # a single point is a marker, not an invisible line
            assert line.get_marker() not in (None, "", "None", " ")


def test_plot_run_draws_the_copy_length_and_a_divergence(tmp_path, figures):
    folder = make_run(tmp_path / "run", 12, 2, length=True)
    runlog.append(os.path.join(folder, runlog.LOG), {"event": "diverged", "step": 125, "detail": "nan"})
    out = no_warnings(plot_run, folder, tmp_path / "elsewhere.png")
    assert out == str(tmp_path / "elsewhere.png") and is_png(out)
    (fig,) = figures
    assert {"train", "held out", "copy length", "diverged at step 125"} <= set(legend_texts(fig))
    assert all(ax.get_legend() is None for ax in fig.axes)


def test_plot_run_without_a_config_is_titled_by_its_folder(tmp_path, figures):
    folder = make_run(tmp_path / "bare_run", 3, config=False)
    no_warnings(plot_run, folder)
    assert figures[0].axes[0].get_title() == "bare_run"


def test_plot_run_of_a_folder_without_a_log_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl") as info:
        plot_run(tmp_path)
    assert info.value.filename == os.path.join(str(tmp_path), runlog.LOG)
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        plot_run(tmp_path / "no_such_folder")


def test_read_log_of_a_missing_file_names_it(tmp_path):
    path = str(tmp_path / "gone.jsonl")
    with pytest.raises(FileNotFoundError, match="gone.jsonl") as info:
        read_log(path)
    assert info.value.filename == path


def test_a_real_short_run_plots_its_one_point(tmp_path, figures):
    from sparse_rtrl import RunConfig, Trainer

    cfg = RunConfig(task={"name": "add", "length": 20}, cell="vanilla", n_hidden=4, density=0.5, learner="snap1",
                    steps=20, log_every=20, eval_every=0, checkpoint_every=20)
    Trainer(cfg, tmp_path / "run", progress=False).run()
    figures.clear()
    no_warnings(plot_run, tmp_path / "run")
    (line,) = figures[0].axes[0].lines
    assert len(line.get_xdata()) == 1 and line.get_marker() == "o"


# -- several runs ----------------------------------------------------------------------------

def test_plot_runs_overlays_train_and_eval_curves_labelled_by_folder_and_learner(tmp_path, figures):
    a = make_run(tmp_path / "a", 50, 5, learner="snap2")
    b = make_run(tmp_path / "b", 1, 1, learner="uoro")
    out = no_warnings(plot_runs, [a, b], tmp_path / "both.png")
    assert out == str(tmp_path / "both.png") and is_png(out)
    (fig,) = figures
    ax = fig.axes[0]
    assert ax.get_title() == "add task, mse of 2 runs"
    assert ax.get_legend() is None
    assert {"a (snap2)", "b (uoro)", "train", "held out"} <= set(legend_texts(fig))
    # Per run: a train curve and an eval curve of the same colour.
    assert len(ax.lines) == 4
    assert ax.lines[0].get_color() == ax.lines[1].get_color() != ax.lines[2].get_color()
    assert sorted(len(line.get_xdata()) for line in ax.lines) == [1, 1, 5, 50]


def test_plot_runs_takes_a_metric_and_refuses_to_mix_metrics(tmp_path, figures):
    a = make_run(tmp_path / "a", 4, 1, metric="mse")
    b = make_run(tmp_path / "b", 4, 1, metric="bits_per_char", task="charlm")
    with pytest.raises(ValueError, match="different metrics.*metric="):
        plot_runs([a, b], tmp_path / "x.png")
    no_warnings(plot_runs, [a, b], tmp_path / "loss.png", metric="loss")
    ax = figures[-1].axes[0]
    assert ax.get_title() == "loss of 2 runs" and len(ax.lines) == 2  # the loss has no held-out curve


def test_plot_runs_of_empty_runs_says_so(tmp_path, figures):
    a = make_run(tmp_path / "a", 0)
    b = make_run(tmp_path / "b", 3)
    no_warnings(plot_runs, [a], tmp_path / "one.png")
    ax = figures[-1].axes[0]
    assert [t.get_text() for t in ax.texts] == ["no records yet"] and ax.get_title()
    no_warnings(plot_runs, [a, b], tmp_path / "two.png")
    assert "a (snap2): no records yet" in legend_texts(figures[-1])


def test_plot_runs_names_what_is_missing(tmp_path):
    a = make_run(tmp_path / "a", 2)
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plot_runs([a, tmp_path / "nothing"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one"):
        plot_runs([], tmp_path / "x.png")
    assert not os.path.exists(tmp_path / "x.png")


def test_plot_runs_does_not_repeat_a_learner_that_names_the_folder(tmp_path, figures):
    a = make_run(tmp_path / "snap1", 2, learner="snap1")
    b = make_run(tmp_path / "uoro", 2, learner="uoro")
    no_warnings(plot_runs, [a, b], tmp_path / "p.png")
    assert legend_texts(figures[0]) == ["snap1", "uoro"]


def test_plot_runs_tells_apart_runs_of_the_same_folder_name(tmp_path, figures):
    a = make_run(tmp_path / "x" / "run", 2, learner="snap1")
    b = make_run(tmp_path / "y" / "run", 2, learner="snap1")
    no_warnings(plot_runs, [a, b], tmp_path / "p.png")
    labels = legend_texts(figures[0])
    assert len(set(labels)) == 2 and all("run" in t for t in labels)


# -- compare ---------------------------------------------------------------------------------

def test_compare_png_has_a_title(tmp_path, figures):
    from sparse_rtrl.compare import compare

    result = no_warnings(compare, {"name": "add", "length": 20}, "vanilla", 4, 0.5, 0.5, ["uoro", "snap1"],
                         steps=8, seeds=2, out=tmp_path)
    assert str(tmp_path / "compare.png") in result["files"]
    (fig,) = figures
    title = fig._suptitle.get_text()
    assert all(part in title for part in ("add", "vanilla", "n=4", "density=0.5"))
    assert all(ax.get_title() for ax in fig.axes)


# -- the user's matplotlib -------------------------------------------------------------------

def test_plots_leave_pyplot_alone(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    from sparse_rtrl.compare import compare

    backend, fignums = matplotlib.get_backend(), plt.get_fignums()
    rc = dict(matplotlib.rcParams)
    folder = make_run(tmp_path / "run", 5, 2)
    plot_run(folder)
    plot_runs([folder], tmp_path / "all.png")
    compare({"name": "add", "length": 20}, "vanilla", 4, 0.5, 0.5, ["uoro"], steps=8, seeds=2, out=tmp_path)
    assert matplotlib.get_backend() == backend and plt.get_fignums() == fignums
    assert dict(matplotlib.rcParams) == rc


def test_plot_runs_of_a_metric_no_run_logs_says_so(tmp_path, figures):
    a = make_run(tmp_path / "a", 3, 1)
    no_warnings(plot_runs, [a], tmp_path / "p.png", metric="accuracy")
    assert [t.get_text() for t in figures[0].axes[0].texts] == ["no 'accuracy' in these logs"]
