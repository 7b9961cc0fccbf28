"""Equivariance / invariance probes (notes 2.4.3) and the linear-collapse pass (2.4.2)."""
import numpy as np
import pytest

import cconv
from cconv import analysis, nn, ops
from cconv.analysis.probes import shift

RNG = np.random.default_rng(0)


def blobs(n=6, size=10):
    """Images with content in the middle and a zero border (a zero background)."""
    x = np.zeros((n, 1, size, size), np.float32)
    x[:, :, 3:size - 3, 3:size - 3] = RNG.random((n, 1, size - 6, size - 6))
    return x


def pooled_net():
    net = cconv.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Conv2d(3, 4, 3, padding="same"), nn.Tanh(), nn.Flatten(),
                           nn.Linear(100, 3))
    return net.build((1, 10, 10), seed=2)


def test_shift_fills_with_zeros():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(shift(x, 0, 1)[0, 0, 0], [0, 0, 1, 2])
    np.testing.assert_array_equal(shift(x, -1, 0)[0, 0, :, 0], [4, 8, 12, 0])
    assert not shift(x, 5, 0).any()
    np.testing.assert_array_equal(shift(x, 0, 0), x)


def test_convolutions_are_equivariant_pooling_only_at_its_stride():
    eq = analysis.equivariance_curve(pooled_net(), blobs(), shifts=range(4))
    assert eq.layers == ["0_conv2d", "1_relu", "2_maxpool2d", "3_conv2d", "4_tanh"]
    assert [j[0] for j in eq.jumps] == [1, 1, 2, 2, 2]
    for name in ("0_conv2d", "1_relu"):
        assert eq.error[name].max() < 1e-6         # every shift
    for name in ("2_maxpool2d", "3_conv2d", "4_tanh"):
        assert eq.error[name][[0, 2]].max() < 1e-6   # shifts that are multiples of 2
        assert eq.error[name][[1, 3]].min() > 1e-2   # the others are not representable
    # without re-alignment the maps do change: equivariance is not invariance
    assert eq.change["0_conv2d"][1] > 0.1
    assert "equivariance error" in eq.table()
    d = eq.to_dict()
    assert d["layers"][0]["name"] == "0_conv2d" and len(d["layers"][0]["error"]) == 4


def test_pooling_reduces_the_change_of_a_small_shift():
    net = cconv.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
    net.build((1, 12, 12), seed=0)
    x = np.zeros((8, 1, 12, 12), np.float32)
    x[:, :, 4:8, 4:8] = RNG.random((8, 1, 4, 4))
    eq = analysis.equivariance_curve(net, x, shifts=[0, 1])
    assert eq.change["2_maxpool2d"][1] < eq.change["1_relu"][1]


def test_invariance_curve():
    net = pooled_net()
    x = blobs(20)
    y = np.asarray(net(x)).argmax(axis=1)
    inv = analysis.invariance_curve(net, x, y, shifts=range(3))
    assert inv.agreement[0] == 1.0 and inv.accuracy[0] == 1.0 and inv.tv_distance[0] == 0.0
    assert inv.tv_distance[2] > 0
    assert np.all((0 <= inv.agreement) & (inv.agreement <= 1))
    assert "same class" in inv.table()
    assert analysis.invariance_curve(net, x, shifts=[0]).accuracy is None
    eq, inv2 = analysis.shift_probe(net, x, y, shifts=[0, 1])
    assert inv2.agreement[0] == 1.0 and eq.shifts.tolist() == [0, 1]


def test_probe_errors():
    net = pooled_net()
    with pytest.raises(ValueError, match="N, C, H, W"):
        analysis.equivariance_curve(net, np.zeros((1, 10, 10)))
    with pytest.raises(ValueError, match="non-negative"):
        analysis.equivariance_curve(net, blobs(), shifts=[-1])
    with pytest.raises(ValueError, match="not spatial"):
        analysis.equivariance_curve(net, blobs(), layers=["6_linear"])
    mlp = cconv.Sequential(nn.Flatten(), nn.Linear(100, 2)).build((1, 10, 10))
    with pytest.raises(ValueError, match="no layer"):
        analysis.equivariance_curve(mlp, blobs())


