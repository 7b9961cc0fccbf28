"""A broken plugin never takes cconv down: its layer raising in forward/backward is
named (node, layer, plugin, package) and the net stays usable. (Plugins failing
to import, to register, or clashing on a name: tests/test_plugins.py.)"""
import numpy as np
import pytest

from cconv import nn, plugins
from cconv.plugins import LayerError
from cconv.nn.base import Layer
from cconv.testing import temporary_plugins


class Flaky(Layer):
    """y = x, except that it raises while `fail` says so."""
    type_name = "FlakyTestLayer"
    fail = None

    def output_shape(self, input_shapes):
        return tuple(input_shapes[0])

    def forward(self, x, training=False):
        if Flaky.fail == "forward":
            raise ZeroDivisionError("plugin bug in forward")
        return np.asarray(x) * 1.0

    def backward(self, grad_out):
        if Flaky.fail == "backward":
            raise KeyError("plugin bug in backward")
        return grad_out


class FlakyPlugin:
    from cconv import hookimpl

    @hookimpl
    def register_layers(self, register):
        register(Flaky)


@pytest.fixture
def flaky_net():
    with temporary_plugins() as register:
        register(FlakyPlugin(), name="flaky")
        plugins.get_plugin_manager().sources["flaky"] = "cconv-flaky"
        plugins.reset(manager=False)
        net = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        net.add("bad", plugins.get_layer_class("FlakyTestLayer")())
        net.set_outputs(["bad"])
        net.build((4,), seed=0)
        Flaky.fail = None
        yield net
        Flaky.fail = None


@pytest.mark.parametrize("training", [False, True])
def test_plugin_layer_raising_in_forward_is_named_and_the_net_recovers(flaky_net, training):
    x = np.ones((2, 4), np.float32)
    want = flaky_net(x).copy()
    Flaky.fail = "forward"
    with pytest.raises(LayerError, match=r"node 'bad' \(FlakyTestLayer, a layer of plugin "
                                         r"'flaky' from cconv-flaky\) failed in forward: "
                                         r"ZeroDivisionError: plugin bug") as info:
        flaky_net.forward(x, training=training)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    Flaky.fail = None
    np.testing.assert_array_equal(flaky_net(x), want)   # still usable


def test_plugin_layer_raising_in_backward_is_named(flaky_net):
    x = np.ones((2, 4), np.float32)
    Flaky.fail = "backward"
    flaky_net.forward(x, training=True)
    with pytest.raises(LayerError, match="node 'bad'.*failed in backward: KeyError"):
        flaky_net.backward(np.ones((2, 4), np.float32))
    Flaky.fail = None
    flaky_net.forward(x, training=True)
    assert flaky_net.backward(np.ones((2, 4), np.float32)).shape == x.shape


def test_builtin_layer_errors_keep_their_type_and_name_the_node():
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).build((3,))
    with pytest.raises(ValueError, match="more than one value") as info:
        net.forward(np.ones((1, 3), np.float32), training=True)   # a batch of one
    if hasattr(info.value, "add_note"):   # Python >= 3.11: a note names the node
        assert any("'1_batchnorm1d'" in n for n in info.value.__notes__)
    assert net(np.ones((2, 3), np.float32)).shape == (2, 3)
