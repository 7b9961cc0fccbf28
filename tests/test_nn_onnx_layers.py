"""Values and argument checks of the layers added for ONNX import (their gradients
are checked with every layer in test_layers.py through layer_cases.py)."""
import numpy as np
import pytest

import cconv
from cconv import nn


def _built(layer, *shapes):
    layer.build(list(shapes), rng=np.random.default_rng(0))
    return layer


@pytest.mark.parametrize("kwargs", [
    {"stride": 2, "padding": 1, "output_padding": 1},
    {"stride": (1, 3), "padding": (0, 2), "dilation": 2, "groups": 2},
])
def test_conv_transpose_matches_torch(kwargs, rng):
    torch = pytest.importorskip("torch")
    layer = _built(nn.ConvTranspose2d(4, 6, 3, **kwargs), (4, 5, 6)).astype(np.float64)
    layer.params["bias"][:] = rng.standard_normal(6)
    x = rng.standard_normal((2, 4, 5, 6))
    expected = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x), torch.from_numpy(layer.params["weight"]),
        torch.from_numpy(layer.params["bias"]), **kwargs).numpy()
    np.testing.assert_allclose(layer(x), expected, atol=1e-12)


@pytest.mark.parametrize("kwargs, torch_kwargs", [
    ({"scale": (2.0, 3.0), "coordinate_transformation_mode": "asymmetric",
      "nearest_mode": "floor"}, {"scale_factor": (2.0, 3.0), "mode": "nearest"}),
    ({"size": (7, 9), "mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
     {"size": (7, 9), "mode": "bilinear"}),
    ({"size": (3, 4), "mode": "linear"}, {"size": (3, 4), "mode": "bilinear"}),
    ({"size": (8, 11), "mode": "linear", "coordinate_transformation_mode": "align_corners"},
     {"size": (8, 11), "mode": "bilinear", "align_corners": True}),
])
def test_resize_matches_torch_interpolate(kwargs, torch_kwargs, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 5, 6))
    expected = torch.nn.functional.interpolate(torch.from_numpy(x), **torch_kwargs).numpy()
    np.testing.assert_allclose(_built(nn.Resize(**kwargs), (3, 5, 6))(x), expected,
                               atol=1e-12)


def test_resize_nearest_2x_repeats_pixels(rng):
    x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    y = _built(nn.Resize(scale=(2.0, 2.0)), (2, 3, 4))(x)
    np.testing.assert_array_equal(y, x.repeat(2, axis=2).repeat(2, axis=3))


def test_resize_refuses_giant_interpolation_matrices():
    layer = nn.Resize(size=(1 << 20, 4))
    with pytest.raises(ValueError, match="interpolation matrix"):
        layer(np.zeros((1, 1, 64, 4), np.float32))


