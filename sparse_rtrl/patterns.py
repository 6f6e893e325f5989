"""Sparsity patterns: the structure of a CSR matrix, without its values.

A :class:`Pattern` says which entries of a weight matrix are stored (and so
trainable). It is fixed when a cell is built; learners derive every index plan
from patterns, never from values, so that a weight that happens to be zero, a
zero input or a saturated unit never changes which entries are tracked.
"""

import numpy as np

from ._validate import check_float, check_index_array, check_int

__all__ = ["Pattern"]


def _validate_csr(indptr, indices, shape, name):
    n_rows, n_cols = shape
    if indptr.shape != (n_rows + 1,):
        raise ValueError(
            f"{name}.indptr must have length n_rows + 1 = {n_rows + 1}, got {indptr.shape[0]}"
        )
    if indptr[0] != 0:
        raise ValueError(f"{name}.indptr must start at 0, got {indptr[0]}")
    if indptr[-1] != indices.shape[0]:
        raise ValueError(
            f"{name}.indptr must end at len(indices) = {indices.shape[0]}, got {indptr[-1]}"
        )
    if np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}.indptr must be non-decreasing")
    if indices.size:
        if indices.min() < 0 or indices.max() >= n_cols:
            raise ValueError(f"{name}.indices must lie in [0, {n_cols}), got values outside it")
        # Within each row the column indices must strictly increase: sorted and
        # without duplicates. A difference <= 0 that is not at a row start
        # breaks that.
        step = np.diff(indices.astype(np.int64))
        row_start = np.zeros(indices.shape[0], dtype=bool)
        row_start[indptr[1:-1][indptr[1:-1] < indices.shape[0]]] = True
        bad = (step <= 0) & ~row_start[1:]
        if np.any(bad):
            where = int(np.flatnonzero(bad)[0]) + 1
            row = int(np.searchsorted(indptr, where, side="right") - 1)
            raise ValueError(
                f"{name}.indices must be sorted and free of duplicates within each row "
                f"(row {row} is not); for a scipy matrix call sort_indices() and sum_duplicates()"
            )


def _check_shape(shape, name="shape"):
    if not (isinstance(shape, tuple) and len(shape) == 2):
        raise TypeError(f"{name} must be a tuple (n_rows, n_cols), got {shape!r}")
    return check_int(shape[0], f"{name}[0]", minimum=0), check_int(shape[1], f"{name}[1]", minimum=0)


