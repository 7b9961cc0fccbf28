"""Pad: constant, reflect or edge padding (negative amounts crop) of each sample's axes;
PadSame: the padding of ONNX's auto_pad=SAME_UPPER / SAME_LOWER, worked out per input size."""
import math

import numpy as np

from . import _util
from .base import Layer

MODES = ("constant", "reflect", "edge")


def source_index(n, before, after, mode):
    """For each output position along an axis of length n, the input index it copies
    (-1: the constant value)."""
    i = np.arange(-before, n + after)
    if mode == "edge":
        return np.clip(i, 0, n - 1)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(i)
        period = 2 * (n - 1)
        j = np.mod(i, period)
        return np.where(j >= n, period - j, j)
    return np.where((i >= 0) & (i < n), i, -1)


class Pad(Layer):
    """Pad each sample: pads holds one (before, after) pair per per-sample axis (channels
    included), like numpy.pad; a negative amount removes that many entries.

    mode "reflect" mirrors without repeating the edge (numpy's reflect), "edge"
    repeats it; value fills in "constant" mode.
    """

    def __init__(self, pads, mode="constant", value=0.0):
        super().__init__()
        if not isinstance(pads, (tuple, list)) or not all(
                isinstance(p, (tuple, list)) and len(p) == 2 for p in pads):
            raise ValueError(f"pads must be a list of (before, after) pairs, got {pads!r}")
        self.pads = tuple((_util.check_int("pads", a), _util.check_int("pads", b))
                          for a, b in pads)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.value = _util.check_float("value", value)
        self._index = {}
        self._saved = None

    def get_config(self):
        return {"pads": [list(p) for p in self.pads], "mode": self.mode, "value": self.value}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        return self._padded(_util.as_shapes(input_shapes)[0], self.pads)

    def _padded(self, shape, pads):
        """The per-sample shape after pads; ValueError when the mode cannot pad it so."""
        if len(shape) != len(pads):
            raise ValueError(f"Pad has {len(pads)} (before, after) pairs but the "
                             f"per-sample input {shape} has {len(shape)} axes")
        out = []
        for n, (b, a) in zip(shape, pads):
            if self.mode == "reflect" and max(b, a) > n - 1 and (b > 0 or a > 0):
                raise ValueError(f"reflect padding {pads} needs each amount < the axis "
                                 f"length, got per-sample shape {shape}")
            if self.mode == "edge" and n == 0:
                raise ValueError("edge padding needs a non-empty axis")
            out.append(n + b + a)
        if min(out) < 1:
            raise ValueError(f"Pad {pads} crops per-sample shape {shape} to nothing")
        return tuple(out)

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def _indices(self, shape, pads):
        key = (shape, pads)
        idx = self._index.get(key)
        if idx is None:
            self._padded(shape, pads)
            idx = [None if b == a == 0 else source_index(n, b, a, self.mode)
                   for n, (b, a) in zip(shape, pads)]
            if len(self._index) > 8:
                self._index.clear()
            self._index[key] = idx
        return idx

    def forward(self, x, training=False):
        return self._pad(x, self.pads, training)

    def _pad(self, x, pads, training):
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        idx = self._indices(tuple(x.shape[1:]), pads)
        y = x
        for axis, src in enumerate(idx, start=1):
            if src is None:
                continue
            y = np.take(y, np.maximum(src, 0), axis=axis)
            fill = src < 0
            if fill.any():
                sel = [slice(None)] * y.ndim
                sel[axis] = fill
                y[tuple(sel)] = self.value
        if training:
            self._saved = (idx, x.shape)
        return np.ascontiguousarray(y) if y is not x else x.copy()

    def backward(self, grad_out):
        idx, shape = _util.saved(self)
        g = np.asarray(grad_out)
        for axis in range(len(idx), 0, -1):
            src = idx[axis - 1]
            if src is None:
                continue
            keep = src >= 0
            gm = np.moveaxis(g, axis, 0)[keep]
            out = np.zeros((shape[axis],) + gm.shape[1:], g.dtype)
            np.add.at(out, src[keep], gm)
            g = np.moveaxis(out, 0, axis)
        return np.ascontiguousarray(g)


