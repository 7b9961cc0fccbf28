"""Export a built cconv graph to ONNX: one small function per layer type.

Every cconv node becomes one or a few ONNX nodes whose last output carries
the cconv node's name, so graph inputs, outputs and intermediate values keep
their cconv names; parameters become initializers named as
`net.named_parameters()` names them ("conv1.weight"). The model is built in
memory, checked with `onnx.checker` (shape inference included) and only then
written, atomically.

An exporter is `function(ctx, node)`: it reads `node.layer`, `node.inputs`
(ONNX tensor names) and `node.input_shapes` (per-sample, as built) and emits
ONNX nodes through `ctx`, the last one writing `node.name`. Plugins add
exporters for their own layers with `register_exporter` (or give the layer
class a `to_onnx(ctx, node)` method); see docs/onnx.md.
"""
import typing

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import OnnxExportError

__all__ = ["EXPORTERS", "MIN_OPSET", "ExportContext", "ExportNode", "export_onnx",
           "exporter_for", "free_axes", "register_exporter", "to_onnx"]

#: Resize with sizes of spatial axes only, Squeeze/Unsqueeze axes as inputs: opset 13
MIN_OPSET = 13

#: layer type_name -> function(ctx, node); built-ins below, plugins via register_exporter
EXPORTERS = {}


def register_exporter(type_name, function=None, *, override=False):
    """Register `function(ctx, node)` as the ONNX exporter of layer type `type_name`.

    Usable as a decorator (`@register_exporter("Swish")`). A second exporter
    for the same type is an error unless override=True (e.g. to replace a
    built-in's).
    """
    if not isinstance(type_name, str) or not type_name:
        raise TypeError(f"type_name must be a layer's non-empty type_name string, "
                        f"got {type_name!r}")

    def add(fn):
        if not callable(fn):
            raise TypeError(f"the exporter for {type_name!r} must be callable, got {fn!r}")
        old = EXPORTERS.get(type_name)
        if old is not None and old is not fn and not override:
            raise ValueError(f"an ONNX exporter for layer type {type_name!r} is already "
                             f"registered ({_qualname(old)}); pass override=True to "
                             f"replace it")
        EXPORTERS[type_name] = fn
        return fn
    return add if function is None else add(function)


def _qualname(fn):
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def exporter_for(layer):
    """The exporter of this layer: a registered one, else its class's to_onnx method, else None."""
    fn = EXPORTERS.get(layer.type_name)
    if fn is not None:
        return fn
    method = getattr(type(layer), "to_onnx", None)
    if callable(method):
        return lambda ctx, node: method(node.layer, ctx, node)
    return None


class ExportNode(typing.NamedTuple):
    """One cconv node as an exporter sees it."""
    name: str            # the cconv node name: the ONNX name of its output
    layer: object
    inputs: list         # ONNX tensor names of its inputs
    input_shapes: list   # per-sample shapes (batch excluded), as the net was built
    output_shape: tuple


class ExportContext:
    """What exporters emit through: nodes, initializers, fresh names."""

    def __init__(self, opset):
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self.pinned = []          # reasons why spatial axes cannot stay dynamic
        self._names = set()
        self._counter = 0

    def claim(self, name):
        """Reserve a tensor name that must be exactly this (a cconv node or input name)."""
        self._names.add(name)
        return name

    def fresh(self, hint):
        """A new tensor name starting with hint."""
        name = hint
        while name in self._names:
            self._counter += 1
            name = f"{hint}_{self._counter}"
        self._names.add(name)
        return name

    def add(self, op_type, inputs, output=None, **attrs):
        """Append ONNX node op_type(inputs) -> output (a fresh name when None); returns output.

        An input given as "" is an omitted optional input, as ONNX writes it.
        """
        output = output or self.fresh(f"{inputs[0]}/{op_type}")
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), [output],
                                           name=self.fresh(f"{output}:{op_type}"), **attrs))
        return output

    def const(self, value, hint, dtype=np.float32):
        """An initializer holding value (float32 by default; np.int64 for shapes, axes, pads)."""
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(
            np.ascontiguousarray(np.asarray(value, dtype=dtype)), name))
        return name

    def param(self, node, pname, shape=None):
        """The layer's parameter pname as a float32 initializer named "<node>.<pname>"."""
        value = np.asarray(node.layer.params[pname], dtype=np.float32)
        if shape is not None:
            value = value.reshape(shape)
        name = self.claim(f"{node.name}.{pname}")
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def unsqueeze(self, name, axes, output=None):
        """name with size-1 axes inserted at axes (batch-inclusive)."""
        return self.add("Unsqueeze", [name, self.const(axes, f"{name}/axes", np.int64)],
                        output)

    def pin(self, node, reason):
        """Keep the inputs' spatial axes fixed: node's ONNX form holds at the built size only."""
        self.pinned.append(f"node {node.name!r} ({node.layer.type_name}): {reason}")


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


