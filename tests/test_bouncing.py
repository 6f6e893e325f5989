"""Bouncing glyphs (``sr.tasks.Bouncing``) against references written here.

Frames are recomposed pixel by pixel from the reported positions; positions
are tracked step by step with the reflection rule (and read back from the
frames of a solid block); every glyph source loads offline, an IDX file
written here included; bad files, bad arguments and bad states are refused
by name; a run interrupted and resumed ends like an uninterrupted one.
"""

import gzip
import json
import math
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparse_rtrl as sr
from sparse_rtrl.training import bouncing

Bouncing = sr.tasks.Bouncing


def blocks(values=(1.0,), size=3):
    """Solid square glyphs, one per value."""
    return np.stack([np.full((size, size), v) for v in values])


def small(glyphs="blocks", **kw):
    """A small task over solid blocks (no optional package needed)."""
    base = dict(canvas_size=9, glyph_size=3, n_objects=2, max_speed=2, length=7, seed=1, dtype=np.float64)
    base.update(kw)
    return Bouncing(blocks((0.5, 1.0, 0.25)) if isinstance(glyphs, str) and glyphs == "blocks" else glyphs, **base)


def step_reflect(p, v, span):
    """One step of the bouncing rule, reflecting as often as the speed needs."""
    p = p + v
    while p < 0 or p > span:
        if p < 0:
            p, v = -p, -v
        else:
            p, v = 2 * span - p, -v
    return p, v


def write_idx(path, array, type_byte=0x08, compress=False):
    dtype = {0x08: ">u1", 0x0D: ">f4"}[type_byte]
    raw = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += np.asarray(array, dtype=dtype).tobytes()
    if compress:
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def seg_equal(a, b):
    return (a.reset == b.reset and a.inputs.dtype == b.inputs.dtype and np.array_equal(a.inputs, b.inputs)
            and np.array_equal(a.targets, b.targets) and np.array_equal(a.scored, b.scored))


# -- the stream ---------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [None, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shapes_dtypes_and_the_registry(batch_size, dtype):
    task = small(batch_size=batch_size, dtype=dtype)
    assert sr.registry.TASKS["bouncing"] is Bouncing and task.name == "bouncing"
    assert task.loss == "bernoulli" and task.metric == "bits_per_pixel" and task.episodic
    assert task.n_in == task.n_out == 81
    seg = task.segment()
    lead = (7,) if batch_size is None else (7, 3)
    assert seg.inputs.shape == seg.targets.shape == lead + (81,)
    assert seg.inputs.dtype == seg.targets.dtype == np.dtype(dtype)
    assert seg.inputs.flags.c_contiguous and seg.targets.flags.c_contiguous
    assert seg.scored.dtype == bool and seg.scored.all() and seg.scored.shape == (7,)
    assert seg.reset and task.segment().reset
    assert 0.0 <= seg.inputs.min() and seg.inputs.max() <= 1.0
    # The target of each step is the input of the next.
    np.testing.assert_array_equal(seg.targets[:-1], seg.inputs[1:])


def recompose(task, t, b):
    """Frame ``t`` of stream ``b`` of the last segment, pixel by pixel: each object's glyph at its position."""
    C, g = task.canvas_size, task.glyph_size
    ref = np.zeros((C, C))
    for k in range(task.n_objects):
        r, c = task.positions[t, b, k]
        glyph = task.glyph_images[task.glyph_ids[b, k]]
        for i in range(g):
            for j in range(g):
                assert 0 <= r + i < C and 0 <= c + j < C
                ref[r + i, c + j] = max(ref[r + i, c + j], glyph[i, j])  # overlaps by max
    return ref


