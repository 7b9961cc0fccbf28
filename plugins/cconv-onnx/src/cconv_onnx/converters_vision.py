"""ONNX converters of the vision-model operators, and `extend`, which puts them (and
converters_shape.py's) into the importer's op table with the batch-axis bookkeeping of
layout.py around every converter.
"""
import numpy as np

from cconv import nn

from .converters_shape import (
    concat,
    expand,
    flatten,
    gather,
    reshape,
    slice_,
    split,
    squeeze,
    tile,
    transpose,
    unsqueeze,
)
from .errors import OnnxImportError
from .folding import FOLDERS
from .layout import _axis, _emit, batch_axis, batch_first_or, guard, same_layout
from .weights import fold_into_layer, trainable_constant

__all__ = ["extend"]


def _fail(node, why):
    raise OnnxImportError(f"node {node.name!r} ({node.op_type}): {why}")


# ------------------------------------------------------------------ the batch axis

# ------------------------------------------------------------------ element-wise

_UNARY = {"Neg": "neg", "Abs": "abs", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
          "Reciprocal": "reciprocal", "Erf": "erf", "Softplus": "softplus",
          "Softsign": "softsign", "Mish": "mish"}


def unary(im, node, attrs):
    fn = _UNARY[node.op_type]
    return im.add(node, nn.Unary(fn), [im.dynamic(node)])


def elu(im, node, attrs):
    return im.add(node, nn.Unary("elu", alpha=float(attrs.get("alpha", 1.0))),
                  [im.dynamic(node)])


def selu(im, node, attrs):
    layer = nn.Unary("selu", alpha=float(attrs.get("alpha", 1.67326319217681884765625)),
                     gamma=float(attrs.get("gamma", 1.05070102214813232421875)))
    return im.add(node, layer, [im.dynamic(node)])


def gelu(im, node, attrs):
    approximate = attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        _fail(node, f"approximate={approximate!r} is unknown (none, tanh)")
    return im.add(node, nn.Unary("gelu" if approximate == "none" else "gelu_tanh"),
                  [im.dynamic(node)])


def power(im, node, attrs):
    x, e = im.value(node, 0), im.value(node, 1)
    if not hasattr(x, "source"):
        _fail(node, "a constant base raised to a computed exponent is not supported")
    if hasattr(e, "source"):
        return im.add(node, nn.Pow(), [x, e])
    e = np.asarray(e, np.float64)
    if e.size != 1:
        _fail(node, f"a constant exponent must be one value, got shape {e.shape}")
    return im.add(node, nn.Unary("pow", alpha=float(e.reshape(()))), [x])


def variadic(im, node, attrs):
    op = node.op_type.lower()
    args = [im.value(node, i) for i in range(len(node.input)) if node.input[i]]
    xs = [a for a in args if hasattr(a, "source")]
    consts = [np.asarray(a, np.float64) for a in args if not hasattr(a, "source")]
    if len(xs) == 1 and not consts:
        return xs[0]
    y = xs[0] if len(xs) == 1 else im.add(node, nn.Nary(op), xs)
    if not consts:
        return y
    if op == "mean":
        _fail(node, "Mean of computed values with constants is not supported")
    c = {"sum": sum, "max": np.maximum.reduce, "min": np.minimum.reduce}[op](consts)
    if op == "sum":
        return im.add(node, nn.ConstantOp("add", value=_per_sample(node, y, c)), [y],
                      suffix="_const")
    if np.size(c) != 1:
        _fail(node, f"{node.op_type} with a constant of shape {np.shape(c)} (not one value)")
    c = float(np.reshape(c, ()))
    return im.add(node, nn.Clip(min=c) if op == "max" else nn.Clip(max=c), [y],
                  suffix="_const")


def _per_sample(node, x, c):
    c = np.asarray(c, np.float64)
    if c.ndim > len(x.shape) or (c.ndim == len(x.shape) and c.shape[0] != 1):
        _fail(node, f"constant of shape {c.shape} would broadcast over the batch axis of "
                    f"{x.shape}")
    c = c[0] if c.ndim == len(x.shape) else c
    return c.reshape(()) if c.size == 1 else c


_COMPARE = {"Equal": "equal", "Less": "less", "Greater": "greater",
            "LessOrEqual": "less_equal", "GreaterOrEqual": "greater_equal"}
_SWAPPED = {"less": "greater", "greater": "less", "less_equal": "greater_equal",
            "greater_equal": "less_equal", "equal": "equal"}


def compare(im, node, attrs):
    op = _COMPARE[node.op_type]
    a, b = im.value(node, 0), im.value(node, 1)
    if hasattr(a, "source") and hasattr(b, "source"):
        return im.add(node, nn.Compare(op), [a, b])
    x, c = (a, b) if hasattr(a, "source") else (b, a)
    if x is b:
        op = _SWAPPED[op]
    return im.add(node, nn.Compare(op, value=_per_sample(node, x, c)), [x])