def pad(ctx, node):
    layer = node.layer
    pads = ctx.const(_onnx_pads(((0, 0),) + layer.pads), f"{node.name}/pads", np.int64)
    inputs = [node.inputs[0], pads]
    if layer.mode == "constant":
        inputs.append(ctx.const(layer.value, f"{node.name}/value"))
    ctx.add("Pad", inputs, node.name, mode=layer.mode)


_BUILTINS = {
    "Conv1d": conv, "Conv2d": conv, "ConvTranspose2d": conv_transpose,
    "Linear": linear,
    "MaxPool1d": max_pool, "MaxPool2d": max_pool,
    "AvgPool1d": avg_pool, "AvgPool2d": avg_pool, "GlobalAvgPool": global_avg_pool,
    "ReLU": _unary("Relu"), "Sigmoid": _unary("Sigmoid"), "Tanh": _unary("Tanh"),
    "LeakyReLU": _unary("LeakyRelu", alpha=lambda layer: layer.negative_slope),
    "HardSigmoid": _unary("HardSigmoid", alpha=lambda layer: 1 / 6, beta=lambda layer: 0.5),
    "Softmax": _unary("Softmax", axis=lambda layer: layer.axis),
    "PReLU": prelu, "HardSwish": hard_swish, "Clip": clip,
    "Flatten": flatten, "Reshape": reshape, "Transpose": transpose, "Dropout": identity,
    "BatchNorm1d": batch_norm, "BatchNorm2d": batch_norm,
    "Add": add, "Concat": concat, "BroadcastAdd": _binary("Add"), "Sub": _binary("Sub"),
    "Mul": _binary("Mul"), "Div": _binary("Div"), "MatMul": _binary("MatMul"),
    "ConstantOp": constant_op, "Resize": resize, "Pad": pad,
}
for _type_name, _fn in _BUILTINS.items():
    register_exporter(_type_name, _fn)


# ------------------------------------------------------------------ dynamic axes

def _walks(net, shapes):
    """Every value's per-sample shape for these input shapes, or None where the net refuses."""
    try:
        return net.infer_shapes(shapes)
    except ValueError:
        return None


def free_axes(net):
    """({input index: axes that may change size}, shapes of the probe walk): axes (batch
    axis 0 included in the count) after the channel axis that the net's layers do not pin.

    Probed by building the shapes again with those axes doubled (doubling keeps the
    divisibility that strided nets need). Once built graphs record which per-sample
    dimensions are fixed, this reads that record instead.
    """
    base = [tuple(s) for s in net.input_shapes]
    candidates = [(i, a) for i, s in enumerate(base) for a in range(1, len(s))]

    def doubled(axes):
        return [tuple(d * 2 if (i, a) in axes else d for a, d in enumerate(s))
                for i, s in enumerate(base)]

    if not candidates:
        return {}, None
    chosen = set(candidates)
    probe = _walks(net, doubled(chosen))
    if probe is None:
        chosen = {c for c in candidates if _walks(net, doubled({c})) is not None}
        probe = _walks(net, doubled(chosen)) if chosen else None
        if probe is None:
            return {}, None
    out = {}
    for i, a in chosen:
        out.setdefault(i, set()).add(a + 1)   # batch-inclusive, as ONNX counts
    return out, probe


# ------------------------------------------------------------------ the model

def _value_info(name, per_sample, batch, dynamic_dims):
    """A float32 tensor (batch,) + per_sample; dims in dynamic_dims get symbolic names."""
    dims = [batch] + [f"{name}_dim{a + 1}" if a + 1 in dynamic_dims else int(d)
                      for a, d in enumerate(per_sample)]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _check_net(net):
    if not hasattr(net, "topological_order") or not hasattr(net, "input_shapes"):
        raise TypeError(f"export_onnx takes a cconv.Graph or Sequential, got "
                        f"{type(net).__name__}")
    if not net.built or net.input_shapes is None:
        raise ValueError("export_onnx: build the net first (net.build(input_shape)), so "
                         "that its shapes and weights are known")


def _check_opset(opset):
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or \
            not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {newest} (this "
                         f"onnx package's newest), got {opset!r}")
    return int(opset)


