"""Constant folding: numpy evaluation of the ops that compute shapes and constants.

Exported models compute reshape targets at run time (Shape -> Gather ->
Unsqueeze -> Concat -> Reshape). cconv networks have static per-sample
shapes, so every such subgraph is evaluated once, at import, from the known
shapes; the result becomes a constant input of the node that needs it.
"""
import numpy as np
from onnx import helper

from .errors import OnnxImportError, tensor_to_array


def _text(node, name, raw):
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise OnnxImportError(f"node {node.name!r} ({node.op_type}): attribute {name!r} is "
                              f"not UTF-8 text ({raw[:40]!r}); corrupt model") from None


def attributes(node):
    """A node's attributes as {name: python value} (strings decoded, tensors as arrays)."""
    out = {}
    for a in node.attribute:
        try:
            v = helper.get_attribute_value(a)
        except (ValueError, TypeError) as exc:   # an attribute type onnx does not know
            raise OnnxImportError(f"node {node.name!r} ({node.op_type}): attribute "
                                  f"{a.name!r} cannot be read: {exc}") from None
        if isinstance(v, bytes):
            v = _text(node, a.name, v)
        elif hasattr(v, "data_type") and hasattr(v, "dims"):
            v = tensor_to_array(v)
        elif isinstance(v, list):
            v = [_text(node, a.name, x) if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def _axes(node, args, attrs, opset, index=1):
    """Axes from the attribute (older opsets) or the optional constant input (newer)."""
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    if len(args) > index and args[index] is not None:
        return [int(a) for a in np.asarray(args[index]).reshape(-1)]
    return None


def _constant(node, args, attrs, opset):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            v = attrs[key]
            if key.startswith("value_float"):
                return np.asarray(v, np.float32)
            if key.startswith("value_int"):
                return np.asarray(v, np.int64)
            return np.asarray(v)
    raise OnnxImportError(f"Constant node {node.name!r}: only tensor, float(s) and int(s) "
                          f"values are supported, got attributes {sorted(attrs)}")


def _gather(node, args, attrs, opset):
    data, idx = args
    return np.take(data, np.asarray(idx, np.int64), axis=int(attrs.get("axis", 0)))


def _unsqueeze(node, args, attrs, opset):
    x = np.asarray(args[0])
    axes = _axes(node, args, attrs, opset)
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        x = np.expand_dims(x, a)
    return x


def _squeeze(node, args, attrs, opset):
    x = np.asarray(args[0])
    axes = _axes(node, args, attrs, opset)
    return np.squeeze(x) if axes is None else np.squeeze(x, tuple(a % x.ndim for a in axes))


def _reshape(node, args, attrs, opset):
    x, shape = np.asarray(args[0]), [int(d) for d in np.asarray(args[1]).reshape(-1)]
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def _slice(node, args, attrs, opset):
    x = np.asarray(args[0])
    if opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes"), None
    else:
        starts, ends = args[1], args[2]
        axes = args[3] if len(args) > 3 else None
        steps = args[4] if len(args) > 4 else None
    starts = [int(s) for s in np.reshape(starts, -1)]
    ends = [int(e) for e in np.reshape(ends, -1)]
    axes = list(range(len(starts))) if axes is None else [int(a) % x.ndim
                                                          for a in np.reshape(axes, -1)]
    steps = [1] * len(starts) if steps is None else [int(s) for s in np.reshape(steps, -1)]
    sel = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        sel[a] = slice(s, e, st)   # python slicing clamps like ONNX (INT64_MAX ends)
    return x[tuple(sel)]


def _div(node, args, attrs, opset):
    a, b = np.asarray(args[0]), np.asarray(args[1])
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.trunc(a / b).astype(np.result_type(a, b))   # ONNX integer division
    return a / b


_CAST_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32,
               7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
               13: np.uint64}


def _mod(node, args, attrs, opset):
    a, b = np.asarray(args[0]), np.asarray(args[1])
    if attrs.get("fmod", 0):
        return np.fmod(a, b)   # C's fmod: the dividend's sign
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        raise OnnxImportError(f"Mod node {node.name!r}: fmod=0 on floats is invalid ONNX")
    return np.mod(a, b)   # integer Mod: the divisor's sign, as Python's %


def _cast(node, args, attrs, opset):
    to = int(attrs["to"])
    if to not in _CAST_TYPES:
        raise OnnxImportError(f"Cast node {node.name!r}: unsupported target type {to}")
    return np.asarray(args[0]).astype(_CAST_TYPES[to])


