"""cconv-onnx: import ONNX models into cconv graphs, as a cconv plugin.

cconv finds this module through the entry point `onnx` of the group "cconv"
(see pyproject.toml). It registers the weight loader "onnx" for ".onnx"
files; the loader function also carries `load_graph(path) -> cconv.Graph`,
which `cconv import` uses to import the whole network.

    from cconv_onnx import import_onnx
    net = import_onnx("mobilenet.onnx")      # a built cconv.Graph, float32

`import onnx` takes about a second, so this module imports it (through
.importer) only when a model is read: listing plugins stays fast.
"""
import importlib

import cconv

__all__ = [
    "CONVERTERS",
    "SUPPORTED_OPS",
    "OnnxImportError",
    "import_onnx",
    "load_onnx_weights",
    "read_model",
    "unsupported_operators",
]

_LAZY = {"CONVERTERS": ".converters", "SUPPORTED_OPS": ".importer",
         "OnnxImportError": ".errors", "read_model": ".importer",
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
