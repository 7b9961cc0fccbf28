"""Per-sample normalisations: LayerNorm, GroupNorm, InstanceNorm (trainable scale and bias), LRN.

Unlike BatchNorm they keep no running statistics: training and inference
compute the same thing from each sample alone, so any spatial size works.
"""
import math

import numpy as np

from . import _util
from .base import Layer


def _normalise(xr, eps):
    """(x - mean) / sqrt(var + eps) along the last axis of xr; returns (x_hat, 1/std)."""
    mean = xr.mean(axis=-1, keepdims=True)
    centred = xr - mean
    inv = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)
    return centred * inv, inv


def _normalise_backward(g_hat, x_hat, inv):
    """Gradient of the normalisation's input from that of x_hat (all along the last axis)."""
    return inv * (g_hat - g_hat.mean(axis=-1, keepdims=True)
                  - x_hat * (g_hat * x_hat).mean(axis=-1, keepdims=True))


class _SampleNorm(Layer):
    type_name = None

    def __init__(self, eps=1e-5, affine=True):
        super().__init__()
        self.eps = _util.check_float("eps", eps, 0.0, low_open=True)
        self.affine = _util.check_bool("affine", affine)
        self._saved = None

    def _param_shape(self):
        raise NotImplementedError

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        self.params, self.grads, self.trainable = {}, {}, {}
        if self.affine:
            self.add_param("weight", np.ones(self._param_shape(), np.float32))
            self.add_param("bias", np.zeros(self._param_shape(), np.float32))
        super().build(input_shapes, rng)

    def _affine_shape(self, x):
        """Shape the (flat) scale and bias broadcast with against x."""
        raise NotImplementedError

    def forward(self, x, training=False):
        _util.need_built(self)
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        self.output_shape([x.shape[1:]])
        x_hat, inv = _normalise(x.reshape(self._rows(x)), self.eps)
        x_hat = x_hat.reshape(x.shape)
        y = x_hat
        if self.affine:
            shape = self._affine_shape(x)
            y = x_hat * self.params["weight"].reshape(shape).astype(x.dtype, copy=False) \
                + self.params["bias"].reshape(shape).astype(x.dtype, copy=False)
        if training:
            self._saved = (x_hat, inv)
        return y.astype(x.dtype, copy=False)

    def backward(self, grad_out):
        x_hat, inv = _util.saved(self)
        g = np.asarray(grad_out)
        if self.affine:
            shape = self._affine_shape(x_hat)
            axes = tuple(i for i, d in enumerate(shape) if d == 1)
            for name, value in (("weight", (g * x_hat).sum(axis=axes)), ("bias", g.sum(axis=axes))):
                _util.set_grad(self, name, value.reshape(self._param_shape())
                               if self.trainable[name] else None)
            g = g * self.params["weight"].reshape(shape)
        rows = self._rows(x_hat)
        gx = _normalise_backward(g.reshape(rows), x_hat.reshape(rows), inv)
        return gx.reshape(x_hat.shape).astype(x_hat.dtype, copy=False)


class LayerNorm(_SampleNorm):
    """Normalise over the last len(normalized_shape) axes (torch.nn.LayerNorm, ONNX
    LayerNormalization); weight and bias have shape normalized_shape."""

    def __init__(self, normalized_shape, eps=1e-5, affine=True):
        super().__init__(eps, affine)
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
            raise ValueError(f"normalized_shape must be an int or a non-empty tuple of ints, "
                             f"got {normalized_shape!r}")
        self.normalized_shape = tuple(_util.check_int("normalized_shape", d, 1)
                                      for d in normalized_shape)

    def get_config(self):
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "affine": self.affine}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        k = len(self.normalized_shape)
        if len(shape) < k or shape[len(shape) - k:] != self.normalized_shape:
            raise ValueError(f"LayerNorm(normalized_shape={self.normalized_shape}) needs "
                             f"per-sample shapes ending in it, got {shape}")
        return shape

    def _param_shape(self):
        return self.normalized_shape

    def _rows(self, x):
        return (-1, math.prod(self.normalized_shape))

    def _affine_shape(self, x):
        return (1,) * (x.ndim - len(self.normalized_shape)) + self.normalized_shape


