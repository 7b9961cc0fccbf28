"""ONNX operators -> cconv layers.

Each converter gets the importer `im`, the node and its attributes, adds
layers with `im.add(node, layer, inputs, params)` and returns the Dynamic
value (or list of values) of the node's outputs. Shapes are static: every
Dynamic carries its full shape, batch axis first, and no layer may move or
mix the batch axis, so those cases are refused with the reason.
"""
import math

import numpy as np

from cconv import nn

from .errors import OnnxImportError, SizeDependentError


def _fail(node, why):
    raise OnnxImportError(f"node {node.name!r} ({node.op_type}): {why}")


def _check_default(node, attrs, name, allowed):
    if name in attrs and attrs[name] not in allowed:
        _fail(node, f"{name}={attrs[name]!r} is not supported (supported: {allowed})")


# ------------------------------------------------------------------ padding rules

def _explicit_pads(node, attrs, spatial, kernel, strides, dilations):
    """[(before, after)] per spatial axis from pads / auto_pad, as ONNX defines them."""
    nd = len(spatial)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(attrs.get("pads", [0] * 2 * nd))
        if len(pads) != 2 * nd:
            _fail(node, f"pads={pads} should have {2 * nd} entries")
        return [(int(pads[i]), int(pads[i + nd])) for i in range(nd)]
    if auto == "VALID":
        return [(0, 0)] * nd
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        _fail(node, f"auto_pad={auto!r} is unknown")
    out = []
    for n, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small = total // 2
        out.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
    return out


#: strides, dilations and pads beyond this are nonsense (a 9x9 input with stride
#: 2**24 imports, then one inference touches gigabytes): refused at import
MAX_GEOMETRY = 1 << 16


def _geometry(node, attrs, name, default, low):
    values = tuple(int(v) for v in attrs.get(name, default))
    bad = [v for v in values if not low <= v <= MAX_GEOMETRY]
    if bad:
        _fail(node, f"{name}={list(values)}: each must be in [{low}, {MAX_GEOMETRY}]")
    return values


def _conv_geometry(node, attrs, x, kernel):
    nd = len(kernel)
    if len(x.shape) != nd + 2:
        _fail(node, f"a {nd}-D kernel needs an input (N, C, {nd} spatial axes), got {x.shape}")
    strides = _geometry(node, attrs, "strides", [1] * nd, 1)
    dilations = _geometry(node, attrs, "dilations", [1] * nd, 1)
    _geometry(node, attrs, "pads", [0] * 2 * nd, 0)
    pads = _explicit_pads(node, attrs, x.shape[2:], kernel, strides, dilations)
    return strides, dilations, pads


# ------------------------------------------------------------------ convolutions

def conv(im, node, attrs):
    x = im.dynamic(node)
    w = im.const(node, 1, "weight")
    b = im.const(node, 2, "bias", optional=True)
    kernel = tuple(int(k) for k in w.shape[2:])
    strides, dilations, pads = _conv_geometry(node, attrs, x, kernel)
    groups = int(attrs.get("group", 1))
    in_ch, out_ch = x.shape[1], w.shape[0]
    if w.shape[1] * groups != in_ch:
        _fail(node, f"weight {w.shape} with group={groups} does not fit {in_ch} input channels")
    if len(kernel) == 2:
        cls, padding = nn.Conv2d, tuple(pads)
    elif len(kernel) == 1:
        cls, padding = nn.Conv1d, pads[0]
    else:
        _fail(node, f"{len(kernel)}-D convolution is not supported (1-D and 2-D are)")
    if attrs.get("auto_pad") == "SAME_UPPER" and any(s > 1 for s in strides):
        padding = "same"   # cconv's "same" is SAME_UPPER at every input size, not this one's pads
    elif attrs.get("auto_pad") == "SAME_LOWER" and any(s > 1 for s in strides):
        # the pads depend on the input size: a PadSame layer works them out at each call
        x = im.add(node, nn.PadSame(kernel, strides, dilations, lower=True), [x],
                   suffix="_pad")
        padding = 0 if len(kernel) == 1 else (0, 0)
    layer = cls(in_ch, out_ch, kernel, stride=strides, padding=padding, dilation=dilations,
                groups=groups, bias=b is not None)
    params = {"weight": w} if b is None else {"weight": w, "bias": b}
    return im.add(node, layer, [x], params)


