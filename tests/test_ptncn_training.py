"""The P-TNCN in the training machinery: ``train_ptncn``, next-step tasks, the trainer, resume and the CLI."""

import json
import os

import numpy as np
import pytest

import sparse_rtrl as sr
from sparse_rtrl import checkpoint
from sparse_rtrl.cli import main
from sparse_rtrl.training.ptncn_online import segment_observations, train_ptncn
from sparse_rtrl.training.trainer import RunConfig, Trainer, read_log
from test_trainer import Interrupt, assert_same, interrupt_after

TEXT = "the cat sat on the mat.\nthe dog sat on the log.\na cat and a dog.\n" * 40


def bouncing_config(**kw):
    base = dict(task={"name": "bouncing", "canvas_size": 10, "glyph_size": 5, "n_objects": 1, "length": 10},
                model="ptncn", n_hidden=16, density=1.0, optimizer="sgd", lr=0.05, momentum=0.9, steps=300,
                log_every=50, eval_every=100, eval_steps=40, checkpoint_every=100, seed=2)
    base.update(kw)
    return RunConfig(**base)


def model_state(trainer):
    return {"model": checkpoint.get_state(trainer.model), "optimizer": checkpoint.get_state(trainer.optimizer),
            "task": trainer.task.state_dict(), "step": trainer.step}


def without_time(folder):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_log(os.path.join(folder, "metrics.jsonl"))]


# -- train_ptncn ----------------------------------------------------------------------------

def test_train_ptncn_is_the_step_loop_with_optimiser_updates():
    """Bit for bit the documented loop: step, loss, and an update every ``update_every`` steps."""
    rng = np.random.default_rng(0)
    obs = np.eye(5)[rng.integers(0, 5, (30, 3))]
    mask = (rng.random((30, 3)) > 0.2).astype(float)
    a, b = (sr.PTNCN(5, n_hidden=[7, 6], batch_size=3, seed=1) for _ in range(2))
    opt_a, opt_b = sr.SGD(a.params, lr=0.1, momentum=0.9), sr.SGD(b.params, lr=0.1, momentum=0.9)
    losses = train_ptncn(a, opt_a, obs, mask, update_every=4)
    expected = []
    for t in range(30):
        p = b.step(obs[t], mask[t])
        expected.append(b.loss(p, obs[t], mask[t]))
        if (t + 1) % 4 == 0:
            opt_b.step(b.grad())
    np.testing.assert_array_equal(losses, expected)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.grad(), b.grad())  # the partial block's updates wait in both


def test_train_ptncn_without_optimiser_evaluates_without_updates():
    model = sr.PTNCN(4, n_hidden=5, output="sigmoid", seed=0)
    before = model.params.copy()
    frames = np.random.default_rng(1).random((12, 4))
    losses = train_ptncn(model, None, frames)
    assert losses.shape == (12,) and np.all(losses > 0)
    np.testing.assert_array_equal(model.params, before)
    assert not model.grad().any()
    assert model.n_steps == 12


def test_train_ptncn_refuses_bad_arguments():
    model = sr.PTNCN(4, n_hidden=5, batch_size=2, seed=0)
    other = sr.PTNCN(4, n_hidden=5, batch_size=2, seed=0)
    obs = np.zeros((3, 2, 4))
    with pytest.raises(TypeError, match="model"):
        train_ptncn("model", None, obs)
    with pytest.raises(ValueError, match=r"model.params"):
        train_ptncn(model, sr.SGD(other.params, lr=0.1), obs)
    with pytest.raises(ValueError, match="observations"):
        train_ptncn(model, None, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="mask"):
        train_ptncn(model, None, obs, mask=np.full((3, 2), 2.0))
    with pytest.raises(ValueError, match="update_every"):
        train_ptncn(model, None, obs, update_every=0)
    assert model.n_steps == 0


def test_train_ptncn_reports_divergence():
    model = sr.PTNCN(3, n_hidden=4, seed=0, activation="identity")  # unbounded units: the states blow up
    opt = sr.SGD(model.params, lr=1e300)
    obs = np.eye(3)[np.arange(40) % 3]
    with pytest.raises(sr.DivergenceError) as info:
        train_ptncn(model, opt, obs)
    assert info.value.step < 40


# -- next-step tasks ------------------------------------------------------------------------

