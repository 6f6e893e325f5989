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

Habits the kernels follow, each measured on this project's machine:

- Indices and loop bounds that LLVM cannot prove non-negative keep numba's
  negative-index wraparound in the loop, which hides contiguity and stops
  vectorisation (6x slower). Index with unsigned offsets
  (``a[base + cc]`` with ``base = uint64(...)``, ``range(uint64(lo),
  uint64(hi))``) or a slice indexed by the bare loop variable.
- A slice made inside a branch keeps its reference counting, an atomic
  operation per slice: in hot loops use unsigned offsets instead.
- A flag that selects a code path is passed as ``True`` or ``None`` (two
  types), so each compiled kernel holds only the path it runs: a run-time
  branch between two large paths measured 1.4-3x slower.
- A loop that touches more than eight memory ranges exceeds the overlap
  checks LLVM makes before vectorising, and stays scalar.
- Numba's slice assignment (``a[:] = b``) takes a generic path: plain loops
  are faster for the copies kernels make every step.
"""

import functools
import hashlib
import os

FASTMATH = frozenset({"nsz", "arcp", "contract", "reassoc"})
GATHER_FASTMATH = frozenset({"nsz", "arcp", "contract"})
CACHE = os.environ.get("SPARSE_RTRL_NUMBA_CACHE", "1") != "0"


@functools.lru_cache(maxsize=None)
def package_stamp():
    """SHA-256 of every module of the package, subpackages included.

    numba keys a cached function on its own file only, so a kernel that calls
    a kernel of another module would keep the old callee compiled in after an
    edit or an upgrade that changed only the callee's file. Every sparse_rtrl
    kernel is keyed on the whole package instead.
    """
    root = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()


def _package_cache(py_func):
    from numba.core.caching import FunctionCache

    class PackageCache(FunctionCache):
        def __init__(self, py_func):
            super().__init__(py_func)
            own = self._cache_file._source_stamp
            self._cache_file._source_stamp = (own, package_stamp())

    return PackageCache(py_func)


def njit(*args, gather=False, **kwargs):
    """``numba.njit`` with the project's defaults (cache, fastmath set, nogil).

    ``gather=True`` selects ``GATHER_FASTMATH`` for kernels dominated by
    indexed loads. The on-disk cache of every function is keyed on the whole
    package (see ``package_stamp``).
    """
    import numba

    cache = kwargs.pop("cache", CACHE)
    kwargs.setdefault("fastmath", set(GATHER_FASTMATH if gather else FASTMATH))
    kwargs.setdefault("nogil", True)

    def decorate(fn):
        dispatcher = numba.njit(**kwargs)(fn)
        if cache:
            dispatcher._cache = _package_cache(dispatcher.py_func)
        return dispatcher

    if args and callable(args[0]) and len(args) == 1:
        return decorate(args[0])
    if args:
        raise TypeError("njit takes keyword options only")
    return decorate


def parallel_njit(*args, **kwargs):
    """``njit`` with ``parallel=True`` for kernels that use ``prange``."""
    kwargs.setdefault("parallel", True)
    return njit(*args, **kwargs)
