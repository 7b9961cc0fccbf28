"""Compiled inference plans (cconv.compiled): same answers as the layers, fused and reused."""
import threading

import numpy as np
import pytest
from layer_cases import CASES, built

from cconv import Graph, Sequential, nn, plugins
from cconv.compiled import CompiledPlan


def _layer_by_layer(layers, x):
    for layer in layers:
        x = layer.forward(x)
    return x


def _graph_of(case, dtype, relu_before=False, relu_after=False):
    """The case's layer as a graph; optional ReLUs around it (fusion and buffer views)."""
    layer = built(case)
    n = len(case.shapes)
    g = Graph(inputs=[f"x{i}" for i in range(n)])
    ins = [f"x{i}" for i in range(n)]
    if relu_before:
        ins = [g.add(f"r{i}", nn.ReLU(), inputs=[f"x{i}"]) for i in range(n)]
    g.add("layer", layer, inputs=ins)
    if relu_after:
        g.add("after", nn.ReLU(), inputs=["layer"])
    return g.build(case.shapes, seed=0).astype(dtype), layer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("around", ["alone", "relu_before", "relu_after"])
@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # x / relu(x) divides by 0
def test_compiled_equals_uncompiled_for_every_layer(case, around, dtype, rng):
    if around == "relu_after" and getattr(case.make(), "moves_batch_axis", False):
        pytest.skip("a layer that moves the batch axis is a graph output, read by nothing")
    g, layer = _graph_of(case, dtype, around == "relu_before", around == "relu_after")
    relu = nn.ReLU()
    for batch in (case.batch, 1):   # a second shape: a second plan
        xs = [x[:batch] for x in case.draw(rng, dtype)]
        want_in = [relu.forward(x) for x in xs] if around == "relu_before" else xs
        want = layer.forward(*want_in)
        if around == "relu_after":
            want = relu.forward(want)
        got = g(*xs)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        again = g(*xs)
        # a fresh array per call, unless the layer returns a view of the
        # caller's own input (Flatten, Dropout), as it does uncompiled
        views_input = any(np.shares_memory(got, x) for x in xs)
        assert views_input or not np.shares_memory(again, got)
        if around == "alone":
            assert views_input == any(np.shares_memory(want, x) for x in xs)
        np.testing.assert_array_equal(again, want)


def _lenet(dtype=np.float32):
    return Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Flatten(), nn.Linear(24, 12), nn.ReLU(), nn.Linear(12, 5),
    ).build((1, 10, 10), seed=0).astype(dtype)


def test_lenet_plan_fuses_and_matches(rng):
    net = _lenet()
    plan = net.compile((2, 1, 10, 10))
    assert isinstance(plan, CompiledPlan)
    kinds = [kind for kind, _ in plan.steps]
    # the second pool rounds up (ceil_mode) a 3x3 map: not the fused 2x2 window
    assert kinds == ["conv2d+relu+max_pool2d", "conv2d+relu", "max_pool2d", "view",
                     "linear+relu", "linear"]
    assert "0_conv2d + 1_relu + 2_maxpool2d" in plan.describe()
    x = rng.standard_normal((2, 1, 10, 10)).astype(np.float32)
    want = _layer_by_layer(net, x)
    np.testing.assert_array_equal(plan(x), want)
    np.testing.assert_array_equal(net(x), want)
    # the plan forward() uses is the one compile() made (same thread, same shape)
    assert net.compile((2, 1, 10, 10)) is plan


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("size,stride,padding", [(11, 1, 0), (12, 1, 2), (23, 2, 3), (5, 1, 1)])
def test_conv_pool_fusion_matches_the_layers(rng, dtype, relu, size, stride, padding):
    """Conv2d (+ ReLU) + MaxPool2d(2) in one direct-conv call: odd maps drop the
    last row / column, NaN propagates, results equal layer by layer bit for bit."""
    layers = [nn.Conv2d(3, 7, 3 if size < 20 else 7, stride=stride, padding=padding)]
    layers += [nn.ReLU()] if relu else []
    net = Sequential(*layers, nn.MaxPool2d(2), nn.Flatten()).build(
        (3, size, size), seed=1).astype(dtype)
    plan = net.compile((3, 3, size, size))
    assert plan.steps[0][0] == "conv2d" + ("+relu" if relu else "") + "+max_pool2d"
    x = rng.standard_normal((3, 3, size, size)).astype(dtype)
    x[1, 2, 2, 3] = np.nan
    want = _layer_by_layer(net, x)
    got = plan(x)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[1]).any() and not np.isnan(got[0]).any()


