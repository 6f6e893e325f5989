"""What a user sees of a run: one set of defaults, progress, uniform divergence, signals, honest resumes."""

import dataclasses
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import sparse_rtrl as sr
from sparse_rtrl import checkpoint
from sparse_rtrl.cli import build_parser, main
from sparse_rtrl.training.trainer import read_log
from learner_table import LEARNERS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- one source of defaults ------------------------------------------------------------------------

def test_the_cli_train_defaults_are_the_run_config_defaults():
    args = build_parser().parse_args(["train"])
    for f in dataclasses.fields(sr.RunConfig):
        if f.metadata.get("cli"):
            assert getattr(args, f.name) == getattr(sr.RunConfig(), f.name), f.name
    assert args.task == sr.RunConfig().task["name"]
    assert args.learner_opt == [] and sr.RunConfig().learner_options == {}


def test_every_run_config_field_is_documented_and_has_a_cli_option_or_a_reason():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = {opt for action in train._actions for opt in action.option_strings}
    for f in dataclasses.fields(sr.RunConfig):
        assert f.metadata["help"], f.name
        if f.metadata["cli"]:
            assert "--" + f.name.replace("_", "-") in flags
    assert {"--task", "--learner-opt"} <= flags  # the two fields set otherwise
    text = train.format_help()
    assert "(default: 64)" in text and "(default: snap2)" in text and "(default: float64)" in text


def test_the_cell_classes_run_config_and_compare_share_the_dtype_default():
    import inspect

    from sparse_rtrl.compare import compare

    cell_default = inspect.signature(sr.GRU).parameters["dtype"].default
    assert np.dtype(cell_default) == np.dtype(sr.RunConfig().dtype)
    assert np.dtype(inspect.signature(compare).parameters["dtype"].default) == np.dtype(sr.RunConfig().dtype)
    assert build_parser().parse_args(["compare"]).dtype == sr.RunConfig().dtype


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sparse-rtrl {sr.__version__}"