def _bilinear_reference(x, out_h, out_w):
    """Plain numpy bilinear resampling, torch's align_corners=False (pytorch_half_pixel)."""
    n, c, h, w = x.shape
    y = np.zeros((n, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            sy = min(max((i + 0.5) * h / out_h - 0.5, 0.0), h - 1)
            sx = min(max((j + 0.5) * w / out_w - 0.5, 0.0), w - 1)
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = sy - y0, sx - x0
            y[:, :, i, j] = ((1 - fy) * ((1 - fx) * x[:, :, y0, x0] + fx * x[:, :, y0, x1])
                             + fy * ((1 - fx) * x[:, :, y1, x0] + fx * x[:, :, y1, x1]))
    return y


@pytest.mark.parametrize("like_hw", [(7, 9), (3, 4), (5, 6)])
def test_resize_as_follows_the_reference_size_at_every_call(like_hw, rng):
    """ResizeAs (ONNX Resize with sizes = Shape(skip)[2:]): the output takes the second
    input's spatial size whatever it is, and matches a numpy reference."""
    layer = _built(nn.ResizeAs(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
                   (3, 5, 6), (8, 4, 4))
    x = rng.standard_normal((2, 3, 5, 6))
    like = rng.standard_normal((2, 8) + like_hw)
    y = layer(x, like)
    assert y.shape == (2, 3) + like_hw
    np.testing.assert_allclose(y, _bilinear_reference(x, *like_hw), atol=1e-12)
    nearest = nn.ResizeAs(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    ny = _built(nearest, (3, 5, 6), (8, 4, 4))(x, like)
    rows = np.floor(np.arange(like_hw[0]) * 5 / like_hw[0]).astype(int)
    cols = np.floor(np.arange(like_hw[1]) * 6 / like_hw[1]).astype(int)
    np.testing.assert_array_equal(ny, x[:, :, rows][:, :, :, cols])


def test_resize_as_backward_gives_the_reference_no_gradient(rng):
    layer = _built(nn.ResizeAs(mode="linear"), (2, 3, 3), (1, 5, 4))
    x, like = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((1, 1, 5, 4))
    layer.forward(x, like, training=True)
    gx, glike = layer.backward(np.ones((1, 2, 5, 4)))
    assert gx.shape == x.shape and np.allclose(gx.sum(), 2 * 5 * 4)
    assert glike.shape == like.shape and not glike.any()
    with pytest.raises(ValueError, match="one rank"):
        layer.output_shape([(2, 3, 3), (1, 5)])


@pytest.mark.parametrize("n, k, s, d", [(7, 3, 2, 1), (8, 3, 2, 1), (9, 4, 3, 2), (5, 1, 2, 1),
                                        (4, 5, 1, 1)])
@pytest.mark.parametrize("lower", [False, True])
def test_pad_same_gives_ceil_n_over_s_outputs_and_onnx_pads(n, k, s, d, lower, rng):
    """ONNX's SAME rule, per call: total = max((ceil(n/s) - 1) s + (k - 1) d + 1 - n, 0),
    the odd one at the end (SAME_UPPER) or the start (SAME_LOWER)."""
    layer = nn.PadSame(k, s, d, lower=lower, value=2.0)
    x = rng.standard_normal((2, 3, n))
    y = layer(x)
    total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
    before = total - total // 2 if lower else total // 2
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (0, 0), (before, total - before)),
                                            constant_values=2.0))
    assert (y.shape[-1] - ((k - 1) * d + 1)) // s + 1 == -(-n // s)


def test_pad_same_refuses_reflect_and_a_wrong_rank():
    with pytest.raises(ValueError, match="reflect"):
        nn.PadSame(3, 2, mode="reflect")
    with pytest.raises(ValueError, match="2-D window"):
        nn.PadSame((3, 3), 2)(np.zeros((1, 2, 5)))


@pytest.mark.parametrize("like_hw", [(9, 6), (5, 6), (6, 5), (3, 8)])
def test_pad_as_pads_or_crops_to_the_reference_size_at_every_call(like_hw, rng):
    """PadAs (UNet's F.pad by skip.size() - x.size()): d = like - x per spatial axis, d / 2
    rounded toward zero before (ONNX's integer Div), the rest after; one layer, any size."""
    layer = _built(nn.PadAs(value=0.25), (3, 5, 6), (8, 5, 6))
    x = rng.standard_normal((2, 3, 5, 6))
    y = layer(x, rng.standard_normal((2, 8) + like_hw))
    assert y.shape == (2, 3) + like_hw
    want = x
    for axis, (n, m) in enumerate(zip((5, 6), like_hw), start=2):
        d = m - n
        before = int(d / 2)   # toward zero
        after = d - before
        lo, hi = max(-before, 0), n - max(-after, 0)
        want = np.take(want, range(lo, hi), axis=axis)
        pad = [(0, 0)] * 4
        pad[axis] = (max(before, 0), max(after, 0))
        want = np.pad(want, pad, constant_values=0.25)
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("like_hw", [(4, 5), (6, 3), (9, 9)])
def test_slice_as_crops_to_the_reference_size_at_every_call(like_hw, rng):
    """SliceAs (up[:, :, 1:skip.shape[2], :skip.shape[3]]): ends are the reference's sizes
    on each call, clamped like ONNX Slice; the gradient goes back to the kept entries."""
    layer = _built(nn.SliceAs([1, 0], [2, 3], [2, 3]), (3, 6, 7), (2, 4, 5))
    x = rng.standard_normal((2, 3, 6, 7))
    like = rng.standard_normal((2, 2) + like_hw)
    y = layer.forward(x, like, training=True)
    np.testing.assert_array_equal(y, x[:, :, 1:like_hw[0], :like_hw[1]])
    gx, glike = layer.backward(np.ones_like(y))
    want = np.zeros_like(x)
    want[:, :, 1:like_hw[0], :like_hw[1]] = 1
    np.testing.assert_array_equal(gx, want)
    assert glike.shape == like.shape and not glike.any()
    assert nn.SliceAs.from_config(layer.get_config()).get_config() == layer.get_config()


def test_slice_as_refuses_bad_axes():
    with pytest.raises(ValueError, match="one entry per axis"):
        nn.SliceAs([0], [2, 3], [2, 3])
    with pytest.raises(ValueError, match="axes"):
        nn.SliceAs([0], [0], [2])   # the batch axis
    with pytest.raises(ValueError, match="do not fit"):
        nn.SliceAs([0], [3], [2]).output_shape([(3, 6), (2, 4)])


def test_pad_as_backward_and_errors(rng):
    layer = _built(nn.PadAs(), (2, 3, 3), (1, 5, 4))
    x, like = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((1, 1, 5, 4))
    layer.forward(x, like, training=True)
    gx, glike = layer.backward(np.ones((1, 2, 5, 4)))
    np.testing.assert_array_equal(gx, np.ones_like(x))
    assert glike.shape == like.shape and not glike.any()
    assert layer.get_config() == {"mode": "constant", "value": 0.0}
    with pytest.raises(ValueError, match="one rank"):
        layer.output_shape([(2, 3, 3), (1, 5)])
    with pytest.raises(ValueError, match="crops"):
        nn.PadAs().output_shape([(2, 3, 3), (1, 5, 0)])
    with pytest.raises(ValueError, match="reflect"):
        nn.PadAs("reflect").output_shape([(2, 3, 3), (1, 9, 3)])


@pytest.mark.parametrize("mode", ["reflect", "edge"])
def test_pad_matches_numpy(mode, rng):
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    pads = ((0, 0), (2, 1), (1, 3))
    np.testing.assert_array_equal(_built(nn.Pad(pads, mode), (3, 5, 6))(x),
                                  np.pad(x, ((0, 0),) + pads, mode))


def test_pad_constant_value_and_crop(rng):
    x = rng.standard_normal((1, 1, 4, 4))
    y = _built(nn.Pad(((0, 0), (1, -1), (-2, 0)), value=7.0), (1, 4, 4))(x)
    assert y.shape == (1, 1, 4, 2)
    assert (y[:, :, 0] == 7).all()
    np.testing.assert_array_equal(y[:, :, 1:], x[:, :, :3, 2:])


def test_elementwise_values_and_broadcasting(rng):
    a = rng.standard_normal((2, 3, 4, 4))
    b = rng.uniform(1, 2, (2, 3, 1, 1))
    np.testing.assert_allclose(_built(nn.Mul(), (3, 4, 4), (3, 1, 1))(a, b), a * b)
    np.testing.assert_allclose(_built(nn.Div(), (3, 4, 4), (3, 1, 1))(a, b), a / b)
    np.testing.assert_allclose(_built(nn.Sub(), (3, 4, 4), (3, 1, 1))(a, b), a - b)
    # a lower-rank sample aligns on the right of the sample, not of the batch
    c = rng.standard_normal((2, 4))
    np.testing.assert_allclose(_built(nn.BroadcastAdd(), (3, 4, 4), (4,))(a, c),
                               a + c[:, None, None, :])
    with pytest.raises(ValueError, match="do not broadcast"):
        nn.Mul().output_shape([(3, 4), (5,)])


def test_constant_op_and_clip_values(rng):
    x = rng.standard_normal((2, 3, 4))
    v = rng.uniform(1, 2, (3, 1))
    np.testing.assert_allclose(_built(nn.ConstantOp("div", value=v, reverse=True), (3, 4))(x),
                               v / x)
    np.testing.assert_allclose(_built(nn.ConstantOp("sub", value=2.5), (3, 4))(x), x - 2.5)
    np.testing.assert_array_equal(_built(nn.Clip(0.0, 6.0), (3, 4))(x * 10),
                                  np.clip(x * 10, 0, 6))
    with pytest.raises(ValueError, match="op must be one of"):
        nn.ConstantOp("pow", value=2.0)
    with pytest.raises(ValueError, match="min must be <= max"):
        nn.Clip(1.0, 0.0)


def test_matmul_values(rng):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5))
    np.testing.assert_allclose(_built(nn.MatMul(), (3, 4), (4, 5))(a, b), a @ b)


