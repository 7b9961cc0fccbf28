"""The cconv-onnx plugin: ONNX models -> cconv graphs, compared with onnxruntime.

Structural tests need only `onnx`; parity runs against onnxruntime and, so
that CI without it still compares numbers, against onnx's own reference
evaluator (onnx.reference), whichever are installed.
"""
import io
import os
import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper
from onnx_models import Builder, assorted_ops, mobile_cnn
from conftest import run_onnx_reference as _run_reference
from conftest import run_onnxruntime as _run_onnxruntime

import cconv
from cconv import plugins
from cconv.gradcheck import check_gradients

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _compare(model, oracle, cconv_onnx, rng, batch=3, atol=1e-4):
    net = cconv_onnx.import_onnx(model)
    x = rng.standard_normal((batch,) + net.input_shapes[0]).astype(np.float32)
    expected = oracle(model, {model.graph.input[0].name: x})[0]
    y = net(x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, atol=atol, rtol=1e-4)
    return net, x


# ---------------------------------------------------------------- parity

@pytest.mark.parametrize("se_with_gemm", [False, True], ids=["se_conv", "se_gemm_shape_fold"])
def test_mobile_cnn_matches_oracle(se_with_gemm, oracle, cconv_onnx, rng):
    model = mobile_cnn(rng, se_with_gemm=se_with_gemm)
    net, _ = _compare(model, oracle, cconv_onnx, rng)
    types = {layer.type_name for _, layer in net.layers()}
    assert {"Conv2d", "BatchNorm2d", "HardSwish", "Mul", "Add", "Linear"} <= types
    # the depthwise convolutions kept their groups
    assert any(getattr(layer, "groups", 1) == 8 for _, layer in net.layers())


def test_assorted_operators_match_oracle(oracle, cconv_onnx, rng):
    net, _ = _compare(assorted_ops(rng), oracle, cconv_onnx, rng)
    types = {layer.type_name for _, layer in net.layers()}
    assert {"ConvTranspose2d", "Resize", "Pad", "Clip", "PReLU", "Div", "Sub"} <= types


def _single(op_type, x_shape, out_shape, rng, opset=17, consts=(), **attrs):
    b = Builder(rng, opset=opset)
    names = [c if isinstance(c, str) else
             b.const(c, np.asarray(c).dtype if np.asarray(c).dtype.kind == "i" else np.float32)
             for c in consts]
    out = b.op(op_type, ["x"] + names, **attrs)
    return b.model("x", x_shape, out, out_shape)