def test_segment_observations_are_the_next_inputs():
    for task in (sr.tasks.CharLM(text=TEXT, length=12, batch_size=2, seed=0),
                 sr.tasks.CharLM(text=TEXT, protocol="sentences", batch_size=3, seed=0),
                 sr.tasks.Bouncing(canvas_size=8, glyph_size=4, length=6, seed=0)):
        seg = task.segment()
        first, obs, mask = segment_observations(task, seg)
        np.testing.assert_array_equal(first, seg.inputs[0])
        real = mask > 0
        # the observation of step t is the input of step t + 1, wherever that step is real
        both = real[:-1] & (np.asarray(seg.targets)[1:] >= 0 if task.loss == "cross_entropy" else True)
        np.testing.assert_array_equal(obs[:-1][both], seg.inputs[1:][both])
        if task.loss == "cross_entropy":
            np.testing.assert_array_equal(real, np.asarray(seg.targets) >= 0)
            assert not obs[~real].any()


def test_tasks_that_are_not_next_step_are_refused():
    task = sr.tasks.Copy(seed=0)
    with pytest.raises(ValueError, match="next-step"):
        segment_observations(task, task.segment())
    with pytest.raises(ValueError, match="next-step"):
        Trainer(bouncing_config(task={"name": "copy"}), "unused-folder")


# -- the trainer ------------------------------------------------------------------------------

def test_config_checks_the_model_and_its_options():
    with pytest.raises(ValueError, match="model must be"):
        bouncing_config(model="tncn").validate()
    with pytest.raises(ValueError, match="did you mean 'activation'"):
        bouncing_config(model_options={"activaton": "sign"}).validate()
    with pytest.raises(ValueError, match="set by the run"):
        bouncing_config(model_options={"n_x": 3}).validate()
    with pytest.raises(ValueError, match="model_options apply"):
        bouncing_config(model="rnn", model_options={"beta": 0.1}).validate()
    with pytest.raises(ValueError, match="learner_options apply"):
        bouncing_config(learner_options={"eps": 1e-6}).validate()
    with pytest.raises(ValueError, match="alpha"):
        bouncing_config(alpha=0.5).validate()
    with pytest.raises(ValueError, match="beta"):  # the model's own check, before anything runs
        Trainer(bouncing_config(model_options={"beta": -1.0}), "unused-folder")
    assert not os.path.exists("unused-folder")


def test_bouncing_run_learns_below_the_mean_frame(tmp_path):
    """A short run of the default P-TNCN on bouncing digits beats predicting the mean frame."""
    task = {"name": "bouncing", "canvas_size": 12, "glyph_size": 6, "n_objects": 1, "length": 16}
    trainer = Trainer(bouncing_config(task=task, n_hidden=32, steps=3000, eval_every=3000, eval_steps=400,
                                      log_every=500, checkpoint_every=3000), tmp_path / "run", progress=False)
    summary = trainer.run()
    held = sr.tasks.Bouncing(canvas_size=12, glyph_size=6, n_objects=1, length=16, seed=99)
    frames = np.concatenate([held.segment().targets for _ in range(200)])
    p = np.clip(frames.mean(0), 1e-8, 1 - 1e-8)
    mean_frame = -(frames * np.log(p) + (1 - frames) * np.log(1 - p)).mean() / np.log(2)
    assert summary["learner"] == "ptncn" and summary["metric"] == "bits_per_pixel"
    assert summary["final_eval"] < 0.85 * mean_frame, (summary, mean_frame)


def test_text_run_learns_below_the_unigram_frequencies(tmp_path):
    config = bouncing_config(task={"name": "charlm", "text": TEXT, "length": 50}, n_hidden=32, batch_size=4,
                             steps=1500, eval_every=1500, eval_steps=400, model_options={"beta": 0.1})
    summary = Trainer(config, tmp_path / "run", progress=False).run()
    counts = np.unique(list(TEXT), return_counts=True)[1]
    freq = counts / counts.sum()
    unigram = -(freq * np.log2(freq)).sum()
    assert summary["final_eval"] < 0.75 * unigram, (summary, unigram)


@pytest.mark.parametrize("extra", [dict(), dict(update_every=3, batch_size=2, dtype="float32", density=0.5,
                                                model_options={"activation": "sign"})])
