"""Hypothesis property tests: algebra of convolution, parity with scipy, equivariance."""
import numpy as np
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as R

from cconv import ops

SETTINGS = settings(max_examples=40, deadline=None)
MODES = ["full", "same", "valid"]

seeds = st.integers(0, 2**32 - 1)
len_1d = st.integers(1, 12)
shape_2d = st.tuples(st.integers(1, 7), st.integers(1, 7))


def _arrays(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def _close(a, b, tol=1e-10):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)


def _valid_ok(sa, sv):
    """scipy's rule for valid mode: one array at least as large as the other in every axis."""
    return all(x >= y for x, y in zip(sa, sv)) or all(y >= x for x, y in zip(sa, sv))


# ---------------------------------------------------------------- algebra

@SETTINGS
@given(seeds, len_1d, len_1d)
def test_convolve_commutative_1d(seed, na, nv):
    a, v = _arrays(seed, na, nv)
    _close(ops.convolve(a, v), ops.convolve(v, a))


@SETTINGS
@given(seeds, shape_2d, shape_2d)
def test_convolve_commutative_2d(seed, sa, sv):
    a, v = _arrays(seed, sa, sv)
    _close(ops.convolve(a, v), ops.convolve(v, a))


@SETTINGS
@given(seeds, st.one_of(len_1d.map(lambda n: (n,)), shape_2d),
       st.floats(-3, 3), st.floats(-3, 3), st.sampled_from(MODES))
def test_convolve_linear(seed, shape, l1, l2, mode):
    kshape = tuple(max(1, s // 2) for s in shape)
    a, b, c = _arrays(seed, shape, kshape, kshape)
    lhs = ops.convolve(a, l1 * b + l2 * c, mode=mode)
    rhs = l1 * ops.convolve(a, b, mode=mode) + l2 * ops.convolve(a, c, mode=mode)
    _close(lhs, rhs, 1e-9)


@SETTINGS
@given(seeds, st.one_of(st.tuples(len_1d, len_1d).map(lambda t: ((t[0],), (t[1],))),
                        st.tuples(shape_2d, shape_2d)),
       st.sampled_from(MODES))
def test_convolve_is_correlate_with_flipped_kernel(seed, shapes, mode):
    sa, sv = shapes
    if mode == "valid" and not _valid_ok(sa, sv):
        return
    a, v = _arrays(seed, sa, sv)
    flipped = v[(slice(None, None, -1),) * v.ndim]
    _close(ops.convolve(a, v, mode=mode), ops.correlate(a, flipped, mode=mode))


# ---------------------------------------------------------------- scipy parity

@SETTINGS
@given(seeds, len_1d, len_1d, st.sampled_from(MODES), st.sampled_from(["convolve", "correlate"]),
       st.sampled_from([np.float32, np.float64]))
def test_scipy_parity_1d(seed, na, nv, mode, name, dtype):
    a, v = (x.astype(dtype) for x in _arrays(seed, na, nv))
    ref = getattr(scipy.signal, name)(a.astype(np.float64), v.astype(np.float64), mode=mode,
                                      method="direct")
    got = getattr(ops, name)(a, v, mode=mode)
    assert got.dtype == dtype
    _close(got, ref, 1e-10 if dtype == np.float64 else 1e-4)


@SETTINGS
@given(seeds, shape_2d, shape_2d, st.sampled_from(MODES),
       st.sampled_from(["convolve", "correlate"]))
def test_scipy_parity_2d(seed, sa, sv, mode, name):
    a, v = _arrays(seed, sa, sv)
    got_error = ref_error = None
    try:
        ref = getattr(scipy.signal, name)(a, v, mode=mode, method="direct")
    except ValueError as e:
        ref_error = e
    try:
        got = getattr(ops, name)(a, v, mode=mode)
    except ValueError as e:
        got_error = e
    assert (got_error is None) == (ref_error is None), (got_error, ref_error)
    if ref_error is None:
        _close(got, ref)


# ---------------------------------------------------------------- equivariance

@SETTINGS
@given(seeds, st.integers(0, 3), st.integers(0, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2), st.integers(1, 2), st.integers(1, 3))
def test_conv2d_translation_equivariance(seed, dy, dx, kh, kw, pad, dil, groups):
    """Shifting the input by (dy, dx) shifts a stride-1 output by (dy, dx) wherever the
    receptive fields see only real input in both."""
    n, h, w = 2, 12, 13
    cin, cout = 2 * groups, 2 * groups
    x, wt, b = _arrays(seed, (n, cin, h, w), (cout, cin // groups, kh, kw), (cout,))
    shifted = np.zeros_like(x)
    shifted[:, :, dy:, dx:] = x[:, :, :h - dy, :w - dx]
    y = ops.conv2d(x, wt, b, padding=pad, dilation=dil, groups=groups)
    ys = ops.conv2d(shifted, wt, b, padding=pad, dilation=dil, groups=groups)
    # output row i reads input rows i - pad + t*dil, t < kh: all in [0, h - dy)
    rows = slice(pad, h - dy + pad - dil * (kh - 1))
    cols = slice(pad, w - dx + pad - dil * (kw - 1))
    rows_s = slice(rows.start + dy, rows.stop + dy)
    cols_s = slice(cols.start + dx, cols.stop + dx)
    assert rows.stop > rows.start and cols.stop > cols.start
    _close(ys[:, :, rows_s, cols_s], y[:, :, rows, cols])


@SETTINGS
@given(seeds, st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from([0, 1, "same", "valid", ((0, 2), (1, 0))]),
       st.integers(1, 2), st.integers(1, 2))
def test_conv2d_random_configs_match_reference(seed, kh, kw, sh, sw, padding, dil, groups):
    x, wt = _arrays(seed, (2, 2 * groups, 9, 8), (3 * groups, 2, kh, kw))
    kwargs = dict(stride=(sh, sw), padding=padding, dilation=dil, groups=groups)
    _close(ops.conv2d(x, wt, **kwargs), R.conv2d(x, wt, **kwargs))
    gy = np.random.default_rng(seed + 1).standard_normal(R.conv2d(x, wt, **kwargs).shape)
    for got, ref in zip(ops.conv2d_backward(gy, x, wt, **kwargs),
                        R.conv2d_backward(gy, x, wt, **kwargs)):
        _close(got, ref)


@SETTINGS
@given(seeds, st.integers(1, 4), st.integers(1, 3), st.integers(0, 2), st.integers(1, 2),
       st.booleans(), st.booleans())
def test_pool2d_random_configs_match_reference(seed, k, s, p, d, ceil_mode, cip):
    p = min(p, k // 2)
    (x,) = _arrays(seed, (2, 2, 9, 10))
    kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil_mode)
    y, idx = ops.max_pool2d(x, dilation=d, return_indices=True, **kw)
    ry, ridx = R.max_pool2d(x, dilation=d, return_indices=True, **kw)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(idx, ridx)
    _close(ops.avg_pool2d(x, count_include_pad=cip, **kw),
           R.avg_pool2d(x, count_include_pad=cip, **kw))
