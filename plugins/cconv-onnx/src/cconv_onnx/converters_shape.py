"""ONNX shape operators on any axis, the batch axis included where a model moves it:
Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Slice, Split, Gather, Expand, Tile,
Concat (see layout.py for the bookkeeping). Ops that read or mix the batch axis itself
stay refused, each with its reason.
"""
import math

import numpy as np

from cconv import nn

from .errors import OnnxImportError
from .layout import _axis, _emit, _logical, _physical, batch_axis


def _fail(node, why):
    raise OnnxImportError(f"node {node.name!r} ({node.op_type}): {why}")


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
    from .converters import reshape_target   # converters imports this module at its end

    target = reshape_target(node, x.shape, [int(d) for d in im.const(node, 1, "shape")
                                            .reshape(-1)], attrs)
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
    args = _slice_args(im, node, attrs)
    like = _slice_like(im, node, x, *args)
    if like is not None:
        # ends read from another value's Shape (up[:, :, :skip.shape[2]]): the layer
        # reads them from that value at every input size
        ref, starts, axes, like_axes = like
        return im.add(node, nn.SliceAs(starts, axes, like_axes), [x, ref])
    return _slice_layer(im, node, x, *args)


def _slice_like(im, node, x, starts, ends, axes, steps):
    """(ref, starts, batch-inclusive axes, like_axes) when every `ends` entry of a step-1
    Slice is the size of one other computed value ref on some axis, read through its
    Shape (Importer.shape_of); else None."""
    track = im.shape_of.get(node.input[2]) if im.opset >= 10 and len(node.input) > 2 else None
    if not track or len(track) != len(axes) or any(t is None for t in track) or \
            any(st != 1 for st in steps) or batch_axis(im, x):
        return None
    refs = {t[0].source: t[0] for t in track}
    if len(refs) != 1 or x.source in refs:
        return None
    (ref,) = refs.values()
    axes = [a % len(x.shape) for a in axes]
    if batch_axis(im, ref) or 0 in axes or any(t[1] == 0 for t in track):
        return None
    return ref, starts, axes, [t[1] for t in track]


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