def test_interrupted_run_resumes_bit_identically(tmp_path, extra):
    straight = Trainer(bouncing_config(**extra), tmp_path / "a", progress=False)
    straight.run()

    broken = Trainer(bouncing_config(**extra), tmp_path / "b", progress=False)
    interrupt_after(broken, 150)
    with pytest.raises(Interrupt):
        broken.run()
    resumed = Trainer.resume(tmp_path / "b", progress=False)
    assert resumed.step == 100
    resumed.run()
    assert_same(model_state(straight), model_state(resumed))
    assert without_time(tmp_path / "a") == without_time(tmp_path / "b")


def test_evaluation_leaves_the_training_state_alone(tmp_path):
    trainer = Trainer(bouncing_config(steps=60, eval_every=0), tmp_path / "run", progress=False)
    trainer.run()
    before = checkpoint.get_state(trainer.model)
    first = trainer.evaluate(50)
    assert trainer.evaluate(50) == first  # the held-out stream starts afresh
    assert_same(before, checkpoint.get_state(trainer.model))


@pytest.mark.parametrize("model", ["ptncn", "rnn"])
def test_evaluation_on_another_task(tmp_path, model):
    """Zero-shot transfer: the weights scored on another stream, frozen the same way as the held-out one."""
    extra = {} if model == "ptncn" else dict(cell="vanilla", learner="snap1")
    trainer = Trainer(bouncing_config(model=model, steps=60, eval_every=0, **extra), tmp_path / "run",
                      progress=False)
    trainer.run()
    held = trainer.task.held_out(trainer._eval_seed)
    assert trainer.evaluate(50, task=held) == trainer.evaluate(50)
    letters = sr.tasks.Bouncing(glyphs="letters", **{k: v for k, v in trainer.task.config().items()
                                                     if k not in ("name", "glyphs")})
    assert np.isfinite(trainer.evaluate(50, task=letters))
    with pytest.raises(ValueError, match="n_in"):
        trainer.evaluate(50, task=sr.tasks.Bouncing(canvas_size=12, glyph_size=5, seed=1))
    with pytest.raises(TypeError, match="Task"):
        trainer.evaluate(50, task="letters")


def test_sentence_evaluation_weights_segments_by_their_characters(tmp_path):
    config = bouncing_config(task={"name": "charlm", "text": TEXT, "protocol": "sentences"}, batch_size=3,
                             steps=30, eval_every=0)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    task = trainer.task.held_out(trainer._eval_seed)
    total, chars, done = 0.0, 0, 0
    trainer.model.reset()
    saved = checkpoint.get_state(trainer.model)
    while done < 100:
        seg = task.segment()
        total += trainer._model_losses(seg, task).sum()
        chars += int((seg.targets >= 0).sum())
        done += seg.inputs.shape[0]
    checkpoint.set_state(trainer.model, saved)
    assert trainer.evaluate(100) == pytest.approx(total / chars / np.log(2), rel=1e-12)


# -- the command line ---------------------------------------------------------------------------

def test_cli_trains_a_ptncn_on_bouncing(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "ptncn", "--task", "bouncing", "--canvas-size", "8", "--glyph-size", "4",
                 "--n-hidden", "8", "--density", "1", "--steps", "80", "--eval-every", "40", "--eval-steps", "20",
                 "--activation", "sign", "--model-opt", "n_layers=3", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "training ptncn on bouncing (PTNCN(" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "ptncn" and config["model_options"] == {"activation": "sign", "n_layers": 3}
    assert json.loads((out / "summary.json").read_text())["learner"] == "ptncn"
    assert main(["resume", str(out), "--steps", "120", "--no-progress"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--model-opt", "beta=0.1"], "model_options apply"),
    (["--activation", "sign"], "--activation sets the units of a model other than rnn"),
    (["--model", "ptncn", "--activation", "sgn"], "did you mean 'sign'"),
    (["--model", "ptncn", "--activation", "sign", "--model-opt", "activation=relu"], "disagree"),
    (["--model", "ptncn", "--task", "copy"], "next-step"),
])
def test_cli_refuses_model_options_that_do_not_fit(tmp_path, capsys, args, message):
    try:
        code = main(["train", "--task", "bouncing", *args, "--out", str(tmp_path / "r")])
    except SystemExit as exc:  # argparse's own refusal of a choice
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