SINGLE_OPS = [
    ("conv_same_lower", lambda r: _single(
        "Conv", (2, 7, 8), ["N", 3, 4, 4], r, consts=[r.standard_normal((3, 2, 3, 3))],
        strides=[2, 2], auto_pad="SAME_LOWER")),
    ("conv1d_pads", lambda r: _single(
        "Conv", (2, 9), ["N", 4, None], r, consts=[r.standard_normal((4, 2, 3)),
                                                   r.standard_normal(4)], pads=[2, 0])),
    ("convtranspose_output_shape", lambda r: _single(
        "ConvTranspose", (3, 4, 4), ["N", 2, 9, 8], r,
        consts=[r.standard_normal((3, 2, 3, 3))], strides=[2, 2], output_shape=[9, 8])),
    ("convtranspose_groups", lambda r: _single(
        "ConvTranspose", (4, 3, 3), ["N", 6, None, None], r,
        consts=[r.standard_normal((4, 3, 2, 2))], strides=[2, 1], group=2)),
    ("maxpool_same_upper", lambda r: _single(
        "MaxPool", (2, 7, 7), ["N", 2, 4, 4], r, kernel_shape=[3, 3], strides=[2, 2],
        auto_pad="SAME_UPPER")),
    ("maxpool_ceil_dilated", lambda r: _single(
        "MaxPool", (2, 8, 9), ["N", 2, None, None], r, kernel_shape=[2, 2], strides=[2, 2],
        dilations=[2, 2], ceil_mode=1)),
    ("avgpool_include_pad_asym", lambda r: _single(
        "AveragePool", (2, 6, 6), ["N", 2, None, None], r, kernel_shape=[3, 3],
        pads=[0, 1, 2, 1], count_include_pad=1)),
    ("globalavgpool", lambda r: _single("GlobalAveragePool", (3, 4, 5), ["N", 3, 1, 1], r)),
    ("hardsigmoid_custom", lambda r: _single(
        "HardSigmoid", (3, 4), ["N", 3, 4], r, alpha=0.3, beta=0.4)),
    ("clip_opset6_attrs", lambda r: _single("Clip", (3, 4), ["N", 3, 4], r, opset=6,
                                            min=-0.5, max=0.25)),
    ("relu6_clip", lambda r: _single("Clip", (3, 4), ["N", 3, 4], r,
                                     consts=[np.float32(0), np.float32(6)])),
    ("prelu_shared", lambda r: _single("PRelu", (3, 4), ["N", 3, 4], r,
                                       consts=[np.float32([0.2])])),
    ("softmax_opset11_last", lambda r: _single("Softmax", (3, 5), ["N", 3, 5], r, opset=11,
                                               axis=2)),
    ("upsample_opset9", lambda r: _single(
        "Upsample", (2, 3, 4), ["N", 2, 6, 12], r, opset=9,
        consts=[np.float32([1, 1, 2, 3])], mode="nearest")),
    ("resize_linear_align_corners", lambda r: _single(
        "Resize", (2, 3, 4), ["N", 2, 5, 7], r, consts=["", np.float32([1, 1, 1.7, 1.9])],
        mode="linear", coordinate_transformation_mode="align_corners")),
    ("resize_nearest_half_pixel_down", lambda r: _single(
        "Resize", (2, 8, 9), ["N", 2, 4, 3], r, consts=["", np.float32([1, 1, 0.5, 0.4])],
        mode="nearest")),
    ("pad_edge_opset2", lambda r: _single("Pad", (2, 3, 4), ["N", 2, None, None], r,
                                          opset=2, mode="edge", pads=[0, 0, 1, 2, 0, 0, 2, 0])),
    ("pad_constant_value_crop", lambda r: _single(
        "Pad", (2, 5, 4), ["N", 2, None, None], r,
        consts=[np.int64([0, 0, 2, -1, 0, 0, -1, 3]), np.float32(0.7)])),
    ("matmul_constant", lambda r: _single("MatMul", (3, 4), ["N", 3, 2], r,
                                          consts=[r.standard_normal((4, 2))])),
    ("gemm_transposed_scalar_bias", lambda r: _single(
        "Gemm", (4,), ["N", 3], r, consts=[r.standard_normal((3, 4)), np.float32(0.5)],
        transB=1, alpha=2.0, beta=3.0)),
    ("div_by_channel_constant", lambda r: _single(
        "Div", (3, 2, 2), ["N", 3, 2, 2], r, consts=[r.uniform(1, 2, (1, 3, 1, 1))])),
    ("leakyrelu", lambda r: _single("LeakyRelu", (3, 4), ["N", 3, 4], r, alpha=0.3)),
    ("resize_nearest_prefer_ceil", lambda r: _single(
        "Resize", (2, 4, 5), ["N", 2, 7, 8], r, consts=["", np.float32([1, 1, 1.75, 1.6])],
        mode="nearest", nearest_mode="round_prefer_ceil")),
    ("pad_axes_opset18", lambda r: _single(
        "Pad", (2, 3, 4), ["N", 2, None, None], r, opset=18,
        consts=[np.int64([1, 2, 0, 1]), "", np.int64([3, 2])], mode="reflect")),
    ("squeeze_all_ones", lambda r: _single("Squeeze", (3, 1, 4, 1), ["N", 3, 4], r)),
]


# Cases onnx's reference evaluator gets wrong or cannot run (onnx 1.23); onnxruntime
# and torch agree with cconv on them.
REFERENCE_GAPS = {
    "convtranspose_output_shape": "reference ConvTranspose ignores output_shape",
    "convtranspose_groups": "reference ConvTranspose does not support group > 1",
    "resize_linear_align_corners": "reference Resize align_corners with scales differs "
                                   "from onnxruntime and torch",
    "pad_constant_value_crop": "reference Pad refuses negative pads",
}


@pytest.mark.parametrize("case", [i for i, _ in SINGLE_OPS])
def test_single_operator_matches_oracle(case, oracle, cconv_onnx, rng):
    if oracle is _run_reference and case in REFERENCE_GAPS:
        pytest.skip(REFERENCE_GAPS[case])
    _compare(dict(SINGLE_OPS)[case](rng), oracle, cconv_onnx, rng, batch=2)


def _torch_export(module, x):
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    try:
        torch.onnx.export(module, (torch.from_numpy(x),), buf, dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}}, opset_version=17)
    except (ImportError, ModuleNotFoundError, RuntimeError, TypeError) as exc:
        pytest.skip(f"torch.onnx.export is unavailable here: {type(exc).__name__}: {exc}")
    return buf.getvalue()


