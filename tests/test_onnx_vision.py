"""The vision-model operators through the ONNX importer, against onnxruntime and onnx's
reference evaluator (whichever are installed), and the one report of every obstacle."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper
from onnx_models import Builder
from conftest import run_onnx_reference as _run_reference

import cconv



def _model(build, x_shape, opset=17, positive=False):
    """A model with input x of per-sample shape x_shape whose output `build(b, "x")` names."""
    b = Builder(np.random.default_rng(0), opset=opset)
    out = build(b, "x")
    model = b.model("x", x_shape, out, [])
    # the output's type as onnx infers it (the checker wants one)
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = {vi.name: vi for vi in inferred.graph.value_info}
    if out in typed:
        model.graph.output[0].CopyFrom(typed[out])
    else:
        model.graph.output[0].type.tensor_type.ClearField("shape")
        model.graph.output[0].type.tensor_type.shape.SetInParent()
    return model, positive


def _c(b, value, dtype=np.float32):
    return b.const(np.asarray(value), dtype)


def _i(b, value):
    return b.const(np.asarray(value), np.int64)


def _one(op, **attrs):
    return lambda b, x: b.op(op, [x], **attrs)


CASES = {
    # element-wise
    **{op.lower(): (_one(op), (3, 4)) for op in ("Neg", "Exp", "Erf", "Softplus", "Softsign",
                                                   "Abs")},
    **{op.lower(): (_one(op), (3, 4), 17, True) for op in ("Log", "Sqrt", "Reciprocal")},
    "elu": (_one("Elu", alpha=0.5), (3, 4)),
    "selu": (_one("Selu"), (3, 4)),
    "mish": (_one("Mish"), (3, 4), 18),
    "gelu_exact": (_one("Gelu"), (3, 4), 20),
    "gelu_tanh": (_one("Gelu", approximate="tanh"), (3, 4), 20),
    "pow_const": (lambda b, x: b.op("Pow", [x, _c(b, 2.0)]), (3, 4)),
    "pow_two_values": (lambda b, x: b.op("Pow", [x, b.op("Sigmoid", [x])]), (3, 4), 17, True),
    "layernorm_as_reducemean_pow_sqrt_div": (lambda b, x: b.op("Div", [
        b.op("Sub", [x, b.op("ReduceMean", [x], axes=[-1])]),
        b.op("Sqrt", [b.op("Add", [b.op("ReduceMean", [b.op("Pow", [
            b.op("Sub", [x, b.op("ReduceMean", [x], axes=[-1])]), _c(b, 2.0)])], axes=[-1]),
            _c(b, 1e-5)])])]), (5, 6), 13),
    # variadic and masks
    "sum3": (lambda b, x: b.op("Sum", [x, b.op("Exp", [x]), _c(b, [1.0, 2.0, 3.0, 4.0])]),
             (3, 4)),
    "max_min": (lambda b, x: b.op("Min", [b.op("Max", [x, b.op("Neg", [x])]), _c(b, 1.5)]),
                (3, 4)),
    "mean": (lambda b, x: b.op("Mean", [x, b.op("Tanh", [x])]), (3, 4)),
    "where_less": (lambda b, x: b.op("Where", [b.op("Less", [x, _c(b, 0.0)]), x,
                                               b.op("Exp", [x])]), (3, 4)),
    "where_const_fill": (lambda b, x: b.op("Where", [b.op("Equal", [x, x]), x,
                                                     _c(b, -1e4)]), (2, 4)),
    "masked_fill_minus_inf": (lambda b, x: b.op("Softmax", [b.op("Where", [
        _c(b, [True, False, True, True], np.bool_), x, _c(b, -np.inf)])], axis=-1), (3, 4)),
    "greater_mask_mul": (lambda b, x: b.op("Mul", [x, b.op("Cast", [
        b.op("Greater", [x, b.op("Neg", [x])])], to=1)]), (3, 4)),
    # normalisation
    "lrn": (_one("LRN", size=3, alpha=1e-2, beta=0.75, bias=1.5), (5, 3, 3)),
    "layernorm": (lambda b, x: b.op("LayerNormalization", [x, _c(b, [1.0, 2.0, 0.5, -1.0]),
                                                           _c(b, [0.1, 0.2, 0.3, 0.4])]),
                  (3, 4)),
    "instancenorm": (lambda b, x: b.op("InstanceNormalization", [
        x, _c(b, [1.0, 2.0, 0.5]), _c(b, [0.1, 0.2, 0.3])], epsilon=1e-3), (3, 4, 5)),
    "groupnorm": (lambda b, x: b.op("GroupNormalization", [
        x, _c(b, [1.0, 2.0, 0.5, 1.5]), _c(b, [0.1, -0.2, 0.3, 0.0])], num_groups=2),
        (4, 3, 2), 21),
    # softmax: opset 11 flattens from axis on, opset 13 takes one axis
    "softmax_opset11_axis1": (_one("Softmax", axis=1), (3, 2, 2), 11),
    "logsoftmax_opset11_axis2": (_one("LogSoftmax", axis=2), (3, 2, 2), 11),
    "logsoftmax_opset13_axis1": (_one("LogSoftmax", axis=1), (3, 2, 2), 13),
    # reductions
    **{op.lower(): (lambda b, x, op=op: b.op(op, [x], axes=[1, -1], keepdims=0), (3, 4, 2), 11,
                    op in ("ReduceProd", "ReduceLogSumExp"))
       for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                  "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp")},
    "reducesum_axes_input": (lambda b, x: b.op("ReduceSum", [x, _i(b, [2])]), (3, 4), 13),
    "globalmaxpool": (_one("GlobalMaxPool"), (3, 4, 5)),
    # rearranging
    "depth_to_space_dcr": (_one("DepthToSpace", blocksize=2), (8, 2, 3)),
    "depth_to_space_crd": (_one("DepthToSpace", blocksize=2, mode="CRD"), (8, 2, 3)),
    "space_to_depth": (_one("SpaceToDepth", blocksize=2), (2, 4, 6)),
    "split_three": (lambda b, x: b.op("Concat", b.op("Split", [x, _i(b, [1, 2, 1])], n_out=3,
                                                     axis=1)[::-1], axis=1), (4, 3), 13),
    "expand": (lambda b, x: b.op("Expand", [x, _i(b, [1, 3, 4])]), (1, 4)),
    "tile": (lambda b, x: b.op("Tile", [x, _i(b, [1, 2, 3])]), (2, 3)),
    "slice_steps": (lambda b, x: b.op("Slice", [x, _i(b, [3, 0]), _i(b, [0, 100]),
                                                _i(b, [1, 2]), _i(b, [-1, 2])]), (4, 5)),
    "gather_activation": (lambda b, x: b.op("Gather", [x, _i(b, [2, 0])], axis=2), (3, 4)),
    "channel_shuffle": (lambda b, x: b.op("Reshape", [b.op("Transpose", [b.op(
        "Reshape", [x, _i(b, [0, 2, 3, 2, 2])])], perm=[0, 2, 1, 3, 4]),
        _i(b, [0, 6, 2, 2])]), (6, 2, 2)),
    # attention: the batch axis moves past others and comes back (PP-OCR's SVTR block)
    "attention_batch_axis_moves": (lambda b, x: _attention(b, x), (5, 12), 13),
    "transpose_batch_to_output": (_one("Transpose", perm=[1, 0, 2]), (3, 4)),
    # constants through the new ops fold at import (onnx's reference evaluates them)
    "constant_subgraph_folds": (lambda b, x: b.op("Add", [x, b.op("Expand", [b.op(
        "Exp", [_c(b, [0.5, 1.0, -1.0, 2.0])]), _i(b, [3, 4])])]), (3, 4)),
    # a (T, N, C) sequence head: linear, softmax, mean and a constant on the moved layout
    "sequence_first_head": (lambda b, x: b.op("ReduceMean", [b.op("Softmax", [b.op(
        "Add", [b.op("MatMul", [b.op("Transpose", [x], perm=[1, 0, 2]), b.weight(4, 6)]),
                _c(b, 0.5)])], axis=-1)], axes=[2]), (3, 4), 13),
}


def _attention(b, x):
    qkv = b.op("Reshape", [b.op("MatMul", [x, b.weight(12, 36)]), _i(b, [0, -1, 3, 2, 6])])
    qkv = b.op("Transpose", [qkv], perm=[2, 0, 3, 1, 4])            # (3, N, heads, T, d)
    q, k, v = (b.op("Gather", [qkv, _i(b, i)], axis=0) for i in range(3))
    scores = b.op("Mul", [b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])]),
                          _c(b, 6 ** -0.5)])
    attn = b.op("Softmax", [scores], axis=-1)
    out = b.op("Transpose", [b.op("MatMul", [attn, v])], perm=[0, 2, 1, 3])
    return b.op("Reshape", [out, _i(b, [0, -1, 12])])


#: cases where onnx.reference (1.23) disagrees with onnxruntime and the ONNX spec: its LRN
#: window and its opset < 13 softmax (it ignores the flattening); cconv follows onnxruntime
REFERENCE_DIFFERS = {"lrn", "softmax_opset11_axis1", "logsoftmax_opset11_axis2"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_operator_matches_oracle(name, oracle, cconv_onnx):
    if oracle is _run_reference and name in REFERENCE_DIFFERS:
        pytest.skip("onnx.reference differs from onnxruntime and the spec here")
    spec = CASES[name]
    build, shape = spec[:2]
    opset = spec[2] if len(spec) > 2 else 17
    positive = spec[3] if len(spec) > 3 else False
    model, _ = _model(build, shape, opset)
    net = cconv_onnx.import_onnx(model)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2,) + shape).astype(np.float32)
    if positive:
        x = np.abs(x) + 0.5
    expected = oracle(model, {"x": x})[0]
    y = net(x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    # training goes through every imported layer
    out = net.forward(x, training=True)
    grad = net.backward(np.ones_like(out))
    assert np.shape(grad) == x.shape


def test_attention_keeps_the_batch_axis_first_inside_the_graph(cconv_onnx):
    model, _ = _model(lambda b, x: _attention(b, x), (5, 12), 13)
    net = cconv_onnx.import_onnx(model)
    types = [layer.type_name for _, layer in net.layers()]
    assert "MoveBatchAxis" not in types and "Gather" in types and "MatMul" in types


def test_report_lists_every_obstacle_before_importing(cconv_onnx):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])
    nodes = [helper.make_node("Hardmax", ["x"], ["a"], name="hm"),
             helper.make_node("Floor", ["a"], ["b"], name="floor"),
             helper.make_node("Range", ["b", "b", "b"], ["c"], name="range"),
             helper.make_node("Sqrt", ["c"], ["y"], name="sqrt")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(cconv_onnx.OnnxImportError) as info:
        cconv_onnx.import_onnx(model)
    msg = str(info.value)
    assert "3 operator(s)" in msg and "nothing was imported" in msg
    assert "Hardmax (unsupported operator): 1 node(s), e.g. hm" in msg
    assert "Floor (supported on constants only" in msg
    assert "Range (supported on constants only" in msg
    assert "Sqrt" not in msg.split("supported:")[0]   # Sqrt on activations is supported now


def test_batch_axis_reduction_is_refused_with_the_reason(cconv_onnx):
    model, _ = _model(lambda b, x: b.op("ReduceSum", [x], axes=[0]), (3,), 11)
    with pytest.raises(cconv_onnx.OnnxImportError, match="batch axis"):
        cconv_onnx.import_onnx(model)


# ---------------------------------------------------------------- imported weights train

def _conv_then(b, x, op, const_shape, rng):
    h = b.op("Conv", [x, b.weight(4, 3, 3, 3)], pads=[1, 1, 1, 1])
    return b.op(op, [h, b.const(rng.standard_normal(const_shape))])


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
def test_a_conv_bias_or_scale_written_as_a_constant_op_folds_into_the_conv(op, oracle,
                                                                         cconv_onnx):
    rng = np.random.default_rng(3)
    model, _ = _model(lambda b, x: _conv_then(b, x, op, (1, 4, 1, 1), rng), (3, 5, 5))
    net = cconv_onnx.import_onnx(model)
    assert [type(layer).__name__ for _, layer in net.layers()] == ["Conv2d"]
    assert net.onnx_import_report["folded"] and not net.onnx_import_report["trainable"]
    assert all(net.layers()[0][1].trainable.values())   # weight and (new) bias train
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(net(x), oracle(model, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_a_matmul_bias_written_as_add_folds_into_the_linear(oracle, cconv_onnx):
    rng = np.random.default_rng(5)
    model, _ = _model(lambda b, x: b.op("Mul", [b.op("Add", [
        b.op("MatMul", [x, b.weight(6, 4)]), b.const(rng.standard_normal(4))]),
        b.const(rng.uniform(0.5, 2, (1, 1, 4)))]), (3, 6))
    net = cconv_onnx.import_onnx(model)
    assert [type(layer).__name__ for _, layer in net.layers()] == ["Linear"]
    assert len(net.onnx_import_report["folded"]) == 2
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    np.testing.assert_allclose(net(x), oracle(model, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_a_weight_constant_that_cannot_fold_trains_and_a_scalar_stays_constant(cconv_onnx):
    rng = np.random.default_rng(4)

    def build(b, x):
        h = b.op("Relu", [x])
        h = b.op("Mul", [h, b.const(rng.uniform(0.5, 1.5, (3, 1, 1)))])   # after a ReLU
        return b.op("Add", [h, b.const(np.float32(0.5))])                    # a scalar

    model, _ = _model(build, (3, 4, 4))
    net = cconv_onnx.import_onnx(model)
    report = net.onnx_import_report
    assert len(report["trainable"]) == 1 and "Mul constant (3, 1, 1)" in report["trainable"][0]
    assert len(report["constant"]) == 1 and "Add constant ()" in report["constant"][0]
    trainable = dict(net.named_parameters(trainable_only=True))
    assert len(trainable) == 1 and next(iter(trainable.values())).shape == (3, 1, 1)
    # a step of training moves it, and leaves the scalar alone
    before = {n: p.copy() for n, p in net.named_parameters()}
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    y = net.forward(x, training=True)
    net.backward(np.ones_like(y), input_grads=False)
    cconv.optim.SGD(net, lr=0.1).step()
    changed = [n for n, p in net.named_parameters() if not np.array_equal(p, before[n])]
    assert changed == list(trainable)


@pytest.mark.parametrize("name", ["attention_batch_axis_moves", "transpose_batch_to_output",
                                  "where_less", "layernorm", "split_three"])
def test_imported_vision_layers_save_and_load_by_config(name, tmp_path, cconv_onnx):
    build, shape, opset = (CASES[name] + (17,))[:3]
    model, _ = _model(build, shape, opset)
    net = cconv_onnx.import_onnx(model)
    cconv.save(net, tmp_path / "m.safetensors")
    again = cconv.load(tmp_path / "m.safetensors")
    x = np.random.default_rng(2).standard_normal((3,) + shape).astype(np.float32)
    np.testing.assert_array_equal(again(x), net(x))


@pytest.mark.parametrize("name", ["attention_batch_axis_moves", "sequence_first_head",
                                  "layernorm_as_reducemean_pow_sqrt_div", "masked_fill_minus_inf"])
def test_imported_graph_gradients_match_finite_differences(name, cconv_onnx):
    from cconv.gradcheck import check_gradients

    build, shape, opset = (CASES[name] + (17,))[:3]
    model, _ = _model(build, shape, opset)
    net = cconv_onnx.import_onnx(model).astype(np.float64)
    x = np.random.default_rng(5).standard_normal((2,) + shape)
    errors = check_gradients(net, [x], params=net.named_parameters(trainable_only=True))
    assert "input0" in errors


# ---------------------------------------------------------------- open input sizes

def _open_model(build, dims, opset):
    b = Builder(np.random.default_rng(0), opset=opset)
    out = build(b, "x")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
    y.type.tensor_type.shape.SetInParent()
    graph = helper.make_graph(b.nodes, "g", [x], [y], initializer=b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _convnext_block(b, x):
    """Depthwise 7x7, LayerNorm over channels (NHWC), MLP with exact GELU, residual."""
    h = b.op("Conv", [b.conv(x, 3, 8, 3), b.weight(8, 1, 7, 7, scale=0.1)],
             kernel_shape=[7, 7], pads=[3, 3, 3, 3], group=8)
    t = b.op("Transpose", [h], perm=[0, 2, 3, 1])
    t = b.op("LayerNormalization", [t, b.weight(8), b.weight(8)], axis=-1, epsilon=1e-6)
    t = b.op("MatMul", [t, b.weight(8, 32)])
    half = b.op("Mul", [t, _c(b, 0.5)])
    t = b.op("Mul", [half, b.op("Add", [b.op("Erf", [b.op("Div", [t, _c(b, 2 ** 0.5)])]),
                                        _c(b, 1.0)])])
    t = b.op("Transpose", [b.op("MatMul", [t, b.weight(32, 8)])], perm=[0, 3, 1, 2])
    return b.op("ReduceMean", [b.op("Add", [t, h])], axes=[2, 3], keepdims=0)


@pytest.mark.parametrize("build, dims, sizes, opset", [
    (_convnext_block, ["N", 3, "H", "W"], [(3, 9, 11), (3, 16, 16), (3, 5, 7)], 17),
    (_attention, ["N", "T", 12], [(5, 12), (9, 12), (40, 12)], 13),
], ids=["convnext_block", "attention"])
def test_open_sizes_stay_open_through_the_vision_ops(build, dims, sizes, opset, oracle,
                                                     cconv_onnx):
    model = _open_model(build, dims, opset)
    net = cconv_onnx.import_onnx(model)
    assert None in net.input_spec["x"][1:]
    rng = np.random.default_rng(6)
    for size in sizes:
        x = rng.standard_normal((2,) + size).astype(np.float32)
        np.testing.assert_allclose(net(x), oracle(model, {"x": x})[0], rtol=1e-4, atol=1e-5)
