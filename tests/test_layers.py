"""Layer tests: gradients, shapes, configs, state, initialisation, argument checks."""
import json

import numpy as np
import pytest

from cconv import nn
from cconv.gradcheck import check_gradients
from layer_cases import CASES, built

IDS = [c.id for c in CASES]


def _randomise_params(layer, rng):
    # ones/zeros (BatchNorm, PReLU) would hide a forgotten factor
    for name, p in layer.params.items():
        if layer.trainable[name]:
            p[...] = rng.standard_normal(p.shape)


def _as_list(g):
    return list(g) if isinstance(g, tuple) else [g]


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_match_finite_differences(case, rng):
    layer = built(case).astype(np.float64)
    _randomise_params(layer, rng)
    errors = check_gradients(layer, case.draw(rng))
    expected = {f"input{i}" for i in range(len(case.shapes))}
    expected |= {f"param:{n}" for n, t in layer.trainable.items() if t}
    assert set(errors) == expected


def test_batchnorm_gradients_with_large_batch_subsampled(rng):
    layer = nn.BatchNorm2d(3)
    layer.build([(3, 6, 6)])
    layer.astype(np.float64)
    _randomise_params(layer, rng)
    x = rng.standard_normal((8, 3, 6, 6)) * 3 + 1
    check_gradients(layer, [x], max_coords=60)


def test_frozen_parameter_gets_zero_gradient_and_rest_still_right(rng):
    layer = nn.Conv2d(2, 3, 3)
    layer.build([(2, 5, 5)], rng)
    layer.astype(np.float64)
    layer.trainable["weight"] = False
    check_gradients(layer, [rng.standard_normal((2, 2, 5, 5))])
    assert not layer.grads["weight"].any()
    assert layer.grads["bias"].any()


def test_backward_overwrites_grads_in_place(rng):
    layer = nn.Linear(4, 3)
    layer.build([(4,)], rng)
    ref = layer.grads["weight"]
    x = rng.standard_normal((5, 4)).astype(np.float32)
    for _ in range(2):
        y = layer.forward(x, training=True)
        layer.backward(np.ones_like(y))
    assert layer.grads["weight"] is ref
    np.testing.assert_allclose(ref, np.ones((3, 5)) @ x, rtol=1e-5)  # not accumulated
    assert ref.dtype == np.float32


# ---------------------------------------------------------------- shapes, dtypes

@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("training", [False, True], ids=["infer", "train"])
def test_output_shape_agrees_with_forward(case, training, rng):
    layer = built(case)
    xs = case.draw(rng, np.float32)
    y = layer.forward(*xs, training=training)
    expected = list(layer.output_shape(case.shapes))
    # a layer that declares it moves the batch axis (a graph output) puts it there
    expected.insert(getattr(layer, "position", 0) if getattr(layer, "moves_batch_axis", False)
                    else 0, case.batch)
    assert y.shape == tuple(expected)
    assert y.dtype == np.float32
    if training:
        grads = _as_list(layer.backward(np.ones_like(y)))
        assert [g.shape for g in grads] == [x.shape for x in xs]
        assert all(g.dtype == np.float32 for g in grads)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parameters_are_float32_and_astype_casts(case):
    layer = built(case)
    for name, p in layer.named_parameters():
        assert p.dtype == np.float32, name
        assert layer.grads[name].shape == p.shape
    layer.astype(np.float64)
    assert all(p.dtype == np.float64 for p in layer.params.values())
    assert all(g.dtype == np.float64 for g in layer.grads.values())


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_config_round_trip(case):
    layer = case.make()
    config = layer.get_config()
    text = json.dumps(config)
    again = type(layer).from_config(json.loads(text))
    assert again.get_config() == config
    assert type(again).type_name == type(layer).type_name
    assert repr(again) == repr(layer)
    assert nn.LAYER_CLASSES[layer.type_name] is type(layer)