def _constant_of_shape(node, args, attrs, opset):
    value = attrs.get("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full([int(d) for d in np.reshape(args[0], -1)], value[0], value.dtype)


def _concat(node, args, attrs, opset):
    return np.concatenate([np.asarray(a) for a in args], axis=int(attrs["axis"]))


def _transpose(node, args, attrs, opset):
    return np.transpose(args[0], attrs.get("perm"))


def _range(node, args, attrs, opset):
    start, limit, delta = (np.asarray(a).item() for a in args)
    return np.arange(start, limit, delta, dtype=np.asarray(args[0]).dtype)


# ---------------------------------------------------------------- the budget

#: elements every import may fold whatever its size; plus one per byte of the model
FOLD_SLACK = 1 << 20


class FoldBudget:
    """One element budget for all constant folding of one import, every op alike.

    A 262-byte model (Range(0, 40000), unsqueezed both ways, then Mul) asks
    for 1.6e9 elements: each result's size is computed from its inputs'
    shapes and charged here before the op runs. Real models fold shape
    arithmetic (a few elements) and at most reshape their own weights, so
    FOLD_SLACK + the model's bytes is ample; at 8 bytes an element it keeps
    folding within 8x the file + 8 MiB.
    """

    def __init__(self, model_bytes):
        self.limit = FOLD_SLACK + int(model_bytes)
        self.used = 0

    def charge(self, node, size):
        if self.used + size > self.limit:
            raise OnnxImportError(f"{node.op_type} node {node.name!r} would fold a constant of "
                                  f"{size} elements; constant folding may create at most "
                                  f"{self.limit} in all for this model ({FOLD_SLACK} + one "
                                  f"per byte of the model), {self.used} used")
        self.used += size


def _count(node, dims):
    """Elements of a shape given as numbers (from a constant: bounded before multiplying)."""
    total = 1
    for d in dims:
        d = float(d)
        if not np.isfinite(d):
            raise OnnxImportError(f"{node.op_type} node {node.name!r}: a non-finite size {d}")
        total *= max(int(min(d, 2**62)), 0)
        if total > 2**62:
            return 2**62
    return total


def _range_size(node, args, attrs):
    start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) for a in args[:3])
    if delta == 0 or not np.isfinite([start, limit, delta]).all():
        raise OnnxImportError(f"Range node {node.name!r}: start {start}, limit {limit}, delta "
                              f"{delta} do not make a finite range")
    return _count(node, [np.ceil((limit - start) / delta)])


def _broadcast_size(node, args, attrs):
    try:
        return _count(node, np.broadcast_shapes(*(np.shape(a) for a in args[:2])))
    except ValueError as exc:
        raise OnnxImportError(f"{node.op_type} node {node.name!r}: inputs of shapes "
                              f"{[np.shape(a) for a in args[:2]]} do not broadcast: "
                              f"{exc}") from None


def _gather_size(node, args, attrs):
    data, idx = np.shape(args[0]), np.shape(args[1])
    axis = int(attrs.get("axis", 0))
    if not -len(data) <= axis < len(data):
        raise OnnxImportError(f"Gather node {node.name!r}: axis {axis} for data of shape "
                              f"{data}")
    axis %= len(data)
    return _count(node, data[:axis] + idx + data[axis + 1:])


_SIZES = {
    "ConstantOfShape": lambda node, args, attrs: _count(node, np.reshape(args[0], -1)),
    "Range": _range_size,
    "Gather": _gather_size,
    "Add": _broadcast_size, "Sub": _broadcast_size, "Mul": _broadcast_size,
    "Div": _broadcast_size,
}


def result_size(node, args, attrs):
    """Upper bound of the elements folding node makes, from its inputs' shapes only.

    Ops without an entry (views, casts, unary maps, Concat, Slice...) make at
    most as many elements as their inputs hold together.
    """
    size = _SIZES.get(node.op_type)
    if size is not None:
        return size(node, args, attrs)
    return sum(int(np.size(a)) for a in args if a is not None)


#: op_type -> fn(node, constant inputs (None for absent optional ones), attributes, opset)
FOLDERS = {
    "Constant": _constant,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Slice": _slice,
    "Cast": _cast,
    "ConstantOfShape": _constant_of_shape,
    "Concat": _concat,
    "Transpose": _transpose,
    "Range": _range,
    "Identity": lambda node, args, attrs, opset: np.asarray(args[0]),
    "Add": lambda node, args, attrs, opset: np.asarray(args[0]) + np.asarray(args[1]),
    "Sub": lambda node, args, attrs, opset: np.asarray(args[0]) - np.asarray(args[1]),
    "Mul": lambda node, args, attrs, opset: np.asarray(args[0]) * np.asarray(args[1]),
    "Div": _div,
    "Mod": _mod,   # nn.MultiheadAttention's shape checks
    "Floor": lambda node, args, attrs, opset: np.floor(args[0]),
    "Ceil": lambda node, args, attrs, opset: np.ceil(args[0]),
    "Sqrt": lambda node, args, attrs, opset: np.sqrt(args[0]),
    "Flatten": lambda node, args, attrs, opset: np.reshape(
        args[0], (int(np.prod(np.shape(args[0])[:attrs.get("axis", 1)])), -1)),
}

#: ops that only make sense on constants (shape arithmetic), never on activations
CONSTANT_ONLY = {"Constant", "Gather", "Slice", "ConstantOfShape", "Range", "Floor",
                 "Ceil", "Sqrt", "Mod"}


def fold(node, args, opset, budget=None):
    """Outputs (a list of arrays) of node evaluated on constant inputs args.

    budget: the import's FoldBudget, charged with the result's size before
    anything is evaluated (default: a fresh one of FOLD_SLACK elements).
    """
    attrs = attributes(node)
    try:
        (budget or FoldBudget(0)).charge(node, result_size(node, args, attrs))
        out = FOLDERS[node.op_type](node, args, attrs, opset)
    except OnnxImportError:
        raise
    except Exception as exc:   # numpy's own message says what did not fit
        raise OnnxImportError(f"cannot evaluate constant {node.op_type} node {node.name!r} "
                              f"on inputs of shapes {[np.shape(a) for a in args]}: "
                              f"{exc}") from exc
    return [np.asarray(out)]