def test_learner_options_reach_the_learner(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--task", "add", "--segment", "20", "--cell", "vanilla", "--n-hidden", "4", "--steps", "40",
                 "--learner", "uoro", "--learner-opt", "eps=1e-5", "--learner-opt", "parallel=false",
                 "--eval-every", "0", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["learner_options"] == {"eps": 1e-5, "parallel": False}
    trainer = sr.Trainer.resume(out, progress=False)
    assert trainer.learner.eps == 1e-5 and trainer.learner.parallel is False


# -- progress ----------------------------------------------------------------------------------------

def small(**kw):
    base = dict(task={"name": "add", "length": 20}, cell="vanilla", n_hidden=6, density=0.5, learner="snap1",
                steps=200, log_every=40, eval_every=100, eval_steps=40, checkpoint_every=100, seed=1)
    base.update(kw)
    return sr.RunConfig(**base)


def test_the_progress_bar_reaches_the_runs_last_step(tmp_path):
    stream = io.StringIO()
    # Copy episodes end past the total: the bar ends at the step the run ended at.
    trainer = sr.Trainer(small(task={"name": "copy"}, steps=150), tmp_path / "run", progress=True, stream=stream)
    trainer.run()
    last = stream.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert f"{trainer.step}/{trainer.step}" in last and "100%" in last, last


def test_without_a_terminal_a_line_per_record_goes_to_the_log(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="sparse_rtrl"):
        sr.Trainer(small(), tmp_path / "run", progress=False, stream=io.StringIO()).run()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [line.split()[1] for line in lines] == ["40/200", "80/200", "120/200", "160/200", "200/200"]
    assert all("steps/s" in line and "ETA" in line and "loss" in line for line in lines)


def test_the_compiling_notice_is_a_log_message(tmp_path, caplog, monkeypatch):
    from sparse_rtrl.training import trainer as trainer_module

    real = trainer_module.train_online

    def slow_first(*args, **kwargs):  # a first segment that takes as long as a compilation
        if not getattr(slow_first, "done", False):
            slow_first.done = True
            time.sleep(2.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_online", slow_first)
    with caplog.at_level(logging.INFO, logger="sparse_rtrl"):
        sr.Trainer(small(steps=40), tmp_path / "run", progress=False).run()
    assert any("compiling kernels" in r.getMessage() for r in caplog.records)


# -- divergence, the same for every learner and dtype --------------------------------------------------

# Each learner in one dtype, taken in turn down the table (both dtypes covered; each case compiles the
# learner's training loop, seconds each).
DIVERGING = [(name, ("float32", "float64")[i % 2]) for i, name in enumerate(LEARNERS)]


@pytest.mark.parametrize("name, dtype", DIVERGING, ids=[f"{n}-{d}" for n, d in DIVERGING])
def test_every_learner_and_dtype_reports_divergence_the_same_way(tmp_path, name, dtype):
    entry = LEARNERS[name]
    cfg = small(task={"name": "add", "length": 10}, cell=entry.cells[0], n_hidden=4, learner=entry.spec, dtype=dtype,
                optimizer="sgd", lr=1e300 if dtype == "float64" else 1e37, clip_norm=None, steps=100,
                checkpoint_every=10)
    trainer = sr.Trainer(cfg, tmp_path / "run", progress=False)
    with pytest.raises(sr.TrainingDiverged) as info:
        trainer.run()
    message = str(info.value)
    assert message.count("step") == 1, message  # one step named, once
    assert f"at step {info.value.step}:" in message
    records = read_log(tmp_path / "run" / "metrics.jsonl")
    assert records[-1]["event"] == "diverged" and records[-1]["step"] == info.value.step
    on_disk = checkpoint.load(str(tmp_path / "run" / "checkpoint.npz"))
    assert on_disk["step"] < info.value.step
    assert np.all(np.isfinite(on_disk["cell"]["state"]["params"]))


def test_internal_errors_are_not_usage_errors(tmp_path, monkeypatch):
    from sparse_rtrl.training import trainer as trainer_module

    def broken(*args, **kwargs):
        raise ValueError("an internal inconsistency")

    monkeypatch.setattr(trainer_module, "train_online", broken)
    with pytest.raises(ValueError, match="internal inconsistency"):  # a traceback (exit 1), not exit 2
        main(["train", "--steps", "10", "--n-hidden", "4", "--out", str(tmp_path / "run"), "--no-progress"])


# -- SIGTERM and SIGINT --------------------------------------------------------------------------------

@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_writes_a_checkpoint_and_the_run_resumes_from_it(tmp_path, sig, status):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "sparse_rtrl.cli", "train", "--task", "add", "--segment", "50", "--cell",
            "vanilla", "--n-hidden", "8", "--learner", "snap1", "--steps", "100000000", "--log-every", "500",
            "--checkpoint-every", "100000000", "--eval-every", "0", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for the run to be training (past its first log record)
        if os.path.exists(out / "metrics.jsonl") and read_log(out / "metrics.jsonl"):
            break
        time.sleep(0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status, stderr
    name = signal.Signals(sig).name
    assert f"{name} at step" in stderr and "sparse-rtrl resume" in stderr
    records = read_log(out / "metrics.jsonl")
    assert records[-1]["event"] == "interrupted" and records[-1]["signal"] == name
    on_disk = checkpoint.load(str(out / "checkpoint.npz"))
    assert on_disk["step"] == records[-1]["step"] > 0  # the checkpoint is at the interruption, not at step 0
    resumed = sr.Trainer.resume(out, progress=False)
    assert resumed.step == on_disk["step"]


# -- schedules and weight decay through the trainer and the command line ---------------------------------

def test_a_scheduled_run_resumes_bit_for_bit_and_the_cli_sets_it(tmp_path, capsys):
    argv = ["train", "--task", "add", "--segment", "20", "--cell", "vanilla", "--n-hidden", "6", "--learner", "snap1",
            "--steps", "200", "--log-every", "40", "--eval-every", "0", "--checkpoint-every", "60",
            "--schedule", "cosine", "--warmup", "10", "--schedule-opt", "final=0.1", "--weight-decay", "1e-3",
            "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "whole")]) == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert (config["schedule"], config["warmup"], config["schedule_options"], config["weight_decay"]) == \
        ("cosine", 10, {"final": 0.1}, 1e-3)
    whole = sr.Trainer.resume(tmp_path / "whole", progress=False)
    opt = whole.optimizer.config()
    assert opt["schedule"] == {"name": "cosine", "total": 200, "final": 0.1, "warmup": 10}
    assert opt["weight_decay"] == 1e-3

    cut = sr.Trainer(sr.RunConfig.from_dict(config), tmp_path / "cut", progress=False)
    original = cut._boundary

    def boundary():
        original()
        if cut.step >= 130:
            raise KeyboardInterrupt
    cut._boundary = boundary
    with pytest.raises(KeyboardInterrupt):
        cut.run()
    resumed = sr.Trainer.resume(tmp_path / "cut", progress=False)
    resumed.run()
    np.testing.assert_array_equal(resumed.cell.params, whole.cell.params)
    np.testing.assert_array_equal(resumed.readout.params, whole.readout.params)


def test_bad_schedule_settings_name_themselves():
    with pytest.raises(ValueError, match="schedule"):
        small(schedule="linear").validate()
    with pytest.raises(ValueError, match="every"):
        small(schedule="step", schedule_options={"every": 0}).validate()
    with pytest.raises(ValueError, match="weight_decay"):
        small(weight_decay=-1.0).validate()
    with pytest.raises(ValueError, match="warmup field"):
        small(schedule="step", schedule_options={"every": 5, "warmup": 3}).validate()


def test_the_cli_reaches_the_bouncing_and_sentence_options(tmp_path, capsys):
    out = tmp_path / "bouncing"
    assert main(["train", "--task", "bouncing", "--glyphs", "letters", "--canvas-size", "10", "--glyph-size", "5",
                 "--n-objects", "1", "--steps", "40", "--n-hidden", "4", "--learner", "snap1", "--eval-every", "0",
                 "--out", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    task = json.loads((out / "config.json").read_text())["task"]
    assert (task["glyphs"], task["canvas_size"], task["glyph_size"], task["n_objects"]) == ("letters", 10, 5, 1)
    text = tmp_path / "t.txt"
    text.write_text("the cat sat\nthe dog ran\n" * 30)
    out = tmp_path / "charlm"
    assert main(["train", "--task", "charlm", "--text", str(text), "--protocol", "sentences", "--batch-size", "2",
                 "--steps", "40", "--n-hidden", "4", "--learner", "snap1", "--eval-every", "0", "--out", str(out),
                 "--no-progress"]) == 0
    assert json.loads((out / "config.json").read_text())["task"]["protocol"] == "sentences"
    assert main(["train", "--task", "add", "--glyphs", "letters", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "bouncing task only" in capsys.readouterr().err
