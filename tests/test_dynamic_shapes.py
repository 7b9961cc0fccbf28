"""Any input size: a net built for one shape runs every shape its layers take.

The shape given to build() only creates the parameters; another input shape
walks the layers' output_shape once (cached), gets its own compiled plan, and
a layer that cannot take it is named in a GraphError.
"""
import numpy as np
import pytest

import cconv
from cconv import compiled
from cconv.graph import Graph, GraphError, Sequential
from cconv.nn import (
    Add,
    BatchNorm2d,
    Concat,
    ConstantOp,
    Conv2d,
    ConvTranspose2d,
    Flatten,
    GlobalAvgPool,
    Linear,
    MaxPool2d,
    Pad,
    ReLU,
    Reshape,
    Resize,
)

SIZES = [(16, 16), (13, 11), (8, 8), (9, 20)]


def _fully_conv():
    return Sequential(Conv2d(1, 4, 3, padding=1), BatchNorm2d(4), ReLU(),
                      Conv2d(4, 6, 3, stride=2, padding="same"), ReLU(), MaxPool2d(2),
                      Conv2d(6, 3, 1))


def _same_weights(src, dst):
    for (name, a), (_, b) in zip(src.named_parameters(), dst.named_parameters()):
        b[...] = a


def _randomise(net, rng):
    for _, a in net.named_parameters():
        a[...] = rng.uniform(0.5, 1.5, a.shape)   # running_var too: positive


