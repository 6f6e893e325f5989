"""Argument checks run at the public boundary, before any kernel sees the data.

numba does not check bounds or types the way Python does: a wrong shape or an
out-of-range index inside a kernel reads garbage or crashes the process. Every
public function therefore calls one of these helpers first; each raises a
``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, bad value)
whose message names the offending argument.
"""

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype, name="dtype"):
    """Return ``dtype`` as a ``np.dtype`` if it is float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be numpy.float32 or numpy.float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be numpy.float32 or numpy.float64, got {dt}")
    return dt


def check_int(value, name, minimum=None, maximum=None):
    """Return ``value`` as an ``int``; booleans and floats are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(value, name, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as a finite ``float`` inside the given interval."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        bound = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bound}{low}, {high}{')' if high_open else ']'}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        bound = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {'(' if low_open else '['}{low}, {high}{bound}, got {value}")
    return value


def check_seed(seed, name="seed"):
    """Accept ``None``, an integer >= 0, or a ``numpy.random.Generator``."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    return check_int(seed, name, minimum=0)


def check_real_array(value, name, shape, dtype):
    """Return ``value`` as a C-contiguous array of ``dtype`` and exactly ``shape``.

    Integer and boolean arrays are converted; complex, object and string data
    are refused with ``TypeError``. NaN or infinity raise ``ValueError``.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def check_index_array(value, name):
    """Return a private 1-D int32 copy of ``value``; refuse non-integer data.

    Always a copy: a structure validated once must not change afterwards
    because the caller's buffer did (kernels trust it without checking).
    """
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{name} has values outside the int32 range")
    return np.array(arr, dtype=np.int32, copy=True, order="C")