# ------------------------------------------------------------------ linear collapse
def test_two_convolutions_fold_into_their_convolution():
    net = cconv.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3))
    net.build((1, 9, 9)).astype(np.float64)
    folded, log = analysis.fold_linear(net)
    assert log == ["0_conv2d + 1_conv2d (conv)"] and len(folded.nodes) == 1
    kernel = folded["1_conv2d"].params["weight"][0, 0]
    w1, w2 = net[0].params["weight"][0, 0], net[1].params["weight"][0, 0]
    np.testing.assert_allclose(kernel, ops.convolve(w2, w1, mode="full"), atol=1e-14)
    x = RNG.standard_normal((3, 1, 9, 9))
    np.testing.assert_allclose(folded(x), net(x), atol=1e-13)
    # and the original is untouched
    assert len(net.nodes) == 2


def test_fold_with_channels_strides_dilation_and_batchnorm():
    net = cconv.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=2),
                           nn.Conv2d(4, 5, 2, stride=2, dilation=3), nn.BatchNorm2d(5),
                           nn.ReLU(), nn.Conv2d(5, 2, 3, padding="same"), nn.BatchNorm2d(2))
    net.build((3, 20, 20)).astype(np.float64)
    rng = np.random.default_rng(1)
    for name, a in net.named_parameters():
        if "batchnorm" in name:
            a[...] = rng.uniform(0.5, 1.5, a.shape)
    folded, log = analysis.fold_linear(net)
    assert log == ["0_conv2d + 1_conv2d (conv)", "1_conv2d + 2_batchnorm2d (BatchNorm)",
                   "4_conv2d + 5_batchnorm2d (BatchNorm)"]
    assert [type(layer).__name__ for _, layer in folded.layers()] == ["Conv2d", "ReLU",
                                                                     "Conv2d"]
    x = RNG.standard_normal((2, 3, 20, 20))
    np.testing.assert_allclose(folded(x), net(x), atol=1e-12)


def test_fold_conv1d_and_what_must_not_fold():
    net = cconv.Sequential(nn.Conv1d(2, 3, 3, padding=(1, 2)), nn.Conv1d(3, 2, 2))
    net.build((2, 10)).astype(np.float64)
    folded, log = analysis.fold_linear(net)
    x = RNG.standard_normal((3, 2, 10))
    assert len(log) == 1
    np.testing.assert_allclose(folded(x), net(x), atol=1e-13)
    # a non-linearity between, padding on the second conv, groups: nothing folds
    for layers in ([nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3)],
                   [nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3, padding=1)],
                   [nn.Conv2d(2, 2, 3, groups=2), nn.Conv2d(2, 2, 3)]):
        net = cconv.Sequential(*layers).build((layers[0].in_ch, 9, 9))
        assert analysis.fold_linear(net)[1] == []
    with pytest.raises(ValueError, match="built"):
        analysis.fold_linear(cconv.Sequential(nn.Conv2d(1, 1, 3)))


def test_compose_conv_bias():
    from cconv.analysis.fold import compose_conv

    w1 = RNG.standard_normal((2, 1, 2, 2))
    w2 = RNG.standard_normal((3, 2, 2, 2))
    b1, b2 = RNG.standard_normal(2), RNG.standard_normal(3)
    w, b = compose_conv(w1, b1, w2, b2)
    x = RNG.standard_normal((1, 1, 6, 6))
    direct = ops.conv2d(ops.conv2d(x, w1, b1), w2, b2)
    np.testing.assert_allclose(ops.conv2d(x, w, b), direct, atol=1e-12)
    with pytest.raises(ValueError, match="channels"):
        compose_conv(w1, None, RNG.standard_normal((3, 5, 2, 2)), None)
