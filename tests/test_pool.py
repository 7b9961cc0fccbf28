"""Max / average / global pooling, 1-D and 2-D, forward and backward, vs the reference."""
import numpy as np
import pytest

import reference as R
from conftest import assert_close, check_numeric_grad

from cconv import ops

DTYPES = [np.float32, np.float64]

# (x shape, keyword arguments); max pooling takes all of them
POOL2D_CASES = [
    ((2, 3, 8, 8), {"kernel_size": 2}),
    ((1, 3, 8, 8), {"kernel_size": 2}),
    ((0, 3, 8, 8), {"kernel_size": 2}),
    ((2, 3, 7, 9), {"kernel_size": 3}),
    ((2, 3, 7, 9), {"kernel_size": 3, "stride": 1}),
    ((2, 3, 7, 9), {"kernel_size": 3, "stride": 2}),
    ((2, 3, 7, 9), {"kernel_size": (3, 2), "stride": (2, 3)}),
    ((2, 3, 7, 9), {"kernel_size": 2, "stride": 3}),  # gaps between windows
    ((2, 3, 7, 9), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((2, 3, 7, 9), {"kernel_size": (3, 5), "stride": 2, "padding": (1, 2)}),
    ((2, 3, 7, 9), {"kernel_size": (2, 4), "stride": (1, 2), "padding": (0, 2)}),
    ((2, 3, 7, 9), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ((2, 3, 8, 8), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ((2, 3, 7, 9), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((2, 3, 6, 6), {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((2, 3, 5, 5), {"kernel_size": 2, "stride": 3, "padding": 1, "ceil_mode": True}),
    ((2, 3, 10, 11), {"kernel_size": 2, "stride": 4, "ceil_mode": True}),
    ((2, 3, 6, 7), {"kernel_size": (6, 7)}),  # kernel == input
    ((2, 3, 6, 7), {"kernel_size": (6, 7), "padding": (1, 3)}),
    ((2, 3, 6, 7), {"kernel_size": 1}),
    ((2, 3, 6, 7), {"kernel_size": 1, "stride": 2}),
    ((2, 3, 1, 9), {"kernel_size": (1, 3), "stride": (1, 2)}),
    ((1, 1, 1, 1), {"kernel_size": 1}),
    ((1, 1, 1, 1), {"kernel_size": 2, "padding": 1}),
    ((2, 16, 20, 20), {"kernel_size": 2}),  # bigger
    ((2, 16, 33, 31), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
]

# dilation: max pooling only
MAXPOOL2D_DILATED = [
    ((2, 3, 9, 10), {"kernel_size": 3, "dilation": 2}),
    ((2, 3, 9, 10), {"kernel_size": 3, "stride": 1, "dilation": (2, 3), "padding": 1}),
    ((2, 3, 9, 10), {"kernel_size": 2, "stride": 2, "dilation": 2, "ceil_mode": True}),
    ((2, 3, 10, 10), {"kernel_size": 3, "stride": 2, "dilation": 2, "padding": 1,
                      "ceil_mode": True}),
]

POOL1D_CASES = [
    ((2, 3, 10), {"kernel_size": 2}),
    ((1, 3, 10), {"kernel_size": 2}),
    ((0, 3, 10), {"kernel_size": 3, "stride": 1}),
    ((2, 3, 11), {"kernel_size": 3, "stride": 2}),
    ((2, 3, 11), {"kernel_size": 2, "stride": 3}),
    ((2, 3, 11), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((2, 3, 11), {"kernel_size": 5, "stride": 2, "padding": 2}),
    ((2, 3, 11), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ((2, 3, 10), {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((2, 3, 10), {"kernel_size": 3, "stride": 3, "padding": 1, "ceil_mode": True}),
    ((2, 3, 7), {"kernel_size": 7}),
    ((2, 3, 7), {"kernel_size": 1}),
    ((2, 16, 300), {"kernel_size": 3, "stride": 2, "padding": 1}),
]

MAXPOOL1D_DILATED = [
    ((2, 3, 12), {"kernel_size": 3, "dilation": 2}),
    ((2, 3, 12), {"kernel_size": 3, "stride": 1, "dilation": 3, "padding": 1}),
    ((2, 3, 12), {"kernel_size": 2, "stride": 3, "dilation": 2, "ceil_mode": True}),
]


def _ids(cases):
    return [f"{xs}-{kw}" for xs, kw in cases]


def distinct_values(rng, shape, dtype=np.float64):
    """Values without ties (so the argmax is unique), spaced 0.5 apart."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 0.5 - n * 0.25).astype(dtype)


def _avg_kw(kw, count_include_pad):
    return dict(kw, count_include_pad=count_include_pad)


# ---------------------------------------------------------------- max pooling

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,kw", POOL2D_CASES + MAXPOOL2D_DILATED,
                         ids=_ids(POOL2D_CASES + MAXPOOL2D_DILATED))
def test_max_pool2d(rng, nthreads, dtype, xs, kw):
    x = rng.standard_normal(xs).astype(dtype)
    ref, ref_idx = R.max_pool2d(x, return_indices=True, **kw)
    y = ops.max_pool2d(x, **kw)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ref.astype(dtype))
    y2, idx = ops.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(y2, y)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,kw", POOL2D_CASES + MAXPOOL2D_DILATED,
                         ids=_ids(POOL2D_CASES + MAXPOOL2D_DILATED))
def test_max_pool2d_backward(rng, nthreads, dtype, xs, kw):
    x = rng.standard_normal(xs).astype(dtype)
    ref_y, idx = R.max_pool2d(x, return_indices=True, **kw)
    gy = rng.standard_normal(ref_y.shape).astype(dtype)
    ref = R.max_pool2d_backward(gy, x, **kw)
    assert_close(ops.max_pool2d_backward(gy, x, **kw), ref, dtype)
    _, ops_idx = ops.max_pool2d(x, return_indices=True, **kw)
    assert_close(ops.max_pool2d_backward(gy, x, indices=ops_idx, **kw), ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,kw", POOL1D_CASES + MAXPOOL1D_DILATED,
                         ids=_ids(POOL1D_CASES + MAXPOOL1D_DILATED))
def test_max_pool1d(rng, nthreads, dtype, xs, kw):
    x = rng.standard_normal(xs).astype(dtype)
    ref, ref_idx = R.max_pool1d(x, return_indices=True, **kw)
    y = ops.max_pool1d(x, **kw)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ref.astype(dtype))
    y2, idx = ops.max_pool1d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(y2, y)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,kw", POOL1D_CASES + MAXPOOL1D_DILATED,
                         ids=_ids(POOL1D_CASES + MAXPOOL1D_DILATED))
def test_max_pool1d_backward(rng, nthreads, dtype, xs, kw):
    x = rng.standard_normal(xs).astype(dtype)
    ref_y, idx = R.max_pool1d(x, return_indices=True, **kw)
    gy = rng.standard_normal(ref_y.shape).astype(dtype)
    ref = R.max_pool1d_backward(gy, x, **kw)
    assert_close(ops.max_pool1d_backward(gy, x, **kw), ref, dtype)
    _, ops_idx = ops.max_pool1d(x, return_indices=True, **kw)
    assert_close(ops.max_pool1d_backward(gy, x, indices=ops_idx, **kw), ref, dtype)


def test_max_pool2d_ties_go_to_first_in_window_order():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = 5.0
    x[0, 0, 2, 1] = 5.0  # same value, later in row-major order
    y, idx = ops.max_pool2d(x, 3, stride=1, return_indices=True)
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), 5.0))
    # windows (0,0),(0,1),(1,0) hold (1,2) first; window (1,1) starts at (1,1): (1,2) first
    np.testing.assert_array_equal(idx, np.full((1, 1, 2, 2), 1 * 4 + 2))
    gx = ops.max_pool2d_backward(np.ones((1, 1, 2, 2)), x, 3, stride=1)
    expected = np.zeros_like(x)
    expected[0, 0, 1, 2] = 4.0
    np.testing.assert_array_equal(gx, expected)


def test_max_pool2d_constant_input_ties():
    x = np.ones((1, 2, 4, 5))
    y, idx = ops.max_pool2d(x, 2, stride=2, padding=1, return_indices=True)
    ref_y, ref_idx = R.max_pool2d(x, 2, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(
        ops.max_pool2d_backward(np.arange(18.0).reshape(y.shape), x, 2, 2, 1),
        R.max_pool2d_backward(np.arange(18.0).reshape(y.shape), x, 2, 2, 1))


def test_max_pool2d_padding_is_minus_infinity():
    """Negative inputs are not beaten by the padding."""
    x = -1.0 - np.arange(9.0).reshape(1, 1, 3, 3)
    y = ops.max_pool2d(x, 3, stride=1, padding=1)
    np.testing.assert_array_equal(y, R.max_pool2d(x, 3, stride=1, padding=1))
    assert np.all(y < 0)


def test_max_pool2d_overlapping_windows_accumulate(rng):
    x = distinct_values(rng, (1, 1, 5, 5))
    x[0, 0, 2, 2] = 100.0  # the max of every 3x3 stride-1 window
    gx = ops.max_pool2d_backward(np.ones((1, 1, 3, 3)), x, 3, stride=1)
    assert gx[0, 0, 2, 2] == 9.0 and gx.sum() == 9.0


# 2x2 stride-2 windows without padding take their own vectorised kernel, with and
# without indices; wide rows reach its vector body, odd sizes drop the last row and
# column. The other cases go through the general kernel (padding, ceil_mode, dilation).
SPECIAL_VALUE_CASES = [
    ((2, 3, 8, 8), {"kernel_size": 2}),
    ((2, 3, 7, 9), {"kernel_size": 2}),
    ((1, 2, 6, 70), {"kernel_size": 2}),
    ((2, 2, 5, 37), {"kernel_size": 2, "stride": 2}),
    ((2, 3, 7, 9), {"kernel_size": 2, "ceil_mode": True}),
    ((2, 3, 7, 9), {"kernel_size": 2, "padding": 1}),
    ((2, 3, 7, 9), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((2, 3, 9, 10), {"kernel_size": 2, "stride": 2, "dilation": 2, "ceil_mode": True}),
]


def _special_values(rng, shape, kind, dtype):
    if kind == "ties":  # few distinct values: most windows hold a tie for the max
        return rng.integers(0, 3, shape).astype(dtype)
    pool = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.0])
    # ~1 window in 5 sees a NaN: the NaN-free rows and the NaN rows both get tested
    p = np.array([0.02, 0.02, 0.08, 0.12, 0.16, 0.16, 0.16, 0.14, 0.14])
    return rng.choice(pool, size=shape, p=p).astype(dtype)


@pytest.mark.parametrize("kind", ["ties", "specials"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,kw", SPECIAL_VALUE_CASES, ids=_ids(SPECIAL_VALUE_CASES))
def test_max_pool2d_indices_ties_nan_inf(rng, nthreads, dtype, xs, kw, kind):
    """The index is the first NaN, else the first maximum, in row-major window order;
    the output is bit for bit the input element at that index."""
    x = _special_values(rng, xs, kind, dtype)
    ref_y, ref_idx = R.max_pool2d(x, return_indices=True, **kw)
    y, idx = ops.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(y, ref_y.astype(dtype))
    np.testing.assert_array_equal(ops.max_pool2d(x, **kw), y)
    n, c = xs[:2]
    picked = np.take_along_axis(x.reshape(n, c, -1), idx.reshape(n, c, -1), axis=2)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(picked.reshape(y.shape).view(bits), y.view(bits))
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_close(ops.max_pool2d_backward(gy, x, indices=idx, **kw),
                 R.max_pool2d_backward(gy, x, **kw), dtype)


# ---------------------------------------------------------------- average pooling

@pytest.mark.parametrize("count_include_pad", [True, False], ids=["incl", "excl"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,kw", POOL2D_CASES, ids=_ids(POOL2D_CASES))
def test_avg_pool2d(rng, nthreads, dtype, xs, kw, count_include_pad):
    x = rng.standard_normal(xs).astype(dtype)
    kw = _avg_kw(kw, count_include_pad)
    assert_close(ops.avg_pool2d(x, **kw), R.avg_pool2d(x, **kw), dtype)


@pytest.mark.parametrize("count_include_pad", [True, False], ids=["incl", "excl"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,kw", POOL2D_CASES, ids=_ids(POOL2D_CASES))
def test_avg_pool2d_backward(rng, nthreads, dtype, xs, kw, count_include_pad):
    kw = _avg_kw(kw, count_include_pad)
    gy = rng.standard_normal(R.avg_pool2d(np.zeros(xs), **kw).shape).astype(dtype)
    got = ops.avg_pool2d_backward(gy, xs, **kw)
    assert_close(got, R.avg_pool2d_backward(gy, xs, **kw), dtype)


@pytest.mark.parametrize("count_include_pad", [True, False], ids=["incl", "excl"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,kw", POOL1D_CASES, ids=_ids(POOL1D_CASES))
def test_avg_pool1d(rng, nthreads, dtype, xs, kw, count_include_pad):
    x = rng.standard_normal(xs).astype(dtype)
    kw = _avg_kw(kw, count_include_pad)
    assert_close(ops.avg_pool1d(x, **kw), R.avg_pool1d(x, **kw), dtype)


@pytest.mark.parametrize("count_include_pad", [True, False], ids=["incl", "excl"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,kw", POOL1D_CASES, ids=_ids(POOL1D_CASES))
def test_avg_pool1d_backward(rng, nthreads, dtype, xs, kw, count_include_pad):
    kw = _avg_kw(kw, count_include_pad)
    gy = rng.standard_normal(R.avg_pool1d(np.zeros(xs), **kw).shape).astype(dtype)
    got = ops.avg_pool1d_backward(gy, xs, **kw)
    assert_close(got, R.avg_pool1d_backward(gy, xs, **kw), dtype)


def test_avg_pool2d_divisors_by_hand():
    """3x3 ones, kernel 2, stride 2, padding 1: the windows hold 1, 2, 2 and 4 real
    elements; count_include_pad divides by 4 everywhere, else by the real count."""
    x = np.ones((1, 1, 3, 3))
    incl = ops.avg_pool2d(x, 2, stride=2, padding=1, count_include_pad=True)
    excl = ops.avg_pool2d(x, 2, stride=2, padding=1, count_include_pad=False)
    np.testing.assert_allclose(incl, [[[[0.25, 0.5], [0.5, 1.0]]]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(excl, np.ones((1, 1, 2, 2)), rtol=0, atol=1e-15)


def test_avg_pool2d_ceil_mode_partial_window_divisor():
    """ceil_mode's extra window hangs past the input (not into padding): torch divides by
    the part inside [-pad, size + pad), i.e. the real elements when pad == 0."""
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    y = ops.avg_pool2d(x, 2, stride=2, ceil_mode=True)
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0, 2, 2] == 24.0
    np.testing.assert_allclose(y[0, 0, 0, 2], (4.0 + 9.0) / 2, rtol=1e-15)


# ---------------------------------------------------------------- global pooling

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs", [(2, 3, 5, 7), (1, 1, 1, 1), (0, 3, 4, 4), (2, 64, 14, 14)])
def test_global_avg_pool2d(rng, nthreads, dtype, xs):
    x = rng.standard_normal(xs).astype(dtype)
    y = ops.global_avg_pool2d(x)
    assert y.shape == (xs[0], xs[1], 1, 1)
    assert_close(y, R.global_avg_pool2d(x), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_close(ops.global_avg_pool2d_backward(gy, xs),
                 R.global_avg_pool2d_backward(gy, xs), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs", [(2, 3, 11), (1, 1, 1), (0, 3, 4), (2, 64, 300)])
def test_global_avg_pool1d(rng, nthreads, dtype, xs):
    x = rng.standard_normal(xs).astype(dtype)
    y = ops.global_avg_pool1d(x)
    assert y.shape == (xs[0], xs[1], 1)
    assert_close(y, R.global_avg_pool1d(x), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_close(ops.global_avg_pool1d_backward(gy, xs),
                 R.global_avg_pool1d_backward(gy, xs), dtype)


# ---------------------------------------------------------------- finite differences

FD_POOL2D = [
    ((2, 2, 5, 6), {"kernel_size": 2}),
    ((1, 2, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((1, 2, 6, 7), {"kernel_size": (2, 3), "stride": 1, "padding": (1, 1)}),
]
FD_POOL1D = [
    ((2, 2, 9), {"kernel_size": 2}),
    ((1, 3, 10), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
]


def _loss(f, x, g, kw):
    return lambda: float(np.sum(f(x, **kw) * g))


@pytest.mark.parametrize("xs,kw", FD_POOL2D + [((1, 2, 9, 9), {"kernel_size": 3, "stride": 2,
                                                              "dilation": 2, "padding": 1})],
                         ids=_ids(FD_POOL2D) + ["dilated"])
def test_max_pool2d_numeric_gradient(rng, xs, kw):
    x = distinct_values(rng, xs)  # gaps of 0.5 >> eps: no argmax flips
    g = rng.standard_normal(ops.max_pool2d(x, **kw).shape)
    check_numeric_grad(_loss(ops.max_pool2d, x, g, kw), x,
                       ops.max_pool2d_backward(g, x, **kw), eps=1e-4)


@pytest.mark.parametrize("xs,kw", FD_POOL1D + [((1, 2, 12), {"kernel_size": 3, "dilation": 2})],
                         ids=_ids(FD_POOL1D) + ["dilated"])
def test_max_pool1d_numeric_gradient(rng, xs, kw):
    x = distinct_values(rng, xs)
    g = rng.standard_normal(ops.max_pool1d(x, **kw).shape)
    check_numeric_grad(_loss(ops.max_pool1d, x, g, kw), x,
                       ops.max_pool1d_backward(g, x, **kw), eps=1e-4)


@pytest.mark.parametrize("count_include_pad", [True, False], ids=["incl", "excl"])
@pytest.mark.parametrize("xs,kw", FD_POOL2D, ids=_ids(FD_POOL2D))
def test_avg_pool2d_numeric_gradient(rng, xs, kw, count_include_pad):
    kw = _avg_kw(kw, count_include_pad)
    x = rng.standard_normal(xs)
    g = rng.standard_normal(ops.avg_pool2d(x, **kw).shape)
    check_numeric_grad(_loss(ops.avg_pool2d, x, g, kw), x,
                       ops.avg_pool2d_backward(g, xs, **kw))


@pytest.mark.parametrize("count_include_pad", [True, False], ids=["incl", "excl"])
@pytest.mark.parametrize("xs,kw", FD_POOL1D, ids=_ids(FD_POOL1D))
def test_avg_pool1d_numeric_gradient(rng, xs, kw, count_include_pad):
    kw = _avg_kw(kw, count_include_pad)
    x = rng.standard_normal(xs)
    g = rng.standard_normal(ops.avg_pool1d(x, **kw).shape)
    check_numeric_grad(_loss(ops.avg_pool1d, x, g, kw), x,
                       ops.avg_pool1d_backward(g, xs, **kw))


def test_global_avg_pool_numeric_gradient(rng):
    x2 = rng.standard_normal((2, 3, 4, 5))
    g2 = rng.standard_normal((2, 3, 1, 1))
    check_numeric_grad(lambda: float(np.sum(ops.global_avg_pool2d(x2) * g2)), x2,
                       ops.global_avg_pool2d_backward(g2, x2.shape))
    x1 = rng.standard_normal((2, 3, 7))
    g1 = rng.standard_normal((2, 3, 1))
    check_numeric_grad(lambda: float(np.sum(ops.global_avg_pool1d(x1) * g1)), x1,
                       ops.global_avg_pool1d_backward(g1, x1.shape))


def test_reference_pool_gradients_are_consistent(rng):
    """The reference's backward passes agree with its forward (guards the spec)."""
    xs, kw = FD_POOL2D[1]
    x = distinct_values(rng, xs)
    g = rng.standard_normal(R.max_pool2d(x, **kw).shape)
    check_numeric_grad(_loss(R.max_pool2d, x, g, kw), x, R.max_pool2d_backward(g, x, **kw),
                       eps=1e-4)
    kw = _avg_kw(kw, False)
    check_numeric_grad(_loss(R.avg_pool2d, x, g, kw), x, R.avg_pool2d_backward(g, xs, **kw))


# caller-given indices: the 2x2 / stride-2 backward writes each plane in one
# pass only while every index lies in its own window; others take the scatter
@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2}])
def test_max_pool2d_backward_routes_any_in_plane_index(rng, nthreads, kw):
    x = rng.standard_normal((2, 3, 9, 10))
    y, idx = ops.max_pool2d(x, return_indices=True, **kw)
    idx = idx.copy()
    idx[0, 1, 0, 0] = idx[0, 1, -1, -1]           # another window's element
    idx[1, 2, 1, 2] = 89                           # the plane's last element
    idx[1, 0, 2, 3] = -1                           # "all padding": no gradient
    gy = rng.standard_normal(y.shape)
    want = np.zeros((2, 3, 90))
    for n in range(2):
        for c in range(3):
            keep = idx[n, c].ravel() >= 0
            np.add.at(want[n, c], idx[n, c].ravel()[keep], gy[n, c].ravel()[keep])
    got = ops.max_pool2d_backward(gy, x, indices=idx, **kw)
    assert_close(got, want.reshape(x.shape), np.float64)


@pytest.mark.parametrize("bad", [-2, 90, 10**12])
@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2}])
def test_max_pool2d_backward_rejects_indices_outside_the_plane(rng, kw, bad):
    x = rng.standard_normal((2, 3, 9, 10))
    y, idx = ops.max_pool2d(x, return_indices=True, **kw)
    idx = idx.copy()
    idx[1, 1, 0, 1] = bad
    with pytest.raises(ValueError, match=r"indices must lie in \[-1, 90\).*got values in"):
        ops.max_pool2d_backward(np.ones(y.shape), x, indices=idx, **kw)
