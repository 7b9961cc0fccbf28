"""Imported constants that are weights train (a conv's bias written as a separate Add of a
constant, a channel scale as Mul, a MatMul's bias as Add): folded into the Conv or Linear
where they can be, else trainable parameters of the broadcast layer. Scalars (and integer shape constants) stay constants.

What happened to each is written to `graph.onnx_import_report` (see `record`).
"""
import numpy as np

from cconv import nn


def record(im, kind, text):
    """Note one imported constant's fate: kind is "folded", "trainable" or "constant"."""
    report = im.graph.__dict__.setdefault(
        "onnx_import_report", {"folded": [], "trainable": [], "constant": []})
    report[kind].append(text)


def _per_channel(c, x):
    """c as one value per channel (axis 1) of x, or None when it is not that."""
    if c.ndim < 2 or c.ndim > len(x.shape) or len(x.shape) < 3:
        return None
    full = (1,) * (len(x.shape) - c.ndim) + c.shape
    if full[0] != 1 or full[1] != x.shape[1] or any(d != 1 for d in full[2:]):
        return None
    return c.reshape(-1)


def _per_feature(c, x):
    """c as one value per feature (the last axis) of x, or None when it is not that."""
    if c.ndim < 1 or c.ndim > len(x.shape):
        return None
    full = (1,) * (len(x.shape) - c.ndim) + c.shape
    if full[-1] != x.shape[-1] or any(d != 1 for d in full[:-1]):
        return None
    return c.reshape(-1)


def _sole_reader(im, node, name):
    """True when node alone reads ONNX tensor `name`, and it is not a graph output."""
    readers = sum(name in n.input for n in im.model.graph.node)
    return readers == 1 and name not in {o.name for o in im.model.graph.output}


#: layers whose output units a per-unit constant folds into: (class, units, where they lie)
_FOLDABLE = ((nn.Conv2d, "out_ch", _per_channel), (nn.Conv1d, "out_ch", _per_channel),
             (nn.Linear, "out_features", _per_feature))


def fold_into_layer(im, node, x, c, op):
    """x op c folded into the Conv or Linear that computes x (op add or mul, c one value
    per output unit): the layer's own (trainable) bias or weights take it. Returns x, or
    None when it cannot."""
    layer = im.graph[x.source] if x.source in im.graph else None
    found = [(units, per_unit) for cls, units, per_unit in _FOLDABLE if type(layer) is cls]
    if not found or getattr(x, "batch_axis", 0):
        return None
    units, per_unit = found[0]
    per = per_unit(c, x)
    if per is None or not _sole_reader(im, node, node.input[0 if im.value(node, 0) is x
                                                          else 1]):
        return None
    params = im.weights.setdefault(x.source, {})
    out_ch = getattr(layer, units)
    bias = np.asarray(params.get("bias", np.zeros(out_ch)), np.float64)
    if op == "add":
        bias = bias + per
    else:
        params["weight"] = np.asarray(params["weight"], np.float64) * \
            per.reshape((out_ch,) + (1,) * (np.ndim(params["weight"]) - 1))
        bias = bias * per
    if not layer.bias:
        config = dict(layer.get_config(), bias=True)
        im.graph.replace_layer(x.source, type(layer).from_config(config))
    params["bias"] = bias
    record(im, "folded", f"{node.name}: {node.op_type} of a constant {c.shape} into the "
                         f"{'bias' if op == 'add' else 'weights and bias'} of {x.source}")
    return x


def trainable_constant(im, node, c):
    """Whether the constant operand c of node is a weight: floats, more than one value."""
    c = np.asarray(c)
    weight = c.dtype.kind == "f" and c.size > 1
    record(im, "trainable" if weight else "constant",
           f"{node.name}: {node.op_type} constant {c.shape}")
    return weight