def test_torch_exported_mobile_block_matches_torch(cconv_onnx, rng):
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.stem = tnn.Sequential(tnn.Conv2d(3, 8, 3, 2, 1, bias=False),
                                       tnn.BatchNorm2d(8), tnn.Hardswish())
            self.dw = tnn.Sequential(tnn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False),
                                     tnn.BatchNorm2d(8), tnn.ReLU6())
            self.se1, self.se2 = tnn.Conv2d(8, 4, 1), tnn.Conv2d(4, 8, 1)
            self.up = tnn.Upsample(scale_factor=2, mode="bilinear")
            self.pool = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.fc = tnn.Linear(8, 5)

        def forward(self, x):
            h = self.stem(x)
            d = self.dw(h)
            s = tnn.functional.adaptive_avg_pool2d(d, 1)
            s = tnn.functional.hardsigmoid(self.se2(torch.relu(self.se1(s))))
            h = self.pool(self.up(h + d * s))
            h = torch.flatten(tnn.functional.adaptive_avg_pool2d(h, 1), 1)
            return self.fc(h).reshape(h.shape[0], -1)

    torch.manual_seed(0)
    module = Block().eval()
    for bn in (module.stem[1], module.dw[1]):   # non-trivial statistics
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    net = cconv_onnx.import_onnx(_torch_export(module, x))
    x3 = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)   # another batch size
    with torch.no_grad():
        expected = module(torch.from_numpy(x3)).numpy()
    np.testing.assert_allclose(net(x3), expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- the imported graph

def test_imported_graph_trains_with_exact_gradients(cconv_onnx, rng):
    net = cconv_onnx.import_onnx(assorted_ops(rng)).astype(np.float64)
    x = rng.standard_normal((2,) + net.input_shapes[0])
    errors = check_gradients(net, [x], max_coords=6, params=net.named_parameters(True))
    assert "input0" in errors and any(k.startswith("param:") for k in errors)


def test_imported_mobile_cnn_gradients_and_fit_step(cconv_onnx, rng):
    net = cconv_onnx.import_onnx(mobile_cnn(rng, se_with_gemm=True))
    x = rng.standard_normal((4,) + net.input_shapes[0]).astype(np.float32)
    before = {n: p.copy() for n, p in net.named_parameters()}
    y = net.forward(x, training=True)
    net.backward(np.ones_like(y) - y)
    opt = cconv.optim.SGD(net, lr=0.1)
    opt.step()
    changed = [n for n, p in net.named_parameters() if not np.array_equal(p, before[n])]
    assert any(n.endswith(".weight") for n in changed)
    net64 = cconv_onnx.import_onnx(mobile_cnn(np.random.default_rng(1))).astype(np.float64)
    check_gradients(net64, [rng.standard_normal((3,) + net64.input_shapes[0])],
                    max_coords=4, params=net64.named_parameters(True))


def test_save_and_load_round_trip_keeps_outputs(cconv_onnx, rng, tmp_path):
    net = cconv_onnx.import_onnx(assorted_ops(rng))
    path = tmp_path / "net.safetensors"
    cconv.save(net, path)
    again = cconv.load(path)
    x = rng.standard_normal((2,) + net.input_shapes[0]).astype(np.float32)
    np.testing.assert_array_equal(again(x), net(x))
    assert again.get_config() == net.get_config()


def test_weight_loader_is_registered_and_reads_initializers(cconv_onnx, rng, tmp_path):
    model = mobile_cnn(rng)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    loader = plugins.find_weight_loader(str(path))
    assert loader is cconv_onnx.load_onnx_weights
    assert plugins.registry().weight_loaders.entry("onnx").source == "cconv-onnx"
    weights = loader(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    floats = {k for k, v in inits.items() if v.dtype.kind == "f"}
    assert set(weights) == floats
    for k in floats:
        np.testing.assert_array_equal(weights[k], inits[k])
    assert isinstance(loader.load_graph(str(path)), cconv.Graph)


def test_graph_with_fixed_batch_and_several_outputs(cconv_onnx, rng):
    b = Builder(rng)
    h = b.conv("x", 2, 3, 3)
    r = b.op("Relu", [h])
    s = b.op("Sigmoid", [h])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 5, 5])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3, 5, 5]) for n in (r, s)]
    model = helper.make_model(helper.make_graph(b.nodes, "g", [x], outs, initializer=b.inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    net = cconv_onnx.import_onnx(model)
    xv = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    yr, ys = net(xv)
    assert yr.shape == ys.shape == (2, 3, 5, 5)
    pos = yr > 0   # both outputs read the same conv: relu(h) and sigmoid(h)
    assert pos.any() and (~pos).any()
    np.testing.assert_allclose(ys[pos], 1 / (1 + np.exp(-yr[pos])), rtol=1e-5)
    assert (ys[~pos] <= 0.5 + 1e-7).all()


# ---------------------------------------------------------------- errors

def _model(nodes, inits=(), x_shape=("N", 3, 4, 4), opset=17, out="y", out_shape=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape or ["N"])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_every_unsupported_operator_is_listed_in_one_error(cconv_onnx):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
             helper.make_node("Hardmax", ["a"], ["b"], name="hardmax1"),
             helper.make_node("Shrink", ["b"], ["c"], name="shrink1"),
             helper.make_node("Hardmax", ["c"], ["d"], name="hardmax2"),
             helper.make_node("Celu", ["d"], ["y"], name="celu")]
    with pytest.raises(cconv_onnx.OnnxImportError) as info:
        cconv_onnx.import_onnx(_model(nodes))
    msg = str(info.value)
    assert "3 operator(s)" in msg and "nothing was imported" in msg
    assert "Hardmax (unsupported operator): 2 node(s), e.g. hardmax1, hardmax2" in msg
    assert "Shrink (unsupported operator): 1 node(s), e.g. shrink1" in msg and "Celu" in msg
    assert "Relu (" not in msg
    assert cconv_onnx.unsupported_operators(_model(nodes)) == {
        "Hardmax": ["hardmax1", "hardmax2"], "Shrink": ["shrink1"], "Celu": ["celu"]}


def test_custom_domain_operator_is_reported_with_its_domain(cconv_onnx):
    nodes = [helper.make_node("FusedConv", ["x"], ["y"], name="f", domain="com.microsoft")]
    model = _model(nodes)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(cconv_onnx.OnnxImportError, match="com.microsoft.FusedConv"):
        cconv_onnx.import_onnx(model)


def test_truncated_and_garbage_files_raise_clear_errors(cconv_onnx, rng, tmp_path):
    good = mobile_cnn(rng).SerializeToString()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good[: len(good) // 3])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffnot an onnx model at all" * 10)
    for path in (truncated, garbage):
        with pytest.raises(cconv_onnx.OnnxImportError, match="ONNX model"):
            cconv_onnx.import_onnx(str(path))
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        cconv_onnx.import_onnx(str(tmp_path / "missing.onnx"))


def test_malformed_graph_raises_clear_error(cconv_onnx):
    # a node that reads a tensor nothing defines
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="add")]
    with pytest.raises(cconv_onnx.OnnxImportError, match="ghost"):
        cconv_onnx.import_onnx(_model(nodes))


