"""CharLM's per-sentence protocol (Penn Treebank the paper's way): batches of whole sentences, episodic."""

import json
import math

import numpy as np
import pytest

import sparse_rtrl as sr
from sparse_rtrl.training.tasks import CharLM, make_task

LINES = ["the cat sat", "a dog ran far away", "hi", "the end of it all", "", "cats and dogs", "no",
         "one more line here", "sat on the mat"]
TEXT = "\n".join(LINES * 3) + "\n"


def task(**kwargs):
    args = dict(text=TEXT, protocol="sentences", batch_size=3, seed=0, dtype=np.float64, valid_fraction=0.25)
    args.update(kwargs)
    return CharLM(**args)


def decode(t, inputs, targets):
    """The streams of a segment as (input text, target text), padding dropped (and checked to be padding)."""
    out = []
    for b in range(inputs.shape[1]):
        real = targets[:, b] >= 0
        n = int(real.sum())
        assert real[:n].all() and not real[n:].any()  # padding only at the end
        assert np.all(inputs[n:, b] == 0.0)  # padded steps have zero input
        assert np.all(inputs[:n, b].sum(axis=1) == 1.0)  # real steps are one-hot
        chars = inputs[:n, b].argmax(axis=1)
        out.append(("".join(t.vocab[c] for c in chars), "".join(t.vocab[c] for c in targets[:n, b])))
    return out


def test_a_segment_is_a_batch_of_whole_sentences_padded_to_the_longest():
    t = task()
    train_lines = [line for line in TEXT[:TEXT.rfind("\n", 0, len(TEXT) - round(0.25 * len(TEXT))) + 1].split("\n")
                   if line]
    assert t.n_sentences == len(train_lines) and t.episodic
    for _ in range(4):
        seg = t.segment()
        assert seg.reset and seg.scored.all()
        T = seg.inputs.shape[0]
        assert seg.inputs.shape == (T, 3, t.n_in) and seg.targets.shape == (T, 3) and seg.targets.dtype == np.int64
        streams = decode(t, seg.inputs, seg.targets)
        assert max(len(x) for x, _ in streams) == T
        for x, y in streams:
            # "\n c_1 ... c_L" -> "c_1 ... c_L \n": the newline starts and ends every sentence
            assert x[0] == "\n" and y[-1] == "\n" and x[1:] == y[:-1] and "\n" not in y[:-1]
            assert y[:-1] in train_lines


def test_the_unbatched_form_has_one_sentence_per_segment():
    t = task(batch_size=None)
    seg = t.segment()
    assert seg.inputs.ndim == 2 and seg.targets.ndim == 1 and np.all(seg.targets >= 0)
    assert seg.inputs.shape[0] == seg.targets.shape[0]


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_every_pass_covers_each_sentence_once_in_a_seeded_shuffled_order(batch):
    t = task(batch_size=batch)
    n = t.n_sentences
    seen = []
    while len(seen) < 3 * n:
        seg = t.segment()
        seen += [y[:-1] for _, y in decode(t, seg.inputs.reshape(seg.inputs.shape[0], batch, -1),
                                           seg.targets.reshape(-1, batch))]
    for k in range(3):
        assert sorted(seen[k * n:(k + 1) * n]) == sorted(_train_lines(t))
    assert seen[:n] != seen[n:2 * n]  # reshuffled
    again = task(batch_size=batch)
    other = task(batch_size=batch, seed=1)
    s1, s2, s3 = again.segment(), other.segment(), task(batch_size=batch).segment()
    np.testing.assert_array_equal(s1.targets, s3.targets)
    assert s1.targets.shape != s2.targets.shape or not np.array_equal(s1.targets, s2.targets)


def _train_lines(t):
    return ["".join(t.vocab[c] for c in t.ids[s:s + L]) for s, L in zip(t.sentence_starts, t.sentence_lengths)]


def test_the_split_keeps_whole_sentences_and_held_out_reads_the_validation_lines():
    t = task()
    valid = t.held_out(5)
    assert valid.split == "valid" and valid.protocol == "sentences" and valid.vocab == t.vocab
    lines = _train_lines(t) + _train_lines(valid)
    assert lines == [line for line in TEXT.split("\n") if line]
    assert CharLM(text="abc" * 10, protocol="stream").protocol == "stream"
    with pytest.raises(ValueError, match="newline"):
        CharLM(text="abc" * 10, protocol="sentences")
    with pytest.raises(ValueError, match="protocol"):
        CharLM(text=TEXT, protocol="paragraphs")