def test_layer_classes_lists_every_exported_layer():
    exported = {name for name in nn.__all__
                if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Layer)
                and name != "Layer"}
    assert exported == set(nn.LAYER_CLASSES)
    assert {c.make().type_name for c in CASES} == set(nn.LAYER_CLASSES)


def test_sequential_is_exported_lazily():
    from cconv.graph import Sequential
    assert nn.Sequential is Sequential
    assert "Sequential" in dir(nn)


# ---------------------------------------------------------------- state

def _state(layer):
    return {k: v for k, v in vars(layer).items()}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_inference_keeps_no_state(case, rng):
    layer = built(case)
    before = _state(layer)
    params = {n: p.copy() for n, p in layer.params.items()}
    rng_state = layer.rng.bit_generator.state if hasattr(layer, "rng") else None
    layer.forward(*case.draw(rng, np.float32), training=False)
    after = _state(layer)
    assert after.keys() == before.keys()
    for k in before:
        assert after[k] is before[k], f"attribute {k} changed"
    assert getattr(layer, "_saved", None) is None
    for n, p in layer.params.items():
        np.testing.assert_array_equal(p, params[n])
    if rng_state is not None:
        assert layer.rng.bit_generator.state == rng_state


# Transpose's backward needs nothing saved by the forward, so it has no such check.
NEEDS_SAVED = [c for c in CASES if c.id != "transpose"]


@pytest.mark.parametrize("case", NEEDS_SAVED, ids=[c.id for c in NEEDS_SAVED])
def test_backward_without_training_forward_raises(case, rng):
    layer = built(case)
    y = layer.forward(*case.draw(rng, np.float32))
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones_like(y))


# ---------------------------------------------------------------- initialisation

PARAM_CASES = [c for c in CASES if built(c).params]


@pytest.mark.parametrize("case", PARAM_CASES, ids=[c.id for c in PARAM_CASES])
def test_seeded_build_is_reproducible(case):
    a, b, c = built(case, seed=7), built(case, seed=7), built(case, seed=8)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    if any(name == "weight" for name in a.params) and case.id.startswith(("conv", "linear")):
        assert not np.array_equal(a.params["weight"], c.params["weight"])


@pytest.mark.parametrize("name, std", [("he", lambda fi, fo: np.sqrt(2 / fi)),
                                       ("he_normal", lambda fi, fo: np.sqrt(2 / fi)),
                                       ("he_uniform", lambda fi, fo: np.sqrt(2 / fi)),
                                       ("xavier", lambda fi, fo: np.sqrt(2 / (fi + fo))),
                                       ("xavier_normal", lambda fi, fo: np.sqrt(2 / (fi + fo)))])
def test_initialiser_scale(name, std):
    layer = nn.Conv2d(32, 64, 3, groups=2, init=name)
    layer.build([(32, 8, 8)], rng=np.random.default_rng(0))
    w = layer.params["weight"]
    fan_in, fan_out = 16 * 9, 64 * 9
    assert abs(w.std() / std(fan_in, fan_out) - 1) < 0.05
    assert abs(w.mean()) < 0.01
    assert not layer.params["bias"].any()
    if "uniform" in name or name == "xavier":
        bound = np.sqrt(3) * std(fan_in, fan_out)
        assert np.abs(w).max() <= bound


def test_build_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match="C=3"):
        nn.Conv2d(3, 4, 3).build([(2, 8, 8)])
    with pytest.raises(ValueError, match="does not fit"):
        nn.Conv2d(3, 4, 5).build([(3, 4, 4)])
    with pytest.raises(ValueError, match="1 input"):
        nn.ReLU().build([(3,), (3,)])
    with pytest.raises(ValueError, match="two or more"):
        nn.Add().build([(3,)])
    with pytest.raises(ValueError, match="one shape"):
        nn.Add().build([(3,), (4,)])
    with pytest.raises(ValueError, match="equal except"):
        nn.Concat().build([(3, 2), (4, 3)])
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(4, 2).build([(5,)])
    with pytest.raises(ValueError, match="cannot reshape"):
        nn.Reshape((5, -1)).build([(2, 3)])
    with pytest.raises(ValueError, match="num_parameters"):
        nn.PReLU(4).build([(3, 2)])
    with pytest.raises(ValueError, match="C=4"):
        nn.BatchNorm2d(4).build([(3, 2, 2)])