def to_onnx(net, opset=17, dynamic_axes=True, batch_size=1, graph_name=None):
    """The onnx.ModelProto computing `net` in float32 (nothing is written).

    dynamic_axes: True keeps the batch axis symbolic ("batch") and every spatial
    axis the net's layers leave free ("<input>_dim<k>"); "batch" keeps only the
    batch axis symbolic; False fixes every axis, the batch at batch_size.
    Raises OnnxExportError listing every node that cannot be exported.
    """
    _check_net(net)
    opset = _check_opset(opset)
    if dynamic_axes not in (True, False, "batch"):
        raise ValueError(f"dynamic_axes must be True, False or 'batch', got {dynamic_axes!r}")
    order = net.topological_order()
    shapes = net.infer_shapes(net.input_shapes)
    ctx = ExportContext(opset)
    for name in net.input_names:
        ctx.claim(name)
    for name in order:
        ctx.claim(name)
    missing = [(n, net.nodes[n].layer.type_name) for n in order
               if exporter_for(net.nodes[n].layer) is None]
    if missing:
        listing = "; ".join(f"{n!r} ({t})" for n, t in missing)
        types = sorted({t for _, t in missing})
        raise OnnxExportError(
            f"cannot export {len(missing)} node(s), no ONNX exporter for layer type(s) "
            f"{', '.join(types)}: {listing}; nothing was written (a plugin registers "
            f"one with cconv_onnx.register_exporter)")
    problems = []
    for name in order:
        gnode = net.nodes[name]
        node = ExportNode(name, gnode.layer, list(gnode.inputs),
                          [shapes[s] for s in gnode.inputs], shapes[name])
        before = len(ctx.nodes)
        try:
            exporter_for(gnode.layer)(ctx, node)
        except OnnxExportError as exc:
            problems.append(str(exc))
            continue
        if not any(name in n.output for n in ctx.nodes[before:]):
            problems.append(f"node {name!r} ({gnode.layer.type_name}): its exporter "
                            f"wrote no ONNX node with output {name!r}")
    if problems:
        raise OnnxExportError(f"cannot export {len(problems)} node(s); nothing was "
                              f"written: " + "; ".join(problems))

    free, probe = ({}, None)
    if dynamic_axes is True and not ctx.pinned:
        free, probe = free_axes(net)
    batch = "batch" if dynamic_axes else int(batch_size)
    inputs = [_value_info(n, s, batch, free.get(i, ()))
              for i, (n, s) in enumerate(zip(net.input_names, net.input_shapes))]
    outputs = []
    for src in net.output_names:
        # output dims that changed with the doubled inputs are symbolic too
        varying = set() if probe is None else \
            {a + 1 for a, (d, e) in enumerate(zip(shapes[src], probe[src])) if d != e}
        out = src
        if src in net.input_names:   # an input returned as is: ONNX needs its own name
            out = ctx.add("Identity", [src], ctx.fresh(f"{src}_output"))
        outputs.append(_value_info(out, shapes[src], batch, varying))
    graph = helper.make_graph(ctx.nodes, graph_name or type(net).__name__, inputs, outputs,
                              initializer=ctx.initializers)
    if dynamic_axes is True and ctx.pinned:   # say why the spatial axes are fixed
        graph.doc_string = "spatial axes fixed by " + "; ".join(ctx.pinned)
    model = helper.make_model(graph, producer_name="cconv",
                              opset_imports=[helper.make_opsetid("", opset)])
    model.producer_version = _cconv_version()
    model.ir_version = min(model.ir_version, _IR_FOR_OPSET.get(opset, model.ir_version))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:   # an exporter bug, not the user's: say so
        raise OnnxExportError(f"the exported model fails onnx.checker (a cconv-onnx "
                              f"exporter bug, please report): {exc}") from exc
    return model


#: the oldest IR version that carries each opset, so older onnxruntimes load the file
_IR_FOR_OPSET = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


def _cconv_version():
    import cconv

    return str(cconv.__version__)


def export_onnx(net, path, opset=17, dynamic_axes=True, batch_size=1):
    """Write `net` as an ONNX model to path, atomically; returns the onnx.ModelProto.

    See to_onnx for the arguments. Nothing is written when any node cannot be
    exported; an existing file at path is replaced only by a complete model.
    """
    from cconv.io import atomic_write

    model = to_onnx(net, opset=opset, dynamic_axes=dynamic_axes, batch_size=batch_size)
    atomic_write(path, model.SerializeToString())
    return model
