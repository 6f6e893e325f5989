"""The one place that sets numba's defaults for every kernel in sparse_rtrl.

Kernels are compiled lazily on first call and cached on disk (``cache=True``)
so that later processes start fast. Set ``SPARSE_RTRL_NUMBA_CACHE=0`` to turn
the on-disk cache off (for example on a read-only install).

Two named fastmath sets, neither with ``nnan`` or ``ninf``: the library checks
for NaN and infinity (divergence detection, input validation) and those checks
must keep working inside compiled code.

``FASTMATH`` (the default) allows reassociation, so LLVM vectorises the
contiguous loops that stream influence blocks. ``GATHER_FASTMATH`` leaves
reassociation out, for kernels dominated by indexed loads (CSR products,
``z[src[p]]``): with it LLVM vectorises those with AVX-512 gather instructions,
which we measured 2.5x slower than scalar code on our machines (CSR mat-vec,
n = 128..2048: 0.25 vs 0.6-0.7 G entries/s).

Loops meant to stream must index a slice with the bare loop variable
(``row = a[s:s + q]; row[i]``): an index like ``a[s + i]`` goes through
numba's negative-index wraparound, which hides the contiguity from LLVM and
turns the loop into gathers (measured 6x slower).
"""

import os

FASTMATH = frozenset({"nsz", "arcp", "contract", "reassoc"})
GATHER_FASTMATH = frozenset({"nsz", "arcp", "contract"})
CACHE = os.environ.get("SPARSE_RTRL_NUMBA_CACHE", "1") != "0"


def njit(*args, gather=False, **kwargs):
    """``numba.njit`` with the project's defaults (cache, fastmath set, nogil).

    ``gather=True`` selects ``GATHER_FASTMATH`` for kernels dominated by
    indexed loads.
    """
    import numba

    kwargs.setdefault("cache", CACHE)
    kwargs.setdefault("fastmath", set(GATHER_FASTMATH if gather else FASTMATH))
    kwargs.setdefault("nogil", True)
    if args and callable(args[0]) and len(args) == 1:
        return numba.njit(**kwargs)(args[0])
    return numba.njit(*args, **kwargs)


def parallel_njit(*args, **kwargs):
    """``njit`` with ``parallel=True`` for kernels that use ``prange``."""
    kwargs.setdefault("parallel", True)
    return njit(*args, **kwargs)
