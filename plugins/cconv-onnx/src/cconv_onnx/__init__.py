"""cconv-onnx: import ONNX models into cconv graphs and export cconv graphs to ONNX.

cconv finds this module through the entry point `onnx` of the group "cconv"
(see pyproject.toml). It registers the weight loader "onnx" for ".onnx"
files; the loader function also carries `load_graph(path) -> cconv.Graph`,
which `cconv import` uses to import the whole network.

    from cconv_onnx import import_onnx
    net = import_onnx("mobilenet.onnx")      # a built cconv.Graph, float32

    from cconv_onnx import export_onnx
    export_onnx(net, "net.onnx")             # or cconv.export_onnx(net, "net.onnx")

Layers of other plugins export once they have an exporter:
`register_exporter(type_name, function)` (docs/onnx.md, "Exporting").

`import onnx` takes about a second, so this module imports it (through
.importer) only when a model is read: listing plugins stays fast.
"""
import importlib

import cconv

__all__ = [
    "CONVERTERS",
    "EXPORTERS",
    "SUPPORTED_OPS",
    "OnnxExportError",
    "OnnxImportError",
    "export_onnx",
    "import_onnx",
    "load_onnx_weights",
    "read_model",
    "register_exporter",
    "to_onnx",
    "unsupported_operators",
]

_LAZY = {"CONVERTERS": ".converters", "SUPPORTED_OPS": ".importer",
         "OnnxImportError": ".errors", "OnnxExportError": ".errors",
         "read_model": ".importer", "EXPORTERS": ".exporter", "to_onnx": ".exporter",
         "unsupported_operators": ".importer"}


def import_onnx(source, input_shapes=None):
    """A built cconv.Graph computing the ONNX model `source` (path, bytes or ModelProto).

    Axes the file leaves open stay free (net.input_spec shows None). input_shapes:
    {input name: per-sample shape} to build at, needed only where a node fixes an
    open size (the error names it); the net then runs that size only. Every
    unsupported operator is listed in one OnnxImportError before anything is
    imported.
    """
    from .importer import import_onnx as run

    return run(source, input_shapes=input_shapes)


def load_onnx_weights(path):
    """The floating-point initializers and Constant tensors of an ONNX file, by ONNX name."""
    from .importer import load_onnx_weights as run

    return run(path)


load_onnx_weights.load_graph = import_onnx


def export_onnx(net, path, opset=17, dynamic_axes=True, batch_size=1):
    """Write the built cconv net to path as an ONNX model (atomically); returns the ModelProto.

    dynamic_axes: True (batch and the spatial axes the net leaves free are
    symbolic), "batch" (only the batch axis) or False (all fixed, batch_size).
    Every node that cannot be exported is listed in one OnnxExportError
    before anything is written.
    """
    from .exporter import export_onnx as run

    return run(net, path, opset=opset, dynamic_axes=dynamic_axes, batch_size=batch_size)


def register_exporter(type_name, function=None, *, override=False):
    """Register `function(ctx, node)` as the ONNX exporter of layer type `type_name`
    (also a decorator); see docs/onnx.md, "Exporting"."""
    from .exporter import register_exporter as run

    return run(type_name, function, override=override)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cconv_onnx' has no attribute {name!r}")


@cconv.hookimpl
def register_weight_loaders(register):
    register("onnx", load_onnx_weights, suffixes=[".onnx"],
             description="ONNX model: initializers by name; .load_graph imports the network")
