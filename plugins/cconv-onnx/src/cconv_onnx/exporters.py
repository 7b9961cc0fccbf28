"""cconv layers -> ONNX nodes: one small exporter per built-in layer type.

Each exporter gets the context `ctx` (see exporter.ExportContext) and the
node (exporter.ExportNode: name, layer, ONNX input names, per-sample input
shapes) and emits ONNX nodes through ctx, the last one writing node.name.
Attributes are read from the layer's own config fields, as src/cconv/nn
defines them.
"""
import numpy as np

from .errors import OnnxExportError


def _fail(node, why):
    raise OnnxExportError(f"node {node.name!r} ({node.layer.type_name}): {why}")


# ------------------------------------------------------------------ convolutions

def _pads_per_axis(padding, nd):
    """((before, after), ...) per spatial axis of a numeric canonical conv padding."""
    if isinstance(padding, int):
        return ((padding, padding),) * nd
    if nd == 1 and len(padding) == 2 and isinstance(padding[0], int):
        return (tuple(padding),)    # Conv1d's (left, right)
    return tuple(p if isinstance(p, tuple) else (p, p) for p in padding)


def _onnx_pads(pairs):
    """ONNX's pads: every axis' before, then every axis' after."""
    return [int(b) for b, _ in pairs] + [int(a) for _, a in pairs]


def _conv_like(ctx, node, op_type, nd, extra):
    layer = node.layer
    inputs = [node.inputs[0], ctx.param(node, "weight")]
    if layer.bias:
        inputs.append(ctx.param(node, "bias"))
    attrs = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                 dilations=list(layer.dilation), group=layer.groups, **extra)
    if layer.padding == "same":
        # cconv's "same" is TensorFlow's: out = ceil(in / stride), the odd pad after
        attrs["auto_pad"] = "SAME_UPPER"
    elif layer.padding == "valid":
        attrs["pads"] = [0] * (2 * nd)
    else:
        attrs["pads"] = _onnx_pads(_pads_per_axis(layer.padding, nd))
    ctx.add(op_type, inputs, node.name, **attrs)


def conv(ctx, node):
    _conv_like(ctx, node, "Conv", node.layer.nd, {})


def conv_transpose(ctx, node):
    _conv_like(ctx, node, "ConvTranspose", 2,
               {"output_padding": list(node.layer.output_padding)})


def linear(ctx, node):
    layer = node.layer
    if len(node.input_shapes[0]) == 1:
        inputs = [node.inputs[0], ctx.param(node, "weight")]
        if layer.bias:
            inputs.append(ctx.param(node, "bias"))
        ctx.add("Gemm", inputs, node.name, transB=1)
        return
    # Gemm takes 2-D inputs only: (N, ..., in) @ W^T (+ b) as MatMul and Add
    w_t = ctx.const(np.asarray(layer.params["weight"]).T, f"{node.name}.weight_T")
    if not layer.bias:
        ctx.add("MatMul", [node.inputs[0], w_t], node.name)
        return
    y = ctx.add("MatMul", [node.inputs[0], w_t], ctx.fresh(f"{node.name}/matmul"))
    ctx.add("Add", [y, ctx.param(node, "bias")], node.name)


# ------------------------------------------------------------------ pooling

def _pool(ctx, node, op_type):
    layer = node.layer
    attrs = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                 pads=list(layer.padding) * 2, ceil_mode=int(layer.ceil_mode))
    if op_type == "MaxPool":
        attrs["dilations"] = list(layer.dilation)
    else:
        attrs["count_include_pad"] = int(layer.count_include_pad)
    ctx.add(op_type, [node.inputs[0]], node.name, **attrs)


def max_pool(ctx, node):
    _pool(ctx, node, "MaxPool")


def avg_pool(ctx, node):
    _pool(ctx, node, "AveragePool")


def global_avg_pool(ctx, node):
    # ONNX keeps (N, C, 1, 1); cconv's GlobalAvgPool gives (N, C)
    y = ctx.add("GlobalAveragePool", [node.inputs[0]], ctx.fresh(f"{node.name}/pool"))
    ctx.add("Flatten", [y], node.name, axis=1)


# ------------------------------------------------------------------ activations

def _unary(op_type, **attrs_of_layer):
    def export(ctx, node):
        attrs = {k: f(node.layer) for k, f in attrs_of_layer.items()}
        ctx.add(op_type, [node.inputs[0]], node.name, **attrs)
    export.__name__ = f"export_{op_type.lower()}"
    return export


