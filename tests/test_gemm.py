"""gemm: alpha * op(a) @ op(b) + beta * c, against the reference."""
import re

import numpy as np
import pytest

import reference as R
from conftest import assert_close

from cconv import ops

DTYPES = [np.float32, np.float64]

# (M, N, K): tiny, odd, and sizes past typical micro-kernel/block edges
SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 4), (3, 4, 1), (7, 9, 5), (16, 16, 16),
          (17, 33, 65), (64, 48, 100), (129, 70, 257)]


def _op_shape(rows, cols, trans):
    return (cols, rows) if trans else (rows, cols)


@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mnk", SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in SHAPES])
def test_gemm(rng, nthreads, dtype, mnk, trans_a, trans_b):
    m, n, k = mnk
    a = rng.standard_normal(_op_shape(m, k, trans_a)).astype(dtype)
    b = rng.standard_normal(_op_shape(k, n, trans_b)).astype(dtype)
    got = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    assert_close(got, R.gemm(a, b, trans_a, trans_b), dtype)


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (2.5, 0.0), (-0.5, 2.0), (0.0, 1.0),
                                        (1.0, -1.0)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_alpha_beta(rng, dtype, alpha, beta):
    a = rng.standard_normal((13, 9)).astype(dtype)
    b = rng.standard_normal((9, 11)).astype(dtype)
    c = rng.standard_normal((13, 11)).astype(dtype)
    c_before = c.copy()
    got = ops.gemm(a, b, alpha=alpha, beta=beta, c=c)
    assert_close(got, R.gemm(a, b, alpha=alpha, beta=beta, c=c), dtype)
    np.testing.assert_array_equal(c, c_before)  # c is an input, not overwritten


@pytest.mark.parametrize("trans", [(False, True), (True, False), (True, True)])
def test_gemm_alpha_beta_transposed(rng, trans):
    ta, tb = trans
    a = rng.standard_normal(_op_shape(6, 4, ta))
    b = rng.standard_normal(_op_shape(4, 5, tb))
    c = rng.standard_normal((6, 5))
    got = ops.gemm(a, b, trans_a=ta, trans_b=tb, alpha=0.7, beta=-1.3, c=c)
    assert_close(got, R.gemm(a, b, ta, tb, 0.7, -1.3, c), np.float64)


def test_gemm_beta_zero_ignores_c_contents(rng):
    """beta == 0 means c is not read (BLAS convention): NaN in c does not leak."""
    a = rng.standard_normal((4, 3))
    b = rng.standard_normal((3, 5))
    c = np.full((4, 5), np.nan)
    got = ops.gemm(a, b, beta=0.0, c=c)
    assert_close(got, a @ b, np.float64)


def test_gemm_zero_inner_dimension():
    """K == 0 is a valid empty sum only if the implementation accepts it; if it does,
    the result must be zeros (or beta * c)."""
    a = np.zeros((3, 0))
    b = np.zeros((0, 4))
    try:
        got = ops.gemm(a, b)
    except ValueError as e:
        assert re.search(r"\b(a|b)\b", str(e)), str(e)
    else:
        np.testing.assert_array_equal(got, np.zeros((3, 4)))


def test_gemm_identity(rng):
    a = rng.standard_normal((8, 8))
    np.testing.assert_array_equal(ops.gemm(a, np.eye(8)), a)
    np.testing.assert_array_equal(ops.gemm(np.eye(8), a, trans_b=True), a.T)


def test_gemm_dtypes(rng):
    a32 = rng.standard_normal((4, 3)).astype(np.float32)
    b64 = rng.standard_normal((3, 2))
    assert ops.gemm(a32, b64).dtype == np.float64
    assert ops.gemm(a32, a32.T.copy()).dtype == np.float32
    ai = np.arange(12).reshape(4, 3)
    bi = np.arange(6).reshape(3, 2)
    got = ops.gemm(ai, bi)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, (ai @ bi).astype(np.float64))
    h = ops.gemm(a32.astype(np.float16), a32.T.astype(np.float16))
    assert h.dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_non_contiguous(rng, dtype):
    base_a = rng.standard_normal((20, 30)).astype(dtype)
    base_b = rng.standard_normal((30, 24)).astype(dtype)
    views = [
        (base_a[::2, ::3], base_b[::3, ::2]),  # strided
        (base_a[::-1, ::-1][:10, :10], base_b[::-1][:10, :12]),  # negative strides
        (np.asfortranarray(base_a), np.asfortranarray(base_b)),
        (base_a.T, base_b.T),  # transposed views: use trans flags to match
    ]
    for a, b in views[:3]:
        assert_close(ops.gemm(a, b), R.gemm(np.ascontiguousarray(a), np.ascontiguousarray(b)),
                     dtype)
    a, b = views[3]
    assert_close(ops.gemm(a, b, trans_a=True, trans_b=True), R.gemm(base_a, base_b), dtype)
