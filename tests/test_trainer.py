"""The trainer and the CLI: resume equality, atomic checkpoints, divergence, bad arguments."""

import json
import os

import numpy as np
import pytest

from sparse_rtrl import checkpoint
from sparse_rtrl.cli import main
from sparse_rtrl.training.trainer import RunConfig, Trainer, TrainingDiverged, read_log


def small_config(**kw):
    base = dict(task={"name": "add", "length": 20}, cell="vanilla", n_hidden=6, density=0.5, alpha=0.5,
                learner="snap2", optimizer="adam", lr=1e-2, steps=200, log_every=40, eval_every=100, eval_steps=40,
                checkpoint_every=60, dtype="float64", seed=3)
    base.update(kw)
    return RunConfig(**base)


def run_state(trainer):
    """Everything that must agree between two runs (the wall-clock time aside)."""
    return {
        "cell": trainer.cell.params.copy(),
        "readout": trainer.readout.params.copy(),
        "optimizer": checkpoint.get_state(trainer.optimizer),
        "learner": checkpoint.get_state(trainer.learner),
        "task": trainer.task.state_dict(),
        "step": trainer.step,
    }


def assert_same(a, b, path="state"):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), (path, a, b)


def log_without_time(folder):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_log(os.path.join(folder, "metrics.jsonl"))]


class Interrupt(Exception):
    pass


def interrupt_after(trainer, step):
    """Make ``trainer`` stop (as a crash would) at the first segment boundary past ``step``."""
    original = trainer._boundary

    def boundary():
        original()
        if trainer.step >= step:
            raise Interrupt

    trainer._boundary = boundary


CASES = [
    dict(),
    dict(learner="uoro", update_every=3),
    dict(learner="dni", cell="gru", alpha=None),
    dict(learner="fbptt4", task={"name": "copy"}, cell="lstm", alpha=None, optimizer="sgd", momentum=0.9,
         update_every=2, steps=300),
    dict(learner="kernl", task={"name": "mimic", "length": 25}, batch_size=2, dtype="float32"),
    dict(learner="snap1", task={"name": "copy"}, cell="gru", alpha=None, batch_size=3, update_every=2, steps=300),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_interrupted_and_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, case):
    cfg = small_config(**CASES[case])
    whole = Trainer(cfg, tmp_path / "whole", progress=False)
    whole.run()

    cut = Trainer(cfg, tmp_path / "cut", progress=False)
    interrupt_after(cut, 130)  # after the checkpoint at >= 120, before the next one
    with pytest.raises(Interrupt):
        cut.run()
    resumed = Trainer.resume(tmp_path / "cut", progress=False)
    assert 60 <= resumed.step < 130, resumed.step  # it restarts from the last checkpoint, not from where it stopped
    resumed.run()

    assert_same(run_state(whole), run_state(resumed))
    assert log_without_time(tmp_path / "whole") == log_without_time(tmp_path / "cut")
    for name in ("summary.json", "loss.png", "checkpoint.npz", "config.json"):
        assert os.path.exists(tmp_path / "cut" / name)


def test_resume_can_extend_a_finished_run(tmp_path):
    long = Trainer(small_config(steps=240), tmp_path / "long", progress=False)
    long.run()
    short = Trainer(small_config(steps=120), tmp_path / "short", progress=False)
    short.run()
    more = Trainer.resume(tmp_path / "short", steps=240, progress=False)
    assert more.step == 120 and more.config.steps == 240
    assert "extended to 240 steps" in more.resume_message
    more.run()
    assert_same(run_state(long), run_state(more))
    # The saved configuration is the run's as started; the extension is in the log and the checkpoint.
    with open(tmp_path / "short" / "config.json") as f:
        assert json.load(f)["steps"] == 120
    extensions = [r for r in read_log(tmp_path / "short" / "metrics.jsonl") if r.get("event") == "extend"]
    assert extensions == [{"event": "extend", "step": 120, "steps": 240, "previous_steps": 120}]
    again = Trainer.resume(tmp_path / "short", progress=False)
    assert again.config.steps == 240 and again.step == more.step
    assert "complete" in again.resume_message


