"""The vision-model layers against plain numpy references written from the definitions
(loops where the layer vectorises), beside the gradient checks of test_layers.py."""
import math

import numpy as np
import pytest

from cconv import nn


def _built(layer, *shapes):
    layer.build(list(shapes), rng=np.random.default_rng(0))
    return layer


@pytest.mark.parametrize("fn, ref", [
    ("erf", lambda v: math.erf(v)),
    ("gelu", lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2)))),
    ("gelu_tanh", lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi)
                                                     * (v + 0.044715 * v ** 3)))),
    ("mish", lambda v: v * math.tanh(math.log1p(math.exp(v)))),
    ("softsign", lambda v: v / (1 + abs(v))),
    ("selu", lambda v: 1.0507009873554805 * (v if v > 0 else
                                             1.6732632423543772 * (math.exp(v) - 1))),
])
def test_unary_matches_its_definition(fn, ref, rng):
    x = rng.uniform(-4, 4, (3, 7))
    want = np.vectorize(ref)(x)
    np.testing.assert_allclose(nn.Unary(fn).forward(x), want, rtol=1e-12, atol=1e-12)


def test_unary_refuses_a_parameter_it_does_not_take():
    with pytest.raises(ValueError, match="takes no alpha"):
        nn.Unary("exp", alpha=2.0)
    with pytest.raises(ValueError, match="fn must be one of"):
        nn.Unary("cosh")


def test_lrn_matches_a_loop_over_channels(rng):
    x = rng.standard_normal((2, 6, 3, 2))
    size, alpha, beta, bias = 4, 0.3, 0.75, 1.5
    want = np.empty_like(x)
    for c in range(6):
        lo, hi = max(0, c - (size - 1) // 2), min(5, c + size // 2)
        s = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        want[:, c] = x[:, c] / (bias + alpha / size * s) ** beta
    got = _built(nn.LRN(size, alpha, beta, bias), (6, 3, 2)).forward(x)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_group_norm_matches_per_group_statistics(rng):
    x = rng.standard_normal((2, 6, 3, 4)) * 3 + 1
    layer = _built(nn.GroupNorm(3, 6, eps=1e-3), (6, 3, 4)).astype(np.float64)
    layer.params["weight"][...] = rng.standard_normal(6)
    layer.params["bias"][...] = rng.standard_normal(6)
    want = np.empty_like(x)
    for n in range(2):
        for g in range(3):
            block = x[n, 2 * g:2 * g + 2]
            want[n, 2 * g:2 * g + 2] = (block - block.mean()) / np.sqrt(block.var() + 1e-3)
    want = want * layer.params["weight"].reshape(1, 6, 1, 1) + \
        layer.params["bias"].reshape(1, 6, 1, 1)
    np.testing.assert_allclose(layer.forward(x), want, rtol=1e-10, atol=1e-12)


def test_layer_norm_takes_any_leading_size(rng):
    layer = _built(nn.LayerNorm(4), (3, 4))
    x = rng.standard_normal((2, 5, 7, 4))   # other leading sizes than built for
    y = layer.forward(x)
    np.testing.assert_allclose(y.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=-1), 1 / (1 + 1e-5 / x.var(axis=-1)), rtol=1e-6)