def where(im, node, attrs):
    args = [im.value(node, i) for i in range(3)]
    xs = [a for a in args if hasattr(a, "source")]
    constants = {role: _per_sample(node, xs[0], np.asarray(a, np.float64))
                 for role, a in zip(nn.Where.ROLES, args) if not hasattr(a, "source")}
    return im.add(node, nn.Where(constants), xs)


# ------------------------------------------------------------------ normalisation

def lrn(im, node, attrs):
    layer = nn.LRN(int(attrs["size"]), alpha=float(attrs.get("alpha", 1e-4)),
                   beta=float(attrs.get("beta", 0.75)), bias=float(attrs.get("bias", 1.0)))
    return im.add(node, layer, [im.dynamic(node)])


def layer_norm(im, node, attrs):
    x = im.dynamic(node)
    if sum(1 for o in node.output if o) > 1:
        _fail(node, "the Mean and InvStdDev outputs are not supported")
    axis = int(attrs.get("axis", -1)) % len(x.shape)
    if axis == 0:
        _fail(node, "axis=0 normalises over the batch axis")
    shape = x.shape[axis:]
    scale = np.asarray(im.const(node, 1, "scale"), np.float64)
    bias = im.const(node, 2, "bias", optional=True)
    params = {"weight": np.broadcast_to(scale, shape),
              "bias": np.zeros(shape) if bias is None else np.broadcast_to(bias, shape)}
    return im.add(node, nn.LayerNorm(shape, eps=float(attrs.get("epsilon", 1e-5))), [x],
                  params)


def group_norm(im, node, attrs):
    x = im.dynamic(node)
    groups, c = int(attrs["num_groups"]), x.shape[1]
    scale, bias = (np.asarray(im.const(node, i, w), np.float64).reshape(-1)
                   for i, w in ((1, "scale"), (2, "bias")))
    if scale.size == groups and groups != c:   # opset 18: one scale per group
        scale, bias = np.repeat(scale, c // groups), np.repeat(bias, c // groups)
    layer = nn.GroupNorm(groups, c, eps=float(attrs.get("epsilon", 1e-5)))
    return im.add(node, layer, [x], {"weight": scale, "bias": bias})


def instance_norm(im, node, attrs):
    x = im.dynamic(node)
    scale, bias = (im.const(node, i, w) for i, w in ((1, "scale"), (2, "B")))
    layer = nn.InstanceNorm(x.shape[1], eps=float(attrs.get("epsilon", 1e-5)))
    return im.add(node, layer, [x], {"weight": scale, "bias": bias})


# ------------------------------------------------------------------ softmax, reductions

def softmax(im, node, attrs):
    x = im.dynamic(node)
    b = batch_axis(im, x)
    ndim = len(x.shape)
    axis = int(attrs.get("axis", -1 if im.opset >= 13 else 1)) % ndim
    flatten = im.opset < 13 and axis != ndim - 1
    if flatten and b >= axis:
        _fail(node, f"opset {im.opset} {node.op_type} over the axes {axis}.. includes the "
                    f"batch axis {b}")
    cls = nn.Softmax if node.op_type == "Softmax" else nn.LogSoftmax
    return _emit(im, node, cls(_axis(node, x, b, axis), flatten=flatten), [x], b)


_REDUCE = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min",
           "ReduceProd": "prod", "ReduceL1": "l1", "ReduceL2": "l2",
           "ReduceSumSquare": "sum_square", "ReduceLogSumExp": "log_sum_exp"}


def reduce(im, node, attrs):
    x = im.dynamic(node)
    b = batch_axis(im, x)
    axes = attrs.get("axes")
    if axes is None:
        given = im.const(node, 1, "axes", optional=True)
        axes = None if given is None or not np.size(given) else given.reshape(-1).tolist()
    if axes is None:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        _fail(node, f"reducing every axis of {x.shape} includes the batch axis {b}")
    keep = bool(attrs.get("keepdims", 1))
    phys = [_axis(node, x, b, int(a), "axes") for a in axes]
    out_b = b if keep else b - sum(1 for a in phys if a <= b)
    return _emit(im, node, nn.Reduce(_REDUCE[node.op_type], phys, keep), [x], out_b)


def global_max_pool(im, node, attrs):
    x = im.dynamic(node)
    return im.add(node, nn.Reduce("max", tuple(range(2, len(x.shape)))), [x])


def depth_to_space(im, node, attrs):
    layer = nn.DepthToSpace(int(attrs["blocksize"]), mode=attrs.get("mode", "DCR"))
    return im.add(node, layer, [im.dynamic(node)])