def same_pads(n, kernel, stride, dilation, lower=False):
    """(before, after) of ONNX's auto_pad SAME_UPPER (lower: SAME_LOWER) on an axis of n:
    the output has ceil(n / stride) entries; an odd total pads the end (the start)."""
    total = max((math.ceil(n / stride) - 1) * stride + (kernel - 1) * dilation + 1 - n, 0)
    small = total // 2
    return (total - small, small) if lower else (small, total - small)


class PadSame(Pad):
    """Pad the spatial axes (after channels) as ONNX's auto_pad=SAME_UPPER (lower=False) or
    SAME_LOWER does for a window of kernel_size, stride and dilation, worked out for each
    input size: a strided SAME convolution or pooling (TF exports) at any size.

    mode "constant" (value) or "edge" (exact for max pooling).
    """

    def __init__(self, kernel_size, stride=1, dilation=1, lower=False, mode="constant",
                 value=0.0):
        kernel = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,)
        nd = len(kernel)
        super().__init__(((0, 0),) * (nd + 1), mode, value)
        if mode == "reflect":
            raise ValueError("PadSame's mode must be 'constant' or 'edge', got 'reflect'")
        self.kernel_size = _util.check_tuple("kernel_size", kernel, nd, 1)
        self.stride = _util.check_tuple("stride", stride, nd, 1)
        self.dilation = _util.check_tuple("dilation", dilation, nd, 1)
        self.lower = _util.check_bool("lower", lower)

    def get_config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "dilation": list(self.dilation), "lower": self.lower, "mode": self.mode,
                "value": self.value}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        return self._padded(shape, self._pads(shape))

    def forward(self, x, training=False):
        return self._pad(x, self._pads(tuple(np.shape(x)[1:])), training)

    def _pads(self, shape):
        if len(shape) != len(self.kernel_size) + 1:
            raise ValueError(f"PadSame with a {len(self.kernel_size)}-D window expects "
                             f"per-sample input (C, {len(self.kernel_size)} spatial axes), "
                             f"got {shape}")
        return ((0, 0),) + tuple(same_pads(n, k, s, d, self.lower) for n, k, s, d in zip(
            shape[1:], self.kernel_size, self.stride, self.dilation))


def half_toward_zero(d):
    """d / 2 rounded toward zero: ONNX's integer Div, as exported `diff // 2` computes it."""
    return d // 2 if d >= 0 else -((-d) // 2)


class PadAs(Pad):
    """Pad (or crop, where smaller) the spatial axes of input 0 to the spatial size of
    input 1 (its values unused); channels stay input 0's.

    The difference d per axis is split as torch's UNet writes it (F.pad by
    [d // 2, d - d // 2], exported as ONNX's integer Div): d / 2 rounded toward
    zero before, the rest after. The amounts follow the inputs at every size.
    No gradient flows to the reference input.
    """
    num_inputs = 2

    def __init__(self, mode="constant", value=0.0):
        super().__init__(((0, 0),), mode, value)
        self.pads = None

    def get_config(self):
        return {"mode": self.mode, "value": self.value}

    @staticmethod
    def pairs(shape, like):
        """Per-sample (before, after) pairs that take shape to like's spatial size."""
        if len(shape) < 2 or len(like) != len(shape):
            raise ValueError(f"PadAs needs per-sample inputs (C, spatial...) of one rank, "
                             f"got {tuple(shape)} and {tuple(like)}")
        out = [(0, 0)]
        for n, m in zip(shape[1:], like[1:]):
            b = half_toward_zero(int(m) - int(n))
            out.append((b, int(m) - int(n) - b))
        return tuple(out)

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape, like = _util.as_shapes(input_shapes)
        return self._padded(shape, self.pairs(shape, like))

    def forward(self, x, like, training=False):
        like = np.asarray(like)
        pads = self.pairs(np.shape(x)[1:], like.shape[1:])
        y = self._pad(x, pads, training)
        if training:
            self._saved_like = (like.shape, like.dtype)
        return y

    def backward(self, grad_out):
        grad = super().backward(grad_out)   # RuntimeError without a training forward
        like_shape, like_dtype = self._saved_like
        return grad, np.zeros(like_shape, like_dtype if like_dtype.kind == "f" else np.float64)