def test_forward_before_build_raises():
    with pytest.raises(RuntimeError, match="build"):
        nn.Linear(2, 2).forward(np.zeros((1, 2)))


# ---------------------------------------------------------------- argument checks

BAD_ARGS = [
    (nn.Conv2d, dict(in_ch=0, out_ch=4, kernel_size=3), "in_ch"),
    (nn.Conv2d, dict(in_ch=3, out_ch=-1, kernel_size=3), "out_ch"),
    (nn.Conv2d, dict(in_ch=3, out_ch=4, kernel_size=(3, 3, 3)), "kernel_size"),
    (nn.Conv2d, dict(in_ch=3, out_ch=4, kernel_size=3.5), "kernel_size"),
    (nn.Conv2d, dict(in_ch=3, out_ch=4, kernel_size=3, stride=0), "stride"),
    (nn.Conv2d, dict(in_ch=3, out_ch=4, kernel_size=3, padding=-1), "padding"),
    (nn.Conv2d, dict(in_ch=3, out_ch=4, kernel_size=3, padding="full"), "padding"),
    (nn.Conv2d, dict(in_ch=3, out_ch=4, kernel_size=3, dilation=0), "dilation"),
    (nn.Conv2d, dict(in_ch=3, out_ch=4, kernel_size=3, groups=2), "groups"),
    (nn.Conv2d, dict(in_ch=3, out_ch=4, kernel_size=3, bias="yes"), "bias"),
    (nn.Conv2d, dict(in_ch=3, out_ch=4, kernel_size=3, init="magic"), "init"),
    (nn.Conv1d, dict(in_ch=3, out_ch=4, kernel_size=(3, 3)), "kernel_size"),
    (nn.Conv1d, dict(in_ch=3, out_ch=4, kernel_size=3, padding=(1, 2, 3)), "padding"),
    (nn.MaxPool2d, dict(kernel_size=0), "kernel_size"),
    (nn.MaxPool2d, dict(kernel_size=2, stride=0), "stride"),
    (nn.MaxPool2d, dict(kernel_size=2, padding=2), "padding"),
    (nn.MaxPool2d, dict(kernel_size=2, dilation=0), "dilation"),
    (nn.MaxPool1d, dict(kernel_size=2, ceil_mode=1), "ceil_mode"),
    (nn.AvgPool2d, dict(kernel_size=2, count_include_pad=None), "count_include_pad"),
    (nn.AvgPool1d, dict(kernel_size=(2, 2)), "kernel_size"),
    (nn.LeakyReLU, dict(negative_slope="x"), "negative_slope"),
    (nn.PReLU, dict(num_parameters=0), "num_parameters"),
    (nn.PReLU, dict(init=float("nan")), "init"),
    (nn.Softmax, dict(axis=0), "axis"),
    (nn.Softmax, dict(axis=1.0), "axis"),
    (nn.Linear, dict(in_features=0, out_features=3), "in_features"),
    (nn.Linear, dict(in_features=3, out_features=True), "out_features"),
    (nn.Linear, dict(in_features=3, out_features=2, init="bogus"), "init"),
    (nn.Reshape, dict(shape=5), "shape"),
    (nn.Reshape, dict(shape=(-1, -1)), "shape"),
    (nn.Reshape, dict(shape=(2, -2)), "shape"),
    (nn.Transpose, dict(axes=(0, 0)), "axes"),
    (nn.Transpose, dict(axes=(1, 2)), "axes"),
    (nn.BatchNorm1d, dict(num_features=0), "num_features"),
    (nn.BatchNorm2d, dict(num_features=2, eps=0), "eps"),
    (nn.BatchNorm2d, dict(num_features=2, momentum=1.5), "momentum"),
    (nn.BatchNorm2d, dict(num_features=2, affine="no"), "affine"),
    (nn.Dropout, dict(p=1.5), "p"),
    (nn.Dropout, dict(p=-0.1), "p"),
    (nn.Dropout, dict(p=0.5, seed=-1), "seed"),
    (nn.Dropout, dict(p=0.5, seed=1.5), "seed"),
    (nn.Concat, dict(axis=0), "axis"),
]


