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
import math
import os
import re

import numpy as np
import onnx

import cconv

from .converters import CONVERTERS
from .errors import OnnxImportError, SizeDependentError, tensor_to_array
from .folding import CONSTANT_ONLY, FOLDERS, FoldBudget, attributes, fold
from .layout import restore_batch_axis
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
#: sizes an open (symbolic) per-sample dim is traced with, in order, until one imports
PLACEHOLDER_SIZES = (64, 224, 32, 128, 512, 2048, 8192, 16384)   # long 1-D inputs last
#: offsets from the traced size at which the import is repeated, to check that no
#: layer depends on the size (parity, divisibility); two that import are enough
CHECK_OFFSETS = (1, 2, 8, 32, 64)
CHECKS = 2
#: computed Reshape targets made size-free (and traced again) per import, at most
MAX_REPAIRS = 32

#: elements per sample of any value (2**31 float32: 8 GiB for one sample)
MAX_ACTIVATION = 2**31

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

    def __init__(self, model, input_shapes=None, arrays=None, reshape_targets=None):
        self.model = model
        self._arrays = {} if arrays is None else arrays   # initializers, shared by traces
        # ONNX Reshape node -> per-sample target (0/-1) to use instead of its folded one
        self.reshape_targets = reshape_targets or {}
        self.reshapes = {}       # cconv node -> (input shape, full target) of each Reshape
        self.onnx_node_of = {}   # cconv node -> the ONNX node it came from
        self.opset = _opset(model)
        self.values = {}              # ONNX tensor name -> np.ndarray | Dynamic
        # ONNX tensor name -> per element of a folded shape vector, (Dynamic, axis) when
        # it is that value's size along that axis (Shape -> Gather/Slice -> Concat)
        self.shape_of = {}
        # ONNX tensor name -> the computed values whose Shape a folded value was made from
        # (any arithmetic): converters try size rules on them (UNet's pad to a skip's size)
        self.shape_deps = {}
        self.graph = None
        self.weights = {}             # cconv node name -> {param: array}
        self._names = set()
        self._input_shapes = input_shapes or {}
        self.batch = 1
        self.fold_budget = FoldBudget(model.ByteSize())

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
        if math.prod(out) > MAX_ACTIVATION:   # nonsense geometry, refused while it is cheap
            raise OnnxImportError(f"node {node.name!r} ({node.op_type}): its output "
                                  f"{tuple(out)} has {math.prod(out)} elements per sample, "
                                  f"more than {MAX_ACTIVATION}")
        self.graph.add(name, layer, inputs=[v.source for v in inputs])
        self.onnx_node_of[name] = node.name
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
                    f"batch axis and the number of per-sample axes; pass input_shapes="
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
        """The built graph with the model's weights."""
        self.walk()
        return self.build()

    def build(self):
        """Build the walked graph (in float64 for a float64 model) and attach the weights."""
        self.graph.build(self.shapes if len(self.shapes) > 1 else self.shapes[0], seed=0)
        if self.float64:
            self.graph.astype(np.float64)
        self._attach_weights()
        return self.graph

    def walk(self):
        """Convert every node into the (unbuilt) graph; weights wait in self.weights."""
        model = self.model = _named(self.model)
        _check_supported(model)
        inputs, shapes = self._inputs()
        names = [self.unique_name(vi.name) for vi in inputs]
        self.input_names = [vi.name for vi in inputs]   # ONNX names, in the graph's order
        self.graph = cconv.Graph(inputs=names)
        for vi, name, shape in zip(inputs, names, shapes):
            self.values[vi.name] = Dynamic(name, (self.batch,) + shape)
        for t in model.graph.initializer:
            array = self._arrays.get(t.name)
            if array is None:
                array = self._arrays[t.name] = tensor_to_array(t)
            self.values[t.name] = array
        for node in model.graph.node:
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
        # a float64 model computes in float64 (see _build)
        self.float64 = all(vi.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
                           for vi in inputs)
        self.shapes = shapes
        return self

    def signature(self):
        """What the walk made, to compare traces at two sizes: per node its name, type,
        config, wiring and weights."""
        return [(name, layer.type_name, layer.get_config(), list(self.graph.nodes[name].inputs),
                 self.weights.get(name, {})) for name, layer in self.graph.layers()] + \
            [("outputs", None, None, self.graph.output_names, {})]

    def _convert(self, node):
        args = [self.value(node, i) for i in range(len(node.input))]
        present = [a for a in args if a is not None]
        if node.op_type in FOLDERS and (node.op_type == "Constant" or present and all(
                not isinstance(a, Dynamic) for a in present)):
            outs = fold(node, args, self.opset, self.fold_budget)
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
        self._track_shape(node, args, outs)
        self._track_deps(node, args, outs)

    def _track_deps(self, node, args, outs):
        """Record, per folded output, the computed values whose shapes it came from."""
        deps = {}
        if node.op_type == "Shape" and isinstance(args[0], Dynamic):
            deps[args[0].source] = args[0]
        for name in node.input:
            deps.update(self.shape_deps.get(name, {}) if name else {})
        if deps:
            for name, value in zip(node.output, outs):
                if name and isinstance(value, np.ndarray):
                    self.shape_deps[name] = deps

    def _track_shape(self, node, args, outs):
        """Record which folded shape entries are sizes of which computed value."""
        op, out = node.op_type, node.output[0] if node.output else ""
        if not out or not isinstance(outs[0], np.ndarray) or outs[0].ndim > 1:
            return
        n = int(outs[0].size)
        src = [self.shape_of.get(name) if name else None for name in node.input]
        track = None
        if op == "Shape" and isinstance(args[0], Dynamic) and not getattr(args[0],
                                                                            "batch_axis", 0):
            attrs = attributes(node)
            axes = list(range(len(args[0].shape)))[attrs.get("start", 0):
                                                    attrs.get("end", len(args[0].shape))]
            track = [(args[0], a) for a in axes]
        elif op in ("Cast", "Identity", "Squeeze", "Unsqueeze", "Reshape") and src[0]:
            track = src[0]
        elif op == "Gather" and src[0] and int(attributes(node).get("axis", 0)) == 0 and \
                isinstance(args[1], np.ndarray):
            idx = [int(i) for i in np.reshape(args[1], -1)]
            if all(-len(src[0]) <= i < len(src[0]) for i in idx):
                track = [src[0][i] for i in idx]
        elif op == "Slice" and src[0] and all(isinstance(a, np.ndarray) for a in args[1:]
                                              if a is not None):
            positions = np.arange(len(src[0]))
            try:
                picked = fold(node, [positions] + list(args[1:]), self.opset, self.fold_budget)
                track = [src[0][int(i)] for i in np.reshape(picked[0], -1)]
            except Exception:   # noqa: BLE001 - no provenance, the folded value stands
                track = None
        elif op == "Concat" and any(src):
            track = []
            for a, t in zip(args, src):
                track += t if t else [None] * int(np.size(a))
        if track is not None and len(track) == n and any(track):
            self.shape_of[out] = track

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