def test_score_is_bits_per_real_character():
    t = task()
    seg = t.segment()
    cell = sr.VanillaRNN(t.n_in, 8, density=0.5, seed=0)
    learner = sr.SnAp(cell, 1, batch_size=3)
    readout = sr.LinearReadout(cell, t.n_out, loss="cross_entropy", seed=0)
    opt = sr.SGD([cell.params, readout.params], lr=0.1)
    T = seg.inputs.shape[0]
    losses = sr.train_online(learner, readout, opt, seg.inputs, seg.targets, update_every=T + 1)  # no update
    n_real = int((seg.targets >= 0).sum())
    assert n_real < seg.targets.size  # the batch was padded
    assert t.score(seg, losses) == pytest.approx(losses.sum() / n_real / math.log(2), rel=1e-12)
    # By hand: the padded steps add nothing, each real one -log p(target) in nats.
    s = np.zeros((3, cell.n_state))
    cell2 = sr.VanillaRNN(t.n_in, 8, density=0.5, seed=0)
    ro2 = sr.LinearReadout(cell2, t.n_out, loss="cross_entropy", seed=0)
    total = 0.0
    for step in range(seg.inputs.shape[0]):
        s = cell2.step(s, seg.inputs[step])
        y = ro2.predict(s)
        for b in range(3):
            k = seg.targets[step, b]
            if k >= 0:
                total += np.log(np.exp(y[b] - y[b].max()).sum()) + y[b].max() - y[b, k]
    assert losses.sum() == pytest.approx(total, rel=1e-12)


def test_state_dict_round_trip_continues_bit_identically():
    t = task(batch_size=4)
    for _ in range(5):  # past the end of the first pass (over 13 sentences)
        t.segment()
    state = t.state_dict()
    json.dumps({k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in state.items()})
    expected = [t.segment() for _ in range(6)]
    other = make_task(task(batch_size=4).config())  # rebuilt from its config, then restored
    other.load_state_dict(state)
    for a, b in zip(expected, [other.segment() for _ in range(6)]):
        np.testing.assert_array_equal(a.inputs, b.inputs)
        np.testing.assert_array_equal(a.targets, b.targets)


def test_config_rebuilds_it_and_the_stream_config_is_unchanged():
    t = task()
    cfg = t.config()
    assert cfg["protocol"] == "sentences" and json.loads(json.dumps(cfg)) == cfg
    rebuilt = make_task(cfg)
    assert rebuilt.config() == cfg
    np.testing.assert_array_equal(rebuilt.segment().targets, task().segment().targets)
    stream = CharLM(text=TEXT, length=7, seed=0)
    assert "protocol" not in stream.config()  # as runs recorded it before there were protocols
    assert stream.protocol == "stream" and not stream.episodic
    seg = stream.segment()
    assert seg.inputs.shape == (7, stream.n_in) and seg.reset and not stream.segment().reset


def test_bad_states_are_refused_naming_the_field():
    t = task()
    good = t.state_dict()
    before = t.state_dict()
    stream_state = CharLM(text=TEXT).state_dict()
    with pytest.raises(ValueError, match="lacks"):
        t.load_state_dict(stream_state)
    with pytest.raises(ValueError, match="order"):
        t.load_state_dict(dict(good, order=np.zeros(t.n_sentences, dtype=np.int64)))
    with pytest.raises(ValueError, match="order"):
        t.load_state_dict(dict(good, order=good["order"][:-1]))
    with pytest.raises(ValueError, match="cursor"):
        t.load_state_dict(dict(good, cursor=t.n_sentences + 1))
    with pytest.raises(TypeError, match="cursor"):
        t.load_state_dict(dict(good, cursor=1.5))
    after = t.state_dict()
    np.testing.assert_array_equal(after["order"], before["order"])
    assert after["cursor"] == before["cursor"]


def test_a_trainer_runs_it_and_a_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    def config(steps):
        return sr.RunConfig(cell="vanilla", n_hidden=8, density=0.5, learner="snap1", dtype="float64", batch_size=2,
                            steps=steps, log_every=50, eval_every=100, eval_steps=60, checkpoint_every=100)

    whole = sr.Trainer(config(300), str(tmp_path / "whole"), task=task(batch_size=2))
    summary = whole.run()
    assert summary["metric"] == "bits_per_char" and 0.0 < summary["final_eval"] < 10.0
    with open(tmp_path / "whole" / "config.json") as f:
        assert json.load(f)["task"]["protocol"] == "sentences"
    sr.Trainer(config(150), str(tmp_path / "split"), task=task(batch_size=2)).run()
    resumed = sr.Trainer.resume(str(tmp_path / "split"), steps=300, task=task(batch_size=2))
    again = resumed.run()
    assert again["steps"] == summary["steps"] and again["final_eval"] == summary["final_eval"]
    np.testing.assert_array_equal(resumed.cell.params, whole.cell.params)
    np.testing.assert_array_equal(resumed.readout.params, whole.readout.params)
