"""ONNX export (plugins/cconv-onnx, cconv_onnx.exporter): cconv nets -> ONNX -> onnxruntime.

Every exportable layer type is exported in a small net, checked with
onnx.checker, run in onnxruntime (onnx's reference evaluator where
onnxruntime is absent) and compared with cconv to 1e-5; it is imported back
with cconv_onnx and compared again. The plugin is loaded from the checkout
(plugins/cconv-onnx/src on sys.path for this module only): nothing is installed.
"""
import os
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

import cconv
from cconv import nn
from cconv.nn.base import Layer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_SRC = os.path.join(REPO, "plugins", "cconv-onnx", "src")
TOL = 1e-5


@pytest.fixture(scope="module")
def cconv_onnx():
    """The plugin package from the checkout, sys.path restored afterwards."""
    added = PLUGIN_SRC not in sys.path
    if added:
        sys.path.insert(0, PLUGIN_SRC)
    try:
        import cconv_onnx
        import cconv_onnx.exporter   # noqa: F401  (imports onnx: skip cleanly if broken)
        yield cconv_onnx
    finally:
        if added:
            sys.path.remove(PLUGIN_SRC)


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


#: cases that onnx's reference evaluator (the fallback) cannot run itself
REFERENCE_GAPS = {
    "conv_transpose2d": "onnx.reference's ConvTranspose fails on group > 1",
    "pad_constant_crop": "onnx.reference's Pad fails on negative pads",
    "pad_as_skip": "onnx.reference's Pad fails on negative pads (the crop)",
}


def run_onnx(model, feeds):
    """Outputs of model on feeds: onnxruntime when installed, else onnx.reference."""
    ort = _onnxruntime()
    if ort is None:
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(model).run(None, feeds)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1   # the test machine's cores are shared
    sess = ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_matches(got, want, tol=TOL):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape}, expected {want.shape}"
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


def randomise(net, seed=1):
    """Non-trivial values for every parameter: random biases, BN statistics, slopes."""
    rng = np.random.default_rng(seed)
    for name, a in net.named_parameters():
        if name.endswith("running_var"):
            a[...] = rng.uniform(0.5, 2.0, a.shape)
        elif name.endswith(".weight") and a.ndim >= 2:
            a[...] += 0.05 * rng.standard_normal(a.shape)
        else:
            a[...] = rng.uniform(-0.8, 0.8, a.shape)
    return net


def inputs_for(net, batch=3, seed=2, scale=2.0):
    rng = np.random.default_rng(seed)
    return [(scale * rng.standard_normal((batch,) + tuple(s))).astype(np.float32)
            for s in net.input_shapes]


def export_and_run(cconv_onnx, net, tmp_path, xs=None, **options):
    """Export net to a file, check it, run it; returns (model, onnx outputs, cconv outputs)."""
    path = tmp_path / "net.onnx"
    cconv.export_onnx(net, path, **options)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    xs = inputs_for(net) if xs is None else xs
    got = run_onnx(model, dict(zip(net.input_names, xs)))
    want = net(*xs)
    want = list(want) if isinstance(want, tuple) else [want]
    return model, got, want


# ---------------------------------------------------------------- one net per layer type

def seq(shape, *layers):
    return cconv.Sequential(*layers).build(shape, seed=0)


def merge_net():
    """Add (three inputs), Concat, BroadcastAdd / Sub / Mul / Div across ranks, MatMul."""
    g = cconv.Graph(inputs=["x", "v"])
    g.add("a", nn.Conv2d(2, 4, 3, padding=1), inputs=["x"])
    g.add("b", nn.Conv2d(2, 4, 1), inputs=["x"])
    g.add("c", nn.Tanh(), inputs=["a"])
    g.add("sum3", nn.Add(), inputs=["a", "b", "c"])
    g.add("cat", nn.Concat(axis=1), inputs=["sum3", "b"])            # (8, 5, 6)
    g.add("bias", nn.BroadcastAdd(), inputs=["cat", "v"])            # v: (6,) on the last axis
    g.add("gate", nn.Sigmoid(), inputs=["v"])
    g.add("mul", nn.Mul(), inputs=["gate", "bias"])                  # lower rank first
    g.add("sub", nn.Sub(), inputs=["mul", "cat"])
    g.add("pos", nn.Clip(min=0.5), inputs=["cat"])
    g.add("div", nn.Div(), inputs=["sub", "pos"])
    g.add("t", nn.Transpose((0, 2, 1)), inputs=["div"])              # (8, 6, 5)
    g.add("mm", nn.MatMul(), inputs=["div", "t"])                    # (8, 5, 5)
    g.set_outputs(["mm", "cat"])
    return g.build({"x": (2, 5, 6), "v": (6,)}, seed=0)


