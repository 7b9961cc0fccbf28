"""The one exception the importer raises for a model it cannot take."""


class OnnxImportError(ValueError):
    """An ONNX model (or one of its nodes) that cconv cannot import; the message says why."""
