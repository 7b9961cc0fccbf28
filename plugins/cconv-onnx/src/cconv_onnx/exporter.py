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
from .exporters import BUILTIN_EXPORTERS

__all__ = ["EXPORTERS", "MIN_OPSET", "ExportContext", "ExportNode", "export_onnx",
           "exporter_for", "free_axes", "register_exporter", "to_onnx"]

#: Resize with sizes of spatial axes only, Squeeze/Unsqueeze axes as inputs: opset 13
MIN_OPSET = 13

#: layer type_name -> function(ctx, node): the built-ins (exporters.py), then plugins'
EXPORTERS = dict(BUILTIN_EXPORTERS)


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
        # np.array, not np.ascontiguousarray: that makes a 0-d scalar 1-d (Gather's index)
        self.initializers.append(numpy_helper.from_array(
            np.array(value, dtype=dtype, order="C"), name))
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

    The axes net.input_spec leaves free, probed by building the shapes again with
    them doubled (doubling keeps the divisibility that strided nets need), for
    the output axes that change with them.
    """
    base = [tuple(s) for s in net.input_shapes]
    spec = getattr(net, "input_spec", None)   # dims a layer or set_input_spec fixes
    candidates = [(i, a) for i, s in enumerate(base) for a in range(1, len(s))
                  if spec is None or spec[net.input_names[i]][a + 1] is None]

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
    if not dynamic_axes and (isinstance(batch_size, bool) or
                             not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    order = net.topological_order()
    shapes = net.infer_shapes(net.input_shapes)
    ctx = ExportContext(opset)
    for name in net.input_names:
        ctx.claim(name)
    for name in order:
        ctx.claim(name)
    problems, no_exporter = [], set()   # every node's problem, for one error
    for name in order:
        gnode = net.nodes[name]
        export = exporter_for(gnode.layer)
        if export is None:
            no_exporter.add(gnode.layer.type_name)
            problems.append(f"node {name!r} ({gnode.layer.type_name}): no ONNX exporter for "
                            f"this layer type")
            continue
        node = ExportNode(name, gnode.layer, list(gnode.inputs),
                          [shapes[s] for s in gnode.inputs], shapes[name])
        before = len(ctx.nodes)
        try:
            export(ctx, node)
        except OnnxExportError as exc:
            problems.append(str(exc))
            continue
        if not any(name in n.output for n in ctx.nodes[before:]):
            problems.append(f"node {name!r} ({gnode.layer.type_name}): its exporter "
                            f"wrote no ONNX node with output {name!r}")
    if problems:
        hint = (f" (layer types without an exporter: {', '.join(sorted(no_exporter))}; a "
                f"plugin registers one with cconv_onnx.register_exporter)"
                if no_exporter else "")
        raise OnnxExportError(f"cannot export {len(problems)} node(s), nothing was "
                              f"written: " + "; ".join(problems) + hint)

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