@pytest.mark.parametrize("hw", SIZES)
def test_fully_conv_net_runs_other_sizes_like_a_net_built_there(hw, rng):
    net = _fully_conv().build((1, 8, 8)).astype(np.float64)
    _randomise(net, rng)
    fresh = _fully_conv().build((1,) + hw).astype(np.float64)
    _same_weights(net, fresh)
    x = rng.standard_normal((2, 1) + hw)
    want = fresh(x)
    np.testing.assert_allclose(net(x), want, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(net.forward(x, training=True), fresh.forward(x, training=True),
                               rtol=1e-13, atol=1e-13)
    g = rng.standard_normal(want.shape)
    np.testing.assert_allclose(net.backward(g), fresh.backward(g), rtol=1e-12, atol=1e-12)
    assert net.input_shapes == [(1, 8, 8)]   # the built shape is unchanged


def test_input_spec_says_which_dims_are_fixed():
    conv = _fully_conv().build((1, 8, 8))
    assert conv.input_spec == {"x": (None, 1, None, None)}
    assert "inputs x (N, 1, ?, ?) (?: any size the layers take)" in conv.summary()
    head = Sequential(Conv2d(1, 2, 3), ReLU(), Flatten(), Linear(2 * 6 * 6, 3)).build((1, 8, 8))
    assert head.input_spec == {"x": (None, 1, 8, 8)}
    # the pooling's floor lets 9 pass as well as 8, which does not make the size free
    pooled_head = Sequential(Conv2d(1, 4, 3, padding=1), MaxPool2d(2), Flatten(),
                             Linear(64, 3)).build((1, 8, 8))
    assert pooled_head.input_spec == {"x": (None, 1, 8, 8)}
    pooled = Sequential(Conv2d(3, 4, 3), GlobalAvgPool(), Linear(4, 2)).build((3, 9, 9))
    assert pooled.input_spec == {"x": (None, 3, None, None)}
    # a constant reshape fixes the size; one that copies (0) or infers (-1) does not
    fixed = Sequential(Conv2d(1, 2, 1), Reshape((2, 64))).build((1, 8, 8))
    assert fixed.input_spec == {"x": (None, 1, 8, 8)}
    free = Sequential(Conv2d(1, 2, 1), Reshape((0, -1))).build((1, 8, 8))
    assert free.input_spec == {"x": (None, 1, None, None)}
    assert free(np.zeros((3, 1, 5, 7), np.float32)).shape == (3, 2, 35)
    # a UNet-like skip connection: sizes must halve evenly, but they are not fixed
    g = Graph()
    g.add("a", Conv2d(1, 2, 3, padding=1), inputs=["x"])
    g.add("down", MaxPool2d(2))
    g.add("up", ConvTranspose2d(2, 2, 2, stride=2))
    g.add("cat", Concat(1), inputs=["a", "up"])
    g.build((1, 8, 8))
    assert g.input_spec == {"x": (None, 1, None, None)}
    assert g(np.zeros((1, 1, 12, 6), np.float32)).shape == (1, 4, 12, 6)
    with pytest.raises(GraphError, match=r"'cat'.*Concat"):
        g(np.zeros((1, 1, 9, 6), np.float32))


def test_two_inputs_added_vary_together():
    g = Graph(inputs=["a", "b"])
    g.add("s", Add(), inputs=["a", "b"])
    g.add("c", Conv2d(2, 1, 1))
    g.build([(2, 4, 4), (2, 4, 4)])
    assert g.input_spec == {"a": (None, 2, None, None), "b": (None, 2, None, None)}
    y = g(np.ones((1, 2, 6, 5), np.float32), np.ones((1, 2, 6, 5), np.float32))
    assert y.shape == (1, 1, 6, 5)
    with pytest.raises(GraphError, match="'s'"):
        g(np.ones((1, 2, 6, 5), np.float32), np.ones((1, 2, 6, 6), np.float32))


def test_flatten_linear_refuses_other_sizes_naming_the_node():
    net = Sequential(Conv2d(1, 2, 3), ReLU(), Flatten(), Linear(72, 3)).build((1, 8, 8))
    with pytest.raises(GraphError) as info:
        net(np.zeros((2, 1, 16, 16), np.float32))
    msg = str(info.value)
    assert "input 'x' has shape (2, 1, 16, 16)" in msg
    assert "'3_linear' (Linear)" in msg and "in_features=72" in msg and "(392,)" in msg
    assert "(1, 8, 8)" in msg   # what it was built for
    with pytest.raises(GraphError, match="3_linear"):   # the cached refusal, same words
        net(np.zeros((2, 1, 16, 16), np.float32))
    with pytest.raises(GraphError, match="3_linear"):
        net.forward(np.zeros((2, 1, 16, 16), np.float32), training=True)
    with pytest.raises(GraphError, match=r"'0_conv2d'.*C=1"):
        net(np.zeros((2, 3, 8, 8), np.float32))


def test_each_shape_gets_its_own_compiled_plan(rng):
    compiled.clear()
    net = _fully_conv().build((1, 8, 8))
    a = net.compile((1, 1, 8, 8))
    b = net.compile((2, 1, 16, 12))
    assert a is not b and a.shapes == ((1, 1, 8, 8),) and b.shapes == ((2, 1, 16, 12),)
    assert net.compile((2, 1, 16, 12)) is b
    assert [k for k, _ in a.steps] == [k for k, _ in b.steps]
    assert b.describe()
    x = rng.standard_normal((2, 1, 16, 12)).astype(np.float32)
    want = x
    for layer in net:   # layer by layer, inference
        want = layer.forward(want)
    np.testing.assert_allclose(b(x), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(GraphError, match="input 'x'"):
        Sequential(Flatten(), Linear(4, 1)).build((4,)).compile((1, 5))


def test_new_size_then_training_at_the_built_size(rng):
    net = Sequential(Conv2d(1, 3, 3, padding=1), ReLU(), GlobalAvgPool(), Linear(3, 2))
    net.build((1, 8, 8), seed=1)
    net(rng.standard_normal((2, 1, 20, 20)).astype(np.float32))   # a new size first
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 2, 16)
    history = cconv.fit(net, x, y, epochs=3, batch_size=8, optimizer="sgd", progress=False)
    assert len(history["loss"]) == 3 and np.all(np.isfinite(history["loss"]))
    assert net(x[:2]).shape == (2, 2)


def test_layers_compute_from_the_actual_input(rng):
    net = Sequential(Pad(((0, 0), (1, 2), (0, 1)), mode="reflect"),
                     Resize(scale=(2.0, 2.0), mode="linear"),
                     ConstantOp("mul", value=np.ones((2, 1, 1)) * 0.5),
                     Conv2d(2, 2, 3)).build((2, 6, 6)).astype(np.float64)
    fresh = Sequential(Pad(((0, 0), (1, 2), (0, 1)), mode="reflect"),
                       Resize(scale=(2.0, 2.0), mode="linear"),
                       ConstantOp("mul", value=np.ones((2, 1, 1)) * 0.5),
                       Conv2d(2, 2, 3)).build((2, 9, 5)).astype(np.float64)
    _same_weights(net, fresh)
    x = rng.standard_normal((1, 2, 9, 5))
    np.testing.assert_allclose(net(x), fresh(x), rtol=1e-13, atol=1e-13)
    assert net(x).shape == (1, 2, 22, 10)
    # a constant with spatial extent fixes the spatial size
    spatial = Sequential(ConstantOp("add", value=np.zeros((1, 4, 4)))).build((1, 4, 4))
    assert spatial.input_spec == {"x": (None, None, 4, 4)}


def test_set_input_spec_fixes_dims_and_round_trips(tmp_path):
    net = _fully_conv().build((1, 8, 8))
    net.set_input_spec({"x": (None, 1, 8, None)})
    assert net.input_spec == {"x": (None, 1, 8, None)}
    assert net(np.zeros((1, 1, 8, 12), np.float32)).shape == (1, 3, 2, 3)
    with pytest.raises(GraphError, match=r"fixed dims \(batch, 1, 8, \?\)"):
        net(np.zeros((1, 1, 12, 8), np.float32))
    with pytest.raises(GraphError, match="must equal"):
        net.set_input_spec({"x": (None, 1, 9, None)})
    with pytest.raises(GraphError, match="no input"):
        net.set_input_spec({"y": (None, 1, None, None)})
    path = tmp_path / "net.safetensors"
    cconv.save(net, path)
    loaded = cconv.load(path)
    assert loaded.input_spec == {"x": (None, 1, 8, None)}
    net.set_input_spec(None)
    assert net.input_spec == {"x": (None, 1, None, None)}
    assert net(np.zeros((1, 1, 12, 8), np.float32)).shape == (1, 3, 3, 2)


def test_save_load_keeps_free_dims(tmp_path, rng):
    net = _fully_conv().build((1, 8, 8))
    _randomise(net, rng)
    path = tmp_path / "conv.safetensors"
    cconv.save(net, path)
    loaded = cconv.load(path)
    assert loaded.input_spec == {"x": (None, 1, None, None)}
    x = rng.standard_normal((2, 1, 13, 11)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), net(x))
    head = Sequential(Flatten(), Linear(16, 2)).build((1, 4, 4))
    cconv.save(head, path)
    assert cconv.load(path).input_spec == {"x": (None, 1, 4, 4)}


