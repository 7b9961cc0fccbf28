"""ONNX converters of the vision-model operators, and the batch-axis bookkeeping.

Inside a cconv graph every value keeps its batch axis first. A model may
still move it (attention: Reshape -> Transpose(2, 0, 3, 1, 4) -> Gather): the
importer then keeps, per value, its logical ONNX shape and the logical
position of the batch axis (`batch_axes`, by cconv source name), and converts
each op on the logical axes to the per-sample axes of the array cconv really
holds. Ops that read or mix the batch axis itself (reducing over it, slicing
it) stay refused, each with its reason; a graph output whose batch axis moved
gets a MoveBatchAxis layer. Converters that know nothing of this refuse a
moved value (`guard`), so nothing is silently misread.
"""
import math

import numpy as np

from cconv import nn

from .errors import OnnxImportError
from .folding import FOLDERS
from .weights import fold_into_layer, trainable_constant


def _fail(node, why):
    raise OnnxImportError(f"node {node.name!r} ({node.op_type}): {why}")


# ------------------------------------------------------------------ the batch axis

_MOVED = {}


def _moved_class(base):
    """base (the importer's Dynamic) with a batch_axis slot, made once."""
    if base not in _MOVED:
        _MOVED[base] = type(f"Moved{base.__name__}", (base,),
                            {"__slots__": ("batch_axis",), "base": base})
    return _MOVED[base]


def batch_axis(im, v):
    """Logical position of the batch axis of Dynamic v (0 unless a converter moved it)."""
    return getattr(v, "batch_axis", 0)


def _logical(im, d, b):
    """Dynamic d (physical shape, batch first) as the logical value with its batch at b."""
    base = getattr(type(d), "base", type(d))
    per = d.shape[1:]
    if not b:
        return base(d.source, d.shape)
    out = _moved_class(base)(d.source, per[:b] + (d.shape[0],) + per[b:])
    out.batch_axis = b
    return out


def _physical(im, v):
    """v's array shape in cconv (batch first), as im.add expects it."""
    b = batch_axis(im, v)
    base = getattr(type(v), "base", type(v))
    return v if not b else base(v.source, (v.shape[b],) + v.shape[:b] + v.shape[b + 1:])


def _emit(im, node, layer, inputs, b=0, suffix=""):
    """Add layer on inputs (logical Dynamics); its output's logical batch axis is b."""
    return _logical(im, im.add(node, layer, [_physical(im, v) for v in inputs], suffix=suffix), b)


def _axis(node, x, b, axis, what="axis"):
    """The batch-inclusive array axis of logical axis `axis` of x (batch at b)."""
    ndim = len(x.shape)
    if not -ndim <= axis < ndim:
        _fail(node, f"{what}={axis} is out of range for the {ndim}-D input {x.shape}")
    axis %= ndim
    if axis == b:
        _fail(node, f"{what}={axis} is the batch axis of {x.shape}, which cconv keeps whole "
                    f"(each sample runs alone)")
    return axis + 1 if axis < b else axis


def restore_batch_axis(im, v):
    """A graph output value: where its batch axis moved, a MoveBatchAxis layer puts it back."""
    b = batch_axis(im, v)
    if not b:
        return v
    node = _Named(f"{v.source}_batch_axis", "MoveBatchAxis")
    return _emit(im, node, nn.MoveBatchAxis(b), [v])


class _Named:
    """A stand-in node for layers no ONNX node asked for (the output's MoveBatchAxis)."""

    def __init__(self, name, op_type):
        self.name, self.op_type, self.output, self.input = name, op_type, [name], []


def _dynamic_inputs(im, node):
    return [v for v in (im.value(node, i) for i in range(len(node.input)))
            if hasattr(v, "source")]


def guard(convert):
    """convert, refusing inputs whose batch axis moved (it reads axis 0 as the batch)."""
    def guarded(im, node, attrs):
        for v in _dynamic_inputs(im, node):
            if batch_axis(im, v):
                _fail(node, f"its input is a value whose batch axis was moved to "
                            f"{batch_axis(im, v)} (shape {v.shape}); cconv supports that "
                            f"only in shape, element-wise and matrix ops")
        return convert(im, node, attrs)
    return guarded


def same_layout(convert):
    """convert of an op applied per element or on the last axes: any batch position works
    where all dynamic inputs share it (and their rank); the output keeps it."""
    def converted(im, node, attrs):
        xs = _dynamic_inputs(im, node)
        bs = {batch_axis(im, v) for v in xs}
        if bs == {0}:
            return convert(im, node, attrs)
        if len(bs) > 1 or len({len(v.shape) for v in xs}) > 1:
            _fail(node, f"inputs with their batch axes at {sorted(bs)} cannot be combined")
        b = bs.pop()
        consts = [i for i in range(len(node.input)) if node.input[i]
                  and not hasattr(im.value(node, i), "source")]
        if any(np.size(im.value(node, i)) > 1 for i in consts if node.op_type not in
               ("MatMul", "Clip", "PRelu", "Reshape", "Pad")):
            _fail(node, "a constant operand of a value whose batch axis moved")
        # a constant right operand is a Linear on the last axis: rows may hold the batch
        matrix_axes = 2 if len(xs) == 2 else 1
        if node.op_type == "MatMul" and b >= len(xs[0].shape) - matrix_axes:
            _fail(node, f"the batch axis {b} is a matrix axis of {xs[0].shape}")
        values = im.values
        saved = {n: values[n] for n in node.input if n and hasattr(values[n], "source")}
        for n, v in saved.items():
            values[n] = _physical(im, v)
        try:
            out = convert(im, node, attrs)
        finally:
            values.update(saved)
        return _logical(im, type(out)(out.source, out.shape), b)
    return converted


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


