"""Where each value's batch axis is, for models that move it (the ONNX importer's side).

Inside a cconv graph every value keeps its batch axis first. A model may
still move it (attention: Reshape -> Transpose(2, 0, 3, 1, 4) -> Gather): the
importer then keeps, per value, its logical ONNX shape and the logical
position of the batch axis (a Dynamic with a `batch_axis` slot), and the
converters map each op's logical axes to the per-sample axes of the array
cconv really holds. A graph output whose batch axis moved gets a
MoveBatchAxis layer. Converters that know nothing of this refuse a moved
value (`guard`), so nothing is silently misread.
"""
import numpy as np

from cconv import nn

from .errors import OnnxImportError


def _fail(node, why):
    raise OnnxImportError(f"node {node.name!r} ({node.op_type}): {why}")


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
        ndim = len(xs[0].shape)
        moved_consts = {node.input[i]: _per_sample_const(node, im.value(node, i), ndim, b)
                        for i in consts if np.size(im.value(node, i)) > 1 and node.op_type
                        not in ("MatMul", "Clip", "PRelu", "Reshape", "Pad")}
        # a constant right operand is a Linear on the last axis: rows may hold the batch
        matrix_axes = 2 if len(xs) == 2 else 1
        if node.op_type == "MatMul" and b >= len(xs[0].shape) - matrix_axes:
            _fail(node, f"the batch axis {b} is a matrix axis of {xs[0].shape}")
        values = im.values
        saved = {n: values[n] for n in node.input if n and hasattr(values[n], "source")}
        saved.update({n: values[n] for n in moved_consts})
        for n, v in saved.items():
            values[n] = moved_consts[n] if n in moved_consts else _physical(im, v)
        try:
            out = convert(im, node, attrs)
        finally:
            values.update(saved)
        return _logical(im, type(out)(out.source, out.shape), b)
    return converted


def _per_sample_const(node, c, ndim, b):
    """Constant operand c of a value of ndim axes whose batch axis is at b, as it broadcasts
    against the batch-first array: axes after b keep their place on the right (a bias of
    (C,) on (T, N, C)); a longer c needs size 1 at b, and loses that axis."""
    c = np.asarray(c)
    if c.ndim < ndim - b:
        return c
    full = c.reshape((1,) * (ndim - c.ndim) + c.shape)
    if full.shape[b] != 1:
        _fail(node, f"a constant operand of shape {c.shape} would broadcast over the batch "
                    f"axis {b} of the {ndim}-D input")
    return full.reshape(full.shape[:b] + full.shape[b + 1:])


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