def test_configs_without_input_spec_load_fixed_as_before():
    net = _fully_conv().build((1, 8, 8))
    config = net.get_config()
    assert config["input_spec"] == [[None, 1, None, None]]
    del config["input_spec"]   # as written before input_spec existed
    old = Graph.from_config(config)
    assert old.input_spec == {"x": (None, 1, 8, 8)}
    assert old(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 3, 2, 2)
    with pytest.raises(GraphError, match="input 'x' has shape"):
        old(np.zeros((2, 1, 16, 16), np.float32))
    old.set_input_spec(None)   # opting in to any size
    assert old(np.zeros((2, 1, 16, 16), np.float32)).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("spec", [[[None, 1, 9, None]], [[None, 1]], "x", [[None, "a", 1, 1]],
                                  [[None, 1, None, None], [None]]])
def test_a_bad_input_spec_in_a_config_is_a_graph_error(spec):
    config = _fully_conv().build((1, 8, 8)).get_config()
    config["input_spec"] = spec
    with pytest.raises(GraphError, match="input_spec"):
        Graph.from_config(config)


def test_summary_at_another_size():
    from cconv.analysis import summary

    net = _fully_conv().build((1, 8, 8))
    small, big = summary(net, (1, 8, 8)).to_dict(), summary(net, (1, 32, 32)).to_dict()
    assert small["totals"]["weights"] == big["totals"]["weights"]
    assert big["totals"]["connections"] > 10 * small["totals"]["connections"]
    assert big["input_shape"] == [1, 32, 32]
    with pytest.raises(GraphError):
        summary(Sequential(Flatten(), Linear(64, 2)).build((1, 8, 8)), (1, 9, 9))


def test_shape_walks_are_bounded_and_the_built_shape_is_kept():
    net = Sequential(Conv2d(1, 1, 1)).build((1, 4, 4))
    for n in range(1, 50):
        net(np.zeros((1, 1, n, 3), np.float32))
    assert len(net._walks) <= cconv.graph.MAX_SHAPE_WALKS
    assert ((1, 4, 4),) in net._walks
