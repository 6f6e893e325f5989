"""The one place that sets numba's defaults for every kernel in sparse_rtrl.

Kernels are compiled lazily on first call and cached on disk (``cache=True``)
so that later processes start fast. Set ``SPARSE_RTRL_NUMBA_CACHE=0`` to turn
the on-disk cache off (for example on a read-only install).

``FASTMATH`` deliberately leaves out ``nnan`` and ``ninf``: the library checks
for NaN and infinity (divergence detection, input validation) and those checks
must keep working inside compiled code.
"""

import os

FASTMATH = frozenset({"nsz", "arcp", "contract", "reassoc"})
CACHE = os.environ.get("SPARSE_RTRL_NUMBA_CACHE", "1") != "0"


def njit(*args, **kwargs):
    """``numba.njit`` with the project's defaults (cache, fastmath set, nogil)."""
    import numba

    kwargs.setdefault("cache", CACHE)
    kwargs.setdefault("fastmath", set(FASTMATH))
    kwargs.setdefault("nogil", True)
    if args and callable(args[0]) and len(args) == 1:
        return numba.njit(**kwargs)(args[0])
    return numba.njit(*args, **kwargs)


def parallel_njit(*args, **kwargs):
    """``njit`` with ``parallel=True`` for kernels that use ``prange``."""
    kwargs.setdefault("parallel", True)
    return njit(*args, **kwargs)