def space_to_depth(im, node, attrs):
    return im.add(node, nn.SpaceToDepth(int(attrs["blocksize"])), [im.dynamic(node)])


#: op type -> converter that knows where each input's batch axis is
LAYOUT_AWARE = {
    "Transpose": transpose, "Reshape": reshape, "Flatten": flatten, "Squeeze": squeeze,
    "Unsqueeze": unsqueeze, "Slice": slice_, "Split": split, "Gather": gather,
    "Expand": expand, "Tile": tile, "Concat": concat, "Softmax": softmax,
    "LogSoftmax": softmax, **{op: reduce for op in _REDUCE},
}

#: op type -> converter of an op that any batch position leaves alone (see same_layout)
LAYOUT_FREE = {
    **{op: unary for op in _UNARY}, "Elu": elu, "Selu": selu, "Gelu": gelu, "Pow": power,
    "Sum": variadic, "Mean": variadic, "Max": variadic, "Min": variadic,
    **{op: compare for op in _COMPARE}, "Where": where,
}

#: ops that read the channel axis 1 of a batch-first value
CHANNEL_OPS = {
    "LRN": lrn, "LayerNormalization": layer_norm, "GroupNormalization": group_norm,
    "InstanceNormalization": instance_norm, "GlobalMaxPool": global_max_pool,
    "DepthToSpace": depth_to_space, "SpaceToDepth": space_to_depth,
}

#: converters.py ops that are element-wise or act on the last axes (MatMul's, Linear's)
EXISTING_LAYOUT_FREE = {"Relu", "Sigmoid", "Tanh", "HardSwish", "LeakyRelu", "Clip",
                        "HardSigmoid", "Identity", "Dropout", "Cast", "Add", "Sub", "Mul",
                        "Div", "MatMul"}


def weights_train(convert):
    """convert of Add/Sub/Mul/Div where a float constant operand of several values is a
    weight: folded into the Conv or Linear before it where it can be, else a trainable
    ConstantOp."""
    def converted(im, node, attrs):
        a, b = im.value(node, 0), im.value(node, 1)
        if hasattr(a, "source") == hasattr(b, "source"):
            return convert(im, node, attrs)
        x, c = (a, b) if hasattr(a, "source") else (b, a)
        c = np.asarray(c)
        # c - x and c / x are no conv's affine map: only x op c, or c + x, c * x
        commutes = x is a or node.op_type in ("Add", "Mul")
        if c.dtype.kind == "f" and c.size > 1 and commutes:
            # x - c is x + (-c), x / c is x * (1 / c): the conv takes either
            op, value = {"Add": ("add", c), "Sub": ("add", -c), "Mul": ("mul", c),
                         "Div": ("mul", 1 / c)}[node.op_type]
            folded = fold_into_layer(im, node, x, np.asarray(value, np.float64), op)
            if folded is not None:
                return folded
        out = convert(im, node, attrs)
        layer = im.graph[out.source] if out.source in im.graph else None
        if isinstance(layer, nn.ConstantOp) and trainable_constant(im, node, c):
            layer.is_trainable = True
        return out
    return converted


def fold_by_reference(node, args, attrs, opset):
    """A one-output node on constant inputs, evaluated by onnx's reference implementation."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if name else "" for i, name in enumerate(node.input)]
    inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in zip(names, args) if n]
    copy = helper.make_node(node.op_type, names, ["out"], domain=node.domain)
    copy.attribute.extend(node.attribute)
    out = helper.make_tensor_value_info("out", 0, None)
    graph = helper.make_graph([copy], "fold", [], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model).run(None, {})[0]


def extend(converters):
    """Add the vision converters to the op table, each wrapped for the batch-axis bookkeeping,
    and let the constant folder evaluate the new one-output ops on constants too."""
    for op in (*LAYOUT_FREE, *CHANNEL_OPS, "Expand", "Tile", "Softmax", "LogSoftmax",
               *_REDUCE):
        FOLDERS.setdefault(op, fold_by_reference)
    table = {op: guard(fn) for op, fn in converters.items()}
    table.update({op: same_layout(converters[op]) for op in EXISTING_LAYOUT_FREE
                  if op in converters})
    table.update({op: same_layout(weights_train(converters[op]))
                  for op in ("Add", "Sub", "Mul", "Div")})
    table.update({op: same_layout(fn) for op, fn in LAYOUT_FREE.items()})
    table.update({op: guard(fn) for op, fn in CHANNEL_OPS.items()})
    table.update({op: batch_first_or(converters[op], fn) if op in converters else fn
                  for op, fn in LAYOUT_AWARE.items()})
    converters.clear()
    converters.update(table)