class GroupNorm(_SampleNorm):
    """Normalise each sample's channels (axis 1) in num_groups groups, over the groups'
    channels and all spatial positions; per-channel weight and bias (torch.nn.GroupNorm)."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        super().__init__(eps, affine)
        self.num_groups = _util.check_int("num_groups", num_groups, 1)
        self.num_channels = _util.check_int("num_channels", num_channels, 1)
        if self.num_channels % self.num_groups:
            raise ValueError(f"num_channels={self.num_channels} must be a multiple of "
                             f"num_groups={self.num_groups}")

    def get_config(self):
        return {"num_groups": self.num_groups, "num_channels": self.num_channels,
                "eps": self.eps, "affine": self.affine}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        if len(shape) < 1 or shape[0] != self.num_channels:
            raise ValueError(f"{self.type_name} needs per-sample shapes (C, ...) with "
                             f"C={self.num_channels}, got {shape}")
        return shape

    def _param_shape(self):
        return (self.num_channels,)

    def _rows(self, x):
        return (x.shape[0] * self.num_groups, -1)

    def _affine_shape(self, x):
        return (1, self.num_channels) + (1,) * (x.ndim - 2)


class InstanceNorm(GroupNorm):
    """GroupNorm with one group per channel (torch.nn.InstanceNorm2d(affine=True), ONNX
    InstanceNormalization)."""

    def __init__(self, num_features, eps=1e-5, affine=True):
        super().__init__(num_features, num_features, eps, affine)

    def get_config(self):
        return {"num_features": self.num_channels, "eps": self.eps, "affine": self.affine}


def _window_sum(a, before, after):
    """s[:, c] = a[:, c - before] + ... + a[:, c + after] along axis 1, zeros outside."""
    pad = [(0, 0)] * a.ndim
    pad[1] = (before + 1, after)
    c = np.cumsum(np.pad(a, pad), axis=1)
    n = a.shape[1]
    return c[:, before + 1 + after:before + 1 + after + n] - c[:, :n]


class LRN(Layer):
    """Local response normalisation across channels (ONNX LRN, torch.nn.LocalResponseNorm):
    y = x / (bias + alpha / size * sum of x^2 over `size` neighbouring channels) ** beta."""

    def __init__(self, size, alpha=1e-4, beta=0.75, bias=1.0):
        super().__init__()
        self.size = _util.check_int("size", size, 1)
        self.alpha = _util.check_float("alpha", alpha)
        self.beta = _util.check_float("beta", beta)
        self.bias = _util.check_float("bias", bias)
        self._saved = None

    def get_config(self):
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "bias": self.bias}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        if len(shape) < 1:
            raise ValueError(f"LRN needs per-sample shapes (C, ...), got {shape}")
        return shape

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def _span(self):
        return (self.size - 1) // 2, self.size // 2   # ONNX: floor before, ceil after

    def forward(self, x, training=False):
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        before, after = self._span()
        s = self.bias + (self.alpha / self.size) * _window_sum(x * x, before, after)
        y = (x * s ** -self.beta).astype(x.dtype, copy=False)
        if training:
            self._saved = (x, s)
        return y

    def backward(self, grad_out):
        x, s = _util.saved(self)
        g = np.asarray(grad_out)
        before, after = self._span()
        # x_j is in the windows of channels j - after .. j + before: the adjoint window
        t = _window_sum(g * x * s ** (-self.beta - 1), after, before)
        gx = g * s ** -self.beta - (2 * self.alpha * self.beta / self.size) * x * t
        return gx.astype(x.dtype, copy=False)
