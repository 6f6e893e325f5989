"""Bouncing glyphs: next-frame prediction of glyphs moving on a square canvas and reflecting off its walls.

The Bouncing MNIST task of Srivastava et al. (2015), used by Ororbia & Mali
for the P-TNCN, built from glyphs that need no download: scikit-learn's
bundled 8x8 digits (the MNIST stand-in), the letters A-J rendered from the
fonts matplotlib ships (the notMNIST stand-in), or your own images (arrays,
or IDX files such as the real MNIST and notMNIST).

Every object moves by a constant integer velocity and reflects exactly off
the walls: positions are integers, given in closed form by
``bounce_positions``, and a glyph never leaves the canvas.
"""

import gzip
import hashlib
import math
import os
import struct

import numpy as np

from .._validate import check_int
from .tasks import LN2, Segment, Task, _check_seed, _rng_state, _set_rng_state

__all__ = ["Bouncing", "bounce_positions", "read_idx"]

_DIGITS_HINT = 'glyphs="digits" needs the optional package scikit-learn: pip install "sparse_rtrl[bouncing]"'

#: The faces the letters are rendered in: files of matplotlib's ``mpl-data/fonts/ttf`` (absent ones are skipped).
LETTER_FACES = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique", "DejaVuSansMono-BoldOblique",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
)
LETTERS = "ABCDEFGHIJ"

# Glyph sets built in this process, keyed by (source, glyph_size): read-only arrays, never written to disk.
_CACHE = {}

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# -- motion ----------------------------------------------------------------------------------

def bounce_positions(start, velocity, steps, span):
    """Integer positions of points moving at ``velocity`` in ``[0, span]`` with exact reflections.

    A point at ``p`` moving by ``v`` per step reflects off ``0`` and ``span``
    like a ball: its position at step ``t`` is the triangle wave
    ``q if q <= span else 2 span - q`` of ``q = (p + v t) mod 2 span``.
    This is the step-by-step rule ``p += v``, then ``p -> -p`` (below 0) or
    ``p -> 2 span - p`` (above ``span``) with ``v -> -v``, for any speed.

    Parameters
    ----------
    start, velocity : array_like of int, same shape
        Start positions in ``[0, span]`` and velocities (any integers).
    steps : int
        Positions at steps ``0 .. steps - 1`` are returned.
    span : int
        The largest position (>= 0; with 0 every point stays at 0).

    Returns
    -------
    ndarray of int64, shape ``(steps,) + start.shape``
    """
    start = np.asarray(start, dtype=np.int64)
    velocity = np.asarray(velocity, dtype=np.int64)
    span = check_int(span, "span", minimum=0)
    steps = check_int(steps, "steps", minimum=0)
    if start.shape != velocity.shape:
        raise ValueError(f"start and velocity must have the same shape, got {start.shape} and {velocity.shape}")
    if start.size and (start.min() < 0 or start.max() > span):
        raise ValueError(f"start must lie in [0, {span}]")
    t = np.arange(steps, dtype=np.int64).reshape((steps,) + (1,) * start.ndim)
    if span == 0:
        return np.zeros((steps,) + start.shape, dtype=np.int64)
    q = np.mod(start + velocity * t, 2 * span)
    return np.where(q <= span, q, 2 * span - q)


# -- glyph sources -----------------------------------------------------------------------------