def conv_transpose(im, node, attrs):
    x = im.dynamic(node)
    w = im.const(node, 1, "weight")
    b = im.const(node, 2, "bias", optional=True)
    kernel = tuple(int(k) for k in w.shape[2:])
    if len(kernel) != 2 or len(x.shape) != 4:
        _fail(node, f"only 2-D transposed convolution is supported, got weight {w.shape} "
                    f"and input {x.shape}")
    groups = int(attrs.get("group", 1))
    strides = _geometry(node, attrs, "strides", [1, 1], 1)
    dilations = _geometry(node, attrs, "dilations", [1, 1], 1)
    _geometry(node, attrs, "pads", [0] * 4, 0)
    out_pad = list(_geometry(node, attrs, "output_padding", [0, 0], 0))
    auto = attrs.get("auto_pad", "NOTSET")
    spatial = x.shape[2:]
    if "output_shape" in attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = [int(s) for s in attrs.get("output_shape", [])][-2:] or \
            [n * s for n, s in zip(spatial, strides)]
        pads = []
        for n, s, k, d, op, t in zip(spatial, strides, kernel, dilations, out_pad, target):
            total = s * (n - 1) + op + (k - 1) * d + 1 - t
            if total < 0:
                _fail(node, f"output_shape {target} is larger than the full output")
            half = total // 2
            pads.append((half, total - half) if auto == "SAME_UPPER" else (total - half, half))
    elif auto == "VALID" or auto in ("NOTSET", ""):
        p = [int(v) for v in attrs.get("pads", [0] * 4)] if auto != "VALID" else [0] * 4
        pads = [(p[0], p[2]), (p[1], p[3])]
    else:
        _fail(node, f"auto_pad={auto!r} is unknown")
    layer = nn.ConvTranspose2d(w.shape[0], w.shape[1] * groups, kernel, stride=strides,
                               padding=tuple(pads), output_padding=tuple(out_pad),
                               dilation=dilations, groups=groups, bias=b is not None)
    params = {"weight": w} if b is None else {"weight": w, "bias": b}
    return im.add(node, layer, [x], params)


# ------------------------------------------------------------------ normalisation

def batch_norm(im, node, attrs):
    x = im.dynamic(node)
    scale, bias, mean, var = (im.const(node, i, what) for i, what in
                              enumerate(("scale", "bias", "mean", "variance"), start=1))
    if attrs.get("training_mode", 0) or sum(1 for o in node.output if o) > 1:
        _fail(node, "training-mode BatchNormalization (extra outputs) is not supported")
    ndim = len(x.shape)
    cls = nn.BatchNorm2d if ndim == 4 else nn.BatchNorm1d if ndim in (2, 3) else None
    if cls is None:
        _fail(node, f"input {x.shape} must be (N, C), (N, C, L) or (N, C, H, W)")
    # ONNX momentum weights the old running value, cconv's (torch's) the new batch
    layer = cls(x.shape[1], eps=float(attrs.get("epsilon", 1e-5)),
                momentum=1.0 - float(attrs.get("momentum", 0.9)))
    return im.add(node, layer, [x], {"weight": scale, "bias": bias, "running_mean": mean,
                                     "running_var": var})


# ------------------------------------------------------------------ activations

def _simple(cls):
    def convert(im, node, attrs):
        return im.add(node, cls(), [im.dynamic(node)])
    return convert


def leaky_relu(im, node, attrs):
    return im.add(node, nn.LeakyReLU(float(attrs.get("alpha", 0.01))), [im.dynamic(node)])