def test_conv_pool_fusion_only_where_it_applies():
    wide = Sequential(nn.Conv2d(64, 8, 3), nn.ReLU(), nn.MaxPool2d(2)).build((64, 8, 8), seed=0)
    assert [k for k, _ in wide.compile((1, 64, 8, 8)).steps] == ["conv2d+relu", "max_pool2d"]
    padded = Sequential(nn.Conv2d(2, 4, 3), nn.MaxPool2d(2, padding=1)).build((2, 8, 8), seed=0)
    assert [k for k, _ in padded.compile((1, 2, 8, 8)).steps] == ["conv2d", "max_pool2d"]
    g = Graph(inputs=["x"])      # the conv's output is also a graph output: kept
    g.add("c", nn.Conv2d(2, 4, 3), inputs=["x"])
    g.add("p", nn.MaxPool2d(2), inputs=["c"])
    g.set_outputs(["c", "p"])
    g.build([(2, 8, 8)], seed=0)
    assert [k for k, _ in g.compile((1, 2, 8, 8)).steps] == ["conv2d", "max_pool2d"]


def test_results_are_not_overwritten_by_the_next_call(rng):
    net = _lenet()
    x1 = rng.standard_normal((1, 1, 10, 10)).astype(np.float32)
    x2 = rng.standard_normal((1, 1, 10, 10)).astype(np.float32)
    y1 = net(x1)
    kept = y1.copy()
    y2 = net(x2)
    np.testing.assert_array_equal(y1, kept)
    assert not np.array_equal(y1, y2)


def test_reuse_output_returns_the_plans_buffer(rng):
    net = _lenet()
    x1 = rng.standard_normal((1, 1, 10, 10)).astype(np.float32)
    x2 = rng.standard_normal((1, 1, 10, 10)).astype(np.float32)
    a = net(x1, reuse_output=True)
    np.testing.assert_array_equal(a, _layer_by_layer(net, x1))
    b = net(x2, reuse_output=True)
    assert b is a   # the same buffer, now holding x2's result
    np.testing.assert_array_equal(b, _layer_by_layer(net, x2))
    fresh = net(x1)   # the default stays fresh
    assert fresh is not a


def test_shape_change_replans(rng):
    net = _lenet()
    for batch in (1, 3, 1, 5, 3):
        x = rng.standard_normal((batch, 1, 10, 10)).astype(np.float32)
        y = net(x)
        assert y.shape == (batch, 5)
        np.testing.assert_array_equal(y, _layer_by_layer(net, x))


def _dag():
    g = Graph(inputs=["x", "z"])
    g.add("c1", nn.Conv2d(2, 3, 3, padding=1), inputs=["x"])
    g.add("r1", nn.ReLU(), inputs=["c1"])
    g.add("c2", nn.Conv2d(3, 3, 3, padding=1), inputs=["r1"])   # read twice: no fusion
    g.add("r2", nn.ReLU(), inputs=["c2"])
    g.add("sum", nn.Add(), inputs=["r2", "c2", "z"])
    g.add("cat", nn.Concat(), inputs=["sum", "r1"])
    g.add("pool", nn.MaxPool2d(2), inputs=["cat"])
    g.add("flat", nn.Flatten(), inputs=["pool"])
    g.add("fc", nn.Linear(6 * 3 * 3, 4), inputs=["flat"])
    g.add("act", nn.ReLU(), inputs=["fc"])
    g.set_outputs(["act", "r1", "flat"])   # r1 and flat: outputs that are also read
    return g.build([(2, 6, 6), (3, 6, 6)], seed=1)