def prelu(ctx, node):
    layer, ndim = node.layer, len(node.input_shapes[0])
    # a per-channel slope broadcasts against (N, C, ...) as (C, 1, ...)
    shape = (1,) if layer.num_parameters == 1 else (layer.num_parameters,) + (1,) * (ndim - 1)
    ctx.add("PRelu", [node.inputs[0], ctx.param(node, "weight", shape)], node.name)


def hard_swish(ctx, node):
    if ctx.opset >= 14:
        ctx.add("HardSwish", [node.inputs[0]], node.name)
        return
    gate = ctx.add("HardSigmoid", [node.inputs[0]], ctx.fresh(f"{node.name}/gate"),
                   alpha=1 / 6, beta=0.5)
    ctx.add("Mul", [node.inputs[0], gate], node.name)


def clip(ctx, node):
    layer = node.layer
    lo = "" if layer.min is None else ctx.const(layer.min, f"{node.name}/min")
    hi = "" if layer.max is None else ctx.const(layer.max, f"{node.name}/max")
    if not lo and not hi:
        ctx.add("Identity", [node.inputs[0]], node.name)
        return
    ctx.add("Clip", [node.inputs[0], lo, hi], node.name)


def identity(ctx, node):
    ctx.add("Identity", [node.inputs[0]], node.name)


# ------------------------------------------------------------------ normalisation

def batch_norm(ctx, node):
    layer = node.layer
    c = layer.num_features
    if layer.affine:
        scale, bias = ctx.param(node, "weight"), ctx.param(node, "bias")
    else:
        scale = ctx.const(np.ones(c), f"{node.name}/scale")
        bias = ctx.const(np.zeros(c), f"{node.name}/bias")
    # ONNX's momentum weights the old running value, cconv's (torch's) the batch
    ctx.add("BatchNormalization", [node.inputs[0], scale, bias,
                                   ctx.param(node, "running_mean"),
                                   ctx.param(node, "running_var")],
            node.name, epsilon=layer.eps, momentum=1.0 - layer.momentum)


# ------------------------------------------------------------------ shapes

def flatten(ctx, node):
    ctx.add("Flatten", [node.inputs[0]], node.name, axis=1)


def reshape(ctx, node):
    # 0 copies the batch size; the per-sample part is the layer's (-1 allowed, no 0)
    target = ctx.const([0] + list(node.layer.shape), f"{node.name}/shape", np.int64)
    ctx.add("Reshape", [node.inputs[0], target], node.name)


def reshape_as(ctx, node):
    """Reshape with a target read at run time: 0 (the batch), the layer's constants and
    Shape(like)[axis + 1] for each entry taken from the reference."""
    layer, (x, like) = node.layer, node.inputs
    like_shape = ctx.add("Shape", [like], ctx.fresh(f"{node.name}/like_shape"))
    pieces, run = [], [0]
    for i, (d, a) in enumerate(zip(layer.shape, layer.like_axes)):
        if a is None:
            run.append(d)
            continue
        if run:
            pieces.append(ctx.const(run, f"{node.name}/part{i}", np.int64))
            run = []
        pieces.append(ctx.add("Gather", [like_shape, ctx.const([a + 1], f"{node.name}/axis{i}",
                                                               np.int64)], axis=0))
    if run:
        pieces.append(ctx.const(run, f"{node.name}/tail", np.int64))
    target = ctx.add("Concat", pieces, ctx.fresh(f"{node.name}/shape"), axis=0)
    ctx.add("Reshape", [x, target], node.name)


def transpose(ctx, node):
    ctx.add("Transpose", [node.inputs[0]], node.name,
            perm=[0] + [a + 1 for a in node.layer.axes])


def concat(ctx, node):
    ctx.add("Concat", list(node.inputs), node.name, axis=node.layer.axis)


# ------------------------------------------------------------------ arithmetic

def _aligned(ctx, node):
    """The inputs at one rank: cconv aligns per-sample axes on the right with the batch
    axis first, ONNX aligns whole tensors on the right, so the lower-rank one gets
    size-1 axes right after its batch axis."""
    rank = max(len(s) for s in node.input_shapes)
    out = []
    for name, shape in zip(node.inputs, node.input_shapes):
        missing = rank - len(shape)
        out.append(ctx.unsqueeze(name, list(range(1, 1 + missing))) if missing else name)
    return out


def add(ctx, node):
    # a chain of Adds rather than Sum: every ONNX consumer (cconv's importer too) has Add
    y = node.inputs[0]
    for i, x in enumerate(node.inputs[1:], start=2):
        last = i == len(node.inputs)
        y = ctx.add("Add", [y, x], node.name if last else ctx.fresh(f"{node.name}/sum{i}"))


