"""Resize: nearest or linear interpolation of the spatial axes, ONNX's coordinate rules.

Each spatial axis is resampled by a fixed (out x in) matrix, built once per
input shape; forward multiplies by it along that axis and backward by its
transpose, so the gradient is exact for both modes.
"""
import math

import numpy as np

from .. import ops
from . import _util
from .base import Layer

MODES = ("nearest", "linear")
COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
#: per-axis matrices are dense; beyond this (e.g. 4096 -> 8192) refuse, not allocate GBs
MAX_MATRIX_ENTRIES = 1 << 25


def _source_coords(n_out, n_in, scale, mode):
    """Input coordinate of each output index (ONNX Resize's coordinate_transformation_mode)."""
    i = np.arange(n_out, dtype=np.float64)
    if mode == "half_pixel":
        return (i + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (i + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
    if mode == "align_corners":
        return i * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(n_out)
    return i / scale


def interpolation_matrix(n_out, n_in, scale, mode, coordinate_mode, nearest_mode):
    """(n_out, n_in) matrix that resamples one axis."""
    x = _source_coords(n_out, n_in, scale, coordinate_mode)
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if mode == "nearest":
        if nearest_mode == "round_prefer_floor":
            idx = np.ceil(x - 0.5)
        elif nearest_mode == "round_prefer_ceil":
            idx = np.floor(x + 0.5)
        elif nearest_mode == "floor":
            idx = np.floor(x)
        else:
            idx = np.ceil(x)
        m[rows, np.clip(idx, 0, n_in - 1).astype(np.int64)] = 1.0
        return m
    x = np.clip(x, 0, n_in - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = x - lo
    np.add.at(m, (rows, lo), 1 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


class Resize(Layer):
    """Resample the spatial axes of (N, C, ...) to `size`, or by `scale` (out = floor(in * scale)).

    mode: "nearest" | "linear" (bilinear in 2-D). coordinate_transformation_mode
    and nearest_mode follow ONNX Resize; torch's nearest is asymmetric + floor,
    its bilinear (align_corners=False) pytorch_half_pixel. With both size and
    scale, size sets the output and scale the coordinate mapping (ONNX does so).
    """

    def __init__(self, size=None, scale=None, mode="nearest",
                 coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_floor"):
        super().__init__()
        if size is None and scale is None:
            raise ValueError("Resize needs size or scale, got neither")
        if size is not None:
            size = (size,) if not isinstance(size, (tuple, list)) else size
            size = tuple(_util.check_int("size", s, 1) for s in size)
        if scale is not None:
            scale = (scale,) if not isinstance(scale, (tuple, list)) else scale
            scale = tuple(_util.check_float("scale", s, 0.0, low_open=True) for s in scale)
        if size is not None and scale is not None and len(size) != len(scale):
            raise ValueError(f"size {size} and scale {scale} must have one entry per "
                             f"spatial axis each")
        for name, value, allowed in (("mode", mode, MODES),
                                     ("coordinate_transformation_mode",
                                      coordinate_transformation_mode, COORDINATE_MODES),
                                     ("nearest_mode", nearest_mode, NEAREST_MODES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.size, self.scale, self.mode = size, scale, mode
        self.coordinate_transformation_mode = coordinate_transformation_mode
        self.nearest_mode = nearest_mode
        self._matrices = {}
        self._saved = None

    def get_config(self):
        return {"size": None if self.size is None else list(self.size),
                "scale": None if self.scale is None else list(self.scale),
                "mode": self.mode,
                "coordinate_transformation_mode": self.coordinate_transformation_mode,
                "nearest_mode": self.nearest_mode}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        n = len(self.size if self.size is not None else self.scale)
        if len(shape) != n + 1:
            raise ValueError(f"Resize with {n} spatial size(s) expects per-sample input "
                             f"(C, {n} spatial axes), got {shape}")
        if self.size is not None:
            return shape[:1] + self.size
        out = tuple(math.floor(s * f) for s, f in zip(shape[1:], self.scale))
        if min(out) < 1:
            raise ValueError(f"Resize: scale {self.scale} shrinks {shape} to nothing")
        return shape[:1] + out

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def _axis_matrices(self, spatial_in, dtype):
        key = (spatial_in, np.dtype(dtype).str)
        mats = self._matrices.get(key)
        if mats is None:
            out = self.output_shape([(1,) + spatial_in])[1:]
            for o, i in zip(out, spatial_in):
                if o * i > MAX_MATRIX_ENTRIES:
                    raise ValueError(f"Resize from {spatial_in} to {out}: a {o} x {i} "
                                     f"interpolation matrix exceeds {MAX_MATRIX_ENTRIES} "
                                     f"entries")
            scales = self.scale or tuple(o / i for o, i in zip(out, spatial_in))
            mats = [interpolation_matrix(o, i, s, self.mode, self.coordinate_transformation_mode,
                                         self.nearest_mode).astype(dtype)
                    for o, i, s in zip(out, spatial_in, scales)]
            if len(self._matrices) > 8:
                self._matrices.clear()
            self._matrices[key] = mats
        return mats

    @staticmethod
    def _apply(x, mats, transpose):
        for axis, m in enumerate(mats, start=2):
            if transpose:
                m = m.T
            x = ops.contract_axis(x, m, axis)   # cconv's GEMM, not OpenBLAS's pool
        return np.ascontiguousarray(x)

    def forward(self, x, training=False):
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        mats = self._axis_matrices(tuple(x.shape[2:]), x.dtype)
        if training:
            self._saved = (mats,)
        return self._apply(x, mats, False)

    def backward(self, grad_out):
        (mats,) = _util.saved(self)
        return self._apply(np.asarray(grad_out), mats, True)


class ResizeAs(Resize):
    """Resample the spatial axes of input 0 to the spatial size of input 1 (its values unused).

    ONNX Resize with `sizes` read from another tensor's Shape, as torch exports
    F.interpolate(x, size=skip.shape[2:]) (UNet, FPN): the output size follows
    that tensor at every input size. Coordinates map with scale = out / in, as
    ONNX does for sizes. No gradient flows to the reference input.
    """
    num_inputs = 2

    def __init__(self, mode="nearest", coordinate_transformation_mode="half_pixel",
                 nearest_mode="round_prefer_floor"):
        super().__init__(size=(1,), mode=mode,
                         coordinate_transformation_mode=coordinate_transformation_mode,
                         nearest_mode=nearest_mode)
        self.size = None

    def get_config(self):
        config = super().get_config()
        del config["size"], config["scale"]
        return config

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape, like = _util.as_shapes(input_shapes)
        if len(shape) < 2 or len(like) != len(shape):
            raise ValueError(f"ResizeAs needs per-sample inputs (C, spatial...) of one rank, "
                             f"got {shape} and {like}")
        return shape[:1] + like[1:]

    def _axis_matrices(self, spatial_in, dtype, spatial_out=None):
        key = (spatial_in, spatial_out, np.dtype(dtype).str)
        mats = self._matrices.get(key)
        if mats is None:
            for o, i in zip(spatial_out, spatial_in):
                if o * i > MAX_MATRIX_ENTRIES:
                    raise ValueError(f"ResizeAs from {spatial_in} to {spatial_out}: a {o} x "
                                     f"{i} interpolation matrix exceeds {MAX_MATRIX_ENTRIES} "
                                     f"entries")
            mats = [interpolation_matrix(o, i, o / i, self.mode,
                                         self.coordinate_transformation_mode,
                                         self.nearest_mode).astype(dtype)
                    for o, i in zip(spatial_out, spatial_in)]
            if len(self._matrices) > 8:
                self._matrices.clear()
            self._matrices[key] = mats
        return mats

    def forward(self, x, like, training=False):
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        like = np.asarray(like)
        self.output_shape([x.shape[1:], like.shape[1:]])
        mats = self._axis_matrices(tuple(x.shape[2:]), x.dtype, tuple(like.shape[2:]))
        if training:
            self._saved = (mats, like.shape, like.dtype)
        return self._apply(x, mats, False)

    def backward(self, grad_out):
        mats, like_shape, like_dtype = _util.saved(self)
        return (self._apply(np.asarray(grad_out), mats, True),
                np.zeros(like_shape, like_dtype if like_dtype.kind == "f" else np.float64))