@pytest.mark.parametrize("max_speed", [1, 3, 13])  # 13 > span: several reflections in one step
def test_frames_are_the_glyphs_at_their_positions_inside_the_canvas(max_speed):
    rng = np.random.default_rng(3)
    task = small(rng.uniform(0, 1, size=(4, 3, 3)), batch_size=4, max_speed=max_speed, n_objects=3)
    C = task.canvas_size
    for _ in range(3):
        seg = task.segment()
        assert task.positions.shape == (8, 4, 3, 2) and task.glyph_ids.shape == (4, 3)
        assert task.positions.min() >= 0 and task.positions.max() <= C - task.glyph_size
        frames = np.concatenate([seg.inputs[:1], seg.targets]).reshape(8, 4, C, C)
        for t in range(8):
            for b in range(4):
                np.testing.assert_array_equal(frames[t, b], recompose(task, t, b))


def test_overlapping_objects_combine_by_their_maximum():
    task = Bouncing(blocks((0.25, 1.0), size=4), canvas_size=6, glyph_size=4, n_objects=6, length=3, seed=2,
                    dtype=np.float64)
    seg = task.segment()
    frames = np.concatenate([seg.inputs[:1], seg.targets]).reshape(4, 6, 6)
    for t in range(4):
        np.testing.assert_array_equal(frames[t], recompose(task, t, 0))
    assert frames.max() <= 1.0 and set(np.unique(frames)) <= {0.0, 0.25, 1.0}


@pytest.mark.parametrize("max_speed", [1, 2, 7])
def test_a_single_object_bounces_exactly(max_speed):
    """Positions read off the frames of one solid block follow the step-by-step reflection rule."""
    C, g = 11, 4
    task = Bouncing(blocks((1.0,), size=g), canvas_size=C, glyph_size=g, n_objects=1, max_speed=max_speed,
                    length=40, batch_size=5, seed=7, dtype=np.float64)
    span = C - g
    for _ in range(2):
        seg = task.segment()
        frames = np.concatenate([seg.inputs[:1], seg.targets]).reshape(41, 5, C, C)
        for b in range(5):
            rows, cols = [], []
            for t in range(41):
                r, c = np.nonzero(frames[t, b])
                assert len(r) == g * g and r.max() - r.min() == g - 1 and c.max() - c.min() == g - 1
                rows.append(r.min())
                cols.append(c.min())
            v = [int(x) for x in task.velocities[b, 0]]
            assert 1 <= max(abs(v[0]), abs(v[1])) <= max_speed
            p = [rows[0], cols[0]]
            for t in range(1, 41):
                for axis in range(2):
                    p[axis], v[axis] = step_reflect(p[axis], v[axis], span)
                assert (rows[t], cols[t]) == tuple(p)
            np.testing.assert_array_equal(task.positions[:, b, 0], np.stack([rows, cols], axis=1))


@settings(deadline=None, max_examples=40)
@given(span=st.integers(0, 12), start=st.integers(0, 12), velocity=st.integers(-30, 30), steps=st.integers(0, 30))
def test_bounce_positions_is_the_step_by_step_rule(span, start, velocity, steps):
    start = min(start, span)
    got = bouncing.bounce_positions([start], [velocity], steps, span)[:, 0]
    p, v = start, velocity
    for t in range(steps):
        assert got[t] == (p if span else 0)
        if span:
            p, v = step_reflect(p, v, span)


def test_the_same_seed_gives_the_same_stream_and_another_seed_another():
    a, b, c = small(batch_size=2), small(batch_size=2), small(batch_size=2, seed=2)
    for _ in range(3):
        sa, sb, sc = a.segment(), b.segment(), c.segment()
        assert seg_equal(sa, sb)
        assert not np.array_equal(sa.inputs, sc.inputs)


def test_velocities_and_glyphs_cover_their_ranges():
    task = small(batch_size=200, n_objects=2, max_speed=1)
    task.segment()
    v = task.velocities.reshape(-1, 2)
    assert {tuple(x) for x in v} == {(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)} - {(0, 0)}
    assert set(task.glyph_ids.ravel()) == {0, 1, 2}
    assert set(task.positions[0].ravel()) == set(range(task.span + 1))


# -- glyph sources ---------------------------------------------------------------------------------