def _binary(op_type):
    def export(ctx, node):
        ctx.add(op_type, _aligned(ctx, node), node.name)
    export.__name__ = f"export_{op_type.lower()}"
    return export


def constant_op(ctx, node):
    layer = node.layer
    # a scalar is stored as (1,); the constant's own shape broadcasts from the right
    c = ctx.param(node, "value", layer.shape)
    op_type = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div"}[layer.op]
    inputs = [c, node.inputs[0]] if layer.reverse else [node.inputs[0], c]
    ctx.add(op_type, inputs, node.name)


# ------------------------------------------------------------------ resampling, padding

def resize(ctx, node):
    layer = node.layer
    x, shape = node.inputs[0], node.input_shapes[0]
    spatial = shape[1:]
    attrs = dict(mode=layer.mode,
                 coordinate_transformation_mode=layer.coordinate_transformation_mode,
                 nearest_mode=layer.nearest_mode)
    use_scales = layer.scale is not None
    if layer.scale is not None and layer.size is not None:
        # cconv keeps `size` at any input size but maps coordinates with `scale`;
        # ONNX takes one or the other, so the form below holds at the built size only
        ctx.pin(node, "Resize with both size and scale")
        floors = tuple(int(np.floor(np.float32(n) * np.float32(s)))
                       for n, s in zip(spatial, layer.scale))
        if floors != layer.size:
            if any(o / n != s for o, n, s in zip(layer.size, spatial, layer.scale)):
                _fail(node, f"size {layer.size} with scale {layer.scale} on input "
                            f"{shape} has no ONNX Resize form (ONNX derives one from "
                            f"the other)")
            use_scales = False
    if use_scales:
        scales = ctx.const([1.0, 1.0] + list(layer.scale), f"{node.name}/scales")
        ctx.add("Resize", [x, "", scales], node.name, **attrs)
        return
    # sizes must cover every axis: batch and channels come from the input at run time
    dims = ctx.add("Shape", [x], ctx.fresh(f"{node.name}/input_shape"))
    lead = ctx.add("Slice", [dims, ctx.const([0], f"{node.name}/start", np.int64),
                             ctx.const([2], f"{node.name}/end", np.int64)],
                   ctx.fresh(f"{node.name}/batch_channels"))
    sizes = ctx.add("Concat", [lead, ctx.const(list(layer.size), f"{node.name}/size",
                                               np.int64)],
                    ctx.fresh(f"{node.name}/sizes"), axis=0)
    ctx.add("Resize", [x, "", "", sizes], node.name, **attrs)


def resize_as(ctx, node):
    """Resize to the spatial size of input 1: batch and channels from x's Shape, the rest
    from the reference's (free at any size, as torch's F.interpolate(size=t.shape[2:]))."""
    layer = node.layer
    x, like = node.inputs
    def dims(value, start, end, hint):   # Shape + Slice: Shape's start/end need opset 15
        shape = ctx.add("Shape", [value], ctx.fresh(f"{node.name}/{hint}_shape"))
        return ctx.add("Slice", [shape, ctx.const([start], f"{node.name}/{hint}_start",
                                                  np.int64),
                                 ctx.const([end], f"{node.name}/{hint}_end", np.int64)],
                       ctx.fresh(f"{node.name}/{hint}"))

    lead = dims(x, 0, 2, "batch_channels")
    rest = dims(like, 2, len(node.input_shapes[1]) + 1, "spatial")
    sizes = ctx.add("Concat", [lead, rest], ctx.fresh(f"{node.name}/sizes"), axis=0)
    ctx.add("Resize", [x, "", "", sizes], node.name, mode=layer.mode,
            coordinate_transformation_mode=layer.coordinate_transformation_mode,
            nearest_mode=layer.nearest_mode)


def pad(ctx, node):
    layer = node.layer
    pads = ctx.const(_onnx_pads(((0, 0),) + layer.pads), f"{node.name}/pads", np.int64)
    inputs = [node.inputs[0], pads]
    if layer.mode == "constant":
        inputs.append(ctx.const(layer.value, f"{node.name}/value"))
    ctx.add("Pad", inputs, node.name, mode=layer.mode)


