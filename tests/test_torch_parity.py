"""Parity with torch.nn.functional (float64, tight), forward and backward."""
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import reference as R  # noqa: E402

from cconv import ops  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-10)


def T(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _np(t):
    return t.detach().numpy()


def _close(got, ref):
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, **TOL)


# ---------------------------------------------------------------- conv2d

CONV2D_GRID = list(itertools.product(
    [1, 2, (2, 3)],                                   # stride
    [0, 1, (2, 1), ((0, 2), (1, 0)), "same", "valid"],  # padding
    [1, (2, 1)],                                      # dilation
    [1, 2, 4],                                        # groups (4: depthwise, multiplier 2)
))


@pytest.mark.parametrize("stride,padding,dilation,groups", CONV2D_GRID)
def test_conv2d_vs_torch(rng, stride, padding, dilation, groups):
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((8, 4 // groups, 3, 2))
    b = rng.standard_normal(8)
    top, bottom, left, right = R.conv2d_pads(padding, (9, 8), (3, 2), stride, dilation)
    xt, wt, bt = T(x), T(w), T(b)
    # torch's padding argument is symmetric only (and "same" needs stride 1): pad by hand
    yt = F.conv2d(F.pad(xt, (left, right, top, bottom)), wt, bt, stride, 0, dilation, groups)
    y = ops.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    _close(y, _np(yt))
    g = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(g))
    gx, gw, gb = ops.conv2d_backward(g, x, w, stride=stride, padding=padding,
                                     dilation=dilation, groups=groups)
    _close(gx, xt.grad.numpy())
    _close(gw, wt.grad.numpy())
    _close(gb, bt.grad.numpy())


@pytest.mark.parametrize("k", [(3, 3), (4, 2), (1, 5)])
@pytest.mark.parametrize("dilation", [1, 2])
def test_conv2d_same_equals_torch_same(rng, k, dilation):
    """At stride 1 our "same" is torch's (extra padding at the bottom/right)."""
    x = rng.standard_normal((1, 3, 7, 8))
    w = rng.standard_normal((2, 3) + k)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about even kernels
        ref = _np(F.conv2d(T(x), T(w), padding="same", dilation=dilation))
    _close(ops.conv2d(x, w, padding="same", dilation=dilation), ref)


def test_conv2d_big_vs_torch(rng):
    x = rng.standard_normal((2, 16, 20, 20))
    w = rng.standard_normal((32, 16, 3, 3))
    xt, wt = T(x), T(w)
    yt = F.conv2d(xt, wt, padding=1)
    _close(ops.conv2d(x, w, padding=1), _np(yt))
    g = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(g))
    gx, gw, _ = ops.conv2d_backward(g, x, w, padding=1)
    _close(gx, xt.grad.numpy())
    _close(gw, wt.grad.numpy())


# ---------------------------------------------------------------- conv1d

CONV1D_GRID = list(itertools.product([1, 2, 3], [0, 2, (0, 3), "same", "valid"], [1, 2],
                                     [1, 2, 4]))


@pytest.mark.parametrize("stride,padding,dilation,groups", CONV1D_GRID)
def test_conv1d_vs_torch(rng, stride, padding, dilation, groups):
    x = rng.standard_normal((2, 4, 13))
    w = rng.standard_normal((8, 4 // groups, 4))
    b = rng.standard_normal(8)
    left, right = R.conv1d_pads(padding, 13, 4, stride, dilation)
    xt, wt, bt = T(x), T(w), T(b)
    yt = F.conv1d(F.pad(xt, (left, right)), wt, bt, stride, 0, dilation, groups)
    y = ops.conv1d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    _close(y, _np(yt))
    g = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(g))
    gx, gw, gb = ops.conv1d_backward(g, x, w, stride=stride, padding=padding,
                                     dilation=dilation, groups=groups)
    _close(gx, xt.grad.numpy())
    _close(gw, wt.grad.numpy())
    _close(gb, bt.grad.numpy())


# ---------------------------------------------------------------- pooling

def _pool_grid(kernels, dilations):
    grid = []
    for k, s, p, d, cm in itertools.product(kernels, [None, 1, 2, 3], [0, 1], dilations,
                                            [False, True]):
        if p <= min(np.atleast_1d(k)) // 2:
            grid.append((k, s, p, d, cm))
    return grid


MAX2D_GRID = _pool_grid([1, 2, 3, (3, 2)], [1, 2])
AVG2D_GRID = _pool_grid([1, 2, 3, (3, 2)], [1])


@pytest.mark.parametrize("k,s,p,d,ceil_mode", MAX2D_GRID)
def test_max_pool2d_vs_torch(rng, k, s, p, d, ceil_mode):
    x = rng.permutation(2 * 3 * 9 * 10).reshape(2, 3, 9, 10) * 0.25  # no ties
    xt = T(x)
    yt, it = F.max_pool2d(xt, k, s, p, d, ceil_mode, return_indices=True)
    y, idx = ops.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, _np(yt))
    np.testing.assert_array_equal(idx, it.numpy())
    g = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(g))
    _close(ops.max_pool2d_backward(g, x, k, s, p, d, ceil_mode), xt.grad.numpy())
    _close(ops.max_pool2d_backward(g, x, k, s, p, d, ceil_mode, indices=idx), xt.grad.numpy())