def read_idx(path):
    """The array in an IDX file (the MNIST / notMNIST format), gzip-compressed or not.

    The header is two zero bytes, a type byte (``0x08`` unsigned byte,
    ``0x09`` signed byte, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32,
    ``0x0E`` float64), the number of dimensions, then each dimension as a
    big-endian uint32; the data follow, big-endian, in C order.

    Raises
    ------
    ValueError
        Naming the file, when it is not an IDX file or is truncated.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such IDX file: {path!r}")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path!r} is a damaged gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path!r} is not an IDX file: it does not start with 0x00 0x00 and a known type byte "
                         f"(got {raw[:4].hex(' ') or 'an empty file'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path!r}: truncated IDX header ({len(raw)} bytes, the header of a {ndim}-dimensional "
                         f"array needs {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    count = math.prod(dims)
    size = len(raw) - header
    if size != count * dtype.itemsize:
        what = "truncated" if size < count * dtype.itemsize else "longer than its header says"
        raise ValueError(f"{path!r}: IDX file {what}: the header gives shape {dims} of {dtype.name} "
                         f"({count * dtype.itemsize} bytes of data), the file holds {size}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _resize_matrix(n_out, n_in):
    """``(n_out, n_in)`` interpolation weights: area averaging to shrink, linear (half-pixel centres) to grow."""
    m = np.zeros((n_out, n_in))
    if n_out < n_in:
        scale = n_in / n_out
        for i in range(n_out):
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(math.floor(lo)), min(n_in, int(math.ceil(hi)))):
                m[i, j] = (min(hi, j + 1) - max(lo, j)) / scale
    else:
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
        j0 = np.floor(src).astype(int)
        j1 = np.minimum(j0 + 1, n_in - 1)
        w = src - j0
        m[np.arange(n_out), j0] += 1.0 - w
        m[np.arange(n_out), j1] += w
    return m


def _resize(images, size):
    """``(N, h, w)`` images in [0, 1] resized to ``(N, size, size)`` (identity when already that size)."""
    _, h, w = images.shape
    if (h, w) == (size, size):
        return np.array(images, dtype=np.float64)
    out = _resize_matrix(size, h) @ np.asarray(images, dtype=np.float64) @ _resize_matrix(size, w).T
    return np.clip(out, 0.0, 1.0)


def _digit_images():
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(_DIGITS_HINT) from exc
    return load_digits().images / 16.0  # (1797, 8, 8), values 0..16


def _letter_images(size):
    """A-J in every face of ``LETTER_FACES`` matplotlib ships, rasterised by Agg at ``size`` x ``size``.

    Each letter is scaled (aspect kept) so that its outline's larger side is
    ``size - 2 * margin`` pixels (``margin = size // 8``) and centred. Agg's
    anti-aliasing gives each pixel its exact coverage. Only the object API is
    used (no pyplot, no rcParams): the user's matplotlib state is untouched.
    """
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import RendererAgg
        from matplotlib.font_manager import FontProperties
        from matplotlib.textpath import TextPath
        from matplotlib.transforms import Affine2D
    except ImportError as exc:
        raise ImportError('glyphs="letters" needs matplotlib: pip install "sparse_rtrl[bouncing]"') from exc
    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    files = [os.path.join(folder, face + ".ttf") for face in LETTER_FACES]
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise ImportError(f"glyphs='letters': none of matplotlib's fonts {LETTER_FACES} is in {folder}")
    box = size - 2 * (size // 8)
    images = []
    for fname in files:
        prop = FontProperties(fname=fname)
        for letter in LETTERS:
            path = TextPath((0.0, 0.0), letter, size=100.0, prop=prop)
            ext = path.get_extents()
            scale = box / max(ext.width, ext.height)
            transform = (Affine2D().translate(-(ext.x0 + ext.x1) / 2, -(ext.y0 + ext.y1) / 2)
                         .scale(scale).translate(size / 2, size / 2))
            renderer = RendererAgg(size, size, 72)
            gc = renderer.new_gc()
            gc.set_linewidth(0.0)
            gc.set_antialiased(True)
            gc.set_snap(False)  # snapping a thin upright stroke (I) to whole pixels can erase it
            renderer.draw_path(gc, path, transform, (1.0, 1.0, 1.0, 1.0))
            gc.restore()
            images.append(np.asarray(renderer.buffer_rgba())[:, :, 3] / 255.0)
    return np.stack(images)


def _fingerprint(data):
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{data.dtype.kind}{data.dtype.itemsize} {tuple(data.shape)}".encode("ascii"))
    digest.update(np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).data)
    return "blake2b:" + digest.hexdigest()


def _normalise(data, name):
    """``(N, h, w)`` images as float64 in [0, 1]: taken as they are when all values are <= 1, else divided by 255."""
    data = np.asarray(data)
    if data.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {data.dtype}")
    if data.ndim != 3:
        raise ValueError(f"{name} must be images of shape (N, h, w), got shape {data.shape}"
                         + (" (for one image use image[None])" if data.ndim == 2 else ""))
    if 0 in data.shape:
        raise ValueError(f"{name} must not be empty, got shape {data.shape}")
    images = data.astype(np.float64)
    if not np.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinity")
    low, high = images.min(), images.max()
    if low < 0 or high > 255:
        raise ValueError(f"{name} must hold values in [0, 1] or [0, 255], got values in [{low:g}, {high:g}]")
    return images if high <= 1 else images / 255.0


class _GlyphSet:
    """Glyph images at the task's glyph size (read-only), and the JSON-able entry that names their source."""

    def __init__(self, images, entry):
        self.images = images
        self.images.flags.writeable = False
        self.entry = entry


def _glyph_set(value, size, name):
    """A :class:`_GlyphSet` from ``"digits"``, ``"letters"``, an array, an IDX path or a ``config()`` entry."""
    if isinstance(value, _GlyphSet):
        if value.images.shape[1:] != (size, size):
            return _GlyphSet(_resize(value.images, size), value.entry)
        return value
    if isinstance(value, str) and value in ("digits", "letters"):
        key = (value, size)
        if key not in _CACHE:
            images = _resize(_digit_images(), size) if value == "digits" else _letter_images(size)
            _CACHE[key] = _GlyphSet(images, value)
        return _CACHE[key]
    expected = None
    if isinstance(value, dict):
        if value.get("path") is None:
            raise ValueError(
                f"{name}: the configuration describes in-memory glyph arrays ({value}), which it cannot rebuild: "
                f"pass the task object itself, e.g. Trainer(config, folder, task=Bouncing(glyphs=images))")
        expected, value = value.get("fingerprint"), value["path"]
    if isinstance(value, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(value))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{name} must be 'digits', 'letters', an array (N, h, w) or the path of an IDX "
                                    f"file; {os.fspath(value)!r} is none of these (no such file)")
        raw = read_idx(path)
        if raw.ndim != 3:
            raise ValueError(f"{name}: the IDX file {path!r} holds an array of shape {raw.shape}; glyph images "
                             f"need three dimensions (N, h, w) (is it a labels file?)")
        fingerprint = _fingerprint(raw)
        if expected is not None and fingerprint != expected:
            raise ValueError(f"{name}: the content of {path!r} has changed since the configuration was recorded "
                             f"(fingerprint {fingerprint}, recorded {expected})")
        return _GlyphSet(_resize(_normalise(raw, f"{name} ({path!r})"), size),
                         {"path": path, "fingerprint": fingerprint})
    if isinstance(value, str) or value is None or np.isscalar(value):
        raise TypeError(f"{name} must be 'digits', 'letters', an array (N, h, w) or the path of an IDX file, "
                        f"got {value!r}")
    raw = np.asarray(value)
    images = _normalise(raw, name)
    return _GlyphSet(_resize(images, size), {"path": None, "shape": list(raw.shape),
                                             "fingerprint": _fingerprint(raw)})


