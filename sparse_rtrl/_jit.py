"""The one place that sets numba's options for every kernel in sparse_rtrl.

Kernels are compiled lazily on first call and cached on disk (``cache=True``)
so that later processes start fast. Set ``SPARSE_RTRL_NUMBA_CACHE=0`` to turn
the on-disk cache off (for example on a read-only install). With numba's own
``NUMBA_DISABLE_JIT=1`` every kernel runs as the plain Python function it is
written as (slowly): that is how the kernels' line coverage is measured, and
every ``overload`` below has a Python body that makes the same choice at run
time that its compiled form makes at compile time.

Floating-point sets (``math=``), none with ``nnan`` or ``ninf``: the library
checks for NaN and infinity (divergence detection, input validation) and those
checks must keep working inside compiled code.

- ``"reassoc"`` (the default) allows reassociation, so LLVM vectorises the
  contiguous loops that stream influence blocks.
- ``"gather"`` leaves reassociation out, for kernels dominated by indexed
  loads (CSR products, ``z[src[p]]``): with it LLVM vectorises those with
  AVX-512 gather instructions, which we measured 2.5x slower than scalar code
  on our machines (CSR mat-vec, n = 128..2048: 0.25 vs 0.6-0.7 G entries/s).
- ``"contract"`` allows only fused multiply-adds, for loops whose every
  product has the form ``acc += a * b`` (one way to fuse, so one rounding).
- ``"strict"``: IEEE arithmetic, for kernels whose numbers must not depend on
  where a function body was compiled (see ``learners._kronecker_kernels``).

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
  are faster for the copies kernels make every step. It also compiles a
  formatted shape-mismatch error (strings, ``join``, ``repr``): about 3 s of
  compilation per dimensionality on a cold cache, measured.
"""

import functools
import hashlib
import os

MATH = {
    "reassoc": frozenset({"nsz", "arcp", "contract", "reassoc"}),
    "gather": frozenset({"nsz", "arcp", "contract"}),
    "contract": frozenset({"contract"}),
    "strict": frozenset(),
}
CACHE = os.environ.get("SPARSE_RTRL_NUMBA_CACHE", "1") != "0"


def jit_disabled():
    """True under ``NUMBA_DISABLE_JIT=1``: kernels are the Python functions they are written as."""
    import numba

    return bool(numba.config.DISABLE_JIT)


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


def _options(math, parallel):
    if math not in MATH:
        raise ValueError(f"math must be one of {sorted(MATH)}, got {math!r}")
    return {"fastmath": set(MATH[math]) or False, "nogil": True, "parallel": parallel}


def njit(fn=None, *, math="reassoc", parallel=False):
    """``numba.njit`` with the project's options: on-disk cache keyed on the
    whole package, ``nogil``, and the floating-point set ``math``.

    Use as ``@njit`` or ``@njit(math="gather")``.
    """
    def decorate(f):
        import numba

        dispatcher = numba.njit(**_options(math, parallel))(f)
        if CACHE and not jit_disabled():
            dispatcher._cache = _package_cache(dispatcher.py_func)
        return dispatcher

    return decorate if fn is None else decorate(fn)


def parallel_njit(fn=None, *, math="reassoc"):
    """``njit`` with ``parallel=True``, for kernels that spread work with ``prange``."""
    return njit(fn, math=math, parallel=True)


def overload(py_func):
    """``numba.extending.overload`` with the project's options.

    ``py_func`` is the Python form: it runs under ``NUMBA_DISABLE_JIT=1`` and
    must make at run time the choice the overload makes at compile time. The
    implementations are compiled with numba's default, IEEE arithmetic (the
    Cephes ``fast_tanh`` is accurate to 2 ulp only as written); the kernels
    they call keep their own ``math``.
    """
    from numba.extending import overload as numba_overload

    return numba_overload(py_func, jit_options={"cache": CACHE})
