"""cconv's vision-model layers -> ONNX nodes (as exporters.py does for the others).

Where the target opset lacks an operator (Gelu before 20, Mish before 18,
GroupNormalization) the exporter writes its definition in older operators;
every form imports back through converters_vision.py.
"""
import math

import numpy as np

from .errors import OnnxExportError
from .exporters import _aligned


def _fail(node, why):
    raise OnnxExportError(f"node {node.name!r} ({node.layer.type_name}): {why}")


# ------------------------------------------------------------------ element-wise

_UNARY_OPS = {"neg": "Neg", "abs": "Abs", "exp": "Exp", "log": "Log", "sqrt": "Sqrt",
              "reciprocal": "Reciprocal", "erf": "Erf", "softplus": "Softplus",
              "softsign": "Softsign"}


def _gelu(ctx, node, x, out, approximate):
    if ctx.opset >= 20:
        return ctx.add("Gelu", [x], out, approximate=approximate)
    half = ctx.const(0.5, f"{node.name}/half")
    one = ctx.const(1.0, f"{node.name}/one")
    if approximate == "none":   # x / 2 * (1 + erf(x / sqrt 2))
        inner = ctx.add("Mul", [x, ctx.const(1 / math.sqrt(2), f"{node.name}/rsqrt2")],
                        ctx.fresh(f"{node.name}/scaled"))
        gate = ctx.add("Erf", [inner], ctx.fresh(f"{node.name}/erf"))
    else:                       # x / 2 * (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
        cube = ctx.add("Pow", [x, ctx.const(3.0, f"{node.name}/three")],
                       ctx.fresh(f"{node.name}/cube"))
        poly = ctx.add("Add", [x, ctx.add("Mul", [cube, ctx.const(0.044715, f"{node.name}/c")],
                                          ctx.fresh(f"{node.name}/cubic"))],
                       ctx.fresh(f"{node.name}/poly"))
        inner = ctx.add("Mul", [poly, ctx.const(math.sqrt(2 / math.pi), f"{node.name}/k")],
                        ctx.fresh(f"{node.name}/scaled"))
        gate = ctx.add("Tanh", [inner], ctx.fresh(f"{node.name}/tanh"))
    plus = ctx.add("Add", [gate, one], ctx.fresh(f"{node.name}/plus1"))
    halfx = ctx.add("Mul", [x, half], ctx.fresh(f"{node.name}/halfx"))
    return ctx.add("Mul", [halfx, plus], out)


def unary(ctx, node):
    layer, x = node.layer, node.inputs[0]
    fn = layer.fn
    if fn in _UNARY_OPS:
        ctx.add(_UNARY_OPS[fn], [x], node.name)
    elif fn == "pow":
        ctx.add("Pow", [x, ctx.const(layer.alpha, f"{node.name}/exponent")], node.name)
    elif fn == "elu":
        ctx.add("Elu", [x], node.name, alpha=layer.alpha)
    elif fn == "selu":
        ctx.add("Selu", [x], node.name, alpha=layer.alpha, gamma=layer.gamma)
    elif fn == "mish" and ctx.opset >= 18:
        ctx.add("Mish", [x], node.name)
    elif fn == "mish":   # x tanh(softplus(x))
        soft = ctx.add("Softplus", [x], ctx.fresh(f"{node.name}/softplus"))
        ctx.add("Mul", [x, ctx.add("Tanh", [soft], ctx.fresh(f"{node.name}/tanh"))], node.name)
    elif fn in ("gelu", "gelu_tanh"):
        _gelu(ctx, node, x, node.name, "none" if fn == "gelu" else "tanh")
    else:
        _fail(node, f"no ONNX form for fn={fn!r}")


def softmax(ctx, node):
    layer, x = node.layer, node.inputs[0]
    op_type = "Softmax" if layer.type_name == "Softmax" else "LogSoftmax"
    ndim = len(node.input_shapes[0]) + 1
    axis = layer.axis % ndim
    if not layer.flatten or axis == ndim - 1:
        ctx.add(op_type, [x], node.name, axis=axis)
        return
    # over all axes from axis on: rows of (N, ..., rest), then the input's shape again
    rows = ctx.add("Reshape", [x, ctx.const([0] * axis + [-1], f"{node.name}/rows",
                                            np.int64)], ctx.fresh(f"{node.name}/rows"))
    y = ctx.add(op_type, [rows], ctx.fresh(f"{node.name}/{op_type.lower()}"), axis=-1)
    shape = ctx.add("Shape", [x], ctx.fresh(f"{node.name}/shape"))
    ctx.add("Reshape", [y, shape], node.name)


