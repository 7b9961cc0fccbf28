"""Multi-input layers: Add and Concat."""
import numpy as np

from . import _util
from .base import Layer


class Add(Layer):
    """Element-wise sum of two or more inputs of the same shape."""
    num_inputs = -1

    def __init__(self):
        super().__init__()
        self._saved = None

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shapes = _util.as_shapes(input_shapes)
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"Add needs inputs of one shape, got {shapes}")
        return shapes[0]

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def forward(self, *inputs, training=False):
        self.check_num_inputs(inputs)
        shapes = [np.shape(x) for x in inputs]
        # a batch of 1 broadcasts against any batch (two graph inputs fed different batches)
        if any(s[1:] != shapes[0][1:] for s in shapes) or \
                len({s[0] for s in shapes if s} - {1}) > 1:
            raise ValueError(f"Add needs inputs of one shape, got {shapes}")
        y = inputs[0] + inputs[1]
        for x in inputs[2:]:
            y = np.add(y, x, out=y if np.result_type(y, x) == y.dtype and
                       y.shape == np.shape(x) else None)
        if training:
            self._saved = (shapes,)
        return y

    def backward(self, grad_out):
        (shapes,) = _util.saved(self)
        # every input gets the same (read-only, shared) gradient array, summed over a
        # batch it was broadcast along
        return tuple(grad_out if s == np.shape(grad_out) else
                     np.asarray(grad_out).sum(axis=0, keepdims=True) for s in shapes)


class Concat(Layer):
    """Concatenate two or more inputs along axis (batch axis included; default channels)."""
    num_inputs = -1

    def __init__(self, axis=1):
        super().__init__()
        self.axis = _util.check_int("axis", axis)
        if self.axis == 0:
            raise ValueError("axis must not be the batch axis 0")
        self._saved = None

    def get_config(self):
        return {"axis": self.axis}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shapes = _util.as_shapes(input_shapes)
        ndim = len(shapes[0]) + 1
        axis = _util.check_axis("axis", self.axis, ndim) - 1
        for s in shapes:
            if len(s) != ndim - 1 or s[:axis] + s[axis + 1:] != \
                    shapes[0][:axis] + shapes[0][axis + 1:]:
                raise ValueError(f"Concat(axis={self.axis}) needs inputs equal except on "
                                 f"the axis, got per-sample shapes {shapes}")
        return shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def forward(self, *inputs, training=False):
        self.check_num_inputs(inputs)
        axis = _util.check_axis("axis", self.axis, np.ndim(inputs[0]))
        y = np.concatenate(inputs, axis=axis)
        if training:
            self._saved = (axis, np.cumsum([np.shape(x)[axis] for x in inputs])[:-1])
        return y

    def backward(self, grad_out):
        axis, splits = _util.saved(self)
        return tuple(np.ascontiguousarray(g) for g in np.split(grad_out, splits, axis=axis))
