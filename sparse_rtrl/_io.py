"""Files written atomically: one implementation for checkpoints, logs, CSV tables and figures.

A file is written to a temporary file in the same directory, flushed and
``fsync``-ed, given the permissions a plain ``open(path, "w")`` would give,
renamed onto ``path`` with ``os.replace`` (atomic on POSIX and Windows), and
the directory is ``fsync``-ed where the OS allows it. A failure or crash at
any point leaves the previous file at ``path`` intact and no partial file
under that name; on an exception the temporary file is removed.
"""

import contextlib
import os
import tempfile


def _fsync_directory(directory):
    """Make the rename durable; not every OS lets a directory be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode(path):
    """The permissions ``open(path, "w")`` would give: the old file's, or 0o666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path, mode="w", **open_kwargs):
    """``with atomic_write(path, "wb") as f: ...``: ``path`` holds what was written, or its old content.

    ``mode`` is ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    file_mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), file_mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_write(path, "w") as f:
        f.write(text)


def write_csv(path, header, rows):
    """Write a CSV table (``header``, then ``rows``) to ``path`` atomically."""
    import csv

    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def save_figure(fig, path, **kwargs):
    """Save a matplotlib ``Figure`` to ``path`` atomically, in the format its extension names."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)
    return os.fspath(path)
