"""Import an ONNX model into a cconv.Graph.

The walk goes through the nodes in their (topological) order and keeps, for
every ONNX tensor, either a constant (numpy array: initializers, Constant
nodes, folded shape arithmetic) or a dynamic value (the cconv node or graph
input that produces it, with its full static shape, batch first). Constant
inputs of a node are folded; a node with a dynamic input becomes one or a few
cconv layers (see converters.py). Weights are attached after the graph is
built, so the graph records BatchNorm statistics as buffers like any other.
"""
import collections
import os
import re

import numpy as np
import onnx

import cconv

from .converters import CONVERTERS
from .converters_vision import restore_batch_axis
from .errors import OnnxImportError, tensor_to_array
from .folding import CONSTANT_ONLY, FOLDERS, attributes, fold
from .report import describe, obstacles

__all__ = [
    "SUPPORTED_OPS",
    "import_onnx",
    "load_onnx_weights",
    "read_model",
    "unsupported_operators",
]

#: the batch size a symbolic batch axis is traced with (see Importer._inputs)
SYMBOLIC_BATCH = 7

SUPPORTED_OPS = frozenset(CONVERTERS) | frozenset(FOLDERS) | {"Shape"}


class Dynamic:
    """A tensor computed by the network: `source` is the cconv node or input producing it."""
    __slots__ = ("shape", "source")

    def __init__(self, source, shape):
        self.source = source
        self.shape = tuple(int(d) for d in shape)

    def __repr__(self):
        return f"Dynamic({self.source!r}, {self.shape})"


