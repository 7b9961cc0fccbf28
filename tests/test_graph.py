"""Graph executor: wiring, shapes, gradients through a DAG, config round trip."""
import json
import weakref

import numpy as np
import pytest

import cconv
from cconv.gradcheck import check_gradients
from cconv.graph import Graph, GraphError, Sequential
from cconv.nn import (
    Add,
    Concat,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Tanh,
    softmax_cross_entropy,
)
from cconv.nn.base import Layer


def dag():
    """x -> conv -> tanh -+-> add -> concat -> flatten -> fc
                    x -> conv_b -+     tanh -+        (tanh feeds two consumers)"""
    g = Graph(inputs=["x"])
    g.add("conv_a", Conv2d(2, 3, 3, padding=1), inputs=["x"])
    g.add("tanh", Tanh())
    g.add("conv_b", Conv2d(2, 3, 3, padding=1), inputs=["x"])
    g.add("add", Add(), inputs=["tanh", "conv_b"])
    g.add("cat", Concat(), inputs=["add", "tanh"])
    g.add("flat", Flatten())
    g.add("fc", Linear(6 * 4 * 4, 5))
    return g


def test_gradient_check_dag_with_add_and_concat():
    g = dag().build((2, 4, 4), seed=1).astype(np.float64)
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4))
    errors = check_gradients(g, [x], max_coords=40)
    assert set(errors) >= {"input0", "param:conv_a.weight", "param:conv_b.bias", "param:fc.weight"}


def test_gradient_check_two_inputs_two_outputs():
    g = Graph(inputs=["a", "b"])
    g.add("fa", Linear(3, 4), inputs=["a"])
    g.add("fb", Linear(2, 4), inputs=["b"])
    g.add("sum", Add(), inputs=["fa", "fb"])
    g.add("act", Tanh())
    g.add("head", Linear(4, 2))
    g.set_outputs(["head", "act"])
    g.build([(3,), (2,)], seed=0).astype(np.float64)
    rng = np.random.default_rng(1)
    check_gradients(g, [rng.standard_normal((3, 3)), rng.standard_normal((3, 2))])


def test_fan_out_gradients_are_summed():
    g = Graph()
    g.add("fc", Linear(3, 3, bias=False))
    g.add("add", Add(), inputs=["fc", "fc", "x"])
    g.build((3,)).astype(np.float64)
    x = np.ones((1, 3))
    g.forward(x, training=True)
    gx = g.backward(np.ones((1, 3)))
    w = g["fc"].params["weight"]
    np.testing.assert_allclose(gx, 2 * np.ones((1, 3)) @ w + 1)
    np.testing.assert_allclose(dict(g.named_gradients())["fc.weight"], 2 * np.ones((3, 3)))


def test_output_without_gradient_is_ignored():
    g = Graph()
    g.add("a", Linear(3, 2))
    g.add("b", Linear(3, 2), inputs=["x"])
    g.set_outputs(["a", "b"])
    g.build((3,))
    g.forward(np.ones((2, 3), np.float32), training=True)
    g["b"].grads["weight"][...] = 7
    gx = g.backward((np.ones((2, 2), np.float32), None))
    np.testing.assert_allclose(gx, np.ones((2, 2)) @ g["a"].params["weight"], rtol=1e-6)
    assert np.all(g["b"].grads["weight"] == 7)   # b's backward never ran


def test_topological_order_and_cycles():
    g = Graph()
    g.add("b", ReLU(), inputs=["a"])       # refers to a node added later
    g.add("a", ReLU(), inputs=["x"])
    g.set_outputs("b")
    assert g.topological_order() == ["a", "b"]
    g.add("dead", ReLU(), inputs=["x"])    # feeds no output: never runs
    assert "dead" not in g.topological_order()
    c = Graph()
    c.add("p", Add(), inputs=["x", "q"])
    c.add("q", ReLU(), inputs=["p"])
    with pytest.raises(GraphError, match="cycle"):
        c.build((3,))