def test_depth_to_space_matches_the_index_formulas(rng):
    b, x = 2, rng.standard_normal((1, 8, 2, 3))
    dcr = _built(nn.DepthToSpace(b), (8, 2, 3)).forward(x)
    crd = _built(nn.DepthToSpace(b, mode="CRD"), (8, 2, 3)).forward(x)
    for c in range(2):
        for h in range(4):
            for w in range(6):
                i, j = h % b, w % b
                assert dcr[0, c, h, w] == x[0, (i * b + j) * 2 + c, h // b, w // b]
                assert crd[0, c, h, w] == x[0, c * b * b + i * b + j, h // b, w // b]
    s2d = _built(nn.SpaceToDepth(b), (2, 4, 6)).forward(dcr)
    np.testing.assert_array_equal(s2d, x)


def test_softmax_flatten_is_softmax_of_the_rows(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    rows = x.reshape(2, 3, 20)
    want = np.exp(rows) / np.exp(rows).sum(axis=-1, keepdims=True)
    got = nn.Softmax(axis=2, flatten=True).forward(x)
    np.testing.assert_allclose(got, want.reshape(x.shape), rtol=1e-12)
    np.testing.assert_allclose(nn.LogSoftmax(axis=2, flatten=True).forward(x),
                               np.log(want).reshape(x.shape), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op, ref", [
    ("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min), ("prod", np.prod),
    ("l1", lambda a, axis, keepdims: np.abs(a).sum(axis=axis, keepdims=keepdims)),
    ("l2", lambda a, axis, keepdims: np.sqrt((a * a).sum(axis=axis, keepdims=keepdims))),
    ("log_sum_exp", lambda a, axis, keepdims: np.log(np.exp(a).sum(axis=axis,
                                                                   keepdims=keepdims))),
])
@pytest.mark.parametrize("keepdims", [True, False])
def test_reduce_matches_numpy(op, ref, keepdims, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    got = nn.Reduce(op, axes=(1, -1), keepdims=keepdims).forward(x)
    np.testing.assert_allclose(got, ref(x, axis=(1, 3), keepdims=keepdims), rtol=1e-12)


def test_reduce_refuses_the_batch_axis():
    with pytest.raises(ValueError, match="batch axis"):
        nn.Reduce("sum", axes=(0,)).output_shape([(3, 4)])


def test_prod_gradient_with_a_zero_factor():
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0]])
    layer = nn.Reduce("prod", axes=(1,), keepdims=False)
    layer.forward(x, training=True)
    np.testing.assert_array_equal(layer.backward(np.ones(2)), [[0, 6, 0], [0, 0, 0]])


def test_slice_gather_tile_expand_match_numpy(rng):
    x = rng.standard_normal((2, 5, 6))
    np.testing.assert_array_equal(nn.Slice([4, 1], [0, 6], [1, 2], [-2, 2]).forward(x),
                                  x[:, 4:0:-2, 1:6:2])
    np.testing.assert_array_equal(nn.Gather(2, [[5, 0]]).forward(x), x[:, :, [[5, 0]]])
    np.testing.assert_array_equal(nn.Tile([2, 1]).forward(x), np.tile(x, (1, 2, 1)))
    np.testing.assert_array_equal(nn.Expand([3, 1, 1]).forward(x),
                                  np.broadcast_to(x[:, None], (2, 3, 5, 6)))


def test_slice_output_shape_follows_the_input_size():
    layer = nn.Slice([1], [-1], [-1])
    assert layer.output_shape([(3, 8)]) == (3, 6)
    assert layer.output_shape([(3, 20)]) == (3, 18)   # not pinned to the built size


def test_nary_broadcasts_a_batch_of_one_and_sums_its_gradient(rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((1, 4))
    layer = nn.Nary("sum")
    np.testing.assert_array_equal(layer.forward(a, b, training=True), a + b)
    ga, gb = layer.backward(np.ones((3, 4)))
    np.testing.assert_array_equal(ga, np.ones((3, 4)))
    np.testing.assert_array_equal(gb, np.full((1, 4), 3.0))


def test_where_and_compare_pass_no_gradient_to_masks(rng):
    x, y = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    mask = nn.Compare("greater").forward(x, y)
    np.testing.assert_array_equal(mask, (x > y).astype(float))
    np.testing.assert_array_equal(nn.Compare("less", value=0.0).forward(x), (x < 0) * 1.0)
    w = nn.Where()
    out = w.forward(mask, x, y, training=True)
    np.testing.assert_array_equal(out, np.maximum(x, y))
    gc, gx, gy = w.backward(np.ones((2, 5)))
    assert not gc.any()
    np.testing.assert_array_equal(gx + gy, np.ones((2, 5)))


def test_move_batch_axis_round_trips(rng):
    x = rng.standard_normal((2, 3, 4))
    layer = nn.MoveBatchAxis(2)
    y = layer.forward(x, training=True)
    assert y.shape == (3, 4, 2) and layer.moves_batch_axis
    np.testing.assert_array_equal(layer.backward(y), x)


def test_where_fills_with_a_constant_minus_infinity(rng):
    x = rng.standard_normal((2, 3))
    layer = nn.Where({"condition": [1.0, 0.0, 1.0], "y": -np.inf})
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, np.where([True, False, True], x, -np.inf))
    np.testing.assert_array_equal(layer.backward(np.ones((2, 3))), [[1, 0, 1]] * 2)
    assert nn.Where.from_config(layer.get_config()).get_config() == layer.get_config()