@pytest.mark.parametrize("cls, kwargs, arg", BAD_ARGS,
                         ids=[f"{c.__name__}-{a}-{i}" for i, (c, _, a) in enumerate(BAD_ARGS)])
def test_bad_constructor_argument_raises_value_error_naming_it(cls, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        cls(**kwargs)


# ---------------------------------------------------------------- layer specifics

def test_maxpool_training_keeps_indices_not_input(rng):
    layer = nn.MaxPool2d(2)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    y = layer.forward(x, training=True)
    assert not any(a is x for a in layer._saved)
    x[...] = 0  # the input buffer may be reused after forward
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.sum() == y.size


def test_batchnorm_running_statistics_and_inference(rng):
    layer = nn.BatchNorm2d(3, momentum=0.25)
    layer.build([(3, 4, 4)])
    x = (rng.standard_normal((6, 3, 4, 4)) * 2 + 5).astype(np.float32)
    y = layer.forward(x, training=True)
    mean = x.mean(axis=(0, 2, 3))
    var_unbiased = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(layer.params["running_mean"], 0.25 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.params["running_var"], 0.75 + 0.25 * var_unbiased,
                               rtol=1e-5)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-3)
    layer.params["weight"][:] = [1, 2, 3]
    layer.params["bias"][:] = [0, -1, 1]
    layer.params["running_mean"][:] = mean
    layer.params["running_var"][:] = x.var(axis=(0, 2, 3))
    y = layer.forward(x)
    ref = ((x - mean[:, None, None]) / np.sqrt(x.var(axis=(0, 2, 3))[:, None, None] + 1e-5)
           * np.array([1, 2, 3])[:, None, None] + np.array([0, -1, 1])[:, None, None])
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    assert not layer.trainable["running_mean"] and not layer.trainable["running_var"]


def test_batchnorm_refuses_single_value_per_channel_in_training():
    layer = nn.BatchNorm1d(3)
    layer.build([(3,)])
    with pytest.raises(ValueError, match="more than one value"):
        layer.forward(np.ones((1, 3), np.float32), training=True)
    assert layer.forward(np.ones((1, 3), np.float32)).shape == (1, 3)


def test_dropout_is_inverted_seeded_and_identity_in_inference(rng):
    x = np.ones((200, 50), np.float32)
    a, b = nn.Dropout(0.3, seed=11), nn.Dropout(0.3, seed=11)
    assert a.forward(x) is x
    ya, yb = a.forward(x, training=True), b.forward(x, training=True)
    np.testing.assert_array_equal(ya, yb)
    assert set(np.unique(ya)) == {0.0, np.float32(1 / 0.7)}
    assert abs((ya == 0).mean() - 0.3) < 0.02
    assert abs(ya.mean() - 1) < 0.03
    g = a.backward(np.full_like(x, 2.0))
    np.testing.assert_array_equal(g, 2 * ya)
    assert not np.array_equal(a.forward(x, training=True), ya)  # next mask differs
    assert not nn.Dropout(1.0, seed=0).forward(x, training=True).any()
    np.testing.assert_array_equal(nn.Dropout(0.0).forward(x, training=True), x)