def test_resume_refuses_fewer_steps_than_the_checkpoint_holds(tmp_path):
    Trainer(small_config(steps=120), tmp_path / "run", progress=False).run()
    before = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(ValueError, match="more than the 120 steps"):
        Trainer.resume(tmp_path / "run", steps=1, progress=False)
    assert (tmp_path / "run" / "config.json").read_text() == before


def test_resume_says_where_it_restarts(tmp_path):
    cut = Trainer(small_config(), tmp_path / "cut", progress=False)
    interrupt_after(cut, 150)  # stops at 160: logged at 160, last checkpoint at 120
    with pytest.raises(Interrupt):
        cut.run()
    logged = max(r["step"] for r in read_log(tmp_path / "cut" / "metrics.jsonl"))
    resumed = Trainer.resume(tmp_path / "cut", progress=False)
    assert resumed.step < logged
    assert f"checkpoint at step {resumed.step} of 200" in resumed.resume_message
    assert f"logged up to step {logged}" in resumed.resume_message


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg = small_config()
    whole = Trainer(cfg, tmp_path / "whole", progress=False)
    whole.run()

    cut = Trainer(cfg, tmp_path / "cut", progress=False)
    real_save = checkpoint.save
    calls = []

    def crashing_save(path, state):
        calls.append(state["step"])
        if len(calls) == 2:
            # Die half way through the write: the new file is never renamed into place.
            def boom(*args, **kwargs):
                raise OSError("disk full (simulated)")
            monkeypatch.setattr(os, "replace", boom)
            try:
                real_save(path, state)
            finally:
                monkeypatch.undo()
        else:
            real_save(path, state)

    monkeypatch.setattr(checkpoint, "save", crashing_save)
    with pytest.raises(OSError, match="simulated"):
        cut.run()
    monkeypatch.undo()
    assert [f for f in os.listdir(tmp_path / "cut") if "tmp" in f] == []
    assert checkpoint.load(str(tmp_path / "cut" / "checkpoint.npz"))["step"] == calls[0]
    resumed = Trainer.resume(tmp_path / "cut", progress=False)
    assert resumed.step == calls[0]
    resumed.run()
    assert_same(run_state(whole), run_state(resumed))


def test_divergence_is_reported_with_its_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = small_config(optimizer="sgd", lr=1e-2, clip_norm=None, checkpoint_every=20, steps=400)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    saved_states = []
    real_save = checkpoint.save

    def recording_save(path, state):
        saved_states.append(state)
        real_save(path, state)

    monkeypatch.setattr(checkpoint, "save", recording_save)
    original = trainer._boundary

    def boundary():
        original()
        if trainer.step >= 100:
            trainer.optimizer.lr = 1e30  # from here on the updates blow up
    trainer._boundary = boundary
    with pytest.raises(TrainingDiverged, match="diverged at step") as info:
        trainer.run()
    step = info.value.step
    assert 100 < step <= cfg.steps
    records = read_log(tmp_path / "run" / "metrics.jsonl")
    assert records[-1]["event"] == "diverged" and records[-1]["step"] == step
    on_disk = checkpoint.load(str(tmp_path / "run" / "checkpoint.npz"))
    assert 100 <= on_disk["step"] < step
    assert_same(on_disk, saved_states[-1])  # the last checkpoint written is the one on disk, whole
    assert np.all(np.isfinite(on_disk["cell"]["state"]["params"]))
    # Resuming from it is possible (with the original learning rate it would go on training).
    assert Trainer.resume(tmp_path / "run", progress=False).step == on_disk["step"]