# ------------------------------------------------------------------ shapes on any axis

def _per_sample_perm(perm, b):
    """Transpose perm of logical axes (batch at b) as a permutation of the per-sample axes."""
    rest = [a for a in perm if a != b]
    return tuple(a - 1 if a > b else a for a in rest), perm.index(b)


def transpose(im, node, attrs):
    x = im.dynamic(node)
    b, ndim = batch_axis(im, x), len(x.shape)
    perm = [int(p) % ndim for p in attrs.get("perm", range(ndim - 1, -1, -1))]
    axes, out_b = _per_sample_perm(perm, b)
    if axes == tuple(range(ndim - 1)):
        return _logical(im, _physical(im, x), out_b)
    return _emit(im, node, nn.Transpose(axes), [x], out_b)


def reshape_to(im, node, x, target):
    """x reshaped to the logical shape target, where the batch axis stays an axis of its own."""
    b = batch_axis(im, x)
    target = tuple(int(d) for d in target)
    before, after = math.prod(x.shape[:b]), math.prod(x.shape[b + 1:])
    for out_b in range(len(target)):
        if (math.prod(target[:out_b]) == before and target[out_b] == x.shape[b]
                and math.prod(target[out_b + 1:]) == after):
            break
    else:
        _fail(node, f"reshaping {x.shape} to {target} would mix the batch axis {b} with "
                    f"others")
    per = target[:out_b] + target[out_b + 1:]
    if per == x.shape[:b] + x.shape[b + 1:]:
        return _logical(im, _physical(im, x), out_b)
    return _emit(im, node, nn.Reshape(per), [x], out_b)