def prelu(im, node, attrs):
    x = im.dynamic(node)
    slope = im.const(node, 1, "slope")
    if slope.size == 1:
        return im.add(node, nn.PReLU(1), [x], {"weight": slope.reshape(1)})
    c = x.shape[1] if len(x.shape) > 1 else 0
    per_channel = (slope.size == c and slope.ndim <= len(x.shape) - 1 and
                   (len(x.shape) == 2 or slope.shape[0] == c or
                    slope.shape[-(len(x.shape) - 1)] == c))
    if not per_channel:
        _fail(node, f"slope of shape {slope.shape} is neither one value nor one per channel "
                    f"of input {x.shape}")
    return im.add(node, nn.PReLU(c), [x], {"weight": slope.reshape(c)})


def clip(im, node, attrs):
    x = im.dynamic(node)
    if im.opset < 11:
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        lo, hi = (im.const(node, i, what, optional=True) for i, what in ((1, "min"), (2, "max")))
    lo = None if lo is None or not np.isfinite(lo).all() else float(np.asarray(lo).item())
    hi = None if hi is None or not np.isfinite(hi).all() else float(np.asarray(hi).item())
    return im.add(node, nn.Clip(lo, hi), [x])


def hard_sigmoid(im, node, attrs):
    x = im.dynamic(node)
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-7:
        return im.add(node, nn.HardSigmoid(), [x])
    # max(0, min(1, alpha * x + beta)), with ONNX's own alpha and beta
    y = im.add(node, nn.ConstantOp("mul", value=alpha), [x], suffix="_alpha")
    y = im.add(node, nn.ConstantOp("add", value=beta), [y], suffix="_beta")
    return im.add(node, nn.Clip(0.0, 1.0), [y])


def softmax(im, node, attrs):
    x = im.dynamic(node)
    ndim = len(x.shape)
    axis = int(attrs.get("axis", -1 if im.opset >= 13 else 1)) % ndim
    if im.opset < 13 and axis != ndim - 1:
        _fail(node, f"opset {im.opset} Softmax over the flattened axes {axis}.. is supported "
                    f"only for the last axis")
    if axis == 0:
        _fail(node, "Softmax over the batch axis is not supported")
    return im.add(node, nn.Softmax(axis), [x])


# ------------------------------------------------------------------ arithmetic

_BINARY = {"Add": ("add", nn.BroadcastAdd), "Sub": ("sub", nn.Sub), "Mul": ("mul", nn.Mul),
           "Div": ("div", nn.Div)}


def binary(im, node, attrs):
    op, cls = _BINARY[node.op_type]
    a, b = im.value(node, 0), im.value(node, 1)
    dyn = [v for v in (a, b) if hasattr(v, "source")]
    if len(dyn) == 2:
        if node.op_type == "Add" and a.shape == b.shape:
            return im.add(node, nn.Add(), [a, b])
        return im.add(node, cls(), [a, b])
    x, c = (a, b) if dyn[0] is a else (b, a)
    c = np.asarray(c, dtype=np.float64)
    if c.ndim > len(x.shape) or (c.ndim == len(x.shape) and c.shape[0] != 1):
        _fail(node, f"constant of shape {c.shape} would broadcast over the batch axis of "
                    f"{x.shape}")
    if c.ndim == len(x.shape):
        c = c[0]
    if c.size == 1:
        c = c.reshape(())
    return im.add(node, nn.ConstantOp(op, value=c, reverse=x is b), [x])


def gemm(im, node, attrs):
    a = im.dynamic(node)
    w = im.const(node, 1, "B (weight)")
    c = im.const(node, 2, "C (bias)", optional=True)
    if attrs.get("transA", 0):
        _fail(node, "transA=1 would transpose the batch axis")
    if len(a.shape) != 2 or w.ndim != 2:
        _fail(node, f"needs A (N, K) and a 2-D B, got {a.shape} and {w.shape}")
    w = w if attrs.get("transB", 0) else w.T           # (out, in), as Linear stores it
    w = w * float(attrs.get("alpha", 1.0))
    out, k = w.shape
    if k != a.shape[1]:
        _fail(node, f"B {w.shape} does not fit A {a.shape}")
    params = {"weight": w}
    if c is not None:
        c = np.asarray(c) * float(attrs.get("beta", 1.0))
        if c.size not in (1, out) or (c.ndim == 2 and c.shape[0] != 1):
            _fail(node, f"bias C of shape {c.shape} is not one value per output ({out})")
        params["bias"] = np.broadcast_to(c.reshape(-1), (out,)).copy()
    return im.add(node, nn.Linear(k, out, bias=c is not None), [a], params)