def test_cli_reports_divergence_with_status_3(tmp_path, capsys):
    code = main(["train", "--task", "add", "--cell", "vanilla", "--n-hidden", "4", "--optimizer", "sgd", "--lr",
                 "1e300", "--steps", "200", "--out", str(tmp_path / "cli"), "--no-progress", "--segment", "10"])
    assert code == 3
    assert "diverged at step" in capsys.readouterr().err


def test_only_the_copy_task_logs_a_curriculum_length(tmp_path):
    Trainer(small_config(steps=80), tmp_path / "add", progress=False).run()
    assert all("length" not in r for r in read_log(tmp_path / "add" / "metrics.jsonl"))
    Trainer(small_config(steps=80, task={"name": "copy"}), tmp_path / "copy", progress=False).run()
    records = read_log(tmp_path / "copy" / "metrics.jsonl")
    assert records and all(r["length"] >= 1 for r in records if r.get("split") == "train")


def test_evaluate_matches_a_plain_loop(tmp_path):
    trainer = Trainer(small_config(eval_steps=60), tmp_path / "run", progress=False)
    trainer.run()
    task = trainer.task.held_out(trainer._eval_seed)
    V, c = trainer.readout.weights["V"].astype(np.float64), trainer.readout.weights["bias"].astype(np.float64)
    s = np.zeros(trainer.cell.n_state)
    errs = []
    while len(errs) < 60:
        seg = task.segment()
        for x, y in zip(seg.inputs, seg.targets):
            s = trainer.cell.step(s, x)
            errs.append(np.mean((V @ s[: trainer.cell.n_hidden] + c - y) ** 2))  # mean squared error
    assert trainer.evaluate() == pytest.approx(np.mean(errs[:60]), rel=1e-10)


def test_a_folder_holding_a_run_is_not_overwritten(tmp_path):
    Trainer(small_config(steps=40), tmp_path / "run", progress=False).run()
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(small_config(steps=40), tmp_path / "run", progress=False)


def test_bad_configuration_names_the_field():
    with pytest.raises(ValueError, match="learner"):
        small_config(learner="snapx").validate()
    with pytest.raises(ValueError, match="density"):
        small_config(density=0.0).validate()
    with pytest.raises(ValueError, match="unknown configuration keys: colour"):
        RunConfig.from_dict({"colour": "red"})
    with pytest.raises(ValueError, match="alpha"):
        small_config(cell="gru").validate()  # small_config sets the vanilla cell's leak


def test_progress_bar_shows_the_live_loss(tmp_path):
    import io

    stream = io.StringIO()
    Trainer(small_config(steps=60), tmp_path / "run", progress=True, stream=stream).run()
    text = stream.getvalue()
    assert "loss" in text and "/60" in text and "mse" in text


# -- the command line ---------------------------------------------------------------------------