def reshape_as_net():
    """A hybrid block's tokens back to the feature map's (C, H, W) (ReshapeAs)."""
    g = cconv.Graph(inputs=["x"])
    g.add("feat", nn.Conv2d(2, 4, 3, padding=1), inputs=["x"])
    g.add("tokens", nn.Reshape((0, -1)), inputs=["feat"])                   # (4, H*W)
    g.add("mix", nn.Tanh(), inputs=["tokens"])
    g.add("map", nn.ReshapeAs([0, 1, 1], [None, 1, 2]), inputs=["mix", "feat"])
    g.add("rest", nn.ReshapeAs([-1, 1], [None, 1]), inputs=["mix", "feat"])  # (4 W, H)
    g.set_outputs(["map", "rest"])
    return g.build({"x": (2, 5, 7)}, seed=0)


def resize_as_net():
    """UNet's decoder: upsample to the skip connection's size (ResizeAs), concat."""
    g = cconv.Graph(inputs=["x"])
    g.add("down", nn.Conv2d(2, 3, 3, stride=2, padding=1), inputs=["x"])
    g.add("up", nn.ResizeAs(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
          inputs=["down", "x"])
    g.add("near", nn.ResizeAs(nearest_mode="floor", coordinate_transformation_mode="asymmetric"),
          inputs=["down", "x"])
    g.add("cat", nn.Concat(axis=1), inputs=["up", "near", "x"])
    g.set_outputs(["cat"])
    return g.build({"x": (2, 5, 7)}, seed=0)


def pad_as_net():
    """UNet's size-difference pad (PadAs): ConvTranspose output padded to the skip's size
    (constant), and the skip cropped to the upsampled size (edge mode, negative amounts)."""
    g = cconv.Graph(inputs=["x"])
    g.add("down", nn.Conv2d(2, 3, 3, stride=2), inputs=["x"])
    g.add("up", nn.ConvTranspose2d(3, 3, 2, stride=2), inputs=["down"])       # (3, 6, 8)
    g.add("pad", nn.PadAs(value=0.5), inputs=["up", "x"])                    # (3, 7, 9)
    g.add("crop", nn.PadAs("edge"), inputs=["x", "up"])                      # (2, 6, 8)
    g.add("cat", nn.Concat(axis=1), inputs=["pad", "x"])
    g.set_outputs(["cat", "crop"])
    return g.build({"x": (2, 7, 9)}, seed=0)


def slice_as_net():
    """An x2 upsample cropped to the skip's size (SliceAs), as FPN heads write it."""
    g = cconv.Graph(inputs=["x"])
    g.add("down", nn.Conv2d(2, 3, 3, stride=2, padding=1), inputs=["x"])   # (3, 4, 5)
    g.add("up", nn.Resize(scale=(2.0, 2.0)), inputs=["down"])              # (3, 8, 10)
    g.add("crop", nn.SliceAs([0, 0], [2, 3], [2, 3]), inputs=["up", "x"])  # (3, 7, 9)
    g.add("cat", nn.Concat(axis=1), inputs=["crop", "x"])
    g.set_outputs(["cat"])
    return g.build({"x": (2, 7, 9)}, seed=0)


def constant_net():
    g = cconv.Graph()
    g.add("scale", nn.ConstantOp("mul", value=np.linspace(0.5, 2, 3).reshape(3, 1, 1)))
    g.add("shift", nn.ConstantOp("add", value=0.25))
    g.add("rsub", nn.ConstantOp("sub", value=np.arange(4.0), reverse=True))   # c - x
    g.add("rdiv", nn.ConstantOp("div", value=2.0, reverse=True), inputs=["x"])
    g.add("out", nn.Add(), inputs=["rsub", "rdiv"])
    return g.build((3, 2, 4), seed=0)


def masks_net():
    """Compare (two inputs and a constant), Where (with and without constants), Nary, Pow."""
    g = cconv.Graph(inputs=["x", "v"])
    g.add("less", nn.Compare("less"), inputs=["x", "v"])
    g.add("big", nn.Compare("greater_equal", value=0.5), inputs=["x"])
    g.add("pick", nn.Where(), inputs=["less", "x", "v"])
    g.add("fill", nn.Where({"y": -1e4}), inputs=["big", "pick"])
    g.add("most", nn.Nary("max"), inputs=["fill", "x", "v"])
    g.add("mean", nn.Nary("mean"), inputs=["most", "x"])
    g.add("base", nn.Unary("abs"), inputs=["mean"])
    g.add("shift", nn.ConstantOp("add", value=0.5))
    g.add("pow", nn.Pow(), inputs=["shift", "v"])
    g.add("out", nn.Nary("sum"), inputs=["pow", "less", "x"])
    return g.build([(3, 4), (4,)], seed=0)


def _x_abs_plus_1(net):
    # rdiv in constant_net divides by x: keep the test input away from 0
    return [np.abs(x) + 1.0 for x in inputs_for(net)]


CASES = {
    # the vision-model layers (converters_vision / exporters_vision)
    "unary_math": lambda: seq((3, 4), nn.Unary("abs"), nn.ConstantOp("add", value=0.5),
                              nn.Unary("sqrt"), nn.Unary("log"), nn.Unary("neg"),
                              nn.Unary("exp"), nn.Unary("reciprocal"), nn.Unary("erf"),
                              nn.Unary("pow", alpha=3.0)),
    "unary_activations": lambda: seq((3, 4), nn.Unary("elu", alpha=0.5), nn.Unary("selu"),
                                     nn.Unary("softplus"), nn.Unary("softsign"),
                                     nn.Unary("mish"), nn.Unary("gelu"),
                                     nn.Unary("gelu_tanh")),
    "softmax_flatten_log_softmax": lambda: seq((3, 2, 2), nn.Softmax(1, flatten=True),
                                               nn.LogSoftmax(-1),
                                               nn.LogSoftmax(2, flatten=True)),
    **{f"reduce_{op}": (lambda op=op: seq((3, 4, 5), nn.Reduce(op, axes=(1, -1),
                                                               keepdims=op != "sum")))
       for op in ("sum", "mean", "max", "min", "prod", "l1", "l2", "sum_square",
                  "log_sum_exp")},
    "reduce_all_axes": lambda: seq((3, 4), nn.Reduce("mean")),
    "norms": lambda: seq((4, 3, 5), nn.GroupNorm(2, 4), nn.InstanceNorm(4), nn.LRN(3),
                         nn.LayerNorm(5), nn.LayerNorm((3, 5), affine=False),
                         nn.GroupNorm(2, 4, affine=False)),
    "indexing": lambda: seq((4, 5, 6), nn.Slice([1, -1], [3, -10**9], [1, -1], [1, -2]),
                            nn.Gather(1, [1, 0, 1]), nn.Tile([1, 2, 1]),
                            nn.Expand([2, 1, 1, 1]), nn.Gather(-1, 0)),
    "depth_space": lambda: seq((8, 2, 3), nn.DepthToSpace(2, mode="CRD"),
                               nn.SpaceToDepth(2), nn.DepthToSpace(2)),
    "masks_where_nary_pow": masks_net,
    "move_batch_axis_output": lambda: seq((3, 4), nn.Tanh(), nn.MoveBatchAxis(1)),
    "conv2d_asym_pad_dilation_stride": lambda: seq(
        (3, 9, 10), nn.Conv2d(3, 4, 3, stride=(2, 1), padding=((1, 0), (2, 1)),
                              dilation=(1, 2))),
    "conv2d_groups_depthwise_same": lambda: seq(
        (4, 9, 8), nn.Conv2d(4, 8, 3, padding=1, groups=2),
        nn.Conv2d(8, 8, 3, stride=2, padding="same", groups=8, bias=False),
        nn.Conv2d(8, 4, (1, 3), padding="valid")),
    "conv1d": lambda: seq(
        (2, 17), nn.Conv1d(2, 4, 3, stride=2, padding=(2, 1), dilation=2),
        nn.Conv1d(4, 4, 3, padding="same", groups=2), nn.Conv1d(4, 3, 2, padding=1)),
    "conv_transpose2d": lambda: seq(
        (3, 5, 6), nn.ConvTranspose2d(3, 4, 3, stride=2, padding=((1, 0), (0, 1)),
                                      output_padding=1),
        nn.ConvTranspose2d(4, 6, (2, 3), groups=2, dilation=2, padding=1, bias=False)),
    "linear_gemm_and_matmul": lambda: seq(
        (3, 4, 5), nn.Linear(5, 6), nn.Linear(6, 2, bias=False), nn.Flatten(),
        nn.Linear(24, 7), nn.Linear(7, 3, bias=False)),
    "maxpool2d_ceil_pad": lambda: seq(
        (2, 11, 10), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
    "maxpool2d_dilation": lambda: seq(
        (2, 11, 10), nn.MaxPool2d((3, 2), stride=(1, 2), dilation=(2, 3), padding=(1, 0))),
    "avgpool2d_include_pad": lambda: seq(
        (2, 10, 9), nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True)),
    "avgpool2d_exclude_pad": lambda: seq(
        (2, 10, 9), nn.AvgPool2d((3, 2), stride=(2, 1), padding=(1, 1),
                                 count_include_pad=False)),
    "avgpool2d_ceil": lambda: seq(
        (2, 10, 11), nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                  count_include_pad=False)),
    "avgpool2d_ceil_include_pad": lambda: seq(
        (2, 10, 11), nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                  count_include_pad=True)),
    "pool1d": lambda: seq(
        (3, 20), nn.MaxPool1d(3, stride=2, padding=1, dilation=2, ceil_mode=True),
        nn.AvgPool1d(2, ceil_mode=True, count_include_pad=False),
        nn.AvgPool1d(3, stride=1, padding=1)),
    "global_avg_pool": lambda: seq((3, 6, 5), nn.GlobalAvgPool(), nn.Linear(3, 2)),
    "global_avg_pool1d": lambda: seq((3, 7), nn.GlobalAvgPool()),
    "relu": lambda: seq((3, 4, 4), nn.ReLU()),
    "leaky_relu": lambda: seq((3, 4, 4), nn.LeakyReLU(0.2)),
    "prelu_per_channel": lambda: seq((3, 4, 4), nn.PReLU(3)),
    "prelu_shared_2d": lambda: seq((5,), nn.PReLU(1)),
    "prelu_per_channel_2d": lambda: seq((5,), nn.PReLU(5)),
    "sigmoid": lambda: seq((3, 4, 4), nn.Sigmoid()),
    "tanh": lambda: seq((3, 4, 4), nn.Tanh()),
    "hard_sigmoid": lambda: seq((3, 4, 4), nn.HardSigmoid()),
    "hard_swish": lambda: seq((3, 4, 4), nn.HardSwish()),
    "softmax_channels": lambda: seq((3, 4, 4), nn.Softmax(axis=1)),
    "softmax_last": lambda: seq((3, 4, 5), nn.Softmax(axis=-1)),
    "clip_both": lambda: seq((3, 4, 4), nn.Clip(-0.5, 0.7)),
    "clip_min_only": lambda: seq((3, 4, 4), nn.Clip(min=0.0)),
    "clip_max_only": lambda: seq((3, 4, 4), nn.Clip(max=1.0)),
    "clip_none": lambda: seq((3, 4, 4), nn.Clip(), nn.Tanh()),
    "flatten_reshape_transpose_dropout": lambda: seq(
        (2, 4, 6), nn.Conv2d(2, 3, 3, padding=1), nn.Reshape((3, -1)), nn.Transpose((1, 0)),
        nn.Dropout(0.5), nn.Reshape((6, 2, 6)), nn.Transpose((2, 0, 1)), nn.Flatten()),
    "batchnorm2d": lambda: seq((3, 5, 4), nn.BatchNorm2d(3, eps=1e-3, momentum=0.2)),
    "batchnorm2d_no_affine": lambda: seq((3, 5, 4), nn.BatchNorm2d(3, affine=False)),
    "batchnorm1d_nc": lambda: seq((6,), nn.BatchNorm1d(6)),
    "batchnorm1d_ncl": lambda: seq((4, 7), nn.BatchNorm1d(4)),
    "merge_broadcast_matmul": merge_net,
    "constant_op": constant_net,
    "resize_nearest_scale": lambda: seq((2, 3, 5), nn.Resize(scale=(2.0, 3.0))),
    "resize_nearest_size_asymmetric_floor": lambda: seq(
        (2, 4, 5), nn.Resize(size=(7, 9), coordinate_transformation_mode="asymmetric",
                             nearest_mode="floor")),
    "resize_linear_half_pixel": lambda: seq(
        (2, 4, 5), nn.Resize(size=(8, 7), mode="linear")),
    "resize_linear_align_corners": lambda: seq(
        (2, 4, 5), nn.Resize(scale=(2.0, 2.0), mode="linear",
                             coordinate_transformation_mode="align_corners")),
    "resize_linear_pytorch_half_pixel_size_and_scale": lambda: seq(
        (2, 5, 4), nn.Resize(size=(7, 6), scale=(1.5, 1.5), mode="linear",
                             coordinate_transformation_mode="pytorch_half_pixel")),
    "resize_as_skip": resize_as_net,
    "reshape_as_tokens": reshape_as_net,
    "pad_as_skip": pad_as_net,
    "slice_as_skip": slice_as_net,
    "pad_same_max_pool": lambda: seq((2, 7, 6), nn.PadSame((3, 3), (2, 2), mode="edge"),
                                     nn.MaxPool2d(3, 2)),
    "pad_same_lower_conv1d": lambda: seq((2, 9), nn.PadSame(4, 3, dilation=2, lower=True,
                                                            value=-1.0),
                                         nn.Conv1d(2, 3, 4, stride=3, dilation=2)),
    "pad_constant_crop": lambda: seq((2, 5, 6), nn.Pad(((0, 1), (2, -1), (1, 3)), value=0.5)),
    "pad_reflect": lambda: seq((2, 5, 6), nn.Pad(((0, 0), (2, 1), (3, 2)), mode="reflect")),
    "pad_edge": lambda: seq((2, 5), nn.Pad(((1, 0), (2, 3)), mode="edge")),
}
SPECIAL_INPUTS = {"constant_op": _x_abs_plus_1}


