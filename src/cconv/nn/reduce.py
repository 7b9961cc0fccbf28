"""Reductions over any per-sample axes (ONNX Reduce*, GlobalMaxPool), table-driven.

Each entry of REDUCTIONS is (forward, derivative): forward(x, axes) keeps the
reduced axes (size 1), derivative(x, y, axes) is dy/dx broadcast to x's shape.
Max/min send the gradient to every position holding the extreme, split evenly
(the subgradient torch's amax uses), so ties stay symmetric.
"""
import numpy as np

from . import _util
from .base import Layer


def _extreme_derivative(x, y, axes):
    hit = (x == y).astype(x.dtype)
    return hit / hit.sum(axis=axes, keepdims=True)


def _l1(x, axes):
    return np.abs(x).sum(axis=axes, keepdims=True)


def _l2(x, axes):
    return np.sqrt((x * x).sum(axis=axes, keepdims=True))


def _log_sum_exp(x, axes):
    m = x.max(axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return m + np.log(np.exp(x - m).sum(axis=axes, keepdims=True))


def _prod_derivative(x, y, axes):
    # product of the others; exact when one factor is 0 (y / x would be 0/0)
    zeros = (x == 0).sum(axis=axes, keepdims=True)
    rest = np.where(x == 0, 1, x).prod(axis=axes, keepdims=True)
    return np.where(zeros == 0, y / np.where(x == 0, 1, x),
                    np.where((zeros == 1) & (x == 0), rest, 0))


#: op -> (forward(x, axes) with keepdims, derivative(x, y, axes) broadcast to x)
REDUCTIONS = {
    "sum": (lambda x, ax: x.sum(axis=ax, keepdims=True),
            lambda x, y, ax: np.ones_like(x)),
    "mean": (lambda x, ax: x.mean(axis=ax, keepdims=True),
             lambda x, y, ax: np.full_like(x, y.size / x.size)),
    "max": (lambda x, ax: x.max(axis=ax, keepdims=True), _extreme_derivative),
    "min": (lambda x, ax: x.min(axis=ax, keepdims=True), _extreme_derivative),
    "prod": (lambda x, ax: x.prod(axis=ax, keepdims=True), _prod_derivative),
    "l1": (_l1, lambda x, y, ax: np.sign(x)),
    "l2": (_l2, lambda x, y, ax: np.where(y == 0, 0, x / np.where(y == 0, 1, y))),
    "sum_square": (lambda x, ax: (x * x).sum(axis=ax, keepdims=True),
                   lambda x, y, ax: 2 * x),
    "log_sum_exp": (_log_sum_exp, lambda x, y, ax: np.exp(x - y)),
}


class Reduce(Layer):
    """Reduce each sample over axes (batch-inclusive indices; None: every per-sample axis).

    keepdims keeps the reduced axes with size 1. The batch axis 0 is never reduced.
    """

    def __init__(self, op, axes=None, keepdims=True):
        super().__init__()
        if op not in REDUCTIONS:
            raise ValueError(f"op must be one of {sorted(REDUCTIONS)}, got {op!r}")
        self.op = op
        if axes is not None:
            if not isinstance(axes, (tuple, list)) or not axes:
                raise ValueError(f"axes must be None or a non-empty list of ints, got {axes!r}")
            axes = tuple(_util.check_int("axes", a) for a in axes)
        self.axes = axes
        self.keepdims = _util.check_bool("keepdims", keepdims)
        self._saved = None

    def get_config(self):
        return {"op": self.op, "axes": None if self.axes is None else list(self.axes),
                "keepdims": self.keepdims}

    def _resolve(self, ndim):
        """The batch-inclusive axes reduced for ndim-D inputs, sorted."""
        if self.axes is None:
            return tuple(range(1, ndim))
        axes = sorted({_util.check_axis("axes", a, ndim) for a in self.axes})
        return tuple(axes)

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        axes = self._resolve(len(shape) + 1)
        if self.keepdims:
            return tuple(1 if i + 1 in axes else d for i, d in enumerate(shape))
        return tuple(d for i, d in enumerate(shape) if i + 1 not in axes)

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def forward(self, x, training=False):
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        axes = self._resolve(x.ndim)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            y = REDUCTIONS[self.op][0](x, axes).astype(x.dtype, copy=False)
        if training:
            self._saved = (x, y, axes)
        return y if self.keepdims else y.reshape([d for i, d in enumerate(y.shape)
                                                  if i not in axes])

    def backward(self, grad_out):
        x, y, axes = _util.saved(self)
        g = np.asarray(grad_out).reshape(y.shape)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            d = REDUCTIONS[self.op][1](x, y, axes)
        return np.asarray(g * d, dtype=x.dtype)