def test_wiring_errors_name_the_node():
    g = Graph()
    with pytest.raises(GraphError, match="'add'.*two or more"):
        g.add("add", Add(), inputs=["x"])
    g.add("r", ReLU())
    with pytest.raises(GraphError, match="already used"):
        g.add("r", ReLU())
    with pytest.raises(GraphError, match="'.'"):
        g.add("a.b", ReLU())
    g.add("s", ReLU(), inputs=["nowhere"])
    g.set_outputs(["s"])
    with pytest.raises(GraphError, match="'s' reads 'nowhere'"):
        g.build((3,))


def test_shape_errors_name_node_and_shapes():
    g = Sequential(Conv2d(1, 4, 3), ReLU(), Flatten(), Linear(99, 10))
    with pytest.raises(GraphError) as info:
        g.build((1, 8, 8))
    msg = str(info.value)
    assert "'3_linear'" in msg and "(144,)" in msg and "Linear" in msg
    assert not g["0_conv2d"].built      # nothing was built before the error

    g2 = Graph()
    g2.add("a", Conv2d(1, 2, 3), inputs=["x"])
    g2.add("b", Conv2d(1, 3, 1), inputs=["x"])
    g2.add("sum", Add(), inputs=["a", "b"])
    with pytest.raises(GraphError, match=r"'sum'.*a \(2, 3, 3\).*b \(3, 5, 5\)"):
        g2.build((1, 5, 5))


def test_infer_shapes_and_input_checks():
    g = Sequential(Conv2d(1, 6, 5), MaxPool2d(2), Flatten())
    shapes = g.infer_shapes((1, 28, 28))
    assert shapes["0_conv2d"] == (6, 24, 24) and shapes["2_flatten"] == (864,)
    g.build((1, 28, 28))
    assert g(np.zeros((2, 1, 27, 28), np.float32)).shape == (2, 6 * 11 * 12)   # any size
    with pytest.raises(GraphError, match=r"input 'x' has shape \(2, 3, 27, 28\)"):
        g(np.zeros((2, 3, 27, 28), np.float32))


def test_build_on_first_forward_and_seeded_build():
    a = Sequential(Linear(4, 3))
    y = a(np.ones((2, 4), np.float32))
    assert y.shape == (2, 3) and a.built
    b = Sequential(Linear(4, 3)).build((4,), seed=0)
    c = Sequential(Linear(4, 3)).build((4,), seed=0)
    np.testing.assert_array_equal(b["0_linear"].params["weight"], c["0_linear"].params["weight"])


def test_sequential_names_indexing_and_chain_equals_general_path():
    seq = Sequential(Conv2d(1, 2, 3), ReLU(), Flatten(), Linear(2 * 6 * 6, 3))
    assert list(seq.nodes) == ["0_conv2d", "1_relu", "2_flatten", "3_linear"]
    assert isinstance(seq[1], ReLU) and len(seq) == 4
    seq.build((1, 8, 8))
    assert seq._plan["chain"] is not None
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    y = seq(x)
    seq._plan["chain"] = None                    # force the general slot loop
    np.testing.assert_array_equal(seq(x), y)
    assert [n for n, _ in seq.named_parameters()] == [
        "0_conv2d.weight", "0_conv2d.bias", "3_linear.weight", "3_linear.bias"]
    assert cconv.nn.Sequential is Sequential and cconv.Graph is Graph


def test_activations_freed_after_last_consumer():
    seen = {}

    class Spy(Layer):
        """Records, when it runs, whether the watched activation is still alive."""

        def output_shape(self, shapes):
            return shapes[0]

        def forward(self, x, training=False):
            if "ref" in seen:
                seen["alive"] = seen["ref"]() is not None
            return x + 1

    class Keep(Spy):
        def forward(self, x, training=False):
            y = x * 2
            seen["ref"] = weakref.ref(y)
            return y

    g = Graph()
    g.add("keep", Keep())
    g.add("use", ReLU())          # last consumer of keep's output
    g.add("other", Spy(), inputs=["x"])
    g.add("sum", Add(), inputs=["use", "other"])
    g.build((3,))
    g._plan["chain"] = None
    g(np.ones((1, 3), np.float32))
    assert seen["alive"] is False