class Pattern:
    """The structure of a CSR matrix: which entries are stored.

    Parameters
    ----------
    indptr : array_like of int, shape (n_rows + 1,)
        Row pointers: row ``i`` stores ``indices[indptr[i]:indptr[i + 1]]``.
    indices : array_like of int, shape (nnz,)
        Column index of each stored entry, strictly increasing within a row.
    shape : tuple of int
        ``(n_rows, n_cols)``.

    Attributes
    ----------
    shape : tuple of int
    indptr, indices : ndarray of int32
        Read-only private copies, whatever the integer type you gave (the
        kernels take int32 indices; values beyond its range are refused).

    Raises
    ------
    ValueError
        If ``indptr`` does not start at 0, end at ``nnz``, or decreases; if an
        index is out of range; or if a row's indices are unsorted or repeated.

    Notes
    -----
    A pattern holds no values, so it has no float dtype: a float32 or float64
    matrix gives the same pattern, and the dtype of a cell built on it is the
    cell's ``dtype=`` argument.
    """

    __slots__ = ("shape", "indptr", "indices")

    def __init__(self, indptr, indices, shape, name="pattern"):
        n_rows, n_cols = _check_shape(shape, f"{name} shape")
        indptr = check_index_array(indptr, f"{name}.indptr")
        indices = check_index_array(indices, f"{name}.indices")
        _validate_csr(indptr, indices, (n_rows, n_cols), name)
        indptr.flags.writeable = False
        indices.flags.writeable = False
        self.shape = (n_rows, n_cols)
        self.indptr = indptr
        self.indices = indices

    # -- constructors ---------------------------------------------------------
    @classmethod
    def random(cls, shape, density, rng):
        """Uniformly random pattern with ``round(density * n_rows * n_cols)`` entries.

        Every position is equally likely, so rows may be empty. ``density=1``
        gives the dense pattern. ``rng`` is a ``numpy.random.Generator``.
        """
        density = check_float(density, "density", 0.0, 1.0, low_open=True)
        n_rows, n_cols = _check_shape(shape)
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        total = n_rows * n_cols
        nnz = int(round(density * total))
        if nnz >= total:
            return cls.dense(shape)
        flat = np.sort(rng.choice(total, size=nnz, replace=False))
        rows = flat // n_cols
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
        return cls(indptr, flat % n_cols, (n_rows, n_cols))

    @classmethod
    def dense(cls, shape):
        """Every entry stored."""
        n_rows, n_cols = _check_shape(shape)
        indptr = np.arange(n_rows + 1, dtype=np.int64) * n_cols
        indices = np.tile(np.arange(n_cols), n_rows)
        return cls(indptr, indices, (n_rows, n_cols))

    @classmethod
    def diagonal(cls, n):
        """The ``n x n`` identity pattern."""
        n = check_int(n, "n", minimum=0)
        return cls(np.arange(n + 1), np.arange(n), (n, n))

    @classmethod
    def from_scipy(cls, matrix, name="pattern"):
        """The stored entries of a ``scipy.sparse`` matrix (explicit zeros included).

        Non-CSR formats are converted with ``tocsr()``. A CSR matrix must be in
        canonical form (sorted indices, no duplicates); otherwise a
        ``ValueError`` says how to fix it. The values and their dtype are not
        used.
        """
        import scipy.sparse as sp

        if not sp.issparse(matrix):
            raise TypeError(f"{name} must be a scipy.sparse matrix, got {type(matrix).__name__}")
        if matrix.format != "csr":
            matrix = matrix.tocsr()
        return cls(matrix.indptr, matrix.indices, tuple(int(d) for d in matrix.shape), name=name)

    @classmethod
    def from_mask(cls, mask):
        """Pattern of the ``True`` entries of a dense boolean array."""
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"mask must be two-dimensional, got shape {mask.shape}")
        indptr = np.zeros(mask.shape[0] + 1, dtype=np.int64)
        np.cumsum(mask.sum(axis=1), out=indptr[1:])
        return cls(indptr, np.nonzero(mask)[1], mask.shape)

    # -- queries --------------------------------------------------------------
    @property
    def nnz(self):
        """Number of stored entries."""
        return int(self.indices.shape[0])

    @property
    def density(self):
        """Stored entries over ``n_rows * n_cols`` (0 for an empty shape)."""
        total = self.shape[0] * self.shape[1]
        return self.nnz / total if total else 0.0

    def rows(self):
        """Row index of every stored entry, in CSR order."""
        return np.repeat(np.arange(self.shape[0], dtype=np.int32), np.diff(self.indptr))

    def to_dense(self):
        """Dense boolean array, ``True`` at stored entries."""
        out = np.zeros(self.shape, dtype=bool)
        out[self.rows(), self.indices] = True
        return out

    def to_scipy(self, data=None):
        """``scipy.sparse.csr_matrix`` with this structure and ``data`` as its stored values, in CSR order.

        The matrix has the dtype of ``data`` (float64 ones if ``data`` is None)
        and its own copies of the arrays.
        """
        import scipy.sparse as sp

        data = np.ones(self.nnz) if data is None else np.array(data)
        if data.shape != (self.nnz,):
            raise ValueError(f"data must have shape (nnz,) = ({self.nnz},), got {data.shape}")
        return sp.csr_matrix((data, self.indices.copy(), self.indptr.copy()), shape=self.shape)

    def __eq__(self, other):
        if not isinstance(other, Pattern):
            return NotImplemented
        return (
            self.shape == other.shape
            and np.array_equal(self.indptr, other.indptr)
            and np.array_equal(self.indices, other.indices)
        )

    def __hash__(self):
        return hash((self.shape, self.indptr.tobytes(), self.indices.tobytes()))

    def __repr__(self):
        return f"Pattern(shape={self.shape}, nnz={self.nnz}, density={self.density:.3g})"