def pad_same(ctx, node):
    """PadSame as ONNX ops on the input's Shape (any size): out = ceil(n / s), total =
    max((out - 1) s + (k - 1) d + 1 - n, 0), the odd one at the end (SAME_UPPER)."""
    layer, x, name = node.layer, node.inputs[0], node.name
    nd = len(layer.kernel_size)

    def const(value, hint):
        return ctx.const(list(value), f"{name}/{hint}", np.int64)

    shape = ctx.add("Shape", [x], ctx.fresh(f"{name}/shape"))
    n = ctx.add("Slice", [shape, const([2], "start"), const([2 + nd], "end")],
                ctx.fresh(f"{name}/spatial"))
    stride = const(layer.stride, "stride")
    out = ctx.add("Div", [ctx.add("Add", [n, const([s - 1 for s in layer.stride], "s_1")]),
                          stride])
    span = [(k - 1) * d + 1 for k, d in zip(layer.kernel_size, layer.dilation)]
    need = ctx.add("Sub", [ctx.add("Add", [ctx.add("Mul", [ctx.add(
        "Sub", [out, const([1] * nd, "one")]), stride]), const(span, "span")]), n])
    total = ctx.add("Max", [need, const([0] * nd, "zero")])
    small = ctx.add("Div", [total, const([2] * nd, "two")])
    big = ctx.add("Sub", [total, small])
    before, after = (big, small) if layer.lower else (small, big)
    pads = ctx.add("Concat", [const([0, 0], "lead"), before, const([0, 0], "lead_end"), after],
                   ctx.fresh(f"{name}/pads"), axis=0)
    inputs = [x, pads]
    if layer.mode == "constant":
        inputs.append(ctx.const(layer.value, f"{name}/value"))
    ctx.add("Pad", inputs, name, mode=layer.mode)


def pad_as(ctx, node):
    """PadAs as ONNX ops on both inputs' Shapes (any size): d = like - x per spatial axis,
    d / 2 (ONNX's integer Div, toward zero) before, d - d / 2 after."""
    layer, (x, like), name = node.layer, node.inputs, node.name
    rank = len(node.input_shapes[0]) + 1

    def spatial(value, hint):   # Shape + Slice: Shape's start/end need opset 15
        shape = ctx.add("Shape", [value], ctx.fresh(f"{name}/{hint}_shape"))
        return ctx.add("Slice", [shape, ctx.const([2], f"{name}/{hint}_start", np.int64),
                                 ctx.const([rank], f"{name}/{hint}_end", np.int64)],
                       ctx.fresh(f"{name}/{hint}_spatial"))

    diff = ctx.add("Sub", [spatial(like, "like"), spatial(x, "x")], ctx.fresh(f"{name}/diff"))
    before = ctx.add("Div", [diff, ctx.const([2] * (rank - 2), f"{name}/two", np.int64)],
                     ctx.fresh(f"{name}/before"))
    after = ctx.add("Sub", [diff, before], ctx.fresh(f"{name}/after"))
    lead = ctx.const([0, 0], f"{name}/lead", np.int64)
    pads = ctx.add("Concat", [lead, before, lead, after], ctx.fresh(f"{name}/pads"), axis=0)
    inputs = [x, pads]
    if layer.mode == "constant":
        inputs.append(ctx.const(layer.value, f"{name}/value"))
    ctx.add("Pad", inputs, name, mode=layer.mode)


#: built-in layer type_name -> exporter (exporter.py registers them in EXPORTERS)
BUILTIN_EXPORTERS = {
    "Conv1d": conv, "Conv2d": conv, "ConvTranspose2d": conv_transpose,
    "Linear": linear,
    "MaxPool1d": max_pool, "MaxPool2d": max_pool,
    "AvgPool1d": avg_pool, "AvgPool2d": avg_pool, "GlobalAvgPool": global_avg_pool,
    "ReLU": _unary("Relu"), "Sigmoid": _unary("Sigmoid"), "Tanh": _unary("Tanh"),
    "LeakyReLU": _unary("LeakyRelu", alpha=lambda layer: layer.negative_slope),
    "HardSigmoid": _unary("HardSigmoid", alpha=lambda layer: 1 / 6, beta=lambda layer: 0.5),
    "Softmax": _unary("Softmax", axis=lambda layer: layer.axis),
    "PReLU": prelu, "HardSwish": hard_swish, "Clip": clip,
    "Flatten": flatten, "Reshape": reshape, "ReshapeAs": reshape_as, "Transpose": transpose,
    "Dropout": identity,
    "BatchNorm1d": batch_norm, "BatchNorm2d": batch_norm,
    "Add": add, "Concat": concat, "BroadcastAdd": _binary("Add"), "Sub": _binary("Sub"),
    "Mul": _binary("Mul"), "Div": _binary("Div"), "MatMul": _binary("MatMul"),
    "ConstantOp": constant_op, "Resize": resize, "ResizeAs": resize_as, "Pad": pad,
    "PadSame": pad_same, "PadAs": pad_as,
}

# the vision-model layers (and Softmax's opset < 13 flattening), in their own module
from .exporters_vision import VISION_EXPORTERS

BUILTIN_EXPORTERS.update(VISION_EXPORTERS)