def matmul(im, node, attrs):
    a, b = im.value(node, 0), im.value(node, 1)
    if hasattr(a, "source") and hasattr(b, "source"):
        return im.add(node, nn.MatMul(), [a, b])
    if not hasattr(a, "source"):
        _fail(node, "a constant left operand (constant @ activation) is not supported")
    if b.ndim != 2 or len(a.shape) < 2 or a.shape[-1] != b.shape[0]:
        _fail(node, f"needs (N, ..., K) @ constant (K, M), got {a.shape} @ {b.shape}")
    return im.add(node, nn.Linear(b.shape[0], b.shape[1], bias=False), [a],
                  {"weight": b.T})


# ------------------------------------------------------------------ pooling

def _pool(im, node, attrs, kind):
    x = im.dynamic(node)
    if sum(1 for o in node.output if o) > 1:
        _fail(node, "the Indices output of MaxPool is not supported")
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    nd = len(kernel)
    strides, dilations, pads = _conv_geometry(node, attrs, x, kernel)
    if nd not in (1, 2):
        _fail(node, f"{nd}-D pooling is not supported (1-D and 2-D are)")
    ceil = bool(attrs.get("ceil_mode", 0))
    include_pad = bool(attrs.get("count_include_pad", 0))
    if kind == "avg" and any(d != 1 for d in dilations):
        _fail(node, f"dilations={dilations} in AveragePool are not supported")
    native = all(b == a and b <= k // 2 for (b, a), k in zip(pads, kernel))
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER") and any(s > 1 for s in strides) and (
            kind == "max" or include_pad):
        # strided SAME: the pads depend on the input size, so a PadSame layer works them
        # out at each call ("edge" is exact for max, zeros for an average counting them)
        x = im.add(node, nn.PadSame(kernel, strides, dilations, lower=auto == "SAME_LOWER",
                                    mode="edge" if kind == "max" else "constant"), [x],
                   suffix="_pad")
        padding = 0
    elif native:
        padding = tuple(b for b, _ in pads)
    else:
        # Asymmetric (SAME) or large padding as an explicit Pad layer first: "edge"
        # for max (a replicated border value never beats the window's own maximum),
        # zeros for an average that counts padding.
        if kind == "avg" and not include_pad:
            _fail(node, f"pads {pads} are asymmetric or over half the kernel {kernel}, "
                        f"which cconv supports for AveragePool only with "
                        f"count_include_pad=1")
        per_sample = ((0, 0),) + tuple(pads)
        x = im.add(node, nn.Pad(per_sample, "edge" if kind == "max" else "constant"), [x],
                   suffix="_pad")
        padding = 0
    if kind == "max":
        cls = nn.MaxPool2d if nd == 2 else nn.MaxPool1d
        layer = cls(kernel, stride=strides, padding=padding, dilation=dilations,
                    ceil_mode=ceil)
    else:
        cls = nn.AvgPool2d if nd == 2 else nn.AvgPool1d
        layer = cls(kernel, stride=strides, padding=padding, ceil_mode=ceil,
                    count_include_pad=include_pad)
    return im.add(node, layer, [x])


def max_pool(im, node, attrs):
    return _pool(im, node, attrs, "max")


def average_pool(im, node, attrs):
    return _pool(im, node, attrs, "avg")


def global_average_pool(im, node, attrs):
    x = im.dynamic(node)
    y = im.add(node, nn.GlobalAvgPool(), [x])
    # ONNX keeps the spatial axes (N, C, 1, 1); cconv's pool drops them
    return im.add(node, nn.Reshape((x.shape[1],) + (1,) * (len(x.shape) - 2)), [y],
                  suffix="_keepdims")