def test_max_pool2d_ties_vs_torch(rng):
    x = rng.integers(0, 3, (2, 3, 8, 9)).astype(np.float64)  # many ties
    for k, s, p in [(2, 1, 0), (3, 2, 1), (3, 1, 1)]:
        xt = T(x)
        yt, it = F.max_pool2d(xt, k, s, p, return_indices=True)
        y, idx = ops.max_pool2d(x, k, s, p, return_indices=True)
        np.testing.assert_array_equal(y, _np(yt))
        np.testing.assert_array_equal(idx, it.numpy())
        g = rng.standard_normal(y.shape)
        yt.backward(torch.tensor(g))
        _close(ops.max_pool2d_backward(g, x, k, s, p), xt.grad.numpy())


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("k,s,p,d,ceil_mode", AVG2D_GRID)
def test_avg_pool2d_vs_torch(rng, k, s, p, d, ceil_mode, count_include_pad):
    x = rng.standard_normal((2, 3, 9, 10))
    xt = T(x)
    yt = F.avg_pool2d(xt, k, s, p, ceil_mode, count_include_pad)
    y = ops.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad)
    _close(y, _np(yt))
    g = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(g))
    _close(ops.avg_pool2d_backward(g, x.shape, k, s, p, ceil_mode, count_include_pad),
           xt.grad.numpy())


MAX1D_GRID = _pool_grid([1, 2, 3, 4], [1, 2])
AVG1D_GRID = _pool_grid([1, 2, 3, 4], [1])


@pytest.mark.parametrize("k,s,p,d,ceil_mode", MAX1D_GRID)
def test_max_pool1d_vs_torch(rng, k, s, p, d, ceil_mode):
    x = rng.permutation(2 * 3 * 13).reshape(2, 3, 13) * 0.25
    xt = T(x)
    yt, it = F.max_pool1d(xt, k, s, p, d, ceil_mode, return_indices=True)
    y, idx = ops.max_pool1d(x, k, s, p, d, ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, _np(yt))
    np.testing.assert_array_equal(idx, it.numpy())
    g = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(g))
    _close(ops.max_pool1d_backward(g, x, k, s, p, d, ceil_mode), xt.grad.numpy())


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("k,s,p,d,ceil_mode", AVG1D_GRID)
def test_avg_pool1d_vs_torch(rng, k, s, p, d, ceil_mode, count_include_pad):
    x = rng.standard_normal((2, 3, 13))
    xt = T(x)
    yt = F.avg_pool1d(xt, k, s, p, ceil_mode, count_include_pad)
    y = ops.avg_pool1d(x, k, s, p, ceil_mode, count_include_pad)
    _close(y, _np(yt))
    g = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(g))
    _close(ops.avg_pool1d_backward(g, x.shape, k, s, p, ceil_mode, count_include_pad),
           xt.grad.numpy())


def test_global_avg_pool_vs_torch(rng):
    x = rng.standard_normal((2, 3, 5, 7))
    xt = T(x)
    yt = F.adaptive_avg_pool2d(xt, 1)
    _close(ops.global_avg_pool2d(x), _np(yt))
    g = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(g))
    _close(ops.global_avg_pool2d_backward(g, x.shape), xt.grad.numpy())
    x1 = rng.standard_normal((2, 3, 11))
    xt1 = T(x1)
    yt1 = F.adaptive_avg_pool1d(xt1, 1)
    _close(ops.global_avg_pool1d(x1), _np(yt1))
    g1 = rng.standard_normal(yt1.shape)
    yt1.backward(torch.tensor(g1))
    _close(ops.global_avg_pool1d_backward(g1, x1.shape), xt1.grad.numpy())


@pytest.mark.parametrize("k,p", [(3, 2), (2, 2), (4, 3)])
def test_pool_padding_limit_like_torch(k, p):
    """torch refuses padding > kernel_size // 2; so does cconv (ValueError)."""
    x = np.ones((1, 1, 8, 8))
    with pytest.raises(RuntimeError):
        F.max_pool2d(torch.tensor(x), k, 1, p)
    with pytest.raises(ValueError, match="padding"):
        ops.max_pool2d(x, k, 1, p)
    with pytest.raises(ValueError, match="padding"):
        ops.avg_pool2d(x, k, 1, p)
