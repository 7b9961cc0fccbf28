"""cconv: a lightweight CPU engine for convolutional networks.

Submodules load on first use so that `import cconv` stays fast.
"""
import importlib

from ._threads import bound_openmp_spin_wait, get_num_threads, set_num_threads, threads

bound_openmp_spin_wait()  # must run before any extension loads the OpenMP runtime

__version__ = "0.1.0"

__all__ = [
    "__version__", "openmp_enabled", "get_num_threads", "set_num_threads", "threads",
    "ops", "Graph", "Sequential", "save", "load", "fit", "evaluate", "predict", "hookimpl",
    "get_include", "load_weights", "export_onnx", "set_flush_denormal", "get_flush_denormal",
]

_LAZY_SUBMODULES = {"ops", "nn", "linalg", "analysis", "filters", "optim", "plugins",
                    "graph", "io", "train", "hookspecs", "transfer"}
# Top-level names served lazily from a submodule: name -> module.
_LAZY_ATTRS = {"Graph": "graph", "Sequential": "graph", "save": "io", "load": "io",
               "load_weights": "io", "export_onnx": "io",
               "set_flush_denormal": "ops", "get_flush_denormal": "ops",
               "fit": "train", "evaluate": "train", "predict": "train",
               "hookimpl": "hookspecs",  # plugins: @cconv.hookimpl (imports pluggy late)
               "_C_API": "_kernels"}  # capsule of the C API's function table (docs/c-api.md)


def openmp_enabled():
    """True when the C kernels were built with OpenMP (else they run serial)."""
    from . import _kernels

    return _kernels.openmp_enabled()


def get_include():
    """Directory of cconv's public C headers (cconv.h, cconv_capsule.h); see docs/c-api.md."""
    import os

    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(f".{_LAZY_ATTRS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cconv' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _LAZY_SUBMODULES | set(_LAZY_ATTRS))