def _named(model):
    """model with every node named (on a copy, not the caller's model, when one lacks it)."""
    if all(node.name for node in model.graph.node):
        return model
    named = onnx.ModelProto()
    named.CopyFrom(model)
    for i, node in enumerate(named.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    return named


def import_onnx(source, input_shapes=None):
    """A built cconv.Graph computing the ONNX model `source` (path, bytes or ModelProto).

    Axes the file leaves open (symbolic or unknown H, W, batch) stay free: the
    net runs any size its layers take. input_shapes: {input name: per-sample
    shape} gives the size to build at, needed only where the file does not give
    the rank, or where the model fixes an open size (a Reshape to a literal
    shape computed from it); the net is then fixed at that size. Before
    importing anything, every unsupported operator of the model is listed in
    one OnnxImportError.
    """
    model = _named(read_model(source))
    _check_supported(model)
    return _import_any_size(model, dict(input_shapes or {}))


def _open_dims(model, given):
    """{input name: per-sample dims the file leaves open and the walk may vary}."""
    inits = {t.name for t in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = _tensor_dims(vi)
        rank = len(given[vi.name]) if vi.name in given else (
            len(dims) - 1 if dims is not None else None)
        if rank is None:
            continue   # Importer._inputs asks for input_shapes
        if dims is None or len(dims) != rank + 1:
            dims = [None] * (rank + 1)
        out[vi.name] = [i for i, d in enumerate(dims[1:]) if d is None or d < 1]
    return out


def _channels_from_model(model, name):
    """The channel count a Conv reading input `name` directly takes, or None."""
    weights = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input and node.input[0] == name and \
                len(node.input) > 1 and node.input[1] in weights:
            w = weights[node.input[1]]
            group = attributes(node).get("group", 1)
            return int(w.dims[1]) * int(group)
    return None


def _trace_shapes(model, given, open_dims, size):
    """{input: per-sample shape} with the open dims not given at size, an open channel
    axis (axis 0 of a sample with more axes) from the Conv that reads the input."""
    shapes = {}
    for vi in model.graph.input:
        if vi.name not in open_dims:
            continue
        base = given.get(vi.name)
        dims = _tensor_dims(vi)
        shape = list(base) if base is not None else [
            d if d is not None and d >= 1 else None for d in dims[1:]]
        for i in open_dims[vi.name]:
            if base is None:
                shape[i] = size
                if i == 0 and len(shape) > 1:
                    shape[i] = _channels_from_model(model, vi.name) or size
        shapes[vi.name] = tuple(shape)
    return shapes


def _first_difference(a, b):
    """(node name, what differs) between two traces' signatures; None when they agree."""
    for x, y in zip(a, b):
        if x[:4] != y[:4]:
            if x[0] != y[0] or x[1] != y[1]:
                return x[0], (f"at one size it is {x[1]} node {x[0]!r}, at the other "
                              f"{y[1]} node {y[0]!r}")
            return x[0], f"{x[1]}({x[2]}) at one size, {y[1]}({y[2]}) at the other"
        for p in x[4]:
            if p not in y[4] or np.shape(x[4][p]) != np.shape(y[4][p]) or \
                    not np.array_equal(x[4][p], y[4][p]):
                return x[0], f"its constant {p!r} differs between the sizes"
        if set(x[4]) != set(y[4]):
            return x[0], "its constants differ between the sizes"
    if len(a) == len(b):
        return None
    name = (a if len(a) > len(b) else b)[min(len(a), len(b))][0]
    return name, "the traces have different numbers of nodes"


def _import_any_size(model, given):
    """Import with the open dims traced at a placeholder size, then check at other sizes
    that nothing the walk made depends on them (see import_onnx)."""
    open_dims = _open_dims(model, given)
    varied = {n: [i for i in dims if not (i == 0 and _rank(model, n, given) > 1)]
              for n, dims in open_dims.items()}
    arrays = {}
    if not any(open_dims.values()):   # sizes the file fixes stay fixed (onnxruntime's check)
        return _pinned(Importer(model, given, arrays).walk(), open_dims, all_open=False)
    needs_size = any(n not in given for n, d in open_dims.items() if d)
    first_error, importer = None, None
    for size in PLACEHOLDER_SIZES if needs_size else (None,):
        shapes = dict(given, **_trace_shapes(model, given, open_dims, size))
        try:
            importer = Importer(model, shapes, arrays).walk()
            break
        except OnnxImportError as exc:
            first_error = first_error or (exc, shapes)
            importer = None
    if importer is None:
        exc, shapes = first_error
        raise OnnxImportError(f"{exc}\n(the open input sizes were traced at {shapes} and "
                              f"other sizes: pass input_shapes=, or cconv import "
                              f"--input-shape NAME=C,H,W, with a size the model takes)") from exc
    overrides = {}   # ONNX Reshape node -> per-sample target with 0/-1 (see _merge_reshape)
    for _ in range(MAX_REPAIRS):
        difference = _check_other_sizes(model, importer, shapes, varied, arrays, overrides)
        if difference is None:
            return _pinned(importer, open_dims, all_open=False)
        node, why, alt, other = difference
        merged = None if other is None else _merge_reshape(importer, other, node)
        if merged is None or importer.onnx_node_of[node] in overrides:
            break
        # a computed target (H*W as a literal per size): size-free, then traced again
        overrides[importer.onnx_node_of[node]] = merged
        try:
            importer = Importer(model, shapes, arrays, overrides).walk()
        except SizeDependentError as exc:
            node, why = exc.node, str(exc)
            break
    if needs_size:
        raise OnnxImportError(
            f"node {node!r} fixes the size of the input(s) the file leaves open, or depends "
            f"on it in a way cconv cannot follow (traced at {shapes} and {alt}: {why}); "
            f"import it for one size with input_shapes={{name: per-sample shape}} (cconv "
            f"import --input-shape NAME=C,H,W)")
    return _pinned(Importer(model, shapes, arrays).walk(), open_dims, all_open=True)


def _check_other_sizes(model, importer, shapes, varied, arrays, overrides):
    """None when walks at other sizes make what importer made; else (node, why, the
    other size, its importer) for the first node that differs."""
    signature, checked = importer.signature(), 0
    for offset in CHECK_OFFSETS if any(varied.values()) else ():
        alt = dict(shapes)
        for name in varied:
            base = list(shapes[name])
            for k, i in enumerate(varied[name]):
                base[i] += offset * (k + 1)
            alt[name] = tuple(base)
        try:
            other = Importer(model, alt, arrays, overrides).walk()
        except SizeDependentError as exc:   # a repaired Reshape that does not hold here
            return exc.node, str(exc), alt, None
        except OnnxImportError:
            continue   # a size the model does not take (onnxruntime would refuse it too)
        difference = _first_difference(signature, other.signature())
        if difference is not None:
            return difference + (alt, other)
        checked += 1
        if checked == CHECKS:
            break
    return None


def _merge_reshape(a, b, node):
    """Per-sample target that gives Reshape node's output at both traces a and b: entries
    equal at both stay, an input's size copied at both becomes 0, one other -1; or None."""
    if node not in a.reshapes or node not in b.reshapes:
        return None
    (xa, ta), (xb, tb) = a.reshapes[node], b.reshapes[node]
    if len(ta) != len(tb) or len(xa) != len(xb):
        return None
    out, rest = [], False
    for j in range(1, len(ta)):
        if ta[j] == tb[j]:
            out.append(ta[j])
        elif j < len(xa) and xa[j] == ta[j] and xb[j] == tb[j]:
            out.append(0)
        elif not rest:
            out.append(-1)
            rest = True
        else:
            return None
    return tuple(out)


def _rank(model, name, given):
    if name in given:
        return len(given[name])
    for vi in model.graph.input:
        if vi.name == name:
            return len(_tensor_dims(vi)) - 1
    return 0


def _pinned(importer, open_dims, all_open):
    """Build importer's graph; the dims the file fixes stay fixed, the open ones free
    (all_open: fixed at the traced size too, since a layer depends on it)."""
    net = importer.build()
    spec = []
    for onnx_name, shape in zip(importer.input_names, net.input_shapes):
        free = set() if all_open else set(open_dims.get(onnx_name, ()))
        spec.append((None,) + tuple(None if i in free else d for i, d in enumerate(shape)))
    net.set_input_spec(spec)
    return net


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
