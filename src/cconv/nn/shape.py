"""Flatten, Reshape and Transpose: per-sample shape changes (the batch axis stays first)."""
import math

import numpy as np

from . import _util
from .base import Layer


class _ShapeLayer(Layer):
    type_name = None

    def __init__(self):
        super().__init__()
        self._saved = None

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def _input_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        return _util.as_shapes(input_shapes)[0]


class Flatten(_ShapeLayer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    def output_shape(self, input_shapes):
        return (math.prod(self._input_shape(input_shapes)),)

    def forward(self, x, training=False):
        x = np.asarray(x)
        if training:
            self._saved = (x.shape,)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out):
        (shape,) = _util.saved(self)
        return np.asarray(grad_out).reshape(shape)


class Reshape(_ShapeLayer):
    """Reshape each sample to `shape`: one entry may be -1 (the rest), and 0 copies the
    input's size on that axis (ONNX's rule), so (0, -1) keeps any (C, H, W) as (C, H*W)."""

    def __init__(self, shape):
        super().__init__()
        if not isinstance(shape, (tuple, list)):
            raise ValueError(f"shape must be a tuple of ints, got {shape!r}")
        shape = tuple(_util.check_int("shape", d, -1) for d in shape)
        if shape.count(-1) > 1:
            raise ValueError(f"shape may hold one -1, got {shape}")
        self.shape = shape

    def get_config(self):
        return {"shape": list(self.shape)}

    def output_shape(self, input_shapes):
        shape = self._input_shape(input_shapes)
        target = self.shape
        if 0 in target:
            if len(shape) < max(i for i, d in enumerate(target) if d == 0) + 1:
                raise ValueError(f"Reshape{target}: a 0 copies the input's size on its axis, "
                                 f"but the per-sample input {shape} has too few axes")
            target = tuple(shape[i] if d == 0 else d for i, d in enumerate(target))
        size = math.prod(shape)
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if known == 0 or size % known:
                raise ValueError(f"cannot reshape per-sample shape {shape} to {self.shape}")
            return tuple(size // known if d == -1 else d for d in target)
        if known != size:
            raise ValueError(f"cannot reshape per-sample shape {shape} ({size} elements) to "
                             f"{self.shape} ({known} elements)")
        return target

    def forward(self, x, training=False):
        x = np.asarray(x)
        if training:
            self._saved = (x.shape,)
        shape = self.shape
        if 0 in shape:   # copied from this input (numpy resolves a -1 itself)
            shape = self.output_shape([x.shape[1:]])
        return x.reshape((x.shape[0],) + shape)

    def backward(self, grad_out):
        (shape,) = _util.saved(self)
        return np.asarray(grad_out).reshape(shape)


class ReshapeAs(_ShapeLayer):
    """Reshape input 0 to a per-sample shape that reads sizes of input 1 (values unused).

    Entry i of the target is input 1's per-sample size on axis like_axes[i] where
    that is not None, else shape[i] (-1: the rest, 0: input 0's size on axis i).
    A hybrid CNN-transformer block's tokens.transpose(1, 2).reshape(n, c, h, w),
    h and w read from the feature map, thus holds at every input size. No
    gradient flows to input 1.
    """
    num_inputs = 2

    def __init__(self, shape, like_axes):
        super().__init__()
        if not isinstance(shape, (tuple, list)) or not isinstance(like_axes, (tuple, list)) \
                or len(shape) != len(like_axes):
            raise ValueError(f"shape and like_axes must be lists of one length, got {shape!r} "
                             f"and {like_axes!r}")
        self.shape = tuple(_util.check_int("shape", d, -1) for d in shape)
        self.like_axes = tuple(None if a is None else _util.check_int("like_axes", a, 0)
                               for a in like_axes)
        if [d for d, a in zip(self.shape, self.like_axes) if a is None].count(-1) > 1:
            raise ValueError(f"shape may hold one -1, got {shape}")

    def get_config(self):
        return {"shape": list(self.shape), "like_axes": list(self.like_axes)}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape, like = _util.as_shapes(input_shapes)
        target = []
        for i, (d, a) in enumerate(zip(self.shape, self.like_axes)):
            if a is not None:
                if a >= len(like):
                    raise ValueError(f"ReshapeAs reads axis {a} of a per-sample {like}")
                target.append(like[a])
            elif d == 0:
                if i >= len(shape):
                    raise ValueError(f"ReshapeAs: a 0 copies axis {i} of {shape}, which has "
                                     f"too few axes")
                target.append(shape[i])
            else:
                target.append(d)
        size, known = math.prod(shape), math.prod(d for d in target if d != -1)
        if -1 in target:
            if known == 0 or size % known:
                raise ValueError(f"cannot reshape per-sample shape {shape} to {target}")
            return tuple(size // known if d == -1 else d for d in target)
        if known != size:
            raise ValueError(f"cannot reshape per-sample shape {shape} ({size} elements) to "
                             f"{tuple(target)} ({known} elements)")
        return tuple(target)

    def forward(self, x, like, training=False):
        x, like = np.asarray(x), np.asarray(like)
        target = self.output_shape([x.shape[1:], like.shape[1:]])
        if training:
            self._saved = (x.shape, like.shape, like.dtype)
        return x.reshape((x.shape[0],) + target)

    def backward(self, grad_out):
        shape, like_shape, like_dtype = _util.saved(self)
        return (np.asarray(grad_out).reshape(shape),
                np.zeros(like_shape, like_dtype if like_dtype.kind == "f" else np.float64))


class Transpose(_ShapeLayer):
    """Permute each sample's axes: axes is a permutation of range(per-sample ndim)."""

    def __init__(self, axes):
        super().__init__()
        if not isinstance(axes, (tuple, list)):
            raise ValueError(f"axes must be a tuple of ints, got {axes!r}")
        axes = tuple(_util.check_int("axes", a, 0) for a in axes)
        if sorted(axes) != list(range(len(axes))):
            raise ValueError(f"axes must be a permutation of 0..{len(axes) - 1}, got {axes}")
        self.axes = axes
        self._inverse = tuple(int(i) for i in np.argsort(axes))

    def get_config(self):
        return {"axes": list(self.axes)}

    def output_shape(self, input_shapes):
        shape = self._input_shape(input_shapes)
        if len(shape) != len(self.axes):
            raise ValueError(f"Transpose(axes={self.axes}) needs {len(self.axes)}-D samples, "
                             f"got per-sample shape {shape}")
        return tuple(shape[a] for a in self.axes)

    def forward(self, x, training=False):
        x = np.asarray(x)
        return np.ascontiguousarray(x.transpose((0,) + tuple(a + 1 for a in self.axes)))

    def backward(self, grad_out):
        return np.ascontiguousarray(
            np.asarray(grad_out).transpose((0,) + tuple(a + 1 for a in self._inverse)))