def test_constant_values_travel_with_saved_weights(rng, tmp_path):
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.ConstantOp("mul", value=rng.uniform(1, 2, (3, 1, 1))),
                        nn.ConstantOp("add", value=0.5), nn.Resize(scale=(2.0, 2.0)),
                        nn.Pad(((0, 0), (1, 1), (1, 1)), "reflect"),
                        nn.ConvTranspose2d(3, 2, 2, stride=2), nn.Clip(max=1.0))
    net.build((2, 4, 4), seed=0)
    cconv.save(net, tmp_path / "n.safetensors")
    again = cconv.load(tmp_path / "n.safetensors")
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(again(x), net(x))
    assert again.frozen() == []   # constants are buffers, not frozen weights


@pytest.mark.parametrize("cls, kwargs, arg", [
    (nn.ConvTranspose2d, {"in_ch": 2, "out_ch": 2, "kernel_size": 3, "stride": 2,
                          "output_padding": 2}, "output_padding"),
    (nn.ConvTranspose2d, {"in_ch": 2, "out_ch": 2, "kernel_size": 3, "padding": "same"},
     "padding"),
    (nn.Resize, {}, "size or scale"),
    (nn.Resize, {"size": (2, 2), "mode": "cubic"}, "mode"),
    (nn.Pad, {"pads": [1, 2]}, "pads"),
    (nn.Pad, {"pads": [(1, 1)], "mode": "wrap"}, "mode"),
])
def test_bad_arguments_name_the_argument(cls, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        cls(**kwargs)
