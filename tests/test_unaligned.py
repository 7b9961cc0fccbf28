"""Arrays whose data is not aligned to their item size (np.frombuffer at an odd
offset: what a network or file buffer gives) are accepted and give the same
results as aligned copies."""
import numpy as np
import pytest

import cconv
from cconv import filters, linalg, nn, ops


def unaligned(a):
    raw = bytearray(a.nbytes + 1)
    out = np.frombuffer(memoryview(raw)[1:], dtype=a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_accept_unaligned(x, dtype):
    x = x.astype(dtype)
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(dtype)
    xu, wu = unaligned(x), unaligned(w)
    np.testing.assert_array_equal(ops.conv2d(xu, wu, padding=1), ops.conv2d(x, w, padding=1))
    np.testing.assert_array_equal(ops.max_pool2d(xu, 2), ops.max_pool2d(x, 2))
    np.testing.assert_array_equal(ops.avg_pool2d(xu, 3, 2), ops.avg_pool2d(x, 3, 2))
    g = np.ones_like(ops.conv2d(x, w))
    for got, want in zip(ops.conv2d_backward(unaligned(g), xu, wu), ops.conv2d_backward(g, x, w)):
        np.testing.assert_array_equal(got, want)


def test_net_and_filters_accept_unaligned(x):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(196, 5)).build((3, 9, 9), seed=0)
    np.testing.assert_array_equal(net(unaligned(x)), net(x))
    img = x[0, 0]
    np.testing.assert_array_equal(filters.filter2d(unaligned(img), filters.blur()),
                                  filters.filter2d(img, filters.blur()))


def test_eigh_accepts_unaligned():
    a = np.random.default_rng(2).standard_normal((6, 6))
    a = a + a.T
    w_u, _ = linalg.eigh(unaligned(a))
    np.testing.assert_allclose(w_u, np.linalg.eigvalsh(a), rtol=1e-12, atol=1e-12)