@pytest.mark.parametrize("nodes, inits, match", [
    ([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")],
     [onnx.numpy_helper.from_array(np.int64([-1, 16]), "s")], "batch axis"),
    # a transposed batch axis is followed now; reducing over it is not
    ([helper.make_node("ReduceMax", ["x"], ["y"], name="rs", axes=[0])], [],
     "axes=0 is the batch axis"),
    ([helper.make_node("Flatten", ["x"], ["y"], name="f", axis=2)], [], "axis=1"),
    ([helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
     [], "must be a constant"),
    ([helper.make_node("Resize", ["x", "", "sc"], ["y"], name="rs", mode="cubic")],
     [onnx.numpy_helper.from_array(np.float32([1, 1, 2, 2]), "sc")], "cubic"),
    ([helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=0)], [], "batch axis"),
    # a literal batch size in a model whose batch is symbolic only works at that size
    ([helper.make_node("Resize", ["x", "", "", "sz"], ["y"], name="rz")],
     [onnx.numpy_helper.from_array(np.int64([1, 3, 8, 8]), "sz")], "keep batch"),
    ([helper.make_node("Reshape", ["x", "s1"], ["y"], name="r1")],
     [onnx.numpy_helper.from_array(np.int64([1, -1]), "s1")], "batch axis"),
])
def test_unrepresentable_nodes_are_refused_naming_the_node(cconv_onnx, nodes, inits, match):
    model = _model(nodes, inits)
    if nodes[0].op_type == "Conv":   # the weight is a graph input, computed at run time
        model.graph.input.append(
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3, 1, 1]))
        with pytest.raises(cconv_onnx.OnnxImportError, match="weight"):
            cconv_onnx.import_onnx(model, input_shapes={"w": (3, 1, 1)})
        return
    with pytest.raises(cconv_onnx.OnnxImportError, match=match) as info:
        cconv_onnx.import_onnx(model)
    assert repr(nodes[0].name) in str(info.value)