def nary(ctx, node):
    op_type = {"sum": "Sum", "mean": "Mean", "max": "Max", "min": "Min"}[node.layer.op]
    ctx.add(op_type, _aligned(ctx, node), node.name)


def power(ctx, node):
    ctx.add("Pow", _aligned(ctx, node), node.name)


_COMPARE_OPS = {"equal": "Equal", "less": "Less", "greater": "Greater",
                "less_equal": "LessOrEqual", "greater_equal": "GreaterOrEqual"}


def _constant(ctx, node, value, hint):
    """A per-sample constant of the layer as an initializer that ONNX aligns like cconv."""
    if np.ndim(value) > len(node.input_shapes[0]):
        _fail(node, f"a constant of shape {np.shape(value)} has more axes than the samples "
                    f"{node.input_shapes[0]}")
    return ctx.const(value, f"{node.name}/{hint}")


def compare(ctx, node):
    layer = node.layer
    inputs = _aligned(ctx, node)
    if layer.value is not None:
        inputs.append(_constant(ctx, node, layer.value, "value"))
    mask = ctx.add(_COMPARE_OPS[layer.op], inputs, ctx.fresh(f"{node.name}/mask"))
    ctx.add("Cast", [mask], node.name, to=1)   # a 0/1 float mask, as cconv's


def where(ctx, node):
    layer = node.layer
    given = iter(_aligned(ctx, node))
    cond, x, y = (_constant(ctx, node, layer.constants[r], r) if r in layer.constants
                  else next(given) for r in layer.ROLES)
    # Equal(cond, 0) selects y: the mask's non-zero test without a Cast to bool
    zero = ctx.add("Equal", [cond, ctx.const(0.0, f"{node.name}/zero")],
                   ctx.fresh(f"{node.name}/is_zero"))
    ctx.add("Where", [zero, y, x], node.name)


# ------------------------------------------------------------------ reductions, normalisation

_REDUCE_OPS = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax",
               "min": "ReduceMin", "prod": "ReduceProd", "l1": "ReduceL1", "l2": "ReduceL2",
               "sum_square": "ReduceSumSquare", "log_sum_exp": "ReduceLogSumExp"}


def reduce(ctx, node):
    layer = node.layer
    ndim = len(node.input_shapes[0]) + 1
    axes = layer._resolve(ndim)
    op_type = _REDUCE_OPS[layer.op]
    keep = int(layer.keepdims)
    if ctx.opset >= 18 or op_type == "ReduceSum":   # axes became an input (ReduceSum: 13)
        ctx.add(op_type, [node.inputs[0], ctx.const(list(axes), f"{node.name}/axes",
                                                    np.int64)], node.name, keepdims=keep)
    else:
        ctx.add(op_type, [node.inputs[0]], node.name, axes=list(axes), keepdims=keep)


def _scale_bias(ctx, node, shape):
    if node.layer.affine:
        return ctx.param(node, "weight", shape), ctx.param(node, "bias", shape)
    return (ctx.const(np.ones(shape), f"{node.name}/scale"),
            ctx.const(np.zeros(shape), f"{node.name}/bias"))


def layer_norm(ctx, node):
    layer = node.layer
    scale, bias = _scale_bias(ctx, node, layer.normalized_shape)
    ctx.add("LayerNormalization", [node.inputs[0], scale, bias], node.name,
            axis=-len(layer.normalized_shape), epsilon=layer.eps)


def instance_norm(ctx, node):
    layer = node.layer
    scale, bias = _scale_bias(ctx, node, (layer.num_channels,))
    ctx.add("InstanceNormalization", [node.inputs[0], scale, bias], node.name,
            epsilon=layer.eps)


