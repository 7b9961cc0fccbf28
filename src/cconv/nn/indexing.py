"""Per-sample indexing and rearranging: Slice, SliceAs, Gather, Expand, Tile, DepthToSpace, SpaceToDepth.

Axes are batch-inclusive (axis 1 is the first per-sample axis) and every
size is resolved from the input's actual shape on each call, so the layers
take any input size their arguments allow.
"""
import numpy as np

from . import _util
from .base import Layer
from .shape import _ShapeLayer
from .elementwise import _broadcast, _unbroadcast


def _int_list(name, values, minimum=None):
    if not isinstance(values, (tuple, list)):
        raise ValueError(f"{name} must be a list of ints, got {values!r}")
    return tuple(_util.check_int(name, v, minimum) for v in values)


class _PerSample(_ShapeLayer):
    type_name = None
    _shape = _ShapeLayer._input_shape

    def output_shape(self, input_shapes):
        shape = self._shape(input_shapes)
        # a zero-strided stand-in: the shape arithmetic of forward, without the data
        probe = np.broadcast_to(np.zeros((), np.uint8), (1,) + shape)
        return tuple(self._forward(probe).shape[1:])

    def forward(self, x, training=False):
        x = np.asarray(x)
        if training:
            self._saved = (x.shape,)
        return np.ascontiguousarray(self._forward(x))

    def backward(self, grad_out):
        (shape,) = _util.saved(self)
        return np.ascontiguousarray(self._backward(np.asarray(grad_out), shape))


class Slice(_PerSample):
    """x[..., starts:ends:steps, ...] on the given batch-inclusive axes (ONNX Slice:
    out-of-range bounds clamp, negative ones count from the end)."""

    def __init__(self, starts, ends, axes, steps=None):
        super().__init__()
        self.starts = _int_list("starts", starts)
        self.ends = _int_list("ends", ends)
        self.axes = _int_list("axes", axes)
        self.steps = (1,) * len(self.axes) if steps is None else _int_list("steps", steps)
        if not len(self.starts) == len(self.ends) == len(self.axes) == len(self.steps):
            raise ValueError(f"starts, ends, axes and steps must have one entry per axis, got "
                             f"{self.starts}, {self.ends}, {self.axes}, {self.steps}")
        if 0 in self.steps:
            raise ValueError(f"steps must not be 0, got {self.steps}")
        self._sorted = None

    def get_config(self):
        return {"starts": list(self.starts), "ends": list(self.ends), "axes": list(self.axes),
                "steps": list(self.steps)}

    def _index(self, ndim):
        index = [slice(None)] * ndim
        for s, e, a, st in zip(self.starts, self.ends, self.axes, self.steps):
            a = _util.check_axis("axes", a, ndim)
            if index[a] != slice(None):
                raise ValueError(f"axes {self.axes} name axis {a} twice")
            index[a] = slice(s, e, st)
        return tuple(index)

    def _forward(self, x):
        return x[self._index(x.ndim)]

    def _backward(self, g, shape):
        gx = np.zeros(shape, g.dtype)
        gx[self._index(len(shape))] = g
        return gx


class SliceAs(Layer):
    """x[..., starts:like_n, ...] on batch-inclusive axes, like_n the size of input 1 (its
    values unused) on like_axes: torch's up[:, :, :skip.shape[2], :skip.shape[3]], which
    crops an upsampled map to a skip tensor's size at every input size. Bounds clamp as
    ONNX Slice's do; no gradient flows to input 1.
    """
    num_inputs = 2

    def __init__(self, starts, axes, like_axes):
        super().__init__()
        self.starts = _int_list("starts", starts)
        self.axes = _int_list("axes", axes, 1)
        self.like_axes = _int_list("like_axes", like_axes, 1)
        if not len(self.starts) == len(self.axes) == len(self.like_axes):
            raise ValueError(f"starts, axes and like_axes must have one entry per axis, got "
                             f"{self.starts}, {self.axes}, {self.like_axes}")
        if len(set(self.axes)) != len(self.axes):
            raise ValueError(f"axes {self.axes} name an axis twice")
        self._saved = None

    def get_config(self):
        return {"starts": list(self.starts), "axes": list(self.axes),
                "like_axes": list(self.like_axes)}

    def _index(self, shape, like):
        """The per-call index of x (batch-inclusive shapes shape and like)."""
        index = [slice(None)] * len(shape)
        for s, a, la in zip(self.starts, self.axes, self.like_axes):
            if a >= len(shape) or la >= len(like):
                raise ValueError(f"SliceAs axes {self.axes} / like_axes {self.like_axes} do "
                                 f"not fit inputs of {len(shape)} and {len(like)} axes")
            index[a] = slice(s, like[la])
        return tuple(index)

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape, like = _util.as_shapes(input_shapes)
        index = self._index((1,) + tuple(shape), (1,) + tuple(like))
        out = tuple(len(range(*index[i + 1].indices(n))) for i, n in enumerate(shape))
        return out

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def forward(self, x, like, training=False):
        x, like = np.asarray(x), np.asarray(like)
        index = self._index(x.shape, like.shape)
        if training:
            self._saved = (index, x.shape, like.shape, like.dtype)
        return np.ascontiguousarray(x[index])

    def backward(self, grad_out):
        index, shape, like_shape, like_dtype = _util.saved(self)
        g = np.asarray(grad_out)
        gx = np.zeros(shape, g.dtype)
        gx[index] = g
        return gx, np.zeros(like_shape, like_dtype if like_dtype.kind == "f" else np.float64)