def test_digits_are_scikit_learns_at_their_own_size_and_upsampled():
    datasets = pytest.importorskip("sklearn.datasets")
    task = Bouncing("digits", seed=0)
    ref = datasets.load_digits().images / 16.0
    assert task.glyph_images.shape == (1797, 8, 8)
    np.testing.assert_array_equal(task.glyph_images, ref)
    assert not task.glyph_images.flags.writeable
    big = Bouncing("digits", canvas_size=64, glyph_size=28, length=2)
    assert big.glyph_images.shape == (1797, 28, 28) and big.n_in == 4096
    assert 0.0 <= big.glyph_images.min() and big.glyph_images.max() <= 1.0
    seg = big.segment()
    assert seg.inputs.shape == (2, 4096)


def test_without_scikit_learn_digits_say_what_to_install(monkeypatch):
    monkeypatch.setattr(bouncing, "_CACHE", {})
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "sparse_rtrl\[bouncing\]"'):
        Bouncing("digits")


def test_letters_are_rendered_offline_in_several_faces():
    task = Bouncing("letters", seed=0)
    images = task.glyph_images
    n_faces = images.shape[0] // 10
    assert images.shape[0] % 10 == 0 and n_faces >= 3 and images.shape[1:] == (8, 8)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert (images.reshape(len(images), -1).max(axis=1) > 0.3).all()  # every glyph is drawn (a thin I too)
    # A and I differ in every face; the faces differ from each other.
    faces = images.reshape(n_faces, 10, 8, 8)
    assert all(not np.allclose(f[0], f[8]) for f in faces)
    assert not np.allclose(faces[0], faces[4])
    assert Bouncing("letters", glyph_size=20, canvas_size=30).glyph_images.shape == (n_faces * 10, 20, 20)


def test_letters_leave_the_users_matplotlib_alone():
    # dict.items reads rcParams without resolving the backend (which would import pyplot itself).
    code = ("import sys, matplotlib; before = dict(dict.items(matplotlib.rcParams)); "
            "from sparse_rtrl.training import bouncing; bouncing._letter_images(12); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            "assert dict(dict.items(matplotlib.rcParams)) == before, 'rcParams changed'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_arrays_in_0_1_or_0_255_are_the_same_glyphs(scale):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, size=(5, 6, 6))
    images[:, 0, 0] = 1.0
    task = Bouncing(images * scale, canvas_size=10, glyph_size=6, seed=3)
    np.testing.assert_allclose(task.glyph_images, images, rtol=1e-12, atol=1e-15)
    uint8 = Bouncing(np.round(images * 255).astype(np.uint8), canvas_size=10, glyph_size=6)
    np.testing.assert_allclose(uint8.glyph_images, np.round(images * 255) / 255)


def test_resizing_keeps_flat_images_flat_and_values_in_range():
    flat = np.full((2, 5, 7), 0.75)
    for size in (3, 5, 12):
        out = bouncing._resize(flat, size)
        assert out.shape == (2, size, size)
        np.testing.assert_allclose(out, 0.75)
    rng = np.random.default_rng(1)
    noisy = rng.uniform(0, 1, size=(3, 9, 9))
    for size in (2, 4, 20):
        out = bouncing._resize(noisy, size)
        assert 0.0 <= out.min() and out.max() <= 1.0
        np.testing.assert_allclose(out.mean(axis=(1, 2)), noisy.mean(axis=(1, 2)), atol=0.08)