# -- the task --------------------------------------------------------------------------------------

class Bouncing(Task, key="bouncing"):
    """Bouncing glyphs: predict the next frame of glyphs moving on a canvas and reflecting off its walls.

    Every segment is an episode of ``length`` steps with fresh objects: each
    of ``n_objects`` glyphs, drawn uniformly from the glyph set, starts at a
    uniform integer position and moves with a constant integer velocity,
    uniform over ``(vy, vx)`` with ``1 <= max(|vy|, |vx|) <= max_speed``,
    reflecting exactly off the walls (``bounce_positions``). Overlapping
    objects combine by their maximum, so frames stay in [0, 1]. The input at
    step ``t`` is the flattened frame ``x_t`` (``canvas_size ** 2`` pixels,
    row-major), its target the next frame ``x_{t+1}``; an episode draws
    ``length + 1`` frames. Every step is scored (the first one too, where the
    velocity cannot be known yet), and the learner is reset before every
    episode.

    Parameters
    ----------
    glyphs : "digits", "letters", array_like (N, h, w), str or os.PathLike
        ``"digits"``: the 1797 8x8 digits bundled with scikit-learn (the
        MNIST stand-in; ``pip install "sparse_rtrl[bouncing]"``).
        ``"letters"``: A-J in the faces of ``LETTER_FACES`` that
        matplotlib ships (16 faces, 160 glyphs; the notMNIST stand-in),
        rasterised by matplotlib's Agg. Your own images: an array in
        [0, 1], or in [0, 255] (divided by 255 when any value exceeds 1),
        or the path of an IDX file (MNIST's ``train-images-idx3-ubyte``,
        gzip-compressed or not). Glyphs are resized to ``glyph_size``
        (area averaging to shrink, linear interpolation to grow).
    eval_glyphs : same kinds as ``glyphs``, optional
        The glyphs of :meth:`held_out` (MNIST's ``t10k`` file, say); by
        default the held-out stream draws new episodes from ``glyphs``.
    canvas_size : int
        The canvas is ``canvas_size`` x ``canvas_size`` pixels (> glyph_size).
    glyph_size : int
        Glyphs are ``glyph_size`` x ``glyph_size`` pixels.
    n_objects : int
        Glyphs per episode.
    max_speed : int
        The largest velocity component, in pixels per step.
    length : int
        Steps (predicted frames) per episode.
    batch_size : int or None
        ``B`` independent episodes per segment.
    seed : int or None
    dtype : numpy.float32 or numpy.float64

    Attributes
    ----------
    n_in, n_out : int
        ``canvas_size ** 2`` (targets are real frames).
    glyph_images : ndarray, shape (N, glyph_size, glyph_size)
        The glyph set, read-only.
    positions : ndarray of int64, shape (length + 1, B, n_objects, 2) or None
        The ``(row, column)`` of every object's top-left corner in each frame
        of the last segment (for plots and checks; not part of the state).
    velocities : ndarray of int64, shape (B, n_objects, 2) or None
        The objects' velocities at the start of the last segment.
    glyph_ids : ndarray of int64, shape (B, n_objects) or None
        The glyph (row of ``glyph_images``) each object shows in the last segment.

    Notes
    -----
    Defaults: a 16 x 16 canvas with two 8 x 8 glyphs (the digits' own
    resolution, so they are not resampled), speeds up to 2 pixels per step,
    episodes of 20 frames (Srivastava et al.'s sequence length) -- 256
    pixels per frame, so the default run takes about a minute. The paper's
    setting (64 x 64, two 28 x 28 digits)::

        Bouncing(glyphs="train-images-idx3-ubyte.gz", canvas_size=64, glyph_size=28, max_speed=3)

    (with ``glyphs="digits"``, the 8 x 8 digits upsampled to 28 x 28).
    Episodes rather than one endless stream: an endless stream of the same
    few glyphs would let a model memorise them, and fresh objects per
    episode is the Bouncing MNIST protocol.

    The loss is the readout's ``"bernoulli"`` (sigmoid outputs, Bernoulli
    cross-entropy summed over pixels, in nats); :meth:`score` reports bits
    per pixel. :meth:`squared_error` gives the other usual metric, the
    squared error per frame, from predicted frames.

    Glyph sets are built once per process and glyph size (in memory only).
    """

    loss = "bernoulli"
    metric = "bits_per_pixel"
    episodic = True
    next_step = True

    def __init__(self, glyphs="digits", canvas_size=16, glyph_size=8, n_objects=2, max_speed=2, length=20,
                 batch_size=None, seed=0, dtype=np.float32, eval_glyphs=None):
        self.canvas_size = check_int(canvas_size, "canvas_size", minimum=2)
        self.glyph_size = check_int(glyph_size, "glyph_size", minimum=1)
        if self.glyph_size >= self.canvas_size:
            raise ValueError(f"glyph_size must be < canvas_size ({self.canvas_size}), got {self.glyph_size}")
        self.n_objects = check_int(n_objects, "n_objects", minimum=1)
        self.max_speed = check_int(max_speed, "max_speed", minimum=1)
        self.length = check_int(length, "length", minimum=1)
        self._init_common(batch_size, seed, dtype)
        self._glyphs = _glyph_set(glyphs, self.glyph_size, "glyphs")
        self._eval_glyphs = None if eval_glyphs is None else _glyph_set(eval_glyphs, self.glyph_size,
                                                                         "eval_glyphs")
        self.n_in = self.n_out = self.canvas_size ** 2
        s = self.max_speed
        vy, vx = np.meshgrid(np.arange(-s, s + 1), np.arange(-s, s + 1), indexing="ij")
        moving = (vy != 0) | (vx != 0)
        self._velocity_table = np.stack([vy[moving], vx[moving]], axis=1)  # ((2s+1)^2 - 1, 2)
        self._rng = np.random.default_rng(self.seed)
        self.positions = self.velocities = self.glyph_ids = None

    @property
    def glyph_images(self):
        """The glyph set, ``(N, glyph_size, glyph_size)`` floats in [0, 1] (read-only)."""
        return self._glyphs.images

    @property
    def span(self):
        """The largest coordinate of a glyph's top-left corner, ``canvas_size - glyph_size``."""
        return self.canvas_size - self.glyph_size

    def segment(self):
        T, B, K, g, C = self.length, self._B, self.n_objects, self.glyph_size, self.canvas_size
        images = self._glyphs.images
        which = self._rng.integers(0, images.shape[0], size=(B, K))
        start = self._rng.integers(0, self.span + 1, size=(B, K, 2))
        velocity = self._velocity_table[self._rng.integers(0, self._velocity_table.shape[0], size=(B, K))]
        pos = bounce_positions(start, velocity, T + 1, self.span)  # (T + 1, B, K, 2)
        frames = np.zeros((T + 1, B, C, C))
        ti = np.arange(T + 1)[:, None, None, None]
        bi = np.arange(B)[None, :, None, None]
        offsets = np.arange(g)
        for k in range(K):  # the windows of one object never collide (one per frame and stream)
            rows = pos[:, :, k, 0, None, None] + offsets[:, None]
            cols = pos[:, :, k, 1, None, None] + offsets[None, :]
            frames[ti, bi, rows, cols] = np.maximum(frames[ti, bi, rows, cols], images[which[:, k]][None])
        self.positions, self.velocities, self.glyph_ids = pos, velocity, which
        frames = frames.reshape(T + 1, B, C * C).astype(self.dtype)
        inputs, targets = frames[:-1], frames[1:]
        if self.batch_size is None:
            inputs, targets = inputs[:, 0], targets[:, 0]
        return Segment(np.ascontiguousarray(inputs), np.ascontiguousarray(targets), np.ones(T, dtype=bool), True)

    def score(self, seg, losses):
        """Bits per pixel: the mean loss per scored step and stream (nats per frame) / ``ln 2`` / pixels."""
        return self._mean_scored_loss(seg, losses) / LN2 / self.n_out

    def squared_error(self, seg, predictions):
        """The squared error per frame, ``sum_pixels (p - x_{t+1})^2`` averaged over scored steps and streams.

        ``predictions`` has the shape of ``seg.targets``: the predicted
        frames (for the readout's logits ``y``, ``sigmoid(y)``).
        """
        if not isinstance(seg, Segment):
            raise TypeError(f"seg must be a Segment, got {type(seg).__name__}")
        p = np.asarray(predictions)
        if p.dtype.kind not in "biuf":
            raise TypeError(f"predictions must hold real numbers, got dtype {p.dtype}")
        if p.shape != seg.targets.shape:
            raise ValueError(f"predictions must have shape {seg.targets.shape} (that of seg.targets), got {p.shape}")
        err = np.square(p.astype(np.float64) - seg.targets).sum(axis=-1)
        return float(err[seg.scored].mean())

    def held_out(self, seed):
        """The same task with another seed, on ``eval_glyphs`` when they were given."""
        glyphs = self._glyphs if self._eval_glyphs is None else self._eval_glyphs
        return Bouncing(glyphs, canvas_size=self.canvas_size, glyph_size=self.glyph_size,
                        n_objects=self.n_objects, max_speed=self.max_speed, length=self.length,
                        batch_size=self.batch_size, seed=self._held_out_seed(_check_seed(seed)), dtype=self.dtype)

    def config(self):
        cfg = self._common_config()
        cfg.update(glyphs=self._glyphs.entry,
                   eval_glyphs=None if self._eval_glyphs is None else self._eval_glyphs.entry,
                   canvas_size=self.canvas_size, glyph_size=self.glyph_size, n_objects=self.n_objects,
                   max_speed=self.max_speed, length=self.length)
        return cfg

    def state_dict(self):
        """The generator's state: every episode is drawn from it."""
        return {"name": self.name, "rng": _rng_state(self._rng)}

    def load_state_dict(self, state):
        self._check_state(state, ("rng",))
        rng = np.random.default_rng(0)  # restored into a new generator: a refused state changes nothing
        try:
            _set_rng_state(rng, state["rng"])
        except (TypeError, KeyError) as exc:
            raise ValueError(f"state['rng'] is not a state of this task's bit generator ({exc})") from None
        self._rng = rng

    def __repr__(self):
        glyphs = self._glyphs.entry
        if isinstance(glyphs, dict):
            glyphs = glyphs["path"] or f"arrays {tuple(glyphs['shape'])}"
        return (f"Bouncing(glyphs={glyphs!r}, canvas_size={self.canvas_size}, glyph_size={self.glyph_size}, "
                f"n_objects={self.n_objects}, max_speed={self.max_speed}, length={self.length}, "
                f"batch_size={self.batch_size}, seed={self.seed}, dtype={self.dtype.name})")

