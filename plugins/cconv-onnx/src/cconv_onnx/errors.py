"""The one exception the importer raises for a model it cannot take."""


class OnnxImportError(ValueError):
    """An ONNX model (or one of its nodes) that cconv cannot import; the message says why."""


class SizeDependentError(OnnxImportError):
    """A node whose size-free form fails at another traced size (node: its ONNX name)."""

    def __init__(self, message, node):
        super().__init__(message)
        self.node = node


def tensor_to_array(tensor):
    """numpy_helper.to_array, with onnx's errors on a corrupt tensor as OnnxImportError.

    (onnx raises a bare KeyError for an unknown data type code: found by
    bench/fuzz_loaders.py.)
    """
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(tensor)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise OnnxImportError(f"tensor {getattr(tensor, 'name', '?')!r} is corrupt: "
                              f"{type(exc).__name__}: {exc}") from None


class OnnxExportError(ValueError):
    """A cconv net (or some of its nodes) that cannot be written as ONNX; the message lists why."""