@pytest.mark.parametrize("compress", [False, True])
def test_an_idx_file_is_read_and_rebuilt_from_the_config(tmp_path, compress):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(7, 5, 5)).astype(np.uint8)
    path = write_idx(tmp_path / ("glyphs.idx" + (".gz" if compress else "")), images, compress=compress)
    np.testing.assert_array_equal(bouncing.read_idx(path), images)
    task = Bouncing(path, canvas_size=9, glyph_size=5, batch_size=2, seed=4)
    np.testing.assert_allclose(task.glyph_images, images / 255.0)
    cfg = task.config()
    assert json.loads(json.dumps(cfg)) == cfg and cfg["glyphs"]["path"] == str(path)
    again = sr.tasks.make_task(cfg)
    assert again.config() == cfg and seg_equal(task.segment(), again.segment())
    floats = write_idx(tmp_path / "floats.idx", images / 255.0, type_byte=0x0D)
    np.testing.assert_allclose(Bouncing(floats, canvas_size=9, glyph_size=5).glyph_images, images / 255.0,
                               rtol=1e-6)
    # A file changed since its config was recorded is refused.
    write_idx(path, images[::-1].copy(), compress=compress)
    with pytest.raises(ValueError, match="changed"):
        sr.tasks.make_task(cfg)


def test_bad_glyph_files_get_a_clear_error_naming_the_file(tmp_path):
    images = np.zeros((4, 3, 3), dtype=np.uint8)
    good = write_idx(tmp_path / "good.idx", images).read_bytes()
    cases = {
        "truncated.idx": good[:-5],
        "header.idx": good[:9],
        "magic.idx": b"\x01\x02" + good[2:],
        "long.idx": good + b"\x00",
        "empty.idx": b"",
        "broken.gz": b"\x1f\x8b" + b"garbage" * 3,
    }
    for name, raw in cases.items():
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(ValueError, match=name):
            Bouncing(path, canvas_size=5, glyph_size=3)
    labels = write_idx(tmp_path / "labels.idx", np.arange(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="labels.idx.*three dimensions"):
        Bouncing(labels, canvas_size=5, glyph_size=3)
    with pytest.raises(FileNotFoundError, match="'digit'.*no such file"):
        Bouncing("digit")


def test_in_memory_glyphs_are_recorded_but_not_rebuilt():
    task = small()
    cfg = task.config()
    assert json.loads(json.dumps(cfg)) == cfg and cfg["glyphs"]["path"] is None
    with pytest.raises(ValueError, match="pass the task object"):
        sr.tasks.make_task(cfg)
    assert small().config() == cfg and small(blocks((0.5, 1.0, 0.2))).config() != cfg


# -- held-out stream, state, score -----------------------------------------------------------------

def test_held_out_streams_are_new_reproducible_and_use_eval_glyphs():
    task = small(batch_size=2)
    a, b = task.held_out(9), task.held_out(9)
    assert seg_equal(a.segment(), b.segment())
    assert not np.array_equal(task.held_out(9).segment().inputs, small(batch_size=2).segment().inputs)
    with pytest.raises(ValueError, match="seed"):
        task.held_out(task.seed)
    other = small(batch_size=2, eval_glyphs=blocks((0.125,)))
    held = other.held_out(5)
    assert set(np.unique(held.segment().inputs)) == {0.0, 0.125}
    assert held.config()["batch_size"] == 2 and held.config()["seed"] == 5


def test_a_restored_task_continues_bit_for_bit():
    task = small(batch_size=3)
    task.segment()
    state = json.loads(json.dumps(task.state_dict()))  # JSON-able
    expected = [task.segment() for _ in range(3)]
    other = small(batch_size=3, seed=8)
    other.load_state_dict(state)
    for seg in expected:
        assert seg_equal(seg, other.segment())
    before = other.state_dict()
    for bad, match in (({"name": "copy", "rng": state["rng"]}, "copy"), ({"name": "bouncing"}, "rng"),
                       ({"name": "bouncing", "rng": {"bit_generator": "MT19937"}}, "rng"),
                       ({"name": "bouncing", "rng": {"bit_generator": "PCG64"}}, "rng")):
        with pytest.raises(ValueError, match=match):
            other.load_state_dict(bad)
    assert other.state_dict() == before
    with pytest.raises(TypeError, match="state"):
        other.load_state_dict([1, 2])


def test_score_is_bits_per_pixel_of_the_bernoulli_loss():
    task = small(batch_size=2)
    seg = task.segment()
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, size=seg.targets.shape)
    x = seg.targets
    per_pixel_nats = -(x * np.log(p) + (1 - x) * np.log(1 - p))
    losses = per_pixel_nats.sum(axis=(1, 2))  # summed over pixels and the batch, as train_online returns them
    expected = per_pixel_nats.mean() / math.log(2)
    assert task.score(seg, losses) == pytest.approx(expected, rel=1e-12)
    # A uniform prediction costs one bit per pixel; a perfect one nothing.
    assert task.score(seg, np.full(7, 2 * 81 * math.log(2))) == pytest.approx(1.0)
    assert task.squared_error(seg, seg.targets) == 0.0
    assert task.squared_error(seg, p) == pytest.approx(((p - x) ** 2).sum(axis=-1).mean())
    with pytest.raises(ValueError, match="losses"):
        task.score(seg, np.zeros(3))
    with pytest.raises(ValueError, match="predictions"):
        task.squared_error(seg, p[:, :1])