def test_named_parameters_freeze_unfreeze_prefixes():
    g = Graph()
    g.add("conv1", Linear(2, 2), inputs=["x"])
    g.add("conv10", Linear(2, 2))
    g.build((2,))
    g.freeze("conv1")
    assert g.frozen() == ["conv1.weight", "conv1.bias"]
    g.unfreeze("conv1.bias")
    assert g.frozen() == ["conv1.weight"]
    assert [n for n, _ in g.named_parameters(trainable_only=True)] == [
        "conv1.bias", "conv10.weight", "conv10.bias"]
    with pytest.raises(KeyError, match="conv2"):
        g.freeze("conv2")
    g.freeze()
    assert len(g.frozen()) == 4


def test_astype_casts_params_and_inputs():
    g = Sequential(Linear(3, 2)).build((3,))
    assert g.dtype == np.float32
    g.astype(np.float64)
    assert g.dtype == np.float64
    assert g(np.ones((1, 3), np.float32)).dtype == np.float64
    assert all(a.dtype == np.float64 for _, a in g.named_gradients())


def test_backward_needs_training_forward():
    g = Sequential(Linear(3, 2)).build((3,))
    g(np.ones((1, 3), np.float32))
    with pytest.raises(GraphError, match="training=True"):
        g.backward(np.ones((1, 2), np.float32))


def test_config_json_round_trip_gives_equal_outputs():
    g = dag().build((2, 4, 4), seed=3)
    g.freeze("conv_b")
    config = json.loads(json.dumps(g.get_config()))
    h = Graph.from_config(config)
    assert h.get_config() == config
    assert h.frozen() == ["conv_b.weight", "conv_b.bias"]
    h.load_weights(dict(g.named_parameters()))
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(g(x), h(x))
    seq = Sequential(Conv2d(1, 2, 3), ReLU()).build((1, 5, 5))
    back = Graph.from_config(json.loads(json.dumps(seq.get_config())))
    assert type(back) is Sequential and list(back.nodes) == list(seq.nodes)


def test_from_config_errors():
    with pytest.raises(GraphError, match="not a cconv graph"):
        Graph.from_config({"nodes": []})
    config = Sequential(ReLU()).get_config()
    config["nodes"][0]["type"] = "NoSuchLayer"
    with pytest.raises(Exception, match="NoSuchLayer"):
        Graph.from_config(config)
    config = Sequential(Linear(2, 2)).get_config()
    config["nodes"][0]["config"] = {"in_features": 2, "out_featurez": 2}
    with pytest.raises(GraphError, match="0_linear"):
        Graph.from_config(config)