def test_cli_train_writes_a_log_a_checkpoint_and_a_plot(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--steps", "300", "--n-hidden", "8", "--log-every", "100", "--eval-every", "150",
                 "--eval-steps", "50", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    for name in ("config.json", "metrics.jsonl", "checkpoint.npz", "summary.json", "loss.png"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] >= 300 and summary["metric"] == "bits_per_symbol" and summary["length"] >= 1
    assert "done:" in capsys.readouterr().out
    code = main(["resume", str(out), "--steps", "400", "--no-progress"])
    assert code == 0
    assert json.loads((out / "summary.json").read_text())["steps"] >= 400


def test_cli_compare_prints_the_table_and_writes_files(tmp_path, capsys):
    code = main(["compare", "--n-hidden", "6", "--steps", "40", "--seeds", "8", "--learners", "snap1,uoro,kfrtrl",
                 "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "SnAp-1" in out and "KF-RTRL" in out
    for name in ("compare.csv", "variance.csv", "compare.png"):
        assert (tmp_path / name).exists(), name


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--density", "2"], "density"),
        (["train", "--learner", "snapx"], "unknown learner"),
        (["train", "--task", "charlm"], "--text"),
        (["train", "--task", "charlm", "--text", "/no/such/file.txt"], "no such file"),
        (["train", "--cell", "gru", "--alpha", "0.5"], "alpha"),
        (["train", "--t1", "3"], "add task only"),
        (["train", "--steps", "0"], ">= 1"),
        (["train", "--lr", "-1"], "positive"),
        (["train", "--task", "sudoku"], "unknown task 'sudoku'"),
        (["train", "--cell", "gur"], "did you mean 'gru'?"),
        (["train", "--learner", "snapp2"], "unknown learner"),
        (["train", "--learner", "uoro", "--learner-opt", "epss=1e-6"], "did you mean 'eps'?"),
        (["train", "--learner-opt", "eps"], "KEY=VALUE"),
        (["trian"], "did you mean 'train'?"),
        (["resume", "/no/such/run"], "no run"),
        (["compare", "--learners", "rtrl,foo"], "unknown learner"),
        (["compare", "--cell", "gru", "--learners", "kfrtrl"], "VanillaRNN"),
        (["compare", "--cell", "gru", "--alpha", "0.3"], "vanilla cell only"),
    ],
)
def test_cli_bad_arguments_give_a_message_and_a_nonzero_exit(argv, message, capsys, tmp_path):
    if argv[0] == "train":
        argv = argv + ["--out", str(tmp_path / "run"), "--no-progress"]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code != 0
    assert message in capsys.readouterr().err


def test_cli_trains_a_character_model_from_a_text_file(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    out = tmp_path / "run"
    code = main(["train", "--task", "charlm", "--text", str(text), "--cell", "lstm", "--n-hidden", "8",
                 "--learner", "snap1", "--steps", "400", "--segment", "50", "--batch-size", "2", "--log-every", "100",
                 "--eval-every", "200", "--eval-steps", "100", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "bits_per_char" and summary["steps"] == 400
    records = read_log(out / "metrics.jsonl")
    train = [r["value"] for r in records if r.get("split") == "train"]
    vocab = len(set(text.read_text()))
    assert train[0] < np.log2(vocab) + 1.0  # bits per character start near the uniform code length
    assert train[-1] < train[0]  # and fall as it learns


@pytest.mark.parametrize("learner,update_every", [("snap1", 1), ("fbptt3", 1), ("dni", 2)])
def test_episodes_in_one_compiled_call_equal_one_call_per_episode(tmp_path, monkeypatch, learner, update_every):
    # The trainer runs an episodic task's episodes many per call of the compiled loop; one call per
    # episode (MAX_CALL_STEPS = 1) must give the same run bit for bit. A high threshold makes the copy
    # curriculum grow often, so episodes drawn ahead meet its changes of length.
    import sparse_rtrl.training.trainer as trainer_module

    cfg = small_config(task={"name": "copy", "threshold": 4.0, "window": 3}, learner=learner,
                       update_every=update_every, steps=600, log_every=100, eval_every=0, checkpoint_every=250)
    states, logs, calls = [], [], []
    real = trainer_module.train_online
    monkeypatch.setattr(trainer_module, "train_online", lambda *a, **k: calls.append(1) or real(*a, **k))
    for cap in (trainer_module.MAX_CALL_STEPS, 1):
        monkeypatch.setattr(trainer_module, "MAX_CALL_STEPS", cap)
        calls.clear()
        folder = str(tmp_path / f"cap{cap}")
        trainer = Trainer(cfg, folder, progress=False)
        trainer.run()
        states.append(run_state(trainer))
        logs.append(log_without_time(folder))
        n_calls = len(calls) if cap > 1 else n_calls
    assert n_calls < len(calls)  # episodes shared calls (len(calls): one per episode)
    assert states[0]["task"]["length"] > 2  # the curriculum grew on the way
    assert_same(states[0], states[1])
    assert logs[0] == logs[1]
