"""Size report (notes 2.5): hand-counted LeNet numbers, padding, groups, buffers, JSON."""
import json

import numpy as np
import pytest

import cconv
from cconv import analysis, nn


def lenet5():
    net = cconv.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))
    return net.build((1, 32, 32))


def test_lenet5_by_hand():
    r = analysis.summary(lenet5())
    c1, p1, c2, p2 = r["0_conv2d"], r["2_maxpool2d"], r["3_conv2d"], r["5_maxpool2d"]
    # C1: 6 maps of 28x28, 5x5 kernels on 1 channel
    assert (c1.units, c1.weights, c1.connections) == (6 * 28 * 28, 6 * 25 + 6, 6 * 28 * 28 * 25)
    assert c1.output_shape == (6, 28, 28) and c1.receptive_field == (5, 5)
    # S2: 2x2 windows, stride 2
    assert (p1.units, p1.weights, p1.connections) == (6 * 14 * 14, 0, 6 * 14 * 14 * 4)
    assert p1.receptive_field == (6, 6)
    # C3 (fully connected to the 6 maps): 16 maps of 10x10
    assert (c2.units, c2.weights, c2.connections) == (1600, 16 * 6 * 25 + 16, 1600 * 150)
    assert c2.receptive_field == (14, 14)     # 6 + (5 - 1) * 2
    assert p2.receptive_field == (16, 16) and p2.units == 400
    fc = [r["7_linear"], r["9_linear"], r["11_linear"]]
    assert [(s.units, s.weights, s.connections) for s in fc] == [
        (120, 48120, 48000), (84, 10164, 10080), (10, 850, 840)]
    assert all(s.receptive_field == "all" for s in fc)
    # element-wise and shape layers create no units of their own
    assert r["1_relu"].units == 0 and r["6_flatten"].units == 0
    t = r.totals
    assert t["units"] == 4704 + 1176 + 1600 + 400 + 120 + 84 + 10
    assert t["weights"] == 156 + 2416 + 48120 + 10164 + 850 == 61706
    assert t["macs"] == 117600 + 240000 + 48000 + 10080 + 840 == 416520
    assert t["training_macs"] == 3 * 416520 and t["flops"] == 2 * 416520
    assert c1.training_macs == 3 * c1.connections
    # the notes' table: an FC layer with C1's input and output
    fc_eq = c1.fc_equivalent
    assert fc_eq["fc_weights"] == fc_eq["fc_connections"] == 32 * 32 * 4704
    assert fc_eq["conv_weights"] == 25 * 1 * 6          # K^2 I J
    assert fc_eq["conv_connections_textbook"] == 28 * 28 * 25 * 1 * 6   # W H K^2 I J
    assert fc_eq["uses_per_weight"] == 28 * 28          # weight sharing
    assert c1.connections > c1.weights


def test_activation_memory_and_batch_scaling():
    r = analysis.summary(lenet5())
    floats = 1024 + 2 * 4704 + 1176 + 2 * 1600 + 2 * 400 + 2 * 120 + 2 * 84 + 10
    assert r.training_activation_bytes == 4 * floats
    assert r.inference_activation_bytes == 4 * 2 * 4704      # conv1 + relu1 alive together
    r8 = analysis.summary(lenet5(), batch_size=8)
    assert r8.totals["macs"] == 8 * r.totals["macs"]
    assert r8.totals["weights"] == r.totals["weights"]
    assert r8.training_activation_bytes == 8 * r.training_activation_bytes


def test_rule_of_thumb():
    rule = analysis.summary(lenet5()).rule_of_thumb
    assert rule["holds"]
    assert rule["conv_units_share"] == pytest.approx(6304 / (6304 + 214))
    assert rule["conv_connections_share"] == pytest.approx(357600 / (357600 + 58920))
    assert rule["fc_weights_share"] == pytest.approx(59134 / (59134 + 2572))
    # a net that is nearly all fully connected breaks it
    mlp = cconv.Sequential(nn.Conv2d(1, 1, 1), nn.Flatten(), nn.Linear(64, 200),
                           nn.Linear(200, 10)).build((1, 8, 8))
    assert not analysis.summary(mlp).rule_of_thumb["holds"]


def test_padding_is_not_counted_as_connections():
    from cconv.examples.digits import build_model

    r = analysis.summary(build_model())
    c1 = r["0_conv2d"]
    # 8x8 input, 5x5 kernel, padding 2: per axis the taps inside are 3,4,5,5,5,5,4,3
    assert c1.connections == 34 * 34 * 6
    assert c1.fc_equivalent["conv_connections_textbook"] == 8 * 8 * 25 * 6
    assert r["3_conv2d"].receptive_field == (14, 14)
    assert r.rule_of_thumb["holds"]


def test_groups_strides_dilation_and_1d():
    net = cconv.Sequential(nn.Conv2d(4, 8, 3, stride=2, groups=4, dilation=2),
                           nn.GlobalAvgPool(), nn.Linear(8, 2)).build((4, 11, 11))
    r = analysis.summary(net)
    c = r["0_conv2d"]
    assert c.output_shape == (8, 4, 4)
    assert c.weights == 8 * 1 * 9 + 8 and c.connections == 8 * 16 * 9
    assert c.receptive_field == (5, 5)
    assert r["1_globalavgpool"].connections == 8 * 16 and r["1_globalavgpool"].receptive_field == "all"
    net1 = cconv.Sequential(nn.Conv1d(2, 3, 3), nn.MaxPool1d(2), nn.Conv1d(3, 3, 3))
    r1 = analysis.summary(net1.build((2, 20)))
    assert r1["0_conv1d"].connections == 3 * 18 * 2 * 3
    assert r1["2_conv1d"].receptive_field == (3 + 1 + 2 * 2,)
    assert r1.rule_of_thumb == {}     # no fully connected layer to compare with


def test_frozen_weights_and_buffers_apart():
    net = cconv.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                           nn.Linear(144, 3)).build((1, 8, 8))
    net.freeze("0_conv2d")
    r = analysis.summary(net)
    assert (r["0_conv2d"].weights_trainable, r["0_conv2d"].weights_frozen) == (0, 40)
    bn = r["1_batchnorm2d"]
    assert (bn.weights_trainable, bn.weights_frozen, bn.buffers) == (8, 0, 8)
    assert r.totals["buffers"] == 8 and r.totals["weights"] == 40 + 8 + 435


def test_table_and_json():
    r = analysis.summary(lenet5())
    text = str(r)
    assert "0_conv2d" in text and "117,600" in text and "Rule of thumb" in text
    assert "4,816,896 FC" in text
    data = json.loads(r.to_json())
    assert data["totals"]["weights"] == 61706
    assert data["layers"][0]["fc_equivalent"]["conv_weights"] == 150
    assert data["layers"][7]["receptive_field"] == "all"
    assert data["rule_of_thumb"]["holds"] is True


def test_summary_of_an_unbuilt_net_and_errors():
    net = cconv.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 2))
    r = analysis.summary(net, (1, 8, 8))
    assert r.totals["weights"] == 20 + 146 and not net.built
    with pytest.raises(ValueError, match="input_shape"):
        analysis.summary(cconv.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="Graph"):
        analysis.summary(nn.ReLU(), (1, 2))
    with pytest.raises(ValueError, match="batch_size"):
        analysis.summary(lenet5(), batch_size=0)
    assert np.isclose(r.totals["flops"], 2 * r.totals["macs"])
