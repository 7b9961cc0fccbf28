"""Pad: constant, reflect or edge padding (negative amounts crop) of each sample's axes."""
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
        shape = _util.as_shapes(input_shapes)[0]
        if len(shape) != len(self.pads):
            raise ValueError(f"Pad has {len(self.pads)} (before, after) pairs but the "
                             f"per-sample input {shape} has {len(shape)} axes")
        out = []
        for n, (b, a) in zip(shape, self.pads):
            if self.mode == "reflect" and max(b, a) > n - 1 and (b > 0 or a > 0):
                raise ValueError(f"reflect padding {self.pads} needs each amount < the axis "
                                 f"length, got per-sample shape {shape}")
            if self.mode == "edge" and n == 0:
                raise ValueError("edge padding needs a non-empty axis")
            out.append(n + b + a)
        if min(out) < 1:
            raise ValueError(f"Pad {self.pads} crops per-sample shape {shape} to nothing")
        return tuple(out)

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def _indices(self, shape):
        idx = self._index.get(shape)
        if idx is None:
            self.output_shape([shape])
            idx = [None if b == a == 0 else source_index(n, b, a, self.mode)
                   for n, (b, a) in zip(shape, self.pads)]
            if len(self._index) > 8:
                self._index.clear()
            self._index[shape] = idx
        return idx

    def forward(self, x, training=False):
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        idx = self._indices(tuple(x.shape[1:]))
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