def group_norm(ctx, node):
    layer = node.layer
    g, c, x = layer.num_groups, layer.num_channels, node.inputs[0]
    # (N, G, rest) normalised per row as InstanceNormalization does, then per channel
    rows = ctx.add("Reshape", [x, ctx.const([0, g, -1], f"{node.name}/groups", np.int64)],
                   ctx.fresh(f"{node.name}/groups"))
    normed = ctx.add("InstanceNormalization",
                     [rows, ctx.const(np.ones(g), f"{node.name}/ones"),
                      ctx.const(np.zeros(g), f"{node.name}/zeros")],
                     ctx.fresh(f"{node.name}/normalised"), epsilon=layer.eps)
    shape = ctx.add("Shape", [x], ctx.fresh(f"{node.name}/shape"))
    if not layer.affine:
        ctx.add("Reshape", [normed, shape], node.name)
        return
    back = ctx.add("Reshape", [normed, shape], ctx.fresh(f"{node.name}/back"))
    per_channel = (c,) + (1,) * (len(node.input_shapes[0]) - 1)
    scale, bias = _scale_bias(ctx, node, per_channel)
    scaled = ctx.add("Mul", [back, scale], ctx.fresh(f"{node.name}/scaled"))
    ctx.add("Add", [scaled, bias], node.name)


def lrn(ctx, node):
    layer = node.layer
    ctx.add("LRN", [node.inputs[0]], node.name, size=layer.size, alpha=layer.alpha,
            beta=layer.beta, bias=layer.bias)


# ------------------------------------------------------------------ indexing, rearranging

def slice_(ctx, node):
    layer = node.layer
    ins = [node.inputs[0]] + [ctx.const(list(v), f"{node.name}/{what}", np.int64)
                              for what, v in (("starts", layer.starts), ("ends", layer.ends),
                                              ("axes", layer.axes), ("steps", layer.steps))]
    ctx.add("Slice", ins, node.name)


def slice_as(ctx, node):
    """Slice whose ends are input 1's sizes, read through its Shape at run time."""
    layer, (x, like) = node.layer, node.inputs
    shape = ctx.add("Shape", [like], ctx.fresh(f"{node.name}/like_shape"))
    ends = ctx.add("Gather", [shape, ctx.const(list(layer.like_axes), f"{node.name}/like_axes",
                                               np.int64)], ctx.fresh(f"{node.name}/ends"), axis=0)
    ctx.add("Slice", [x, ctx.const(list(layer.starts), f"{node.name}/starts", np.int64), ends,
                      ctx.const(list(layer.axes), f"{node.name}/axes", np.int64)], node.name)


def gather(ctx, node):
    layer = node.layer
    ctx.add("Gather", [node.inputs[0], ctx.const(layer.indices, f"{node.name}/indices",
                                                  np.int64)], node.name, axis=layer.axis)


def expand(ctx, node):
    layer, x = node.layer, node.inputs[0]
    missing = len(layer.shape) - len(node.input_shapes[0])
    if missing > 0:   # cconv aligns per-sample axes on the right, after the batch
        x = ctx.unsqueeze(x, list(range(1, 1 + missing)))
    target = ctx.const([1] + list(layer.shape), f"{node.name}/shape", np.int64)
    ctx.add("Expand", [x, target], node.name)


def tile(ctx, node):
    repeats = ctx.const([1] + list(node.layer.repeats), f"{node.name}/repeats", np.int64)
    ctx.add("Tile", [node.inputs[0], repeats], node.name)


def depth_to_space(ctx, node):
    ctx.add("DepthToSpace", [node.inputs[0]], node.name, blocksize=node.layer.blocksize,
            mode=node.layer.mode)


def space_to_depth(ctx, node):
    ctx.add("SpaceToDepth", [node.inputs[0]], node.name, blocksize=node.layer.blocksize)


def move_batch_axis(ctx, node):
    ndim = len(node.input_shapes[0]) + 1
    position = node.layer.position
    perm = list(range(1, position + 1)) + [0] + list(range(position + 1, ndim))
    ctx.add("Transpose", [node.inputs[0]], node.name, perm=perm)


#: layer type_name -> exporter, merged into exporters.BUILTIN_EXPORTERS
VISION_EXPORTERS = {
    "Unary": unary, "Softmax": softmax, "LogSoftmax": softmax, "Nary": nary, "Pow": power,
    "Compare": compare, "Where": where, "Reduce": reduce, "LayerNorm": layer_norm,
    "GroupNorm": group_norm, "InstanceNorm": instance_norm, "LRN": lrn, "Slice": slice_, "SliceAs": slice_as,
    "Gather": gather, "Expand": expand, "Tile": tile, "DepthToSpace": depth_to_space,
    "SpaceToDepth": space_to_depth, "MoveBatchAxis": move_batch_axis,
}