def _dag_by_hand(g, x, z):
    v = {"x": x, "z": z}
    for name in g.topological_order():
        node = g.nodes[name]
        v[name] = node.layer.forward(*[v[s] for s in node.inputs])
    return tuple(v[o] for o in g.output_names)


def test_dag_with_add_concat_and_several_outputs(rng):
    g = _dag()
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    z = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    plan = g.compile(x.shape, z.shape)
    kinds = dict((nodes[0], kind) for kind, nodes in plan.steps)
    assert kinds["c1"] == "conv2d+relu" and kinds["c2"] == "conv2d"
    assert kinds["fc"] == "linear+relu"
    want = _dag_by_hand(g, x, z)
    got = g(x, z)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    again = g(x, z)
    for a, b in zip(got, again):   # no output aliases a plan buffer or another call's
        assert not np.shares_memory(a, b)


def test_backward_after_compiled_forward(rng):
    net, twin = _lenet(np.float64), _lenet(np.float64)
    x = rng.standard_normal((3, 1, 10, 10))
    g = rng.standard_normal((3, 5))
    net(x)
    net(x[:1])          # plans for two shapes exist now
    y = net.forward(x, training=True)
    dx = net.backward(g)
    y_t = twin.forward(x, training=True)
    dx_t = twin.backward(g)
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_array_equal(dx, dx_t)
    for (n, a), (_, b) in zip(net.named_gradients(), twin.named_gradients()):
        np.testing.assert_array_equal(a, b, err_msg=n)


def test_weight_updates_are_seen_by_the_plan(rng):
    net = _lenet()
    x = rng.standard_normal((1, 1, 10, 10)).astype(np.float32)
    before = net(x)
    for _, p in net.named_parameters():
        p *= 1.5        # in place, as the optimizers do
    after = net(x)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, _layer_by_layer(net, x))


def test_astype_and_plugins_replan(rng):
    net = _lenet()
    x = rng.standard_normal((2, 1, 10, 10))
    assert net(x.astype(np.float32)).dtype == np.float32
    net.astype(np.float64)
    y = net(x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, _layer_by_layer(net, x))
    # a forced kernel takes over from the fused built-in step
    with plugins.use_kernel("conv2d", "numpy_reference"):
        plan = net.compile(x.shape)
        assert [k for k, _ in plan.steps][0] == "layer"
        np.testing.assert_allclose(net(x), y, rtol=1e-12, atol=1e-12)
    assert net.compile(x.shape).steps[0][0] == "conv2d+relu+max_pool2d"


def test_odd_inputs_take_the_general_path(rng):
    net = _lenet()
    x = rng.standard_normal((2, 1, 20, 10)).astype(np.float32)[:, :, ::2]   # strided
    np.testing.assert_array_equal(net(x), _layer_by_layer(net, np.ascontiguousarray(x)))
    xb = x.astype(">f4")   # big-endian
    np.testing.assert_allclose(net(xb), net(np.ascontiguousarray(x)), rtol=1e-6)
    with pytest.raises(ValueError, match="input 'x' has shape"):
        net(np.zeros((1, 1, 9, 10), np.float32))