def _case(name):
    net = randomise(CASES[name]())
    xs = SPECIAL_INPUTS[name](net) if name in SPECIAL_INPUTS else inputs_for(net)
    return net, xs


def test_every_builtin_layer_type_has_a_case_and_an_exporter(cconv_onnx):
    exporters = cconv_onnx.EXPORTERS
    missing = sorted(t for t in nn.LAYER_CLASSES if t not in exporters)
    assert not missing, f"built-in layers without an ONNX exporter: {missing}"
    covered = set()
    for build in CASES.values():
        covered |= {layer.type_name for _, layer in build().layers()}
    assert covered == set(nn.LAYER_CLASSES), sorted(set(nn.LAYER_CLASSES) - covered)


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_matches_onnxruntime_and_round_trips(cconv_onnx, tmp_path, case):
    if _onnxruntime() is None and case in REFERENCE_GAPS:
        pytest.skip(f"no onnxruntime, and {REFERENCE_GAPS[case]}")
    net, xs = _case(case)
    model, got, want = export_and_run(cconv_onnx, net, tmp_path, xs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_matches(g, w)
    # back through the importer: the same numbers from a cconv graph again
    shapes = {name: s for name, s in zip(net.input_names, net.input_shapes)}
    back = cconv_onnx.import_onnx(str(tmp_path / "net.onnx"), input_shapes=shapes)
    again = back(*xs)
    again = list(again) if isinstance(again, tuple) else [again]
    for a, w in zip(again, want):
        assert_matches(a, w)


def test_parameters_keep_their_cconv_names(cconv_onnx, tmp_path):
    net, _ = _case("batchnorm2d")
    model = cconv_onnx.to_onnx(net)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for name, a in net.named_parameters():
        np.testing.assert_array_equal(inits[name], a)
    assert [o.name for o in model.graph.output] == net.output_names
    assert model.opset_import[0].version == 17


# ---------------------------------------------------------------- dynamic axes

def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _same_net_at(net, shape):
    """net's layers and weights, built for another per-sample input shape."""
    config = net.get_config()
    config["input_shapes"] = [list(shape)]
    other = cconv.Graph.from_config(config)
    weights = dict(net.named_parameters())
    for name, a in other.named_parameters():
        a[...] = weights[name]
    return other


def test_fully_convolutional_net_keeps_batch_and_spatial_axes_dynamic(cconv_onnx, tmp_path):
    net = randomise(seq((3, 8, 8), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(4, 2, 3, stride=2, padding="same")))
    model = cconv_onnx.to_onnx(net)
    assert _dims(model.graph.input[0]) == ["batch", 3, "x_dim2", "x_dim3"]
    out = _dims(model.graph.output[0])
    assert out[:2] == ["batch", 2] and all(isinstance(d, str) for d in out[2:])
    path = tmp_path / "fcn.onnx"
    cconv.export_onnx(net, path)
    for shape in [(3, 8, 8), (3, 16, 12), (3, 11, 9)]:
        x = np.random.default_rng(0).standard_normal((5,) + shape).astype(np.float32)
        (got,) = run_onnx(onnx.load(str(path)), {"x": x})
        assert_matches(got, _same_net_at(net, shape)(x))


def test_flatten_linear_pins_spatial_axes_but_not_the_batch(cconv_onnx, tmp_path):
    net = randomise(seq((1, 6, 6), nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(32, 3)))
    model = cconv_onnx.to_onnx(net)
    assert _dims(model.graph.input[0]) == ["batch", 1, 6, 6]
    assert _dims(model.graph.output[0]) == ["batch", 3]
    for batch in (1, 4):
        x = inputs_for(net, batch=batch)[0]
        assert_matches(run_onnx(model, {"x": x})[0], net(x))


def test_reshape_with_minus_one_leaves_the_free_axis_dynamic(cconv_onnx):
    # Reshape((C, -1)) works at any H; Linear on the last axis pins W only
    net = seq((2, 4, 5), nn.Linear(5, 3), nn.Reshape((2, -1)))
    assert _dims(cconv_onnx.to_onnx(net).graph.input[0]) == ["batch", 2, "x_dim2", 5]


def test_resize_with_size_and_scale_pins_the_spatial_axes(cconv_onnx):
    net = seq((2, 4, 4), nn.Resize(size=(6, 6), scale=(1.5, 1.5)))
    model = cconv_onnx.to_onnx(net)
    assert _dims(model.graph.input[0]) == ["batch", 2, 4, 4]
    assert "'0_resize' (Resize): Resize with both size and scale" in model.graph.doc_string


def test_batch_only_and_static_axes(cconv_onnx, tmp_path):
    net = seq((3, 8, 8), nn.Conv2d(3, 4, 3, padding=1))
    assert _dims(cconv_onnx.to_onnx(net, dynamic_axes="batch").graph.input[0]) == \
        ["batch", 3, 8, 8]
    model = cconv_onnx.to_onnx(net, dynamic_axes=False, batch_size=2)
    assert _dims(model.graph.input[0]) == [2, 3, 8, 8]
    assert _dims(model.graph.output[0]) == [2, 4, 8, 8]
    x = inputs_for(net, batch=2)[0]
    assert_matches(run_onnx(model, {"x": x})[0], net(x))


@pytest.mark.parametrize("opset", [13, 14, 18])
def test_other_opsets(cconv_onnx, tmp_path, opset):
    net, xs = _case("hard_swish")
    net2, xs2 = _case("resize_linear_half_pixel")
    for n, x in ((net, xs), (net2, xs2)):
        model, got, want = export_and_run(cconv_onnx, n, tmp_path, x, opset=opset)
        assert model.opset_import[0].version == opset
        assert_matches(got[0], want[0])


# ---------------------------------------------------------------- imported and trained nets

@pytest.mark.parametrize("which", ["mobile_cnn", "mobile_cnn_se_gemm", "assorted_ops"])
def test_imported_models_export_back(cconv_onnx, tmp_path, which):
    """ONNX -> cconv (import) -> ONNX (export): the re-exported model matches cconv."""
    import onnx_models

    rng = np.random.default_rng(5)
    model = (onnx_models.assorted_ops(rng) if which == "assorted_ops" else
             onnx_models.mobile_cnn(rng, se_with_gemm=which.endswith("gemm")))
    net = cconv_onnx.import_onnx(model)
    _, got, want = export_and_run(cconv_onnx, net, tmp_path)
    for g, w in zip(got, want):
        assert_matches(g, w)


# ---------------------------------------------------------------- a trained net

def test_lenet_trained_on_digits_exports_and_matches(cconv_onnx, tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = (digits.images[:, None] / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    net = cconv.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10)).build((1, 8, 8))
    history = cconv.fit(net, x[:1200], y[:1200], epochs=2, batch_size=64, progress=False,
                        optimizer=cconv.optim.Adam(net, lr=3e-3))
    assert history["loss"][-1] < history["loss"][0]
    path = tmp_path / "lenet.onnx"
    cconv.export_onnx(net, path)
    test = x[1200:]
    (got,) = run_onnx(onnx.load(str(path)), {"x": test})
    want = net(test)
    assert_matches(got, want)
    assert (got.argmax(1) == want.argmax(1)).all()
    assert (want.argmax(1) == y[1200:]).mean() > 0.5   # it did learn something


# ---------------------------------------------------------------- errors

class Cube(Layer):
    """x ** 3: a plugin-style layer with no exporter of its own."""

    def output_shape(self, input_shapes):
        return tuple(input_shapes[0])

    def forward(self, x, training=False):
        return x ** 3


class Square(Cube):
    def forward(self, x, training=False):
        return x * x


class Doubler(Cube):
    """A layer that exports itself through the to_onnx method."""

    def forward(self, x, training=False):
        return x + x

    def to_onnx(self, ctx, node):
        ctx.add("Add", [node.inputs[0], node.inputs[0]], node.name)


def _plugin_net():
    return seq((2, 3), nn.ReLU(), Cube(), nn.Tanh(), Square(), Cube())


def test_unexportable_layers_are_all_listed_and_nothing_is_written(cconv_onnx, tmp_path):
    path = tmp_path / "net.onnx"
    with pytest.raises(cconv_onnx.OnnxExportError) as info:
        cconv.export_onnx(_plugin_net(), path)
    message = str(info.value)
    assert message.startswith("cannot export 3 node(s), nothing was written: ")
    for node, kind in (("1_cube", "Cube"), ("3_square", "Square"), ("4_cube", "Cube")):
        assert f"node {node!r} ({kind}): no ONNX exporter" in message
    assert "without an exporter: Cube, Square" in message and "register_exporter" in message
    assert "\n" not in message
    assert not path.exists() and os.listdir(tmp_path) == []


def test_plugin_layers_register_exporters(cconv_onnx, tmp_path, monkeypatch):
    monkeypatch.setattr(cconv_onnx.exporter, "EXPORTERS", dict(cconv_onnx.EXPORTERS))

    @cconv_onnx.register_exporter("Cube")
    def cube(ctx, node):
        three = ctx.const(3.0, f"{node.name}/three")
        ctx.add("Pow", [node.inputs[0], three], node.name)

    cconv_onnx.register_exporter("Square", lambda ctx, node: ctx.add(
        "Mul", [node.inputs[0], node.inputs[0]], node.name))
    with pytest.raises(ValueError, match="already registered.*override=True"):
        cconv_onnx.register_exporter("Cube", lambda ctx, node: None)
    net = _plugin_net()
    net.append(Doubler())
    net.build((2, 3))
    _, got, want = export_and_run(cconv_onnx, net, tmp_path)
    assert_matches(got[0], want[0])


def test_the_documented_swish_exporter(cconv_onnx, tmp_path, monkeypatch):
    """docs/onnx.md's example, on the cconv-example plugin's Swish (from the checkout)."""
    monkeypatch.syspath_prepend(os.path.join(REPO, "plugins", "cconv-example", "src"))
    swish = pytest.importorskip("cconv_example.swish")
    monkeypatch.setattr(cconv_onnx.exporter, "EXPORTERS", dict(cconv_onnx.EXPORTERS))

    @cconv_onnx.register_exporter("Swish")          # y = x * sigmoid(beta_c * x)
    def export_swish(ctx, node):
        channels = node.input_shapes[0][0]
        rank = len(node.input_shapes[0])
        beta = ctx.param(node, "beta", (channels,) + (1,) * (rank - 1))
        z = ctx.add("Mul", [node.inputs[0], beta])
        ctx.add("Mul", [node.inputs[0], ctx.add("Sigmoid", [z])], node.name)

    net = randomise(seq((3, 5, 4), nn.Conv2d(3, 4, 3), swish.Swish(), nn.GlobalAvgPool(),
                        swish.Swish()))
    _, got, want = export_and_run(cconv_onnx, net, tmp_path)
    assert_matches(got[0], want[0])


def test_an_input_as_output_and_a_float64_net(cconv_onnx, tmp_path):
    g = cconv.Graph()
    g.add("conv", nn.Conv2d(2, 3, 3, padding=1))
    g.set_outputs(["conv", "x"])
    net = randomise(g.build((2, 4, 4))).astype(np.float64)   # exported in float32
    x = inputs_for(net)[0]
    _, got, want = export_and_run(cconv_onnx, net, tmp_path, [x])
    assert got[0].dtype == np.float32
    assert_matches(got[0], want[0])
    np.testing.assert_array_equal(got[1], x)


def test_every_kind_of_problem_goes_into_one_error(cconv_onnx, monkeypatch):
    monkeypatch.setattr(cconv_onnx.exporter, "EXPORTERS", dict(cconv_onnx.EXPORTERS))
    cconv_onnx.register_exporter("Cube", lambda ctx, node: None)   # forgets its output

    def refuse(ctx, node):
        raise cconv_onnx.OnnxExportError(f"node {node.name!r}: no ONNX form for this one")

    cconv_onnx.register_exporter("Tanh", refuse, override=True)
    with pytest.raises(cconv_onnx.OnnxExportError) as info:
        cconv_onnx.to_onnx(_plugin_net())
    message = str(info.value)
    assert message.startswith("cannot export 4 node(s)")
    assert "'1_cube' (Cube): its exporter wrote no ONNX node with output '1_cube'" in message
    assert "'2_tanh': no ONNX form for this one" in message
    assert "'3_square' (Square): no ONNX exporter" in message
    assert "'4_cube' (Cube): its exporter wrote no" in message
    assert "without an exporter: Square;" in message


def test_bad_arguments(cconv_onnx, tmp_path):
    with pytest.raises(ValueError, match="build the net first"):
        cconv.export_onnx(cconv.Sequential(nn.ReLU()), tmp_path / "a.onnx")
    net = seq((3,), nn.ReLU())
    with pytest.raises(ValueError, match="opset must be an integer from 13.*got 12"):
        cconv.export_onnx(net, tmp_path / "a.onnx", opset=12)
    with pytest.raises(ValueError, match="dynamic_axes must be True, False or 'batch'"):
        cconv.export_onnx(net, tmp_path / "a.onnx", dynamic_axes="spatial")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        cconv.export_onnx(net, tmp_path / "a.onnx", dynamic_axes=False, batch_size=0)
    with pytest.raises(TypeError, match="cconv.Graph or Sequential, got ReLU"):
        cconv.export_onnx(nn.ReLU(), tmp_path / "a.onnx")
    assert os.listdir(tmp_path) == []


def test_failed_export_leaves_the_existing_file_intact(cconv_onnx, tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the previous model")
    with pytest.raises(cconv_onnx.OnnxExportError):
        cconv.export_onnx(_plugin_net(), path)
    assert path.read_bytes() == b"the previous model"

    def disk_full(f, data):
        f.write(data[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cconv.io, "_write_all", disk_full)
    with pytest.raises(OSError, match="No space left"):
        cconv.export_onnx(seq((3,), nn.ReLU()), path)
    assert path.read_bytes() == b"the previous model"
    assert os.listdir(tmp_path) == ["model.onnx"]   # no temporary file left behind


def test_missing_plugin_gives_the_install_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "cconv_onnx", None)
    monkeypatch.setitem(sys.modules, "cconv_onnx.exporter", None)
    with pytest.raises(ImportError, match=r"pip install \./plugins/cconv-onnx"):
        cconv.export_onnx(seq((3,), nn.ReLU()), tmp_path / "a.onnx")


# ---------------------------------------------------------------- the command line

def _saved_net(tmp_path):
    net = randomise(seq((1, 6, 6), nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(27, 4)))
    path = tmp_path / "net.safetensors"
    cconv.save(net, path)
    return net, path


def test_cli_export_writes_a_model_onnxruntime_runs(cconv_onnx, tmp_path, capsys):
    from cconv.cli import main

    net, path = _saved_net(tmp_path)
    assert main(["export", str(path)]) == 0
    out = tmp_path / "net.onnx"
    assert f"wrote {out}" in capsys.readouterr().out
    x = inputs_for(net, batch=2)[0]
    assert_matches(run_onnx(onnx.load(str(out)), {"x": x})[0], net(x))
    assert main(["export", str(path), "-o", str(tmp_path / "o13.onnx"), "--opset", "13",
                 "--static", "--batch-size", "2"]) == 0
    model = onnx.load(str(tmp_path / "o13.onnx"))
    assert model.opset_import[0].version == 13
    assert _dims(model.graph.input[0]) == [2, 1, 6, 6]


@pytest.mark.parametrize("problem", ["missing_file", "not_a_model", "bad_opset",
                                     "missing_plugin"])
def test_cli_export_errors_are_one_line(cconv_onnx, tmp_path, capsys, monkeypatch, problem):
    from cconv.cli import main

    _, path = _saved_net(tmp_path)
    args = ["export", str(path), "-o", str(tmp_path / "out.onnx")]
    if problem == "missing_file":
        args[1] = str(tmp_path / "nope.safetensors")
    elif problem == "not_a_model":
        (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 50)
        args[1] = str(tmp_path / "junk.safetensors")
    elif problem == "bad_opset":
        args += ["--opset", "7"]
    else:
        monkeypatch.setitem(sys.modules, "cconv_onnx", None)
        monkeypatch.setitem(sys.modules, "cconv_onnx.exporter", None)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("cconv export: error: ") and err.count("\n") == 1
    expected = {"missing_file": "no saved model at", "not_a_model": "safetensors",
                "bad_opset": "opset must be", "missing_plugin": "pip install ./plugins/cconv-onnx"}
    assert expected[problem] in err
    assert not (tmp_path / "out.onnx").exists()