# ------------------------------------------------------------------ shapes

def _reshape_to(im, node, x, full_shape, layer_shape=None):
    """x reshaped to full_shape (batch first); the layer gets layer_shape (per sample,
    with 0 = copy the input's size and -1 = the rest) so that it holds at other sizes."""
    full_shape = tuple(int(d) for d in full_shape)
    if len(full_shape) < 1 or full_shape[0] != x.shape[0]:
        _fail(node, f"reshaping {x.shape} to {full_shape} would change the batch axis")
    if math.prod(full_shape) != math.prod(x.shape):
        _fail(node, f"cannot reshape {x.shape} to {full_shape}")
    if full_shape == x.shape:
        return x
    return im.add(node, nn.Reshape(layer_shape or full_shape[1:]), [x])


def _size_free(out, source):
    """Per-sample Reshape target for a squeeze/unsqueeze to out (batch first), source[j]
    the input axis that out axis j comes from (None: inserted): an axis that stays in
    place is copied (0), one other takes the rest (-1), so the layer holds at any size."""
    target, rest = [], False
    for j, (d, i) in enumerate(zip(out, source)):
        if j == 0:
            continue
        if i == j:
            target.append(0)
        elif i is not None and not rest:
            target.append(-1)
            rest = True
        else:
            target.append(d)
    return tuple(target)


def _reshape_like(im, node, x, raw, attrs):
    """(ref, per-sample like_axes) when the Reshape target's entries after the batch read
    sizes of another computed value ref through its Shape (a hybrid block's
    reshape(n, c, h, w) with h, w from the feature map); else None."""
    track = im.shape_of.get(node.input[1]) if len(node.input) > 1 else None
    if not track or len(track) != len(raw) or attrs.get("allowzero", 0) or \
            getattr(x, "batch_axis", 0):
        return None
    refs = {t[0].source: t[0] for t in track[1:] if t is not None and t[1] >= 1}
    if len(refs) != 1 or x.source in refs:
        return None
    (ref,) = refs.values()
    if getattr(ref, "batch_axis", 0):
        return None
    like_axes = []
    for t in track[1:]:
        if t is not None and t[0].source == ref.source and t[1] >= 1:
            like_axes.append(t[1] - 1)
        elif t is not None:
            return None   # the batch size of some value inside the per-sample target
        else:
            like_axes.append(None)
    return ref, like_axes