def test_training_step_reduces_loss():
    g = Sequential(Conv2d(1, 4, 3), ReLU(), MaxPool2d(2), Flatten(), Linear(36, 3))
    g.build((1, 8, 8), seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    opt = cconv.optim.SGD(g, lr=0.1)
    first = None
    for _ in range(20):
        loss, grad = softmax_cross_entropy(g.forward(x, training=True), y)
        first = loss if first is None else first
        g.backward(grad)
        opt.step()
    assert loss < 0.5 * first


def test_summary_mentions_every_node():
    g = dag().build((2, 4, 4))
    text = g.summary()
    for name in g.nodes:
        assert name in text
    assert "(6, 4, 4)" in text


def test_batchnorm_running_statistics_are_buffers_not_parameters():
    from cconv.nn import BatchNorm1d

    g = Sequential(Linear(3, 4), BatchNorm1d(4)).build((3,))
    g.unfreeze()
    assert not g["1_batchnorm1d"].trainable["running_mean"]
    assert g.frozen() == []
    assert "1_batchnorm1d.running_var" not in g.select(None)
    opt = cconv.optim.SGD(g, lr=0.1, weight_decay=0.5)
    assert all("running" not in n for grp in opt.param_groups for n in grp["params"])
    assert "1_batchnorm1d.running_mean" in dict(g.named_parameters())   # still saved


def test_layers_with_plan_forward_get_one_plan_per_input_shape():
    made = []

    class Doubler(Layer):
        def output_shape(self, shapes):
            return shapes[0]

        def forward(self, x, training=False):
            return x * 2

        def plan_forward(self, input_shapes, dtype):
            made.append((tuple(input_shapes[0]), np.dtype(dtype)))
            return lambda x: x * 2

    for chain in (True, False):
        made.clear()
        g = Graph()
        g.add("d", Doubler())
        g.add("fc", Linear(3, 2))
        if not chain:
            g.add("sum", Add(), inputs=["fc", "fc"])
        g.build((3,))
        x = np.ones((4, 3), np.float32)
        expected = g.forward(x, training=True)        # training never uses plans
        assert made == []
        for _ in range(3):
            np.testing.assert_array_equal(g(x), expected)
        g(np.ones((1, 3), np.float32))
        assert made == [((4, 3), np.float32), ((1, 3), np.float32)]
        g.astype(np.float64)
        assert g(x).dtype == np.float64 and made[-1] == ((4, 3), np.float64)


def test_backward_without_input_grads_skips_first_conv_and_keeps_param_grads(monkeypatch):
    from cconv import nn

    rng = np.random.default_rng(3)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    net.build((2, 6, 6), seed=1)
    x = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
    g = rng.standard_normal((4, 2)).astype(np.float32)

    net.forward(x, training=True)
    gx = net.backward(g)
    full = {k: v.copy() for k, v in net.named_gradients()}
    assert gx.shape == x.shape

    calls = []
    original = nn.Conv2d.backward

    def spy(self, grad_out, need_input_grad=True):
        calls.append(need_input_grad)
        return original(self, grad_out, need_input_grad=need_input_grad)

    monkeypatch.setattr(nn.Conv2d, "backward", spy)
    net.build((2, 6, 6), seed=1)  # same weights; the plan holds bound methods
    net.forward(x, training=True)
    assert net.backward(g, input_grads=False) is None
    assert calls == [False]
    for name, grad in net.named_gradients():
        np.testing.assert_array_equal(grad, full[name])


def test_topological_order_keeps_insertion_order_among_ready_nodes():
    g = Graph()
    g.add("late", ReLU(), inputs=["mid"])
    g.add("a", ReLU(), inputs=["x"])
    g.add("mid", ReLU(), inputs=["a"])
    g.add("b", ReLU(), inputs=["x"])
    g.add("c", Add(), inputs=["late", "b"])
    # ties go to the node added first, among those ready at each step: after a,
    # mid (added before b) runs, then late (added first of all), then b
    assert g.topological_order() == ["a", "mid", "late", "b", "c"]


def test_wide_graph_builds_saves_and_loads_fast(tmp_path):
    """3000 parallel ReLUs into one Concat: the ordering was cubic (>100 s to load)."""
    import time
    n = 3000
    g = Graph()
    for i in range(n):
        g.add(f"r{i}", ReLU(), inputs=["x"])
    g.add("cat", Concat(), inputs=[f"r{i}" for i in range(n)])
    t0 = time.perf_counter()
    g.build((1, 2, 2))
    cconv.save(g, tmp_path / "wide.safetensors")
    back = cconv.load(tmp_path / "wide.safetensors")
    elapsed = time.perf_counter() - t0
    assert back.topological_order()[-1] == "cat" and len(back.topological_order()) == n + 1
    x = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2) - 3
    y = back(x)
    assert y.shape == (2, n, 2, 2)
    np.testing.assert_array_equal(y[:, 7], np.maximum(x[:, 0], 0))
    assert elapsed < 20, f"build + save + load of {n} nodes took {elapsed:.1f} s"