class Gather(_PerSample):
    """np.take(x, indices, axis): indices a fixed (nested) list of ints, negatives from the end."""

    def __init__(self, axis, indices):
        super().__init__()
        self.axis = _util.check_int("axis", axis)
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu" and idx.size:
            raise ValueError(f"indices must be integers, got {indices!r}")
        self.indices = idx.astype(np.int64)

    def get_config(self):
        return {"axis": self.axis, "indices": self.indices.tolist()}

    def _resolved(self, shape):
        axis = _util.check_axis("axis", self.axis, len(shape))
        n = shape[axis]
        if self.indices.size and (self.indices.max() >= n or self.indices.min() < -n):
            raise ValueError(f"indices {self.indices.tolist()} are out of range for axis "
                             f"{axis} of size {n}")
        return axis, self.indices % max(n, 1)

    def _forward(self, x):
        axis, idx = self._resolved(x.shape)
        return np.take(x, idx, axis=axis)

    def _backward(self, g, shape):
        axis, idx = self._resolved(shape)
        gx = np.zeros(shape, g.dtype)
        moved = np.moveaxis(gx, axis, 0)
        # several indices may pick one position: add, do not overwrite
        np.add.at(moved, idx, np.moveaxis(g, tuple(range(axis, axis + idx.ndim)),
                                          tuple(range(idx.ndim))))
        return gx


class Expand(_PerSample):
    """Broadcast each sample against shape (ONNX Expand: either side may hold the 1s)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = _int_list("shape", shape, 1)

    def get_config(self):
        return {"shape": list(self.shape)}

    def output_shape(self, input_shapes):
        return _broadcast("Expand", [self._shape(input_shapes), self.shape])

    def _forward(self, x):
        out = _broadcast("Expand", [x.shape[1:], self.shape])
        return np.broadcast_to(x.reshape((x.shape[0],) + (1,) * (len(out) + 1 - x.ndim)
                                         + x.shape[1:]), (x.shape[0],) + out)

    def _backward(self, g, shape):
        aligned = (shape[0],) + (1,) * (g.ndim - len(shape)) + tuple(shape[1:])
        return _unbroadcast(g, aligned).reshape(shape)


class Tile(_PerSample):
    """np.tile of each sample: repeats has one entry per per-sample axis."""

    def __init__(self, repeats):
        super().__init__()
        self.repeats = _int_list("repeats", repeats, 0)

    def get_config(self):
        return {"repeats": list(self.repeats)}

    def _check(self, ndim):
        if len(self.repeats) != ndim - 1:
            raise ValueError(f"Tile(repeats={self.repeats}) needs {len(self.repeats)}-D "
                             f"samples, got {ndim - 1}-D")

    def _forward(self, x):
        self._check(x.ndim)
        return np.tile(x, (1,) + self.repeats)

    def _backward(self, g, shape):
        split = [shape[0]]
        for r, d in zip(self.repeats, shape[1:]):
            split += [r, d]
        g = g.reshape(split)
        return g.sum(axis=tuple(range(1, len(split), 2)))


class _Rearrange(_PerSample):
    """A reshape -> transpose -> reshape of (C, H, W) samples, and its inverse for backward."""

    def __init__(self, blocksize):
        super().__init__()
        self.blocksize = _util.check_int("blocksize", blocksize, 1)

    def _plan(self, shape):
        """(split shape, permutation, output shape) for a batch-inclusive input shape."""
        raise NotImplementedError

    def _forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"{self.type_name} needs (C, H, W) samples, got {x.shape[1:]}")
        split, perm, out = self._plan(x.shape)
        return x.reshape(split).transpose(perm).reshape(out)

    def _backward(self, g, shape):
        split, perm, _ = self._plan(shape)
        permuted = tuple(split[p] for p in perm)
        return g.reshape(permuted).transpose(np.argsort(perm)).reshape(shape)


class DepthToSpace(_Rearrange):
    """(C, H, W) -> (C / b^2, H b, W b); mode "DCR" (depth-column-row, ONNX's default) or
    "CRD" (column-row-depth: torch.nn.PixelShuffle)."""

    def __init__(self, blocksize, mode="DCR"):
        super().__init__(blocksize)
        if mode not in ("DCR", "CRD"):
            raise ValueError(f"mode must be 'DCR' or 'CRD', got {mode!r}")
        self.mode = mode

    def get_config(self):
        return {"blocksize": self.blocksize, "mode": self.mode}

    def _plan(self, shape):
        n, c, h, w = shape
        b = self.blocksize
        if c % (b * b):
            raise ValueError(f"DepthToSpace(blocksize={b}) needs channels divisible by "
                             f"{b * b}, got {c}")
        out = (n, c // (b * b), h * b, w * b)
        if self.mode == "DCR":
            return (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2), out
        return (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3), out


class SpaceToDepth(_Rearrange):
    """(C, H, W) -> (C b^2, H / b, W / b), ONNX SpaceToDepth (the inverse of DCR DepthToSpace)."""

    def get_config(self):
        return {"blocksize": self.blocksize}

    def _plan(self, shape):
        n, c, h, w = shape
        b = self.blocksize
        if h % b or w % b:
            raise ValueError(f"SpaceToDepth(blocksize={b}) needs H and W divisible by {b}, "
                             f"got {(h, w)}")
        return ((n, c, h // b, b, w // b, b), (0, 3, 5, 1, 2, 4),
                (n, c * b * b, h // b, w // b))