def test_weights_from_constant_nodes(cconv_onnx, rng):
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    scale = rng.uniform(1, 2, (1, 2, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["w"], name="cw",
                              value=onnx.numpy_helper.from_array(w)),
             helper.make_node("Constant", [], ["s"], name="cs",
                              value=onnx.numpy_helper.from_array(scale)),
             helper.make_node("Conv", ["x", "w"], ["h"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["h", "s"], ["y"], name="mul")]
    net = cconv_onnx.import_onnx(_model(nodes))
    # the channel scale is a weight: folded into the conv's (trainable) weights and bias
    np.testing.assert_allclose(net["conv"].params["weight"], w * scale.reshape(2, 1, 1, 1),
                               rtol=1e-6)
    assert [n for n, _ in net.layers()] == ["conv"]
    assert net.onnx_import_report["folded"] == [
        "mul: Mul of a constant (1, 2, 1, 1) into the weights and bias of conv"]
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    expected = cconv.ops.conv2d(x, w, padding=1) * scale
    np.testing.assert_allclose(net(x), expected, rtol=1e-5, atol=1e-6)


def test_hostile_constant_shapes_are_refused_not_allocated(cconv_onnx):
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"], name="huge"),
             helper.make_node("Add", ["x", "big"], ["y"], name="add")]
    shape = onnx.numpy_helper.from_array(np.int64([1 << 20, 1 << 20]), "shape")
    with pytest.raises(cconv_onnx.OnnxImportError, match="huge.*elements"):
        cconv_onnx.import_onnx(_model(nodes, [shape]))


def test_open_input_sizes_stay_free_and_input_shapes_sets_the_built_one(cconv_onnx, rng):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    model = _model(nodes, x_shape=("N", 3, "H", "W"))
    net = cconv_onnx.import_onnx(model)
    assert net.input_spec == {"x": (None, 3, None, None)}
    net = cconv_onnx.import_onnx(model, input_shapes={"x": (3, 5, 6)})
    assert net.input_shapes == [(3, 5, 6)]
    assert net.input_spec == {"x": (None, 3, None, None)}
    with pytest.raises(cconv_onnx.OnnxImportError, match="'input'"):
        cconv_onnx.import_onnx(model, input_shapes={"input": (3, 5, 6)})


# ---------------------------------------------------------------- CLI