def test_threads_share_a_net_safely(rng):
    net = _lenet()
    xs = [rng.standard_normal((b, 1, 10, 10)).astype(np.float32) for b in (1, 2, 1, 3)]
    wants = [_layer_by_layer(net, x) for x in xs]
    errors = []
    barrier = threading.Barrier(len(xs))

    def work(x, want):
        try:
            barrier.wait()
            for _ in range(40):
                y = net(x)
                r = net(x, reuse_output=True)
                if not (np.array_equal(y, want) and np.array_equal(r, want)):
                    errors.append("wrong result")
                    return
        except Exception as exc:   # reported below with the thread's failure
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=a) for a in zip(xs, wants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_epilogue_loops_match_numpy(dtype, rng):
    _plan = pytest.importorskip("cconv._plan")
    x = rng.standard_normal((3, 7, 5)).astype(dtype)
    x[0, 0, :3] = [np.nan, -0.0, np.inf]
    y = np.empty_like(x)
    _plan.relu(x, y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))          # NaN kept, like torch
    g = rng.standard_normal(x.shape).astype(dtype)
    out = np.empty_like(x)
    _plan.relu_backward(g, y, out)
    np.testing.assert_array_equal(out, np.where(y > 0, g, 0))
    m = rng.standard_normal((4, 6)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    want = np.maximum(m + b, 0)
    _plan.bias_act_rows(m, b, True)
    np.testing.assert_array_equal(m, want)
    with pytest.raises(ValueError, match="C-contiguous"):
        _plan.relu(x[:, ::2], np.empty_like(x[:, ::2]))
    with pytest.raises(TypeError, match="float32 or float64, got float16"):
        _plan.relu(x, np.empty(x.shape, np.float16))
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises(TypeError, match="expected"):
        _plan.relu(x, np.empty(x.shape, other))
    with pytest.raises(ValueError, match="bias must have shape"):
        _plan.bias_act_rows(m, b[:5], False)
    with pytest.raises(ValueError, match="same size"):
        _plan.relu_backward(g, y, out[:1])


def test_relu_layer_takes_odd_inputs(rng):
    relu = nn.ReLU()
    x = rng.standard_normal((2, 3, 8))
    for odd in (x[:, :, ::2], x.astype(">f8"), x.astype(np.float16), x.astype(np.int32)):
        want = np.maximum(odd, 0, dtype=odd.dtype.type if odd.dtype.kind == "f" else np.float64)
        np.testing.assert_array_equal(relu.forward(odd), want)
    y = relu.forward(x, training=True)
    g = rng.standard_normal(x.shape).astype(np.float32)   # another dtype: numpy's path
    np.testing.assert_array_equal(relu.backward(g), g * (y > 0))


@pytest.mark.parametrize("kernel_epilogue", [True, False], ids=["c_epilogue", "in_place"])
def test_both_relu_fusions_match(kernel_epilogue, monkeypatch, rng):
    from cconv import compiled

    if not kernel_epilogue:
        monkeypatch.setattr(compiled, "_fused_relu_code", lambda: None)
    elif compiled._fused_relu_code() is None:
        pytest.skip("this build's conv kernel has no fused ReLU")
    net = _lenet(np.float64)
    x = rng.standard_normal((2, 1, 10, 10))
    compiled.clear(net)
    plan = net.compile(x.shape)
    # the pool joins the kernel's epilogue; without one, ReLU runs in place
    assert plan.steps[0][0] == ("conv2d+relu+max_pool2d" if kernel_epilogue else "conv2d+relu")
    np.testing.assert_array_equal(plan(x), _layer_by_layer(net, x))
    compiled.clear(net)


def test_buffer_cap_allocates_per_call(monkeypatch, rng):
    from cconv import compiled

    net = _lenet()
    x = rng.standard_normal((3, 1, 10, 10)).astype(np.float32)
    want = _layer_by_layer(net, x)
    monkeypatch.setattr(compiled, "MAX_BUFFER_BYTES", 0)
    plan = compiled.CompiledPlan(net, [x.shape], np.float32)
    assert all(cell is None for cell in _kept_buffers(plan))
    np.testing.assert_array_equal(plan(x), want)
    monkeypatch.setattr(compiled, "MAX_BUFFER_BYTES", 1 << 30)
    plan = compiled.CompiledPlan(net, [x.shape], np.float32)
    assert any(cell is not None for cell in _kept_buffers(plan))
    np.testing.assert_array_equal(plan(x), want)


def _kept_buffers(plan):
    """The arrays the plan's steps keep between calls (closure cells named arr)."""
    out = []
    for fn, *_ in plan._run_steps:
        names = fn.__code__.co_freevars
        if "arr" in names:
            out.append(fn.__closure__[names.index("arr")].cell_contents)
    return out


def test_plans_do_not_keep_a_net_alive(rng):
    import gc
    import weakref

    net = _lenet()
    net(rng.standard_normal((1, 1, 10, 10)).astype(np.float32))
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None
    from cconv import compiled
    assert all(r() is not None for r, _ in compiled._local.plans.values())  # buffers freed
