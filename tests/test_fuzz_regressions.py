"""Bugs the fuzzers found, pinned as plain tests (each failed before its fix)."""
import numpy as np
import pytest

from cconv import nn, ops


@pytest.mark.parametrize("stride", [2**63, 2**64, 10**30])
def test_huge_stride_is_a_value_error_not_an_overflow(stride):
    # was: OverflowError "Python int too large to convert to C long" from the Cython layer
    x, w = np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match="stride must be <= "):
        ops.conv2d(x, w, stride=stride)
    with pytest.raises(ValueError, match="stride must be <= "):
        ops.max_pool2d(x, 2, stride=stride)


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.LeakyReLU(0.1), nn.Sigmoid(), nn.Tanh(),
                                   nn.HardSigmoid(), nn.HardSwish()], ids=repr)
def test_activations_take_big_endian_input(layer):
    # was: ReLU raised numpy's TypeError about byte order in dtype= arguments
    x = np.linspace(-4, 4, 24).reshape(2, 3, 4)
    want = layer.forward(x, training=True)
    got = layer.forward(x.astype(">f8"), training=True)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert layer.backward(np.ones(x.shape)).shape == x.shape
