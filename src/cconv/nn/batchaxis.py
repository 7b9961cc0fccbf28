"""MoveBatchAxis: a network output whose batch axis is not the first (ONNX graphs that
transpose it away, e.g. a (T, N, C) sequence head).

Inside a cconv graph every value keeps its batch axis first, which is what the
shape walk, the compiled plans and the fused kernels rely on. An importer that
follows a model moving the batch axis keeps it first and remaps the other axes
instead; only at a graph output does the array itself have to move, with this
layer, which declares so (moves_batch_axis) and is meant to be read by nothing
but the caller.
"""
import numpy as np

from . import _util
from .base import Layer


class MoveBatchAxis(Layer):
    """Move the batch axis 0 to `position` of the output array.

    output_shape reports the per-sample shape with the batch taken out, the
    other axes in their order: the output array's shape is that with the
    batch size inserted at `position`.
    """
    #: the output's batch axis is `position`, not 0: only a graph output may be one
    moves_batch_axis = True

    def __init__(self, position):
        super().__init__()
        self.position = _util.check_int("position", position, 0)

    def get_config(self):
        return {"position": self.position}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        if self.position > len(shape):
            raise ValueError(f"position={self.position} is past the last axis of "
                             f"{len(shape) + 1}-D inputs (batch included)")
        return shape

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def forward(self, x, training=False):
        x = np.asarray(x)
        if training:
            self._saved = (True,)
        return np.ascontiguousarray(np.moveaxis(x, 0, self.position))

    def backward(self, grad_out):
        _util.saved(self)
        return np.ascontiguousarray(np.moveaxis(np.asarray(grad_out), self.position, 0))