def reshape(im, node, attrs):
    x = im.dynamic(node)
    target = [int(d) for d in im.const(node, 1, "shape").reshape(-1)]
    if not attrs.get("allowzero", 0):
        target = [x.shape[i] if d == 0 and i < len(x.shape) else d for i, d in enumerate(target)]
    if target.count(-1) > 1:
        _fail(node, f"shape {target} has more than one -1")
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        if known == 0 or math.prod(x.shape) % known:
            _fail(node, f"cannot reshape {x.shape} to {target}")
        target = [math.prod(x.shape) // known if d == -1 else d for d in target]
    if math.prod(target) != math.prod(x.shape):
        _fail(node, f"cannot reshape {x.shape} to {target}")
    return reshape_to(im, node, x, target)


def flatten(im, node, attrs):
    x = im.dynamic(node)
    axis = int(attrs.get("axis", 1)) % max(len(x.shape), 1)
    if axis == 1 and not batch_axis(im, x):
        return im.add(node, nn.Flatten(), [x])   # any per-sample size (and a view when compiled)
    return reshape_to(im, node, x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


def _axes_input(im, node, attrs, index=1):
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    axes = im.const(node, index, "axes", optional=True)
    return None if axes is None else [int(a) for a in axes.reshape(-1)]


def squeeze(im, node, attrs):
    x = im.dynamic(node)
    b, ndim = batch_axis(im, x), len(x.shape)
    axes = _axes_input(im, node, attrs)
    if axes is None:   # every size-1 axis, but never the batch axis
        axes = [i for i in range(ndim) if x.shape[i] == 1 and i != b]
    axes = sorted({a % ndim for a in axes})
    if b in axes or any(x.shape[a] != 1 for a in axes):
        _fail(node, f"cannot squeeze axes {axes} of {x.shape} (the batch axis {b}, or size > 1)")
    return reshape_to(im, node, x, [d for i, d in enumerate(x.shape) if i not in axes])


def unsqueeze(im, node, attrs):
    x = im.dynamic(node)
    axes = _axes_input(im, node, attrs)
    if axes is None:
        _fail(node, "needs axes")
    rank = len(x.shape) + len(axes)
    shape = list(x.shape)
    for a in sorted(a % rank for a in axes):
        shape.insert(a, 1)
    return reshape_to(im, node, x, shape)


def _slice_args(im, node, attrs):
    if im.opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes"), None
    else:
        starts, ends = (im.const(node, i, w).reshape(-1).tolist()
                        for i, w in ((1, "starts"), (2, "ends")))
        axes, steps = (im.const(node, i, w, optional=True) for i, w in ((3, "axes"),
                                                                         (4, "steps")))
        axes = None if axes is None else axes.reshape(-1).tolist()
        steps = None if steps is None else steps.reshape(-1).tolist()
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(axes) if steps is None else [int(s) for s in steps]
    # ONNX writes "to the end" as +-2^63 - 1; Python's slices clamp any int the same way
    return [int(s) for s in starts], [int(e) for e in ends], axes, steps


def _slice_layer(im, node, x, starts, ends, axes, steps, suffix=""):
    b = batch_axis(im, x)
    keep = []
    for s, e, a, st in zip(starts, ends, axes, steps):
        if a % len(x.shape) == b:
            n = x.shape[b]
            if len(range(*slice(s, e, st).indices(n))) == n and st == 1:
                continue   # the whole batch axis: nothing to slice
        keep.append((s, e, _axis(node, x, b, a, "axes"), st))
    if not keep:
        return x
    layer = nn.Slice(*(list(t) for t in zip(*keep)))
    return _emit(im, node, layer, [x], b, suffix=suffix)


def slice_(im, node, attrs):
    x = im.dynamic(node)
    return _slice_layer(im, node, x, *_slice_args(im, node, attrs))


def split(im, node, attrs):
    x = im.dynamic(node)
    axis = int(attrs.get("axis", 0)) % len(x.shape)
    n_out = len(node.output)
    sizes = attrs.get("split")
    if sizes is None and im.opset >= 13:
        given = im.const(node, 1, "split", optional=True)
        sizes = None if given is None else given.reshape(-1).tolist()
    length = x.shape[axis]
    if sizes is None:
        chunk = -(-length // n_out)   # opset 18's num_outputs: the last chunk may be shorter
        sizes = [min(chunk, length - i * chunk) for i in range(n_out)]
    if sum(sizes) != length or len(sizes) != n_out:
        _fail(node, f"split sizes {sizes} do not cover axis {axis} ({length}) in {n_out} parts")
    outs, start = [], 0
    for i, size in enumerate(sizes):
        outs.append(_slice_layer(im, node, x, [start], [start + int(size)], [axis], [1],
                                 suffix=f"_{i}"))
        start += int(size)
    return outs


def gather(im, node, attrs):
    x = im.dynamic(node)
    b = batch_axis(im, x)
    idx = np.asarray(im.const(node, 1, "indices"))
    axis = int(attrs.get("axis", 0)) % len(x.shape)
    phys = _axis(node, x, b, axis)
    out_b = b if b < axis else b + idx.ndim - 1
    return _emit(im, node, nn.Gather(phys, idx.tolist()), [x], out_b)


def expand(im, node, attrs):
    x = im.dynamic(node)
    b = batch_axis(im, x)
    target = [int(d) for d in im.const(node, 1, "shape").reshape(-1)]
    try:
        out = tuple(int(d) for d in np.broadcast_shapes(x.shape, tuple(target)))
    except ValueError:
        _fail(node, f"shape {target} does not broadcast with the input {x.shape}")
    out_b = b + len(out) - len(x.shape)
    if out[out_b] != x.shape[b]:
        _fail(node, f"expanding {x.shape} to {out} would broadcast over the batch axis")
    per = out[:out_b] + out[out_b + 1:]
    if per == x.shape[:b] + x.shape[b + 1:]:
        return x
    return _emit(im, node, nn.Expand(per), [x], out_b)


def tile(im, node, attrs):
    x = im.dynamic(node)
    b = batch_axis(im, x)
    repeats = [int(r) for r in im.const(node, 1, "repeats").reshape(-1)]
    if len(repeats) != len(x.shape) or repeats[b] != 1:
        _fail(node, f"repeats {repeats} must have one entry per axis of {x.shape} and 1 on "
                    f"the batch axis {b}")
    return _emit(im, node, nn.Tile(repeats[:b] + repeats[b + 1:]), [x], b)


def concat(im, node, attrs):
    xs = [v for v in (im.value(node, i) for i in range(len(node.input))) if v is not None]
    if not all(hasattr(v, "source") for v in xs):
        _fail(node, "concatenating computed values with constants is not supported")
    bs = {batch_axis(im, v) for v in xs}
    if len(bs) > 1:
        _fail(node, f"inputs with their batch axes at {sorted(bs)} cannot be concatenated")
    b = bs.pop()
    axis = _axis(node, xs[0], b, int(attrs["axis"]))
    if len(xs) == 1:
        return xs[0]
    return _emit(im, node, nn.Concat(axis), xs, b)


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


def batch_first_or(original, convert):
    """original (converters.py's) where every input keeps its batch axis first and it
    succeeds, else convert (which follows a moved batch axis): the common case keeps
    the original's rules, a model that moves the batch axis gets this module's."""
    def converted(im, node, attrs):
        if any(batch_axis(im, v) for v in _dynamic_inputs(im, node)):
            return convert(im, node, attrs)
        try:
            return original(im, node, attrs)
        except OnnxImportError as refused:
            try:
                return convert(im, node, attrs)
            except OnnxImportError:
                raise refused from None
    return converted


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