def _run_config(**kw):
    base = dict(task={"name": "bouncing"}, cell="vanilla", n_hidden=6, density=0.5, learner="snap1",
                optimizer="adam", lr=1e-2, steps=80, log_every=20, eval_every=40, eval_steps=10,
                checkpoint_every=20, dtype="float64", seed=3)
    base.update(kw)
    return sr.RunConfig(**base)


def test_a_run_trains_on_bouncing_glyphs_and_resumes_bit_for_bit(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(6, 3, 3)).astype(np.uint8)
    path = write_idx(tmp_path / "glyphs.idx", images)
    task_cfg = {"name": "bouncing", "glyphs": str(path), "canvas_size": 6, "glyph_size": 3, "length": 10}
    whole = sr.Trainer(_run_config(task=task_cfg), tmp_path / "whole", progress=False)
    summary = whole.run()
    assert summary["metric"] == "bits_per_pixel" and 0 < summary["final_train"] < 2
    assert math.isfinite(summary["final_eval"])
    short = sr.Trainer(_run_config(task=task_cfg, steps=40), tmp_path / "short", progress=False)
    short.run()
    more = sr.Trainer.resume(tmp_path / "short", steps=80, progress=False)  # the task from config.json
    more.run()
    np.testing.assert_array_equal(whole.cell.params, more.cell.params)
    np.testing.assert_array_equal(whole.readout.params, more.readout.params)
    assert whole.task.state_dict() == more.task.state_dict()


# -- bad arguments -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(canvas_size=9.0), TypeError, "canvas_size"),
    (dict(canvas_size=1), ValueError, "canvas_size"),
    (dict(glyph_size=0), ValueError, "glyph_size"),
    (dict(glyph_size=9), ValueError, "glyph_size"),
    (dict(n_objects=0), ValueError, "n_objects"),
    (dict(max_speed=0), ValueError, "max_speed"),
    (dict(max_speed=True), TypeError, "max_speed"),
    (dict(length=0), ValueError, "length"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(glyphs=None), TypeError, "glyphs"),
    (dict(glyphs=3), TypeError, "glyphs"),
    (dict(glyphs=np.zeros((3, 3))), ValueError, r"glyphs.*\(N, h, w\)"),
    (dict(glyphs=np.zeros((0, 3, 3))), ValueError, "glyphs.*empty"),
    (dict(glyphs=np.full((2, 3, 3), -0.5)), ValueError, r"glyphs.*\[0, 1\] or \[0, 255\]"),
    (dict(glyphs=np.full((2, 3, 3), 300.0)), ValueError, "glyphs"),
    (dict(glyphs=np.full((2, 3, 3), np.nan)), ValueError, "glyphs.*NaN"),
    (dict(glyphs=np.full((2, 3, 3), "a")), TypeError, "glyphs"),
    (dict(eval_glyphs=np.zeros((3, 3))), ValueError, "eval_glyphs"),
])
def test_bad_arguments_are_refused_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        small(**kwargs)