def test_cli_import_saves_a_loadable_net(cconv_onnx, rng, tmp_path, capsys):
    from cconv.cli import main

    model = mobile_cnn(rng)
    src = tmp_path / "mobile.onnx"
    onnx.save(model, src)
    out = tmp_path / "mobile.safetensors"
    assert main(["import", str(src), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "HardSwish" in text and "total parameters" in text and f"saved {out}" in text
    net = cconv.load(out)
    x = rng.standard_normal((2, 3, 18, 18)).astype(np.float32)
    np.testing.assert_allclose(net(x), cconv_onnx.import_onnx(model)(x), rtol=1e-6)


def test_cli_import_reports_errors_with_exit_code(cconv_onnx, tmp_path, capsys):
    from cconv.cli import main

    nodes = [helper.make_node("Hardmax", ["x"], ["y"], name="e")]
    src = tmp_path / "bad.onnx"
    onnx.save(_model(nodes), src)
    assert main(["import", str(src), "-o", str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "Hardmax" in err and "cconv import: error" in err
    assert not (tmp_path / "o.safetensors").exists()
    assert main(["import", str(tmp_path / "model.h5")]) == 1
    assert "no weight loader" in capsys.readouterr().err


# ---------------------------------------------------------------- any input size

def _dynamic_conv(rng, head="map"):
    """A conv net whose file leaves N, H and W open: SAME stride-2 depthwise, pooling,
    nearest upsampling by scales, and a head that reshapes with 0/-1 ("map") or
    flattens the torch way (Shape -> Gather -> Concat with -1) before a Gemm ("gemm")."""
    b = Builder(rng)
    h = b.op("Relu", [b.bn(b.conv("x", 3, 8, 3), 8)])
    h = b.op("Relu", [b.conv(h, 8, 8, 3, stride=2, group=8, auto_pad="SAME_UPPER")])
    h = b.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = b.op("Resize", [h, "", b.const([1, 1, 2, 2])], mode="nearest")
    h = b.conv(h, 8, 4, 1)
    if head == "map":
        h = b.op("Unsqueeze", [h, b.const([4], np.int64)])         # N, 4, h, w, 1
        h = b.op("Squeeze", [h, b.const([4], np.int64)])
        out = b.op("Reshape", [h, b.const([0, 0, -1], np.int64)])  # N, 4, h*w
        out_shape = ["N", 4, None]
    else:
        g = b.op("GlobalAveragePool", [h])
        n = b.op("Gather", [b.op("Shape", [g]), b.const(0, np.int64)], axis=0)
        tgt = b.op("Concat", [b.op("Unsqueeze", [n, b.const([0], np.int64)]),
                              b.const([-1], np.int64)], axis=0)
        g = b.op("Reshape", [g, tgt])
        out = b.op("Gemm", [g, b.weight(3, 4), b.weight(3, scale=0.1)], transB=1)
        out_shape = ["N", 3]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(b.nodes, "g", [x], [y], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("head", ["map", "gemm"])
def test_dynamic_hw_imports_without_flags_and_matches_at_every_size(head, oracle, cconv_onnx,
                                                                     rng):
    model = _dynamic_conv(rng, head)
    net = cconv_onnx.import_onnx(model)
    assert net.input_spec == {"x": (None, 3, None, None)}
    for batch, hw in [(2, (16, 16)), (1, (13, 11)), (3, (24, 20)), (2, (7, 9))]:
        x = rng.standard_normal((batch, 3) + hw).astype(np.float32)
        want = oracle(model, {"x": x})[0]
        got = net(x)
        assert got.shape == want.shape, hw
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def _strided_same(rng):
    """TF-style strided SAME windows on open H, W: MaxPool SAME_UPPER, Conv SAME_LOWER,
    AveragePool SAME_UPPER counting the padding, each with stride 2."""
    b = Builder(rng)
    h = b.op("Relu", [b.conv("x", 3, 6, 3)])
    h = b.op("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    h = b.conv(h, 6, 6, 4, stride=2, auto_pad="SAME_LOWER")
    h = b.op("AveragePool", [h], kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER",
             count_include_pad=1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info(h, TensorProto.FLOAT, ["N", 6, None, None])
    graph = helper.make_graph(b.nodes, "g", [x], [y], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_strided_same_windows_import_for_any_size(oracle, cconv_onnx, rng, tmp_path):
    """Their pads depend on the size: PadSame works them out per call, so no input_shapes,
    and the net exports back with the rule intact (onnxruntime at other sizes)."""
    model = _strided_same(rng)
    net = cconv_onnx.import_onnx(model)
    assert net.input_spec == {"x": (None, 3, None, None)}
    assert sum(layer.type_name == "PadSame" for _, layer in net.layers()) == 3
    sizes = [(2, (16, 16)), (1, (13, 11)), (3, (24, 21)), (2, (9, 10))]
    outs = {}
    for batch, hw in sizes:
        x = rng.standard_normal((batch, 3) + hw).astype(np.float32)
        want = oracle(model, {"x": x})[0]
        got = outs[hw] = (x, net(x))
        assert got[1].shape == want.shape, hw
        np.testing.assert_allclose(got[1], want, atol=1e-4, rtol=1e-4)
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "same.onnx"
    cconv.export_onnx(net, str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x, got in outs.values():
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], got, atol=1e-5, rtol=1e-5)


def test_dynamic_import_saves_loads_and_runs_through_the_cli(cconv_onnx, rng, tmp_path,
                                                            capsys):
    from cconv.cli import main

    model = _dynamic_conv(rng, "map")
    src, out = tmp_path / "dyn.onnx", tmp_path / "dyn.safetensors"
    onnx.save(model, src)
    assert main(["import", str(src), "-o", str(out)]) == 0
    capsys.readouterr()
    net = cconv.load(out)
    assert net.input_spec == {"x": (None, 3, None, None)}
    x = rng.standard_normal((2, 3, 21, 15)).astype(np.float32)
    np.testing.assert_allclose(net(x), _run_reference(model, {"x": x})[0], atol=1e-4,
                               rtol=1e-4)


def test_sizes_the_file_fixes_stay_fixed(cconv_onnx, rng):
    net = cconv_onnx.import_onnx(mobile_cnn(rng))
    assert net.input_spec == {"x": (None, 3, 18, 18)}
    with pytest.raises(cconv.graph.GraphError, match="fixed dims"):
        net(np.zeros((1, 3, 20, 20), np.float32))
    assert net(np.zeros((5, 3, 18, 18), np.float32)).shape == (5, 5)   # the batch is free


def _open_model(nodes, inits=(), out_shape=None):
    return _model(nodes, inits, x_shape=("N", 2, "H", "W"), out_shape=out_shape)


def _shape_product_reshape(unflatten, scaled=False):
    """x (N, 2, H, W) -> Reshape to [0, 0, H*W] with H*W computed from Shape, as exporters
    write x.view(n, c, h * w); unflatten: then back to [0, 0, H, W] the same way (scaled:
    to [0, 0, 2 H, W / 2], sizes that are arithmetic on the input's)."""
    def gather(i, out):
        return helper.make_node("Gather", ["s", i], [out], name=f"gather_{out}", axis=0)

    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"), gather("i2", "h"),
             gather("i3", "w"), helper.make_node("Mul", ["h", "w"], ["p"], name="prod"),
             helper.make_node("Unsqueeze", ["p", "ax"], ["p1"], name="unsq"),
             helper.make_node("Concat", ["zero", "p1"], ["t"], name="cat", axis=0),
             helper.make_node("Reshape", ["x", "t"], ["r"], name="flat"),
             helper.make_node("Relu", ["r"], ["y" if not unflatten else "f"], name="relu")]
    if unflatten:
        h, w = "h", "w"
        if scaled:
            nodes += [helper.make_node("Mul", ["h", "two"], ["h2"], name="twice"),
                      helper.make_node("Div", ["w", "two"], ["w2"], name="half")]
            h, w = "h2", "w2"
        nodes += [helper.make_node("Unsqueeze", [h, "ax"], ["h1"], name="unsq_h"),
                  helper.make_node("Unsqueeze", [w, "ax"], ["w1"], name="unsq_w"),
                  helper.make_node("Concat", ["zero", "h1", "w1"], ["t2"], name="cat2",
                                   axis=0),
                  helper.make_node("Reshape", ["f", "t2"], ["y"], name="unflat")]
    inits = [onnx.numpy_helper.from_array(np.int64(2), "i2"),
             onnx.numpy_helper.from_array(np.int64(3), "i3"),
             onnx.numpy_helper.from_array(np.int64([0]), "ax"),
             onnx.numpy_helper.from_array(np.int64([0, 0]), "zero"),
             onnx.numpy_helper.from_array(np.int64(2), "two")]
    return _open_model(nodes, inits)


def test_a_reshape_target_computed_from_the_size_is_made_size_free(cconv_onnx, rng):
    model = _shape_product_reshape(unflatten=False)
    net = cconv_onnx.import_onnx(model)
    assert net.input_spec == {"x": (None, 2, None, None)}
    assert [layer.shape for _, layer in net.layers() if layer.type_name == "Reshape"] == \
        [(2, -1)]
    for hw in [(5, 4), (9, 13)]:
        x = rng.standard_normal((3, 2) + hw).astype(np.float32)
        np.testing.assert_allclose(net(x), _run_reference(model, {"x": x})[0], rtol=1e-6)


def test_a_reshape_back_to_sizes_read_from_shape_follows_them(cconv_onnx, rng):
    """[0, 0, H, W] with H and W gathered from x's Shape: ReshapeAs reads them from x at
    every size (a hybrid block's tokens back to the feature map)."""
    model = _shape_product_reshape(unflatten=True)
    net = cconv_onnx.import_onnx(model)
    assert net.input_spec == {"x": (None, 2, None, None)}
    assert [layer.like_axes for _, layer in net.layers()
            if layer.type_name == "ReshapeAs"] == [(None, 1, 2)]
    for hw in [(5, 4), (3, 7)]:
        x = rng.standard_normal((3, 2) + hw).astype(np.float32)
        np.testing.assert_allclose(net(x), _run_reference(model, {"x": x})[0], rtol=1e-6)


def test_a_reshape_cconv_cannot_follow_asks_for_the_size(cconv_onnx, rng):
    model = _shape_product_reshape(unflatten=True, scaled=True)   # 2 H and W / 2
    with pytest.raises(cconv_onnx.OnnxImportError,
                       match=r"node 'unflat'.*fixes the size.*input_shapes"):
        cconv_onnx.import_onnx(model)
    net = cconv_onnx.import_onnx(model, input_shapes={"x": (2, 5, 4)})
    assert net.input_spec == {"x": (None, 2, 5, 4)}
    x = rng.standard_normal((3, 2, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(net(x), _run_reference(model, {"x": x})[0], rtol=1e-6)
    with pytest.raises(cconv.graph.GraphError, match="fixed dims"):
        net(np.zeros((1, 2, 6, 4), np.float32))


def test_resize_scale_inexact_in_float64_fixes_the_size(cconv_onnx):
    scales = onnx.numpy_helper.from_array(np.float32([1, 1, 1.8, 1.8]), "sc")
    nodes = [helper.make_node("Resize", ["x", "", "sc"], ["y"], name="up", mode="nearest")]
    with pytest.raises(cconv_onnx.OnnxImportError, match="node 'up'"):
        cconv_onnx.import_onnx(_open_model(nodes, [scales]))
    exact = onnx.numpy_helper.from_array(np.float32([1, 1, 2, 0.5]), "sc")
    net = cconv_onnx.import_onnx(_open_model(nodes, [exact]))
    assert net.input_spec == {"x": (None, 2, None, None)}
    assert net(np.zeros((1, 2, 5, 6), np.float32)).shape == (1, 2, 10, 3)


def test_open_size_of_a_flatten_gemm_model_is_found_and_fixed_by_the_layers(cconv_onnx,
                                                                            rng):
    b = Builder(rng)
    h = b.op("Flatten", [b.conv("x", 2, 2, 3)])
    out = b.op("Gemm", [h, b.weight(3, 2 * 32 * 32), b.weight(3)], transB=1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, "H", "W"])
    y = helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 3])
    model = helper.make_model(helper.make_graph(b.nodes, "g", [x], [y], b.inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    net = cconv_onnx.import_onnx(model)   # traced at the placeholder size that fits: 32
    assert net.input_spec == {"x": (None, 2, 32, 32)}
    with pytest.raises(cconv.graph.GraphError, match="Linear"):
        net(np.zeros((1, 2, 33, 32), np.float32))


@pytest.mark.parametrize("head", ["map", "gemm"])
def test_dynamic_import_exports_with_open_axes_again(head, cconv_onnx, rng):
    net = cconv_onnx.import_onnx(_dynamic_conv(rng, head))
    back = cconv_onnx.to_onnx(net)
    dims = [d.dim_param or d.dim_value for d in back.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    for hw in [(16, 16), (13, 11)]:
        x = rng.standard_normal((2, 3) + hw).astype(np.float32)
        got = _run_onnxruntime(back, {back.graph.input[0].name: x})[0]
        np.testing.assert_allclose(got, net(x), atol=1e-5, rtol=1e-5)


def _fold_model(nodes, inits, opset=13):
    from onnx import numpy_helper
    graph = helper.make_graph(
        nodes + [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_every_folded_op_is_charged_before_it_runs(cconv_onnx):
    # issue 23: Range(0, n) unsqueezed both ways, then Mul, allocated n*n elements;
    # the result size comes from the inputs' shapes, so nothing that big is made
    from cconv_onnx.folding import FOLD_SLACK
    nodes = [helper.make_node("Range", ["s", "l", "d"], ["r"]),
             helper.make_node("Unsqueeze", ["r", "a0"], ["r0"]),
             helper.make_node("Unsqueeze", ["r", "a1"], ["r1"]),
             helper.make_node("Mul", ["r0", "r1"], ["m"])]
    inits = [("s", np.array(0, np.int64)), ("d", np.array(1, np.int64)),
             ("a0", np.array([0], np.int64)), ("a1", np.array([1], np.int64))]
    small = _fold_model(nodes, inits + [("l", np.array(100, np.int64))])
    cconv_onnx.import_onnx(small)   # 10,000 elements: within the budget
    big = _fold_model(nodes, inits + [("l", np.array(4000, np.int64))])
    with pytest.raises(cconv_onnx.OnnxImportError,
                       match=r"Mul node .* 16000000 elements.*at most (\d+) in all") as info:
        cconv_onnx.import_onnx(big)
    limit = int(re.search(r"at most (\d+)", str(info.value)).group(1))
    assert FOLD_SLACK + big.ByteSize() <= limit < FOLD_SLACK + 2 * big.ByteSize()


def test_fold_budget_is_shared_by_all_ops_of_an_import(cconv_onnx):
    # eight ConstantOfShape of 2**17 elements each fit alone; together they pass 2**20
    nodes = [helper.make_node("ConstantOfShape", ["shape"], [f"c{i}"]) for i in range(9)]
    model = _fold_model(nodes, [("shape", np.array([1 << 17], np.int64))])
    with pytest.raises(cconv_onnx.OnnxImportError, match="ConstantOfShape node .* used"):
        cconv_onnx.import_onnx(model)


@pytest.mark.parametrize("attrs,match", [
    ({"auto_pad": b"\xff\xfeSAME"}, "not UTF-8"),
    ({"strides": [2**24, 2**24]}, r"strides=\[16777216, 16777216\]"),
    ({"pads": [0, 0, 2**20, 0]}, r"pads=.* each must be in \[0, 65536\]"),
    ({"dilations": [0, 1]}, r"dilations=\[0, 1\]"),
])
def test_nonsense_conv_attributes_are_import_errors(cconv_onnx, attrs, match):
    from onnx import numpy_helper
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], **attrs)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 9, 9])],
        [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(cconv_onnx.OnnxImportError, match=match):
        cconv_onnx.import_onnx(model.SerializeToString())


def test_a_long_1d_input_imports_free_at_a_placeholder_it_fits(cconv_onnx, oracle, rng):
    """An audio stem (80 taps, stride 16, then 4x pooling twice) takes no input below
    ~1.3k samples: the importer keeps trying larger placeholder sizes (M5 needed it)."""
    w = rng.standard_normal((4, 1, 80)).astype(np.float32) * 0.1
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[16], name="stem"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p1"], kernel_shape=[4], strides=[4],
                              name="pool1"),
             helper.make_node("MaxPool", ["p1"], ["p2"], kernel_shape=[4], strides=[4],
                              name="pool2"),
             helper.make_node("MaxPool", ["p2"], ["y"], kernel_shape=[4], strides=[4],
                              name="pool3")]
    graph = helper.make_graph(
        nodes, "audio", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, "t"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, "s"])],
        [onnx.numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    net = cconv_onnx.import_onnx(model)
    assert net.input_spec["x"] == (None, 1, None)
    for length in (1500, 4001):
        x = rng.standard_normal((2, 1, length)).astype(np.float32)
        np.testing.assert_allclose(net(x), oracle(model, {"x": x})[0], rtol=1e-4, atol=1e-5)