def read_model(source):
    """An onnx.ModelProto from a path, bytes or a ModelProto; OnnxImportError when unreadable."""
    if isinstance(source, onnx.ModelProto):
        model = source
    elif isinstance(source, (bytes, bytearray)):
        try:
            model = onnx.load_from_string(bytes(source))
        except Exception as exc:
            raise OnnxImportError(f"cannot parse the bytes given as an ONNX model: {exc}") from exc
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no ONNX model file at {path!r}")
        try:
            model = onnx.load(path)
        except Exception as exc:
            raise OnnxImportError(f"cannot parse {path!r} as an ONNX model (truncated or "
                                  f"not ONNX?): {type(exc).__name__}: {exc}") from exc
    if not model.HasField("graph") or not model.graph.node:
        raise OnnxImportError("the ONNX model has no graph nodes (empty or not an ONNX "
                              "model)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise OnnxImportError(f"the ONNX model is malformed: {exc}") from exc
    return model


def _opset(model):
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise OnnxImportError("the ONNX model imports no version of the default operator set")


def unsupported_operators(model):
    """{op_type: [node names]} of every node cconv cannot import (empty when all are fine)."""
    found = collections.defaultdict(list)
    for i, node in enumerate(model.graph.node):
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if op not in SUPPORTED_OPS:
            found[op].append(node.name or f"#{i}")
    return dict(found)


def _check_supported(model):
    bad = obstacles(model, CONVERTERS, FOLDERS)
    if bad:
        raise OnnxImportError(
            f"the ONNX model uses {len(bad)} operator(s) that cconv cannot import as used; "
            f"nothing was imported:\n" + "\n".join(describe(bad))
            + f"\nsupported: {', '.join(sorted(SUPPORTED_OPS))}")


def _tensor_dims(value_info):
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


class Importer:
    """One import: the walk's state, and the helpers converters call."""

    def __init__(self, model, input_shapes=None):
        self.model = model
        self.opset = _opset(model)
        self.values = {}              # ONNX tensor name -> np.ndarray | Dynamic
        self.graph = None
        self.weights = {}             # cconv node name -> {param: array}
        self._names = set()
        self._input_shapes = input_shapes or {}
        self.batch = 1

    # ---- naming
    def unique_name(self, hint):
        base = re.sub(r"[^0-9A-Za-z_]+", "_", hint or "").strip("_") or "node"
        name, i = base, 1
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    # ---- values
    def value(self, node, index):
        """Input `index` of node: an array, a Dynamic, or None for an absent optional one."""
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.values:
            raise OnnxImportError(f"node {node.name!r} ({node.op_type}) reads {name!r}, which "
                                  f"no earlier node, initializer or input defines")
        return self.values[name]

    def const(self, node, index, what, optional=False):
        """Input `index` as a constant array; a clear error when it is computed."""
        v = self.value(node, index)
        if v is None:
            if optional:
                return None
            raise OnnxImportError(f"node {node.name!r} ({node.op_type}) lacks its {what} "
                                  f"input")
        if isinstance(v, Dynamic):
            raise OnnxImportError(f"node {node.name!r} ({node.op_type}): the {what} "
                                  f"({node.input[index]!r}) must be a constant (initializer "
                                  f"or constant subgraph); computed {what}s are not supported")
        return v

    def dynamic(self, node, index=0):
        v = self.value(node, index)
        if not isinstance(v, Dynamic):
            raise OnnxImportError(f"node {node.name!r} ({node.op_type}): input "
                                  f"{node.input[index]!r} must be computed by the network, "
                                  f"not a constant")
        return v

    # ---- emitting layers
    def add(self, node, layer, inputs, params=None, suffix=""):
        """Add a cconv node running layer on inputs (Dynamic values); returns its Dynamic."""
        name = self.unique_name((node.name or node.op_type) + suffix)
        try:
            out = layer.output_shape([v.shape[1:] for v in inputs])
        except ValueError as exc:
            raise OnnxImportError(f"node {node.name!r} ({node.op_type}): {exc}") from exc
        self.graph.add(name, layer, inputs=[v.source for v in inputs])
        if params:
            self.weights[name] = params
        return Dynamic(name, (self.batch,) + tuple(out))

    # ---- the walk
    def _inputs(self):
        graph = self.model.graph
        inits = {t.name for t in graph.initializer}
        inputs = [vi for vi in graph.input if vi.name not in inits]
        if not inputs:
            raise OnnxImportError("the ONNX graph has no (non-initializer) input")
        unknown = set(self._input_shapes) - {vi.name for vi in inputs}
        if unknown:
            raise OnnxImportError(f"input_shapes names {sorted(unknown)}, which are not "
                                  f"inputs of the model ({[vi.name for vi in inputs]})")
        shapes, batches = [], set()
        for vi in inputs:
            dims = _tensor_dims(vi)
            given = self._input_shapes.get(vi.name)
            if given is not None:
                per_sample = tuple(int(d) for d in given)
            elif dims is None or len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
                raise OnnxImportError(
                    f"input {vi.name!r} has shape {dims} (None: unknown): cconv needs a "
                    f"batch axis and known per-sample sizes; pass input_shapes="
                    f"{{{vi.name!r}: (C, H, W)}}")
            else:
                per_sample = tuple(dims[1:])
            if dims and dims[0]:
                batches.add(dims[0])
            shapes.append(per_sample)
        # A fixed batch keeps its value, so that literal reshape targets like
        # (1, -1) in a batch-1 export resolve. A symbolic batch is traced with a
        # size no exporter writes literally: shapes computed from it (Shape ->
        # Gather -> Concat) carry it and resolve, while a literal batch entry
        # (which onnxruntime too would honour only at that size) is refused.
        self.batch = batches.pop() if len(batches) == 1 else SYMBOLIC_BATCH
        return inputs, shapes

    def run(self):
        model = self.model
        if any(not node.name for node in model.graph.node):
            model = onnx.ModelProto()   # name the nodes on a copy, not the caller's model
            model.CopyFrom(self.model)
            self.model = model
        _check_supported(model)
        inputs, shapes = self._inputs()
        names = [self.unique_name(vi.name) for vi in inputs]
        self.graph = cconv.Graph(inputs=names)
        for vi, name, shape in zip(inputs, names, shapes):
            self.values[vi.name] = Dynamic(name, (self.batch,) + shape)
        for t in model.graph.initializer:
            self.values[t.name] = tensor_to_array(t)
        for i, node in enumerate(model.graph.node):
            if not node.name:
                node.name = f"{node.op_type}_{i}"
            self._convert(node)
        outputs = []
        for vi in model.graph.output:
            v = self.values.get(vi.name)
            if not isinstance(v, Dynamic):
                raise OnnxImportError(f"graph output {vi.name!r} is "
                                      f"{'undefined' if v is None else 'a constant'}; "
                                      f"cconv graphs output computed values only")
            outputs.append(restore_batch_axis(self, v).source)
        if not self.graph.nodes:
            raise OnnxImportError("the ONNX model computes nothing from its input")
        self.graph.set_outputs(outputs)
        self.graph.build(shapes if len(shapes) > 1 else shapes[0], seed=0)
        if all(vi.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE for vi in inputs):
            self.graph.astype(np.float64)   # a float64 model computes in float64
        self._attach_weights()
        return self.graph

    def _convert(self, node):
        args = [self.value(node, i) for i in range(len(node.input))]
        present = [a for a in args if a is not None]
        if node.op_type in FOLDERS and (node.op_type == "Constant" or present and all(
                not isinstance(a, Dynamic) for a in present)):
            outs = fold(node, args, self.opset)
        elif node.op_type == "Shape":
            outs = [self._shape(node, args[0])]
        elif node.op_type in CONVERTERS:
            result = CONVERTERS[node.op_type](self, node, attributes(node))
            outs = result if isinstance(result, list) else [result]
        elif node.op_type in CONSTANT_ONLY:
            raise OnnxImportError(f"node {node.name!r} ({node.op_type}) is supported on "
                                  f"constants (shape arithmetic) only, but reads a value "
                                  f"computed by the network")
        else:
            raise OnnxImportError(f"node {node.name!r} ({node.op_type}) has constant inputs "
                                  f"only, and cconv cannot evaluate it at import")
        for name, value in zip(node.output, outs):
            if name:
                self.values[name] = value

    def _shape(self, node, x):
        if x is None:
            raise OnnxImportError(f"Shape node {node.name!r} lacks its input")
        shape = np.array(x.shape if isinstance(x, Dynamic) else np.shape(x), np.int64)
        attrs = attributes(node)
        return shape[attrs.get("start", 0):attrs.get("end", len(shape))]

    def _attach_weights(self):
        for name, params in self.weights.items():
            layer = self.graph[name]
            for p, array in params.items():
                target = layer.params.get(p)
                array = np.asarray(array)
                # a corrupt model can give a weight the layer lacks or cannot take
                # (found by bench/fuzz_loaders.py: KeyError 'weight')
                if target is None or array.size != target.size:
                    have = None if target is None else target.shape
                    raise OnnxImportError(f"node {name!r}: weight {p!r} of shape "
                                          f"{array.shape} does not fit the layer ({have})")
                array = array.astype(target.dtype, copy=False)
                if array.shape != target.shape:
                    array = array.reshape(target.shape)   # e.g. PReLU slope (C, 1, 1)
                target[...] = array


def import_onnx(source, input_shapes=None):
    """A built cconv.Graph computing the ONNX model `source` (path, bytes or ModelProto).

    input_shapes: {input name: per-sample shape} for inputs whose ONNX shape is
    not fully known. Before importing anything, every unsupported operator of
    the model is listed in one OnnxImportError.
    """
    model = read_model(source)
    return Importer(model, input_shapes).run()


def load_onnx_weights(path):
    """The floating-point initializers and Constant tensors of an ONNX file, by ONNX name.

    The weight-loader entry point (`cconv.plugins.find_weight_loader("m.onnx")`);
    `load_onnx_weights.load_graph(path)` imports the whole network.
    """
    model = read_model(path)
    out = {}
    for t in model.graph.initializer:
        a = tensor_to_array(t)
        if a.dtype.kind == "f":
            out[t.name] = a
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            value = attributes(node).get("value")
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                out[node.output[0]] = value
    return out
