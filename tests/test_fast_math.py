"""The cells' compiled tanh agrees with libm to a couple of ulp, in both dtypes."""

import numba
import numpy as np
import pytest

from sparse_rtrl._cell_kernels import fast_tanh


@numba.njit
def _apply(x, out):
    for i in range(x.shape[0]):
        out[i] = fast_tanh(x[i])


def _grid(dtype):
    tiny = np.geomspace(np.finfo(dtype).tiny, 1.0, 20001)
    x = np.concatenate([np.linspace(-25, 25, 200001), tiny, -tiny,
                        [0.0, -0.0, 0.625, -0.625, 400.0, -400.0]]).astype(dtype)
    return np.concatenate([x, np.nextafter(x, dtype(np.inf)), np.nextafter(x, dtype(-np.inf))])


@pytest.mark.parametrize("dtype, max_ulp", [(np.float64, 2), (np.float32, 2)])
def test_fast_tanh_is_within_two_ulp_of_libm(dtype, max_ulp):
    x = _grid(dtype)
    out = np.empty_like(x)
    _apply(x, out)
    assert out.dtype == dtype
    ref = np.tanh(x.astype(np.float64)).astype(dtype)
    ulp = np.spacing(np.abs(ref))
    err = np.abs(out.astype(np.float64) - ref.astype(np.float64)) / np.maximum(ulp, np.finfo(dtype).smallest_subnormal)
    assert err.max() <= max_ulp, (err.max(), x[err.argmax()])
    assert np.all(np.sign(out) == np.sign(x))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_tanh_special_values(dtype):
    x = np.array([np.inf, -np.inf, np.nan], dtype=dtype)
    out = np.empty_like(x)
    _apply(x, out)
    assert out[0] == 1.0 and out[1] == -1.0 and np.isnan(out[2])