def test_concat_and_add_values(rng):
    a, b = rng.standard_normal((2, 2, 3)), rng.standard_normal((2, 4, 3))
    cat = nn.Concat()
    np.testing.assert_array_equal(cat.forward(a, b, training=True), np.concatenate([a, b], 1))
    ga, _ = cat.backward(np.arange(36.0).reshape(2, 6, 3))
    np.testing.assert_array_equal(ga, np.arange(36.0).reshape(2, 6, 3)[:, :2])
    add = nn.Add()
    np.testing.assert_allclose(add.forward(a, a, a), 3 * a)
    with pytest.raises(ValueError, match="one shape"):
        add.forward(a, b)


def test_softmax_is_stable_and_sums_to_one():
    x = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]], np.float32)
    y = nn.Softmax().forward(x)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(y[0], [1, 0, 0])


def test_sigmoid_is_stable_for_large_inputs():
    y = nn.Sigmoid().forward(np.array([[-1000.0, 0.0, 1000.0]], np.float32))
    np.testing.assert_array_equal(y, [[0.0, 0.5, 1.0]])


def test_hard_activation_values():
    x = np.array([[-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0]])
    np.testing.assert_allclose(nn.HardSigmoid().forward(x),
                               [[0, 0, 0.25, 0.5, 0.75, 1, 1]])
    np.testing.assert_allclose(nn.HardSwish().forward(x),
                               [[0, 0, -0.375, 0, 1.125, 3, 4]])


def test_linear_matches_matmul(rng):
    layer = nn.Linear(6, 3)
    layer.build([(6,)], rng)
    layer.params["bias"][:] = [1, 2, 3]
    x = rng.standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(layer.forward(x), x @ layer.params["weight"].T + [1, 2, 3],
                               rtol=1e-5)


def test_conv_layer_matches_ops(rng):
    from cconv import ops
    layer = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    layer.build([(4, 9, 9)], rng)
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    ref = ops.conv2d(x, layer.params["weight"], layer.params["bias"], stride=2, padding=1,
                     groups=2)
    np.testing.assert_array_equal(layer.forward(x), ref)


def test_gradcheck_detects_a_wrong_gradient(rng):
    layer = nn.Linear(3, 2)
    layer.build([(3,)], rng)
    layer.astype(np.float64)
    good_backward = layer.backward
    layer.backward = lambda g: good_backward(g) * 1.001
    with pytest.raises(AssertionError, match="input0"):
        check_gradients(layer, [rng.standard_normal((2, 3))])


def test_gradcheck_requires_float64_parameters(rng):
    layer = nn.Linear(3, 2)
    layer.build([(3,)], rng)
    with pytest.raises(ValueError, match="astype"):
        check_gradients(layer, [rng.standard_normal((2, 3))])


def test_layers_run_their_kernels_through_the_plugin_registry(rng):
    from cconv import ops, plugins
    from cconv.hookspecs import hookimpl

    calls = []

    def spy(op):
        def kernel(*args, **kwargs):
            calls.append(op)
            return getattr(ops, op)(*args, **kwargs)
        return kernel

    class SpyPlugin:
        @hookimpl
        def register_kernels(self, register):
            for op in ("conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward",
                       "avg_pool1d", "global_avg_pool2d"):
                register(op, "spy", spy(op), priority=1000)

    plugin = SpyPlugin()
    plugins.register_plugin(plugin, name="test-layers-spy")
    try:
        x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
        for layer in (nn.Conv2d(2, 3, 3), nn.MaxPool2d(2)):
            layer.build([x.shape[1:]], rng)
            layer.backward(np.ones_like(layer.forward(x, training=True)))
        nn.AvgPool1d(2).forward(x[:, :, 0])
        nn.GlobalAvgPool().forward(x)
    finally:
        plugins.unregister_plugin(plugin)
    assert calls == ["conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward",
                     "avg_pool1d", "global_avg_pool2d"]