def reshape_target(node, shape, raw, attrs):
    """ONNX Reshape's target for an input of `shape`: 0 copies (unless allowzero), one
    -1 takes the rest; refused (naming the node) where the sizes do not fit."""
    target = list(raw)
    if not attrs.get("allowzero", 0):
        target = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(target)]
    if target.count(-1) > 1:
        _fail(node, f"shape {target} has more than one -1")
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        if known == 0 or math.prod(shape) % known:
            _fail(node, f"cannot reshape {shape} to {target}")
        target = [math.prod(shape) // known if d == -1 else d for d in target]
    return target


def reshape(im, node, attrs):
    x = im.dynamic(node)
    raw = [int(d) for d in im.const(node, 1, "shape").reshape(-1)]
    target = reshape_target(node, x.shape, raw, attrs)
    like = _reshape_like(im, node, x, raw, attrs)
    if like is not None:
        if len(target) < 1 or target[0] != x.shape[0]:
            _fail(node, f"reshaping {x.shape} to {target} would change the batch axis")
        ref, like_axes = like
        shape = [1 if a is not None else d for d, a in zip(raw[1:], like_axes)]
        return im.add(node, nn.ReshapeAs(shape, like_axes), [x, ref])
    # The file's own 0 (copy) and -1 (the rest) stay in the layer, as onnxruntime
    # resolves them per input size; a -1 in the batch slot leaves the others literal.
    layer_shape = None
    if len(raw) > 1 and raw[0] != -1 and not attrs.get("allowzero", 0) and (
            0 in raw[1:] or -1 in raw[1:]):
        layer_shape = tuple(raw[1:])
    given = im.reshape_targets.get(node.name)
    if given is not None:   # size-free form of a computed target; it must agree here too
        try:
            same = nn.Reshape(given).output_shape([x.shape[1:]]) == tuple(target[1:])
        except ValueError:
            same = False
        if not same:
            raise SizeDependentError(
                f"node {node.name!r} (Reshape): its target {target} for input {x.shape} is "
                f"computed from the input's size in a way cconv's Reshape (0: copy, -1: "
                f"the rest) cannot follow", node.name)
        layer_shape = given
    y = _reshape_to(im, node, x, target, layer_shape)
    if y is not x:
        im.reshapes[y.source] = (x.shape, tuple(target))
    return y


def flatten(im, node, attrs):
    x = im.dynamic(node)
    axis = int(attrs.get("axis", 1)) % max(len(x.shape), 1)
    if axis != 1:
        _fail(node, f"Flatten with axis={attrs.get('axis')} would merge the batch axis "
                    f"(only axis=1 is supported)")
    return im.add(node, nn.Flatten(), [x])


def _axes_of(im, node, attrs):
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    axes = im.const(node, 1, "axes", optional=True)
    return None if axes is None else [int(a) for a in axes.reshape(-1)]


def squeeze(im, node, attrs):
    x = im.dynamic(node)
    axes = _axes_of(im, node, attrs)
    ndim = len(x.shape)
    if axes is None:   # every size-1 axis, but never the batch axis
        axes = [i for i in range(1, ndim) if x.shape[i] == 1]
    axes = sorted({a % ndim for a in axes})
    if 0 in axes or any(x.shape[a] != 1 for a in axes):
        _fail(node, f"cannot squeeze axes {axes} of {x.shape} (batch axis or size > 1)")
    kept = [i for i in range(ndim) if i not in axes]
    out = [x.shape[i] for i in kept]
    return _reshape_to(im, node, x, out, _size_free(out, kept))


def unsqueeze(im, node, attrs):
    x = im.dynamic(node)
    axes = _axes_of(im, node, attrs)
    if axes is None:
        _fail(node, "needs axes")
    rank = len(x.shape) + len(axes)
    axes = sorted(a % rank for a in axes)
    if 0 in axes:
        _fail(node, "inserting an axis before the batch axis is not supported")
    shape, source = list(x.shape), list(range(len(x.shape)))
    for a in axes:
        shape.insert(a, 1)
        source.insert(a, None)
    return _reshape_to(im, node, x, shape, _size_free(shape, source))


def transpose(im, node, attrs):
    x = im.dynamic(node)
    ndim = len(x.shape)
    perm = [int(p) % ndim for p in attrs.get("perm", range(ndim - 1, -1, -1))]
    if perm[0] != 0:
        _fail(node, f"perm={perm} moves the batch axis")
    if perm == list(range(ndim)):
        return x
    return im.add(node, nn.Transpose(tuple(p - 1 for p in perm[1:])), [x])


def concat(im, node, attrs):
    xs = [im.value(node, i) for i in range(len(node.input))]
    xs = [v for v in xs if v is not None]
    if not all(hasattr(v, "source") for v in xs):
        _fail(node, "concatenating computed values with constants is not supported")
    ndim = len(xs[0].shape)
    axis = int(attrs["axis"]) % ndim
    if axis == 0:
        _fail(node, "concatenation along the batch axis is not supported")
    if len(xs) == 1:
        return xs[0]
    return im.add(node, nn.Concat(axis), xs)


def identity(im, node, attrs):
    return im.dynamic(node)


def cast(im, node, attrs):
    x = im.dynamic(node)
    if int(attrs["to"]) not in (1, 10, 11):   # float, float16, double: cconv computes in float
        _fail(node, f"casting a computed value to ONNX type {attrs['to']} (not a float) is "
                    f"not supported")
    return x


# ------------------------------------------------------------------ resampling, padding

def _same_floor(scale):
    """True when floor(n * scale) in float32 (onnxruntime) and float64 (nn.Resize) agree
    for every input size n up to 16383 (exact for 2, 0.5, 1.5; not for 1.8)."""
    sizes = np.arange(1, 1 << 14)
    s32 = np.float32(scale)
    return bool(np.array_equal(np.floor(sizes.astype(np.float32) * s32),
                               np.floor(sizes * float(s32))))


def _sizes_like(im, node, x, sizes):
    """The computed value whose spatial size Resize's `sizes` input is, or None.

    That is: sizes[:2] are x's batch and channels (read from x's shape or
    equal constants), sizes[2:] the sizes of axes 2.. of one value of x's rank,
    read from its Shape (tracked by the importer, see Importer._track_shape).
    """
    track = im.shape_of.get(node.input[3]) if len(node.input) > 3 else None
    ndim = len(x.shape)
    if not track or len(track) != ndim or getattr(x, "batch_axis", 0):
        return None
    values = [int(v) for v in np.reshape(sizes, -1)]
    for axis in (0, 1):
        t = track[axis]
        if t is None:
            if values[axis] != x.shape[axis]:
                return None
        elif t[1] != axis or t[0].shape[axis] != x.shape[axis]:
            return None
    sources = {id(t[0]) for t in track[2:] if t is not None}
    if len(sources) != 1 or any(t is None or t[1] != axis
                                for axis, t in enumerate(track[2:], start=2)):
        return None
    like = track[2][0]
    if len(like.shape) != ndim:
        return None
    return like


def resize(im, node, attrs):
    x = im.dynamic(node)
    upsample = node.op_type == "Upsample"
    mode = attrs.get("mode", "nearest")
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear"):
        _fail(node, f"mode={mode!r} is not supported (nearest, linear)")
    if "axes" in attrs:
        _fail(node, "the axes attribute is not supported")
    _check_default(node, attrs, "keep_aspect_ratio_policy", ("stretch",))
    if upsample or im.opset < 11:
        coord, nearest = "asymmetric", "floor"
        scales = (attrs.get("scales") if "scales" in attrs
                  else im.const(node, 1, "scales"))
        sizes = None
    else:
        coord = attrs.get("coordinate_transformation_mode", "half_pixel")
        nearest = attrs.get("nearest_mode", "round_prefer_floor")
        scales = im.const(node, 2, "scales", optional=True)
        sizes = im.const(node, 3, "sizes", optional=True)
    if coord == "tf_half_pixel_for_nn":
        coord = "half_pixel" if mode == "linear" else coord
    if coord not in nn.resize.COORDINATE_MODES:
        _fail(node, f"coordinate_transformation_mode={coord!r} is not supported "
                    f"({', '.join(nn.resize.COORDINATE_MODES)})")
    ndim = len(x.shape)
    like = _sizes_like(im, node, x, sizes) if sizes is not None else None
    if like is not None:
        # sizes = another value's spatial size (F.interpolate(size=skip.shape[2:])): the
        # output follows that value at every input size
        layer = nn.ResizeAs(mode=mode, coordinate_transformation_mode=coord,
                            nearest_mode=nearest)
        return im.add(node, layer, [x, like])
    if sizes is not None and np.size(sizes):
        sizes = [int(s) for s in np.reshape(sizes, -1)]
        if len(sizes) != ndim or sizes[:2] != list(x.shape[:2]):
            _fail(node, f"sizes {sizes} must keep batch and channels of {x.shape}")
        layer = nn.Resize(size=tuple(sizes[2:]), mode=mode,
                          coordinate_transformation_mode=coord, nearest_mode=nearest)
    elif scales is not None and np.size(scales):
        scales = [float(s) for s in np.reshape(scales, -1)]
        if len(scales) != ndim or scales[:2] != [1.0, 1.0]:
            _fail(node, f"scales {scales} must be 1 on batch and channels")
        # in float32, as onnxruntime computes it: 5 * 1.8f is 9, not 8.99999...
        size = tuple(math.floor(np.float32(n) * np.float32(s))
                     for n, s in zip(x.shape[2:], scales[2:]))
        # Scale alone (the output size follows the input) where cconv's float64
        # floor(n * s) equals that at every size; else this size only.
        free = all(_same_floor(s) for s in scales[2:])
        layer = nn.Resize(size=None if free else size, scale=tuple(scales[2:]), mode=mode,
                          coordinate_transformation_mode=coord, nearest_mode=nearest)
    else:
        _fail(node, "needs constant scales or sizes")
    return im.add(node, layer, [x])


def pad(im, node, attrs):
    x = im.dynamic(node)
    mode = attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        _fail(node, f"mode={mode!r} is not supported (constant, reflect, edge)")
    ndim = len(x.shape)
    if im.opset < 11:
        pads, value = list(attrs["pads"]), float(attrs.get("value", 0.0))
    else:
        pads = [int(p) for p in im.const(node, 1, "pads").reshape(-1)]
        v = im.const(node, 2, "constant_value", optional=True)
        value = 0.0 if v is None or not np.size(v) else float(np.asarray(v).reshape(-1)[0])
        axes = im.const(node, 3, "axes", optional=True)
        if axes is not None:
            full = [0] * (2 * ndim)
            axes = [int(a) % ndim for a in axes.reshape(-1)]
            for i, a in enumerate(axes):
                full[a], full[a + ndim] = pads[i], pads[i + len(axes)]
            pads = full
    if len(pads) != 2 * ndim:
        _fail(node, f"pads {pads} should have {2 * ndim} entries for input {x.shape}")
    if pads[0] or pads[ndim]:
        _fail(node, "padding the batch axis is not supported")
    per_sample = tuple((int(pads[i]), int(pads[i + ndim])) for i in range(1, ndim))
    like = _pad_like(im, node, x, per_sample)
    if like is not None:
        # pads computed from another value's shape (F.pad by skip.size() - x.size()):
        # the layer works them out from that value at every input size
        return im.add(node, nn.PadAs(mode, value), [x, like])
    if not any(b or a for b, a in per_sample):
        return x
    return im.add(node, nn.Pad(per_sample, mode, value), [x])


def _pad_like(im, node, x, per_sample):
    """The computed value whose spatial size per_sample takes x to, split as nn.PadAs does
    (UNet's d // 2 before, the rest after), where the pads are folded from that value's
    Shape (see Importer._track_deps); else None."""
    deps = im.shape_deps.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    for like in (deps or {}).values():
        if like.source == x.source or len(like.shape) != len(x.shape) or \
                getattr(like, "batch_axis", 0):
            continue
        try:
            if nn.PadAs.pairs(x.shape[1:], like.shape[1:]) == per_sample:
                return like
        except ValueError:
            continue
    return None


CONVERTERS = {
    "Conv": conv,
    "ConvTranspose": conv_transpose,
    "BatchNormalization": batch_norm,
    "Relu": _simple(nn.ReLU),
    "Sigmoid": _simple(nn.Sigmoid),
    "Tanh": _simple(nn.Tanh),
    "HardSwish": _simple(nn.HardSwish),
    "LeakyRelu": leaky_relu,
    "PRelu": prelu,
    "Clip": clip,
    "HardSigmoid": hard_sigmoid,
    "Softmax": softmax,
    "Add": binary, "Sub": binary, "Mul": binary, "Div": binary,
    "Gemm": gemm,
    "MatMul": matmul,
    "MaxPool": max_pool,
    "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool,
    "Reshape": reshape,
    "Flatten": flatten,
    "Squeeze": squeeze,
    "Unsqueeze": unsqueeze,
    "Transpose": transpose,
    "Concat": concat,
    "Identity": identity,
    "Dropout": identity,
    "Cast": cast,
    "Resize": resize,
    "Upsample": resize,
    "Pad": pad,
}

# the vision-model operators, and the batch-axis bookkeeping around every converter
from .converters_vision import extend as _extend_with_vision_ops

_extend_with_vision_ops(CONVERTERS)
